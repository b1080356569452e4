//! Receipts: a signed, hash-chained record of each verified erasure.
//!
//! When a request becomes `verified` (compact/advance.rs, in the verification's
//! commit), a receipt is written under `receipts/`: the request's id and
//! kind, its scope as keyed hashes (the verified request's `id_hashes`
//! and scrubbed predicate: never an id or a property value in clear), the
//! cut-off, the times of each state, the rows it hid, every part file that
//! held its rows and left (rewritten, merged or dropped) with its BLAKE3
//! and the BLAKE3 of what replaced it, and the verification's result.
//!
//! ```text
//!   receipts/0000000001.json   {"body": {..., "seq": 1, "prev": "000…0", "public_key": K}, "signature": S1}
//!   receipts/0000000002.json   {"body": {..., "seq": 2, "prev": BLAKE3(file 1)}, "signature": S2}
//!   manifest: receipts_head = {seq: 2, blake3: BLAKE3(file 2)}
//! ```
//!
//! * The body is signed with Ed25519 (`signature` over the body's exact
//!   bytes). The signing key is `receipts/signing.key` in the data
//!   directory (created with the first receipt, with its public key in
//!   `receipts/public.key`), or the file `StoreOptions::receipt_key`
//!   names, so that it can be kept off the data directory.
//! * Each body names the BLAKE3 of the previous receipt's file; the
//!   manifest names the last one. Altering a receipt breaks its signature
//!   and the next one's `prev`; removing one breaks the numbering or the
//!   chain; removing the last ones disagrees with the manifest's head;
//!   re-signing with another key fails against a public key kept apart
//!   (`elide receipts verify --public-key FILE`).
//! * Receipt files are written before the commit that publishes their
//!   head; files numbered past the head are leftovers of a commit that
//!   did not happen, and are replaced. Receipts are never removed: they
//!   outlive the data they describe, and hold nothing personal.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Result, StoreError};
use crate::format::{us_to_rfc3339, DeletionRequest};
use crate::storage::Storage;

/// Where receipts live, under the data directory.
pub const RECEIPTS_DIR: &str = "receipts";
const KEY_PATH: &str = "receipts/signing.key";
/// The public key of the data directory's first signing key (hex).
pub const PUBLIC_KEY_PATH: &str = "receipts/public.key";
/// Every public key that signed a receipt, one file each (`{hex}.pub`).
const KEYS_DIR: &str = "receipts/keys";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A file by its path, size and BLAKE3 (hex; absent for files written
/// before receipts existed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileHash {
    /// Path under the data directory.
    pub path: String,
    /// BLAKE3 of the file's bytes.
    pub blake3: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

/// A part file that held rows of a request and left the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErasedFile {
    /// The file as it was.
    pub file: FileHash,
    /// The files written in its place by the same commit (a purge's or a
    /// merge's output); empty when it was dropped whole.
    pub replaced_by: Vec<FileHash>,
}

/// The last receipt of the chain, as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceiptHead {
    /// Its number (the first receipt is 1).
    pub seq: u64,
    /// BLAKE3 of its file.
    pub blake3: String,
}

/// What a receipt states (the signed body).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReceiptBody {
    /// Format of this body.
    pub format: u32,
    /// Position in the chain (from 1).
    pub seq: u64,
    /// BLAKE3 of the previous receipt's file (64 zeros for the first).
    pub prev: String,
    /// The Ed25519 public key that signed it (hex).
    pub public_key: String,
    /// The request.
    pub request_id: u64,
    /// Its kind.
    pub kind: String,
    /// Its project.
    pub project_id: i64,
    /// Tables it covered.
    pub tables: Vec<String>,
    /// Its distinct ids, as keyed hashes (the manifest's key).
    pub id_hashes: Vec<String>,
    /// For kind `events` and `retention`: the predicate's shape, its
    /// values and ids as keyed hashes.
    pub predicate: Option<crate::predicate::EventPredicate>,
    /// Rows with `_seq` below this were covered.
    pub cutoff_seq: u64,
    /// ... and at or above this, for a request with a floor (left out
    /// when 0, so receipts signed before floors existed read the same).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub floor_seq: u64,
    /// Rows it hid.
    pub rows_hidden: u64,
    /// The same per table (empty for requests made before it was
    /// recorded).
    pub rows_hidden_by_table: std::collections::BTreeMap<String, u64>,
    /// Rows of the persons metadata (persons, their distinct ids) its
    /// deletion removed, as the persons layer reported them; 0 for a
    /// deletion of events only.
    pub metadata_rows_removed: u64,
    /// When its rows were hidden (RFC 3339).
    pub hidden_at: String,
    /// When they were due to be gone.
    pub purge_due_by: String,
    /// When no live file held them any more.
    pub purged_at: Option<String>,
    /// When the verification scan found none.
    pub verified_at: Option<String>,
    /// Every part file that held its rows and left, with what replaced it.
    pub files: Vec<ErasedFile>,
    /// Rows of the request the verification scan found (always 0: a
    /// request is verified only then).
    pub rows_found_by_verification: u64,
}

