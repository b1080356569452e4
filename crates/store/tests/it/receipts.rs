//! Receipts: written at verification, signed and hash-chained, naming the
//! files removed by their BLAKE3, holding nothing personal; tampering,
//! removal and another key are each detected.

use elide_store::predicate::EventPredicate;
use elide_store::receipt::ReceiptBody;
use elide_store::{
    DeleteSpec, EventDeletion, PartCompression, PartWriterOptions, Store, StoreOptions,
};

use crate::common::*;

fn uncompressed() -> StoreOptions {
    StoreOptions {
        part: PartWriterOptions {
            compression: PartCompression::None,
            ..Default::default()
        },
        ..opts()
    }
}

fn body(bytes: &[u8]) -> ReceiptBody {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    serde_json::from_value(v["body"].clone()).unwrap()
}

/// Two verified requests: a deletion of the distinct id `alice-secret`
/// and a deletion of events by predicate. Returns their ids.
fn two_receipts(store: &Store) -> (u64, u64) {
    let rows: Vec<_> = (0..60u64)
        .map(|n| {
            let did = if n % 5 == 0 { "alice-secret" } else { "bob" };
            let mut r = row(n, did, 1, (n % 2) as i64);
            if n % 3 == 0 {
                r.event = "click".into();
            }
            r
        })
        .collect();
    append(store, &rows);
    store.flush().unwrap();
    let a = store.delete(DeleteSpec::ids(1, ["alice-secret"])).unwrap();
    let b = store
        .delete_events(EventDeletion::new(
            1,
            EventPredicate {
                events: vec!["click".into()],
                ..Default::default()
            },
        ))
        .unwrap();
    let r = compact_now(store);
    assert_eq!(r.requests_verified, vec![a.request_id, b.request_id]);
    (a.request_id, b.request_id)
}

#[test]
fn a_verified_request_has_a_signed_receipt_naming_its_files_and_nothing_personal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), uncompressed()).unwrap();
    // The parts as they are before the purge, by path.
    let (a, b) = {
        let rows: Vec<_> = (0..1u64).map(|n| row(n, "x", 2, 0)).collect();
        append(&store, &rows); // another project, untouched
        two_receipts(&store)
    };
    let ra = store.receipt(a).unwrap().expect("a receipt for a");
    let rb = store.receipt(b).unwrap().expect("a receipt for b");
    let (ba, bb) = (body(&ra), body(&rb));
    assert_eq!((ba.seq, bb.seq), (1, 2));
    assert_eq!(ba.kind, "distinct_ids");
    assert_eq!(bb.kind, "events");
    assert_eq!(ba.id_hashes.len(), 1);
    assert_eq!(ba.rows_hidden, 12);
    assert_eq!(ba.rows_hidden_by_table, [("events".to_string(), 12)].into());
    assert_eq!(ba.metadata_rows_removed, 0);
    assert!(ba.verified_at.is_some() && ba.purged_at.is_some());
    assert_eq!(ba.rows_found_by_verification, 0);
    assert_eq!(bb.prev, blake3::hash(&ra).to_hex().to_string(), "chained");
    // Files: each with its BLAKE3 before, and what replaced it, whose
    // BLAKE3 is that of the file on disk now.
    assert!(!ba.files.is_empty());
    assert!(
        ba.files.iter().any(|f| !f.replaced_by.is_empty()),
        "a purge rewrites parts that hold other rows: {:?}",
        ba.files
    );
    for f in ba.files.iter().chain(&bb.files) {
        assert!(f.file.blake3.is_some(), "{f:?}");
        assert!(f.replaced_by.iter().all(|a| a.blake3.is_some()), "{f:?}");
        assert!(
            !dir.path().join(&f.file.path).exists(),
            "{} still on disk",
            f.file.path
        );
        for after in &f.replaced_by {
            let path = dir.path().join(&after.path);
            if path.exists() {
                let on_disk = blake3::hash(&std::fs::read(&path).unwrap())
                    .to_hex()
                    .to_string();
                assert_eq!(after.blake3.as_deref(), Some(on_disk.as_str()));
            }
        }
    }
    for r in [&ra, &rb] {
        let text = String::from_utf8_lossy(r);
        assert!(!text.contains("alice-secret"), "an id in clear: {text}");
    }
    // The manifest keeps no list of files for verified requests, and
    // each names its receipt's number.
    let reqs = store.requests().unwrap();
    assert!(reqs.iter().all(|r| r.erased_files.is_empty()));
    let seqs: Vec<_> = reqs.iter().map(|r| r.receipt_seq).collect();
    assert_eq!(seqs, vec![Some(1), Some(2)]);
    let report = store.verify_receipts(None).unwrap();
    assert_eq!(report.receipts, 2);
    // Receipts outlive a reopen and more deletions: the chain grows.
    store.close().unwrap();
    let store = Store::open(dir.path(), uncompressed()).unwrap();
    let pending = store.delete(DeleteSpec::ids(2, ["x"])).unwrap();
    // Not verified yet: no receipt (answered from the manifest, without
    // reading the receipt files).
    assert_eq!(store.receipt(pending.request_id).unwrap(), None);
    compact_now(&store);
    assert_eq!(store.verify_receipts(None).unwrap().receipts, 3);
    assert!(store.receipt(pending.request_id).unwrap().is_some());
}

