//! Distinct ids: which may merge, the person UUIDs derived from them, and
//! the keyed hashes that stand for them once a person is erased.

use uuid::Uuid;

/// Longest accepted distinct id, in characters (PostHog's limit).
pub const MAX_DISTINCT_ID_CHARS: usize = 200;

/// Namespace of deterministic person UUIDs: PostHog's, so that a person
/// created from the same (project, distinct id) has the same UUID in both.
pub const PERSON_UUID_NAMESPACE: Uuid = Uuid::from_bytes([
    0x93, 0x29, 0x79, 0xb4, 0x65, 0xc3, 0x44, 0x24, 0x84, 0x67, 0x0b, 0x66, 0xec, 0x27, 0xbc, 0x22,
]);

/// Illegal in any casing (compared lowercased), also when quoted.
const CASE_INSENSITIVE_ILLEGAL: &[&str] = &[
    "anonymous",
    "guest",
    "distinctid",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
    "undefined",
    "true",
    "false",
];

/// Illegal only exactly as written (`NaN` but not `nan`), also when quoted.
const CASE_SENSITIVE_ILLEGAL: &[&str] = &[
    "[object Object]",
    "NaN",
    "None",
    "none",
    "null",
    "0",
    "undefined",
];

fn unquoted(id: &str) -> &str {
    for q in ['\'', '"'] {
        if id.len() >= 2 && id.starts_with(q) && id.ends_with(q) {
            return &id[1..id.len() - 1];
        }
    }
    id
}

/// True for ids that stem from a bug or a placeholder and must never drive
/// a merge: blank ids, and PostHog's lists, bare or wrapped in single or
/// double quotes. Events with such a distinct id still get a person of
/// their own; they only never merge.
pub fn is_illegal_for_merge(id: &str) -> bool {
    if id.trim().is_empty() {
        return true;
    }
    // One layer of matching quotes is stripped, as PostHog's lists hold
    // each id bare, single-quoted and double-quoted.
    let bare = unquoted(id);
    CASE_INSENSITIVE_ILLEGAL.contains(&bare.to_lowercase().as_str())
        || CASE_SENSITIVE_ILLEGAL.contains(&bare)
}

/// The deterministic UUID of the first person created for `distinct_id`
/// in `project_id` (UUIDv5 of `"{project}:{distinct_id}"`, as PostHog).
pub fn person_uuid(project_id: i64, distinct_id: &str) -> Uuid {
    Uuid::new_v5(
        &PERSON_UUID_NAMESPACE,
        format!("{project_id}:{distinct_id}").as_bytes(),
    )
}

/// The `n`-th alternative UUID for `distinct_id` (n ≥ 1), used when the
/// deterministic one is already taken: by a deleted person whose distinct
/// id was reset, or by the person a split moves the id away from.
pub fn person_uuid_alternative(project_id: i64, distinct_id: &str, n: u32) -> Uuid {
    Uuid::new_v5(
        &PERSON_UUID_NAMESPACE,
        format!("{project_id}:{distinct_id}:{n}").as_bytes(),
    )
}

/// Keyed hash of a distinct id: the lookup key of the distinct-id table
/// and what remains of a deleted person's ids (the block list). 16 bytes
/// of BLAKE3 keyed with the database's own key; lookups compare the id
/// itself too, so a collision can never mix two ids up.
pub fn id_hash(key: &[u8; 32], project_id: i64, distinct_id: &str) -> [u8; 16] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&project_id.to_le_bytes());
    h.update(distinct_id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// A project's blocked distinct ids (the ids of persons deleted without a
/// reset), as the keyed hashes that are all that remains of them: which
/// ids the analytics must not count as personless visitors, since their
/// kept events belong to a deleted person. Holds the database's hash key,
/// which is never shown (`Debug` prints the count only).
pub struct BlockedIds {
    key: [u8; 32],
    project: i64,
    hashes: std::collections::HashSet<[u8; 16]>,
}

impl BlockedIds {
    /// The set of `hashes` of `project`'s ids, keyed with `key`.
    pub(crate) fn new(key: [u8; 32], project: i64, hashes: Vec<[u8; 16]>) -> BlockedIds {
        BlockedIds {
            key,
            project,
            hashes: hashes.into_iter().collect(),
        }
    }

    /// Whether no id is blocked.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// How many ids are blocked.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether `distinct_id` is blocked.
    pub fn contains(&self, distinct_id: &str) -> bool {
        !self.hashes.is_empty()
            && self
                .hashes
                .contains(&id_hash(&self.key, self.project, distinct_id))
    }
}

impl std::fmt::Debug for BlockedIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockedIds")
            .field("project", &self.project)
            .field("ids", &self.hashes.len())
            .finish_non_exhaustive()
    }
}

/// Check a distinct id given as input: non-blank and at most
/// [`MAX_DISTINCT_ID_CHARS`] characters.
pub fn validate_distinct_id(id: &str) -> std::result::Result<(), String> {
    if id.trim().is_empty() {
        return Err("distinct_id is blank".into());
    }
    if id.contains('\0') {
        return Err("distinct_id contains a NUL character".into());
    }
    let n = id.chars().count();
    if n > MAX_DISTINCT_ID_CHARS {
        return Err(format!(
            "distinct_id is {n} characters long; the limit is {MAX_DISTINCT_ID_CHARS}"
        ));
    }
    Ok(())
}

/// Serialize a UUID as its hyphenated text (the uuid crate's serde
/// feature is left off so the dependency graph stays as DataFusion has it).
pub fn ser_uuid<S: serde::Serializer>(u: &Uuid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&u.hyphenated())
}

/// [`ser_uuid`] for an optional UUID.
pub fn ser_opt_uuid<S: serde::Serializer>(u: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.collect_str(&u.hyphenated()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illegal_ids_follow_posthogs_case_rules() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("   ", true),
            ("anonymous", true),
            ("Anonymous", true),
            ("ANONYMOUS", true),
            ("'guest'", true),
            ("\"distinct_id\"", true),
            ("distinctid", true),
            ("id", true),
            ("ID", true),
            ("not_authenticated", true),
            ("email", true),
            ("undefined", true),
            ("UnDeFiNeD", true),
            ("true", true),
            ("FALSE", true),
            ("null", true),
            ("NULL", false),
            ("None", true),
            ("none", true),
            ("NONE", false),
            ("NaN", true),
            ("nan", false),
            ("'NaN'", true),
            ("0", true),
            ("00", false),
            ("[object Object]", true),
            ("[object object]", false),
            ("user-1", false),
            ("anonymous-1", false),
            ("'user-1'", false),
            ("guest@example.com", false),
        ];
        for (id, illegal) in cases {
            assert_eq!(is_illegal_for_merge(id), *illegal, "id {id:?}");
        }
    }

    #[test]
    fn person_uuid_matches_posthog() {
        // uuid5(UUID('932979b4-65c3-4424-8467-0b66ec27bc22'), '1:user-1'),
        // computed with Python's uuid module.
        let u = person_uuid(1, "user-1");
        assert_eq!(u.to_string(), "6931a681-6e90-500d-8294-14582dcc2e3f");
        assert_eq!(u, person_uuid(1, "user-1"));
        assert_ne!(u, person_uuid(2, "user-1"));
        assert_ne!(u, person_uuid_alternative(1, "user-1", 1));
    }

    #[test]
    fn distinct_id_validation() {
        assert!(validate_distinct_id("a").is_ok());
        assert!(validate_distinct_id(" ").is_err());
        assert!(validate_distinct_id(&"x".repeat(200)).is_ok());
        assert!(validate_distinct_id(&"x".repeat(201)).is_err());
    }
}