/// A receipt file: the body's exact bytes and their signature.
#[derive(Debug, Serialize, Deserialize)]
struct ReceiptFile<'a> {
    #[serde(borrow)]
    body: &'a RawValue,
    signature: String,
}

fn receipt_path(seq: u64) -> String {
    format!("{RECEIPTS_DIR}/{seq:010}.json")
}

fn seq_of(path: &str) -> Option<u64> {
    path.strip_prefix(RECEIPTS_DIR)?
        .strip_prefix('/')?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// The signing key: the file `key_file` names (a 64-hex-digit seed), or
/// the data directory's, created if missing — unless receipts exist
/// (`receipts_exist`): a lost key is an error, never silently replaced.
/// The key's public half is recorded under `receipts/keys/` (and in
/// `receipts/public.key`, the first key's), so that a chain signed by
/// successive keys still verifies.
///
/// On an object store the default key is a file of the local directory
/// (`local_dir`/[`LOCAL_KEY_FILE`]), not an object: whoever can read the
/// bucket must not be able to sign receipts.
pub(crate) fn signing_key(
    storage: &Storage,
    key_file: Option<&std::path::Path>,
    local_dir: &std::path::Path,
    receipts_exist: bool,
) -> Result<SigningKey> {
    let local_key = local_dir.join(LOCAL_KEY_FILE);
    // An empty file is a key an older build began to write and never did:
    // none, while no receipt was signed (a new one is made below).
    if key_file.is_none()
        && storage.is_remote()
        && !receipts_exist
        && std::fs::metadata(&local_key).is_ok_and(|m| m.is_file() && m.len() == 0)
    {
        tracing::warn!(path = %local_key.display(), "the receipt signing key file is empty (a write cut short); making a new key");
        std::fs::remove_file(&local_key).map_err(|e| StoreError::io(local_key.display(), e))?;
    }
    let key = match key_file {
        Some(f) => load_key_file(f)?,
        None if storage.is_remote() && local_key.is_file() => load_key_file(&local_key)?,
        None if storage.is_remote() && receipts_exist => {
            return Err(StoreError::Unavailable(format!(
                "receipts exist but their signing key {} is missing: restore it, or name a key file in ELIDE_RECEIPT_KEY",
                local_key.display()
            )))
        }
        None if storage.is_remote() => {
            let key = new_key();
            write_private(&local_key, &hex::encode(key.to_bytes()))?;
            tracing::info!(public_key = %hex::encode(key.verifying_key().as_bytes()), path = %local_key.display(), "created the receipt signing key");
            key
        }
        None if storage.exists(KEY_PATH)? => {
            // Also mends a key a crash left between its creation and the
            // change of its mode below (the open does it too).
            restrict_local_key(storage);
            let bytes = storage.get(KEY_PATH)?;
            parse_seed(KEY_PATH, &String::from_utf8_lossy(&bytes))?
        }
        None if receipts_exist => {
            return Err(StoreError::Unavailable(format!(
                "receipts exist but their signing key {KEY_PATH} is missing: restore it, or name a key file in ELIDE_RECEIPT_KEY"
            )))
        }
        None => {
            let mut seed = [0u8; 32];
            seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            storage.put_new(KEY_PATH, hex::encode(seed).into_bytes().into())?;
            restrict_local_key(storage);
            let key = SigningKey::from_bytes(&seed);
            tracing::info!(public_key = %hex::encode(key.verifying_key().as_bytes()), "created the receipt signing key");
            key
        }
    };
    let public = hex::encode(key.verifying_key().as_bytes());
    let listed = format!("{KEYS_DIR}/{public}.pub");
    if !storage.exists(&listed)? {
        storage.put_new(&listed, public.clone().into_bytes().into())?;
    }
    if !storage.exists(PUBLIC_KEY_PATH)? {
        storage.put_new(PUBLIC_KEY_PATH, public.into_bytes().into())?;
    }
    Ok(key)
}

/// In a local data directory, make the signing key readable by its owner
/// only (mode 0600), if it exists and is not already. Its file is written
/// like every other, staged then renamed into place, so it is created
/// with the default mode and changed here; every writer's open calls this
/// too, which mends a key a crash left between the two, or one restored
/// from a backup. A key whose mode cannot be changed (a file of another
/// owner, a read-only mount) still signs: that is logged as a warning,
/// not an error that would hold every verification back.
pub(crate) fn restrict_local_key(storage: &Storage) {
    #[cfg(unix)]
    if let Some(root) = storage.local_root() {
        use std::os::unix::fs::PermissionsExt;
        let path = root.join(KEY_PATH);
        let mode = match std::fs::metadata(&path) {
            Ok(m) => m.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the receipt signing key's mode");
                return;
            }
        };
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "the receipt signing key is now readable by its owner only")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "the receipt signing key is readable by others and its mode cannot be changed")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = storage;
}

