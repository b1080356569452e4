//! Projects and personal API keys: what the server authenticates against
//! and what `elide projects` / `elide keys` administer.
//!
//! A project has a capture token (`phc_…`, public: SDKs embed it) and
//! settings applied at capture. A personal API key (`phx_…`, secret) acts
//! on one project with a set of scopes. Only a BLAKE3 hash of a key is
//! stored (a key has 238 bits of randomness, so an unkeyed hash cannot be
//! searched); a key is shown once, when it is made. Looking a key up goes
//! by its hash, and the stored hash is compared in constant time.

use subtle::ConstantTimeEq;

use crate::error::{PersonsError, Result};
use crate::meta::{ApiKey, MetaStore, MetaTx, Project, ProjectSettings};
use crate::persons::{now_us, Persons};

/// The scopes a key may carry (PostHog's names); `*` is all of them.
pub const SCOPES: &[&str] = &[
    "person:read",
    "person:write",
    "query:read",
    "insight:read",
    "cohort:read",
    "cohort:write",
    "project:read",
    "project:write",
    "activity_log:read",
    "event_definition:read",
    "property_definition:read",
    // An Elide scope: deleting events by predicate (`…/events/delete/`).
    "event:write",
];

/// Prefix of personal API keys.
pub const KEY_PREFIX: &str = "phx_";
/// Prefix of capture tokens.
pub const TOKEN_PREFIX: &str = "phc_";

/// Longest project name.
pub const MAX_PROJECT_NAME: usize = 200;

/// A change of a project's metadata ([`Persons::update_project`]): the
/// fields that are set replace the current ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectUpdate {
    /// A new name (trimmed; 1 to [`MAX_PROJECT_NAME`] characters).
    pub name: Option<String>,
    /// [`ProjectSettings::anonymize_ips`].
    pub anonymize_ips: Option<bool>,
    /// [`ProjectSettings::drop_properties`].
    pub drop_properties: Option<Vec<String>>,
}

fn random_text(n: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

/// A project name as kept: trimmed, 1 to [`MAX_PROJECT_NAME`] characters.
pub fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_PROJECT_NAME {
        return Err(PersonsError::InvalidInput(format!(
            "a project name is 1 to {MAX_PROJECT_NAME} characters"
        )));
    }
    Ok(name)
}

/// Insert a project named `name` (checked) with the next id and a fresh
/// capture token.
fn new_project(tx: &mut dyn MetaTx, name: &str, now: i64) -> Result<Project> {
    let id = tx.max_project_id()?.checked_add(1).ok_or_else(|| {
        PersonsError::InvalidInput("no project id is left: the largest is in use".into())
    })?;
    let p = Project {
        id,
        name: name.to_string(),
        api_token: new_capture_token(),
        created_at_us: now,
        settings: ProjectSettings::default(),
    };
    tx.insert_project(&p)?;
    tx.insert_activity(p.id, None, "project_created", None, now)?;
    Ok(p)
}

/// A new personal API key of `project` (scopes and label checked), not
/// stored yet: the record (id 0), the key itself and its hash.
fn draft_key(project: i64, scopes: &[String], label: &str) -> Result<(ApiKey, String, [u8; 32])> {
    let scopes = parse_scopes(scopes)?;
    if label.chars().count() > 200 {
        return Err(PersonsError::InvalidInput(
            "a key label is at most 200 characters".into(),
        ));
    }
    let secret = format!("{KEY_PREFIX}{}", random_text(40));
    let mask = format!("{}...{}", &secret[..8], &secret[secret.len() - 4..]);
    let hash = key_hash(&secret);
    let key = ApiKey {
        id: 0,
        project_id: project,
        label: label.to_string(),
        scopes,
        mask,
        created_at_us: now_us(),
        last_used_at_us: None,
        revoked_at_us: None,
    };
    Ok((key, secret, hash))
}

/// A new capture token.
pub(crate) fn new_capture_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_text(40))
}