#[test]
fn tampering_removal_and_another_key_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    two_receipts(&store);
    let rdir = dir.path().join("receipts");
    let first = rdir.join("0000000001.json");
    let last = rdir.join("0000000002.json");
    let original = std::fs::read(&first).unwrap();
    let check = |needle: &str| {
        let e = store.verify_receipts(None).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
        e
    };
    // Altered: one digit of the body.
    let text = String::from_utf8(original.clone()).unwrap();
    std::fs::write(
        &first,
        text.replacen("\"rows_hidden\":12", "\"rows_hidden\":11", 1),
    )
    .unwrap();
    let e = check("0000000001");
    assert!(e.contains("signature"), "{e}");
    // Re-signed by someone else's key: the signature is theirs, not ours.
    std::fs::write(&first, &original).unwrap();
    assert_eq!(store.verify_receipts(None).unwrap().receipts, 2);
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let e = store
        .verify_receipts(Some(vec![other]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("another key"), "{e}");
    // Removed from the middle, and from the end.
    std::fs::rename(&first, rdir.join("gone")).unwrap();
    check("missing from the chain");
    std::fs::rename(rdir.join("gone"), &first).unwrap();
    let kept = std::fs::read(&last).unwrap();
    std::fs::remove_file(&last).unwrap();
    check("chain ends at receipt 2");
    // Swapped for an older receipt's copy: the chain breaks.
    std::fs::write(&last, &original).unwrap();
    check("0000000002");
    std::fs::write(&last, &kept).unwrap();
    assert_eq!(store.verify_receipts(None).unwrap().receipts, 2);
    // A single exported receipt verifies with the public key alone.
    let public = std::fs::read_to_string(rdir.join("public.key")).unwrap();
    let key = elide_store::receipt::parse_public_key("public.key", &public).unwrap();
    let b = elide_store::receipt::verify_one(&kept, Some(&[key])).unwrap();
    assert_eq!(b.seq, 2);
    assert!(elide_store::receipt::verify_one(&kept, Some(&[other])).is_err());
}

/// Keys: a lost data-directory key is never silently replaced (the
/// verification waits), a key given by file signs from then on and the
/// chain still verifies across the change, and a bad key file is refused
/// at open.
#[test]
fn a_lost_key_holds_verification_back_and_a_new_key_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    two_receipts(&store);
    let key_path = dir.path().join("receipts/signing.key");
    #[cfg(unix)]
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    #[cfg(unix)]
    assert_eq!(mode(&key_path), 0o600, "a new key is its owner's only");
    let saved = std::fs::read(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    store.delete(DeleteSpec::ids(1, ["bob"])).unwrap();
    let r = compact_now(&store);
    assert!(r.requests_verified.is_empty(), "verified without a receipt");
    assert!(!key_path.exists(), "a new key was made in its place");
    let pending = store.requests().unwrap().pop().unwrap();
    assert_eq!(pending.status, elide_store::RequestStatus::Purged);
    std::fs::write(&key_path, &saved).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert_eq!(compact_now(&store).requests_verified, vec![pending.id]);
    #[cfg(unix)]
    assert_eq!(
        mode(&key_path),
        0o600,
        "a key found readable by others is mended when it signs"
    );
    assert_eq!(store.verify_receipts(None).unwrap().receipts, 3);
    store.close().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(dir.path(), opts()).unwrap());
        assert_eq!(mode(&key_path), 0o600, "an open mends it too");
    }
    // Another key, from a file: the next receipt is signed with it.
    let other = dir.path().join("other.key");
    std::fs::write(&other, "42".repeat(32)).unwrap();
    let with_key = StoreOptions {
        receipt_key: Some(other.clone()),
        ..opts()
    };
    let store = Store::open(dir.path(), with_key).unwrap();
    append(&store, &[row(900, "carol", 1, 0)]);
    store.flush().unwrap();
    store.delete(DeleteSpec::ids(1, ["carol"])).unwrap();
    compact_now(&store);
    let report = store.verify_receipts(None).unwrap();
    assert_eq!(report.receipts, 4);
    assert_eq!(report.public_keys.len(), 2, "both keys are listed");
    // Against the first key alone, the fourth receipt is refused.
    let first = std::fs::read_to_string(dir.path().join("receipts/public.key")).unwrap();
    let first = elide_store::receipt::parse_public_keys("public.key", &first).unwrap();
    let e = store.verify_receipts(Some(first)).unwrap_err().to_string();
    assert!(e.contains("0000000004") && e.contains("another key"), "{e}");
    store.close().unwrap();
    // A key file that is not a key: refused at open, nothing changed.
    std::fs::write(&other, "not a key").unwrap();
    let bad = StoreOptions {
        receipt_key: Some(other),
        ..opts()
    };
    let e = Store::open(dir.path(), bad).unwrap_err().to_string();
    assert!(e.contains("Ed25519 seed"), "{e}");
}