/// The signing key a file holds (a 64-hex-digit Ed25519 seed): checked
/// when a store is opened with `StoreOptions::receipt_key`.
pub(crate) fn load_key_file(f: &std::path::Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(f).map_err(|e| StoreError::io(f.display(), e))?;
    parse_seed(&f.display().to_string(), &text)
}

fn parse_seed(what: &str, text: &str) -> Result<SigningKey> {
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::corrupt(what, "not a 64-hex-digit Ed25519 seed"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The local directory's signing key of a store on an object store.
pub const LOCAL_KEY_FILE: &str = "receipt-signing.key";

fn new_key() -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    SigningKey::from_bytes(&seed)
}

/// Write a new private file (mode 0600), durably and whole, refusing to
/// replace one: written and synced under a temporary name, then moved to
/// `path` without replacing, so that a crash leaves `path` absent or
/// complete, never empty (at worst a temporary file beside it).
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let io = |e| StoreError::io(path.display(), e);
    // A name of this attempt's own (another process may be making the
    // key too; the first to move its file into place wins).
    let tmp = path.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let written = o.open(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    let moved = written
        .and_then(|()| crate::io::FileSystem::rename_noreplace(&crate::io::StdFs, &tmp, path));
    if moved.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    moved.map_err(io)?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Public keys, one per line (hex), as `--public-key` files hold them.
pub fn parse_public_keys(what: &str, text: &str) -> Result<Vec<VerifyingKey>> {
    let keys: Vec<VerifyingKey> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| parse_public_key(what, l))
        .collect::<Result<_>>()?;
    if keys.is_empty() {
        return Err(StoreError::InvalidInput(format!("{what}: no public key")));
    }
    Ok(keys)
}

/// A public key from its hex text.
pub fn parse_public_key(what: &str, text: &str) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            StoreError::InvalidInput(format!("{what}: not a 64-hex-digit Ed25519 public key"))
        })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| StoreError::InvalidInput(format!("{what}: not an Ed25519 public key: {e}")))
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The body of a verified request's receipt (before chaining).
pub(crate) fn body_of(r: &DeletionRequest) -> ReceiptBody {
    ReceiptBody {
        format: 1,
        seq: 0,
        prev: String::new(),
        public_key: String::new(),
        request_id: r.id,
        kind: r.kind.as_str().to_string(),
        project_id: r.project_id,
        tables: r.tables.iter().map(|t| t.name().to_string()).collect(),
        id_hashes: r.id_hashes.clone(),
        predicate: r.predicate.clone(),
        cutoff_seq: r.cutoff_seq,
        floor_seq: r.floor_seq,
        rows_hidden: r.rows_hidden,
        rows_hidden_by_table: r
            .rows_hidden_by_table
            .iter()
            .map(|(t, n)| (t.name().to_string(), *n))
            .collect(),
        metadata_rows_removed: r.metadata_rows_removed,
        hidden_at: us_to_rfc3339(r.created_at_us),
        purge_due_by: us_to_rfc3339(r.purge_due_by_us),
        purged_at: r.purged_at_us.map(us_to_rfc3339),
        verified_at: r.verified_at_us.map(us_to_rfc3339),
        files: r.erased_files.clone(),
        rows_found_by_verification: 0,
    }
}

