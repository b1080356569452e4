//! `elide receipts show|verify`, and receipts across a crash: a
//! compaction killed after writing a receipt but before publishing it
//! leaves an unpublished file that the next run replaces; the chain
//! verifies either way.

use std::process::Command;

use elide::store::{DeleteSpec, RequestStatus};

use crate::cli::elide;
use crate::common::*;

fn compact_with(dir: &std::path::Path, failpoint: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_elide"))
        .args(["compact", "--now", "--data-dir"])
        .arg(dir)
        .env("ELIDE_FAILPOINT", failpoint)
        .output()
        .unwrap()
}

#[test]
fn receipts_survive_a_crash_and_verify_from_the_command_line() {
    for point in ["receipt::after_write", "lifecycle::before_commit"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let d = dir.to_str().unwrap();
        let id = {
            let store = open(dir);
            let rows: Vec<_> = (0..30u64)
                .map(|n| row(n, &format!("d{}", n % 3), 1, 0))
                .collect();
            append(&store, &rows);
            store.flush().unwrap();
            let id = store.delete(DeleteSpec::ids(1, ["d1"])).unwrap().request_id;
            store.close().unwrap();
            id
        };
        let (ok, _, err) = elide(&[
            "receipts",
            "show",
            "--data-dir",
            d,
            "--request",
            &id.to_string(),
        ]);
        assert!(!ok && err.contains("is pending"), "{point}: {err}");
        let out = compact_with(dir, point);
        assert!(!out.status.success(), "{point}: not reached");
        {
            let store = open(dir);
            let r = store.request(id).unwrap().unwrap();
            assert_ne!(r.status, RequestStatus::Verified, "{point}");
            assert_eq!(store.receipt(id).unwrap(), None, "{point}: unpublished");
            assert_eq!(store.verify_receipts(None).unwrap().receipts, 0);
            store.close().unwrap();
        }
        let out = compact_with(dir, "");
        assert!(
            out.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (ok, out, err) = elide(&["receipts", "verify", "--data-dir", d]);
        assert!(ok, "{point}: {err}");
        assert!(out.starts_with("1 verified"), "{point}: {out}");
        let (ok, shown, err) = elide(&[
            "receipts",
            "show",
            "--data-dir",
            d,
            "--request",
            &id.to_string(),
        ]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(shown.trim()).unwrap();
        assert_eq!(v["body"]["request_id"], id);
        assert_eq!(v["body"]["seq"], 1);
        assert!(!shown.contains("\"d1\""), "an id in clear");
        // One exported receipt, checked with the public key alone.
        let exported = tmp.path().join("exported.json");
        std::fs::write(&exported, &shown).unwrap();
        let public = dir.join("receipts/public.key");
        let (ok, out, err) = elide(&[
            "receipts",
            "verify",
            "--receipt",
            exported.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
        ]);
        assert!(ok && out.contains("request"), "{err}");
        let wrong = tmp.path().join("wrong.key");
        // RFC 8032's first test key: valid, and not ours.
        std::fs::write(
            &wrong,
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        )
        .unwrap();
        let (ok, _, err) = elide(&[
            "receipts",
            "verify",
            "--receipt",
            exported.to_str().unwrap(),
            "--public-key",
            wrong.to_str().unwrap(),
        ]);
        assert!(!ok, "another key accepted");
        assert!(err.contains("exported.json"), "{err}");
        // Tampered in the data directory: non-zero, naming the receipt.
        let file = dir.join("receipts/0000000001.json");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replacen("\"rows_hidden\":10", "\"rows_hidden\":9", 1),
        )
        .unwrap();
        let (ok, _, err) = elide(&["receipts", "verify", "--data-dir", d]);
        assert!(!ok && err.contains("0000000001"), "{point}: {err}");
    }
}