fn key_hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// Check a scope list: known names, or `*` alone; sorted, no repeats.
pub fn parse_scopes(scopes: &[String]) -> Result<Vec<String>> {
    if scopes.is_empty() {
        return Err(PersonsError::InvalidInput(
            "a key needs at least one scope".into(),
        ));
    }
    if scopes.iter().any(|s| s == "*" || s == "all") {
        return Ok(vec!["*".into()]);
    }
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for s in scopes {
        let s = s.trim();
        if !SCOPES.contains(&s) {
            return Err(PersonsError::InvalidInput(format!(
                "unknown scope {s:?} (known: {}, or all)",
                SCOPES.join(", ")
            )));
        }
        out.push(s.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl ApiKey {
    /// Whether the key carries `scope` (or all scopes).
    ///
    /// As in PostHog, `x:write` also grants `x:read`.
    pub fn allows(&self, scope: &str) -> bool {
        let write = scope
            .strip_suffix(":read")
            .map(|object| format!("{object}:write"));
        self.scopes
            .iter()
            .any(|s| s == "*" || s == scope || write.as_deref() == Some(s.as_str()))
    }
}

impl<M: MetaStore> Persons<M> {
    /// Make a project with a fresh capture token; its id is one more than
    /// the largest used.
    pub fn create_project(&self, name: &str) -> Result<Project> {
        let name = checked_name(name)?;
        let now = now_us();
        self.meta().write(|tx| new_project(tx, name, now))
    }

    /// [`Persons::create_project`] and [`Persons::create_api_key`] for it
    /// in one transaction: both or neither, so that a failure (or a
    /// crash) never leaves a project no key reaches.
    pub fn create_project_with_key(
        &self,
        name: &str,
        scopes: &[String],
        label: &str,
    ) -> Result<(Project, ApiKey, String)> {
        let name = checked_name(name)?;
        let (mut key, secret, hash) = draft_key(0, scopes, label)?;
        let now = now_us();
        let project = self.meta().write(|tx| {
            let p = new_project(tx, name, now)?;
            key.project_id = p.id;
            key.id = tx.insert_api_key(&key, &hash)?;
            Ok(p)
        })?;
        Ok((project, key, secret))
    }

    /// Change a project's name and/or settings: each field of `change`
    /// that is set replaces the current one, read in the same
    /// transaction (so two changes of different fields both land).
    pub fn update_project(&self, id: i64, change: &ProjectUpdate) -> Result<Project> {
        let name = change.name.as_deref().map(checked_name).transpose()?;
        self.meta().write(|tx| {
            let mut p = tx
                .project(id)?
                .ok_or_else(|| PersonsError::NotFound(format!("project {id}")))?;
            if let Some(n) = name {
                p.name = n.to_string();
            }
            if let Some(a) = change.anonymize_ips {
                p.settings.anonymize_ips = a;
            }
            if let Some(d) = &change.drop_properties {
                p.settings.drop_properties = d.clone();
            }
            tx.update_project(&p)?;
            Ok(p)
        })
    }

    /// Make a personal API key for `project`: returns the stored record
    /// and the key itself, which is not kept anywhere.
    pub fn create_api_key(
        &self,
        project: i64,
        scopes: &[String],
        label: &str,
    ) -> Result<(ApiKey, String)> {
        let (mut key, secret, hash) = draft_key(project, scopes, label)?;
        key.id = self.meta().write(|tx| {
            if tx.project(project)?.is_none() {
                return Err(PersonsError::NotFound(format!("project {project}")));
            }
            tx.insert_api_key(&key, &hash)
        })?;
        Ok((key, secret))
    }

    /// A project's keys (revoked ones included).
    pub fn api_keys(&self, project: i64) -> Result<Vec<ApiKey>> {
        self.meta().read(|tx| tx.api_keys(project))
    }

    /// Revoke a key of `project`; `NotFound` if it has no live key `id`.
    pub fn revoke_api_key(&self, project: i64, id: i64) -> Result<()> {
        let done = self
            .meta()
            .write(|tx| tx.revoke_api_key(project, id, now_us()))?;
        if done {
            Ok(())
        } else {
            Err(PersonsError::NotFound(format!(
                "live key {id} of project {project}"
            )))
        }
    }

    /// The live key `secret` is, if any. Its last use is recorded at most
    /// once an hour (a read-only metadata store skips that).
    pub fn authenticate_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        if !secret.starts_with(KEY_PREFIX) || secret.len() > 200 {
            return Ok(None);
        }
        let hash = key_hash(secret);
        let found = self.meta().read(|tx| tx.api_key_by_hash(&hash))?;
        let Some((key, stored)) = found else {
            return Ok(None);
        };
        if !bool::from(stored.as_slice().ct_eq(hash.as_slice())) || key.revoked_at_us.is_some() {
            return Ok(None);
        }
        let now = now_us();
        if key
            .last_used_at_us
            .is_none_or(|t| now.saturating_sub(t) > 3_600_000_000)
        {
            if let Err(e) = self.meta().write(|tx| tx.touch_api_key(key.id, now)) {
                tracing::debug!(error = %e, "could not record a key's use");
            }
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_and_normalised() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_scopes(&s(&["all"])).unwrap(), vec!["*"]);
        assert_eq!(
            parse_scopes(&s(&["person:write", "person:read", "person:read"])).unwrap(),
            vec!["person:read", "person:write"]
        );
        assert!(parse_scopes(&s(&["person:delete"])).is_err());
        assert!(parse_scopes(&[]).is_err());
    }

    /// A project made with its key is reached by that key; a refused key
    /// makes no project.
    #[test]
    fn a_project_and_its_key_are_made_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let opts = elide_store::StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..Default::default()
        };
        let p = Persons::open(elide_store::Store::open(dir.path(), opts).unwrap()).unwrap();
        let all = vec!["*".to_string()];
        assert!(p
            .create_project_with_key("A", &["nope".into()], "")
            .is_err());
        assert!(p
            .create_project_with_key("A", &all, &"l".repeat(201))
            .is_err());
        assert!(p.create_project_with_key(" ", &all, "").is_err());
        assert!(p.projects().unwrap().is_empty());
        let (project, key, secret) = p.create_project_with_key(" A ", &all, "k").unwrap();
        assert_eq!((project.id, project.name.as_str()), (1, "A"));
        assert_eq!(key.project_id, 1);
        let found = p.authenticate_key(&secret).unwrap().unwrap();
        assert_eq!((found.id, found.project_id), (key.id, 1));
    }
}