/// A purge of a part spanning several days and a merge of later parts of
/// one of those days, swapped in one commit: the request's receipt names
/// the purge's output as what replaced its file, not the merge's.
#[test]
fn a_receipt_names_the_rewrite_of_its_own_file_as_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), uncompressed()).unwrap();
    // Ten days of September, two parts a day, merged into one span.
    for k in 0..2u64 {
        let rows: Vec<_> = (k * 100..(k + 1) * 100)
            .map(|n| {
                row(
                    n,
                    if n % 10 == 0 { "gone" } else { "kept" },
                    1,
                    (n % 10) as i64,
                )
            })
            .collect();
        append(&store, &rows);
        store.flush().unwrap();
    }
    compact_now(&store);
    let m = store.manifest().unwrap();
    assert_eq!(m.parts.len(), 1);
    let span = m.parts[0].clone();
    assert_eq!(span.days().count(), 10);
    // Late rows of day 5, two parts; then the deletion.
    for n in 1000..1002u64 {
        append(&store, &[row(n, "late", 1, 5)]);
        store.flush().unwrap();
    }
    let d = store.delete(DeleteSpec::ids(1, ["gone"])).unwrap();
    let r = compact_now(&store);
    assert_eq!(r.requests_verified, vec![d.request_id], "{r:?}");
    assert_eq!(r.tasks.len(), 2, "the purge and the merge: {r:?}");
    let purge_output = r
        .tasks
        .iter()
        .find(|t| t.kind == elide_store::TaskKind::Purge)
        .and_then(|t| t.output)
        .unwrap();
    let out = store.manifest().unwrap();
    let out_path = &out.part(purge_output).unwrap().path;
    let receipt = body(&store.receipt(d.request_id).unwrap().unwrap());
    assert_eq!(receipt.files.len(), 1, "{:?}", receipt.files);
    let f = &receipt.files[0];
    assert_eq!(f.file.path, span.path);
    let replaced: Vec<&str> = f.replaced_by.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(replaced, vec![out_path.as_str()]);
}

/// On an object store, a signing key file left empty (a write an older
/// build cut short) before any receipt is signed is replaced by a new key:
/// requests are still verified and their receipts signed.
#[test]
fn an_empty_signing_key_file_before_any_receipt_is_made_again() {
    let site = Site::new(Backend::S3);
    std::fs::create_dir_all(site.path()).unwrap();
    let key = site.path().join(elide_store::receipt::LOCAL_KEY_FILE);
    std::fs::write(&key, b"").unwrap();
    let store = site.open();
    append(&store, &[row(1, "gone", 1, 0), row(2, "kept", 1, 0)]);
    store.flush().unwrap();
    let d = store.delete(DeleteSpec::ids(1, ["gone"])).unwrap();
    let r = compact_now(&store);
    assert_eq!(r.requests_verified, vec![d.request_id], "{r:?}");
    assert!(store.receipt(d.request_id).unwrap().is_some());
    assert!(std::fs::metadata(&key).unwrap().len() > 0);
}