/// Write the receipts of `bodies` after `head`, signed with `key`, and
/// return the new head and each request's receipt number. Files numbered
/// past `head` (left by a commit that did not happen) are removed first,
/// once `fence` says this writer is still the one whose head `head` is
/// (another writer's published receipts look the same from here). The
/// caller publishes the head in the commit that verifies the requests.
pub(crate) fn write_chain(
    storage: &Storage,
    key: &SigningKey,
    head: Option<&ReceiptHead>,
    bodies: Vec<ReceiptBody>,
    fence: &dyn Fn() -> Result<()>,
) -> Result<(ReceiptHead, Vec<(u64, u64)>)> {
    let (mut seq, mut prev) = match head {
        Some(h) => (h.seq, h.blake3.clone()),
        None => (0, GENESIS.to_string()),
    };
    let past: Vec<String> = storage
        .list(RECEIPTS_DIR)?
        .into_iter()
        .filter(|l| seq_of(&l.path).is_some_and(|s| s > seq))
        .map(|l| l.path)
        .collect();
    if !past.is_empty() {
        fence()?;
    }
    for path in past {
        storage.delete(&path)?;
    }
    let public_key = hex::encode(key.verifying_key().as_bytes());
    let mut assigned = Vec::with_capacity(bodies.len());
    for mut b in bodies {
        seq += 1;
        assigned.push((b.request_id, seq));
        b.seq = seq;
        b.prev = prev.clone();
        b.public_key = public_key.clone();
        let body = serde_json::to_string(&b)
            .map_err(|e| StoreError::Internal(format!("encoding a receipt: {e}")))?;
        let signature = hex::encode(key.sign(body.as_bytes()).to_bytes());
        let file = format!("{{\"body\":{body},\"signature\":\"{signature}\"}}\n");
        storage.put_new(&receipt_path(seq), file.clone().into_bytes().into())?;
        prev = blake3::hash(file.as_bytes()).to_hex().to_string();
    }
    Ok((ReceiptHead { seq, blake3: prev }, assigned))
}

/// Check one receipt file's signature: by the key it names, which must
/// be one of `trusted` (when given). Returns its body.
pub fn verify_one(
    bytes: &[u8],
    trusted: Option<&[VerifyingKey]>,
) -> std::result::Result<ReceiptBody, String> {
    let f: ReceiptFile<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a receipt: {e}"))?;
    let body: ReceiptBody =
        serde_json::from_str(f.body.get()).map_err(|e| format!("not a receipt body: {e}"))?;
    let key = parse_public_key("the receipt's public_key", &body.public_key)
        .map_err(|e| e.to_string())?;
    if trusted.is_some_and(|t| !t.contains(&key)) {
        return Err("signed with another key than the ones given".into());
    }
    let sig: [u8; 64] = hex::decode(&f.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the signature is not 128 hex digits")?;
    key.verify(f.body.get().as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| "the signature does not match the body".to_string())?;
    Ok(body)
}

/// Result of a chain verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Receipts whose signature and place in the chain verified.
    pub receipts: u64,
    /// The keys they were checked against (hex).
    pub public_keys: Vec<String>,
}

/// The public keys the data directory lists: `receipts/public.key` and
/// every `receipts/keys/*.pub`.
fn listed_keys(storage: &Storage) -> Result<Vec<VerifyingKey>> {
    let mut keys = Vec::new();
    let mut paths: Vec<String> = storage
        .list(KEYS_DIR)?
        .into_iter()
        .map(|l| l.path)
        .filter(|p| p.ends_with(".pub"))
        .collect();
    if storage.exists(PUBLIC_KEY_PATH)? {
        paths.push(PUBLIC_KEY_PATH.to_string());
    }
    for p in paths {
        let text = storage.get(&p)?;
        for k in parse_public_keys(&p, &String::from_utf8_lossy(&text))? {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    Ok(keys)
}

/// Check every receipt under `storage`: numbered 1..n without a gap, each
/// signed by one of `trusted` (else the keys the data directory lists),
/// each naming the BLAKE3 of the one before, the last matching `head`.
/// The error names the first bad receipt.
pub fn verify_chain(
    storage: &Storage,
    head: Option<&ReceiptHead>,
    trusted: Option<Vec<VerifyingKey>>,
) -> Result<ChainReport> {
    let keys = match trusted {
        Some(k) => k,
        None => listed_keys(storage)?,
    };
    let mut files: Vec<(u64, String)> = storage
        .list(RECEIPTS_DIR)?
        .into_iter()
        .filter_map(|l| seq_of(&l.path).map(|s| (s, l.path)))
        .collect();
    files.sort();
    let head_seq = head.map_or(0, |h| h.seq);
    // Files past the head were never published (a commit that did not
    // happen); they are replaced by the next receipts.
    files.retain(|(s, _)| *s <= head_seq);
    let bad = |path: &str, why: String| StoreError::InvalidInput(format!("receipt {path}: {why}"));
    let public_keys = keys.iter().map(|k| hex::encode(k.as_bytes())).collect();
    if head_seq == 0 {
        return Ok(ChainReport {
            receipts: 0,
            public_keys,
        });
    }
    if keys.is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "receipts exist but no public key is listed ({PUBLIC_KEY_PATH}, {KEYS_DIR}/): pass one"
        )));
    }
    let mut prev = GENESIS.to_string();
    for (i, (seq, path)) in files.iter().enumerate() {
        let want = i as u64 + 1;
        if *seq != want {
            return Err(bad(&receipt_path(want), "missing from the chain".into()));
        }
        let bytes = storage.get(path)?;
        let body = verify_one(&bytes, Some(&keys)).map_err(|e| bad(path, e))?;
        if body.seq != *seq {
            return Err(bad(path, format!("says it is receipt {}", body.seq)));
        }
        if body.prev != prev {
            return Err(bad(
                path,
                "does not follow the receipt before it (a receipt was altered or removed)".into(),
            ));
        }
        prev = blake3::hash(&bytes).to_hex().to_string();
    }
    if files.len() as u64 != head_seq {
        return Err(bad(
            &receipt_path(files.len() as u64 + 1),
            format!("missing: the manifest's chain ends at receipt {head_seq}"),
        ));
    }
    if head.is_some_and(|h| h.blake3 != prev) {
        return Err(bad(
            &receipt_path(head_seq),
            "is not the receipt the manifest recorded".into(),
        ));
    }
    Ok(ChainReport {
        receipts: files.len() as u64,
        public_keys,
    })
}

/// The receipt of request `id` (its file's bytes), if it has one: read
/// directly when the request names its number (`receipt_seq`), else
/// found by a scan of the published receipts.
pub fn find(
    storage: &Storage,
    head: Option<&ReceiptHead>,
    id: u64,
    seq: Option<u64>,
) -> Result<Option<Vec<u8>>> {
    let head_seq = head.map_or(0, |h| h.seq);
    let is_request = |bytes: &[u8]| {
        serde_json::from_slice::<ReceiptFile<'_>>(bytes)
            .ok()
            .and_then(|f| serde_json::from_str::<ReceiptBody>(f.body.get()).ok())
            .is_some_and(|b| b.request_id == id)
    };
    if let Some(s) = seq.filter(|s| *s <= head_seq) {
        let path = receipt_path(s);
        if storage.exists(&path)? {
            let bytes = storage.get(&path)?;
            if is_request(&bytes) {
                return Ok(Some(bytes.to_vec()));
            }
        }
    }
    for l in storage.list(RECEIPTS_DIR)? {
        if seq_of(&l.path).is_none_or(|s| s > head_seq) {
            continue;
        }
        let bytes = storage.get(&l.path)?;
        if is_request(&bytes) {
            return Ok(Some(bytes.to_vec()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::RequestKind;
    use crate::Table;

    /// Receipts past the head are removed only once the fence passes: on
    /// an object store they may be another writer's, published.
    #[test]
    fn receipts_past_the_head_are_removed_only_past_the_fence() {
        let dir = tempfile::tempdir().expect("dir");
        let storage =
            Storage::local(dir.path(), std::sync::Arc::new(crate::io::StdFs)).expect("storage");
        let key = SigningKey::from_bytes(&[7; 32]);
        let body = |id: u64| {
            let mut r =
                DeletionRequest::new(RequestKind::DistinctIds, 1, vec![Table::Events], 50, 0, 0);
            r.id = id;
            body_of(&r)
        };
        let ok = || Ok(());
        let (head, _) = write_chain(&storage, &key, None, vec![body(1)], &ok).expect("first");
        assert_eq!(head.seq, 1);
        let first = std::fs::read(dir.path().join(receipt_path(1))).expect("receipt 1");
        // A writer whose head is still before receipt 1, fenced off.
        let refused = || Err(StoreError::Unavailable("another writer".into()));
        assert!(write_chain(&storage, &key, None, vec![body(2)], &refused).is_err());
        assert_eq!(
            std::fs::read(dir.path().join(receipt_path(1))).expect("kept"),
            first
        );
        // The same writer after its own failed commit: replaced.
        let (head, assigned) =
            write_chain(&storage, &key, None, vec![body(2)], &ok).expect("again");
        assert_eq!((head.seq, assigned), (1, vec![(2, 1)]));
        assert_ne!(
            std::fs::read(dir.path().join(receipt_path(1))).expect("new"),
            first
        );
    }
}
