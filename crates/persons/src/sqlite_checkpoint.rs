//! The metadata log's checkpoints, off the writers' path.
//!
//! In WAL mode a commit appends pages to `metadata.sqlite3-wal`; a
//! checkpoint copies them into the database file and syncs it. SQLite's
//! automatic checkpoint runs inside the commit that crosses its threshold,
//! so a capture batch paid for it (about a third of a batch's commit at
//! 2M events). Here a thread with its own connection runs a `PASSIVE`
//! checkpoint (which never blocks a writer) after commits, at most once
//! per [`MIN_INTERVAL`], so that pages rewritten by consecutive commits are
//! copied once. The writer's connection keeps an automatic checkpoint at a
//! much higher threshold ([`BACKSTOP_PAGES`]) in case this thread falls
//! behind or cannot run.
//!
//! A scrub that could not truncate the log (a reader held it) is retried
//! here too ([`Checkpointer::scrub_later`]).
//!
//! Invariant: nothing here changes what is committed or when; a failed
//! checkpoint is logged and retried after the next commit, and the log is
//! replayed by the next open whatever state it was left in.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::{PersonsError, Result};

/// How long this thread's connection waits for a lock (but see
/// [`scrubbed`]).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest time between two checkpoints.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// The writer's own automatic checkpoint threshold, in pages (256 MiB of
/// log with 4 KiB pages): only reached when this thread falls behind.
pub(crate) const BACKSTOP_PAGES: i64 = 65_536;

#[derive(Default)]
struct State {
    /// A commit happened since the last checkpoint started.
    pending: bool,
    /// A scrub (a `TRUNCATE` checkpoint) could not finish: retried here
    /// after each checkpoint until it does.
    scrub: bool,
    stop: bool,
}

/// The checkpoint thread; stopped (and joined) on drop.
pub(crate) struct Checkpointer {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start the thread, with its own connection to the database at `path`
    /// (which must exist and be in WAL mode).
    pub(crate) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // This connection only checkpoints; its own commits (none) must
        // not trigger one either.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let thread = std::thread::Builder::new()
            .name("elide-meta-ckpt".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&conn, &shared)
            })
            .map_err(|e| {
                PersonsError::Internal(format!(
                    "could not start the metadata checkpoint thread: {e}"
                ))
            })?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// A scrub could not truncate the log (another connection held a
    /// read): this thread retries it, every [`MIN_INTERVAL`] until it
    /// succeeds, so erased rows do not wait in the log for the next
    /// erasure or open.
    pub(crate) fn scrub_later(&self) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut s) = lock.lock() {
            s.scrub = true;
            s.pending = true;
            cv.notify_one();
        }
    }

    /// A commit happened: a checkpoint is due.
    pub(crate) fn nudge(&self) {
        let (lock, cv) = &*self.shared;
        match lock.lock() {
            Ok(mut s) => {
                if !s.pending {
                    s.pending = true;
                    cv.notify_one();
                }
            }
            Err(_) => tracing::error!(
                "the metadata checkpoint thread stopped (poisoned lock); the log is checkpointed only by commits past the backstop"
            ),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut s) = lock.lock() {
            s.stop = true;
            cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the metadata checkpoint thread panicked");
            }
        }
    }
}

fn run(conn: &Connection, shared: &(Mutex<State>, Condvar)) {
    let (lock, cv) = shared;
    let mut last: Option<Instant> = None;
    loop {
        let scrub = {
            let Ok(mut s) = lock.lock() else { return };
            // Wait for a commit, then let more commits gather until
            // `MIN_INTERVAL` has passed since the last checkpoint.
            loop {
                if s.stop {
                    return;
                }
                let wait = match (
                    s.pending,
                    last.map(|t| MIN_INTERVAL.checked_sub(t.elapsed())),
                ) {
                    (false, _) => None,
                    (true, Some(Some(left))) if !left.is_zero() => Some(left),
                    (true, _) => break,
                };
                s = match wait {
                    None => match cv.wait(s) {
                        Ok(g) => g,
                        Err(_) => return,
                    },
                    Some(d) => match cv.wait_timeout(s, d) {
                        Ok((g, _)) => g,
                        Err(_) => return,
                    },
                };
            }
            s.pending = false;
            s.scrub
        };
        if scrub {
            let done = scrubbed(conn);
            if let Ok(mut s) = lock.lock() {
                s.scrub = !done;
                // Not done: again after MIN_INTERVAL, commits or not.
                s.pending |= !done;
            }
            last = Some(Instant::now());
            continue;
        }
        let started = Instant::now();
        last = Some(started);
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((busy, log, done)) => tracing::trace!(
                busy,
                log_pages = log,
                checkpointed_pages = done,
                took_us = started.elapsed().as_micros() as u64,
                "metadata checkpoint"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "metadata checkpoint failed; retried after the next commit")
            }
        }
    }
}

/// A `TRUNCATE` checkpoint (see [`Checkpointer::scrub_later`]); whether
/// it finished. It does not wait: while a `TRUNCATE` waits for readers it
/// blocks new writers, and a long read would stall every capture commit
/// (busy, it proceeds as a passive checkpoint and is tried again later).
fn scrubbed(conn: &Connection) -> bool {
    let truncate = || {
        conn.busy_timeout(Duration::ZERO)?;
        let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        conn.busy_timeout(BUSY_TIMEOUT)?;
        busy
    };
    match truncate() {
        Ok(0) => {
            tracing::info!("metadata log truncated: the erased rows left in it are gone");
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "metadata log truncation failed; retried");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database with table `t` and a writer connection that never
    /// checkpoints by itself; the checkpointer on it; the file's size.
    fn setup(dir: &Path) -> (Connection, Checkpointer, std::path::PathBuf, u64) {
        let path = dir.join("m.sqlite3");
        let writer = Connection::open(&path).unwrap();
        let mode: String = writer
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        let ckpt = Checkpointer::start(&path).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        (writer, ckpt, path, size)
    }

    /// Wait until the database file holds at least `len` bytes.
    fn wait_for_len(path: &Path, len: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(path).unwrap().len() < len {
            assert!(Instant::now() < deadline, "no checkpoint within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rows written by a connection that never checkpoints itself reach
    /// the database file once the thread is nudged; dropping the
    /// checkpointer stops its thread.
    #[test]
    fn nudged_commits_reach_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, ckpt, path, before) = setup(dir.path());
        for _ in 0..50 {
            writer
                .execute("INSERT INTO t (v) VALUES (zeroblob(8192))", [])
                .unwrap();
            ckpt.nudge();
        }
        let wal = dir.path().join("m.sqlite3-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 400_000);
        // 50 rows of 8 KiB: the file grows by at least that once checkpointed.
        wait_for_len(&path, before + 400_000);
        drop(ckpt);
        let n: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 50);
    }

    /// Without a nudge nothing is checkpointed (the thread waits for
    /// commits rather than polling).
    #[test]
    fn no_commit_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, ckpt, path, before) = setup(dir.path());
        writer
            .execute("INSERT INTO t (v) VALUES (zeroblob(65536))", [])
            .unwrap();
        std::thread::sleep(MIN_INTERVAL * 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
        ckpt.nudge();
        wait_for_len(&path, before + 65_536);
    }

    /// A scrub left to the thread while another connection reads: the
    /// log keeps its bytes while the read lasts, writers are not held up
    /// by the retries, and the log is truncated once the read ends, with
    /// no call after it.
    #[test]
    fn a_scrub_left_to_the_thread_truncates_once_the_reader_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, ckpt, path, _) = setup(dir.path());
        let wal = path.with_extension("sqlite3-wal");
        writer
            .execute("INSERT INTO t (v) VALUES (zeroblob(65536))", [])
            .unwrap();
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let n: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        ckpt.scrub_later();
        std::thread::sleep(MIN_INTERVAL * 2);
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the read holds the log"
        );
        // Meanwhile writers go on: a retry that waited for the reader
        // would hold the write lock for its 10 s busy timeout.
        writer.busy_timeout(Duration::from_secs(1)).unwrap();
        for _ in 0..5 {
            writer
                .execute("INSERT INTO t (v) VALUES (zeroblob(16))", [])
                .unwrap();
            std::thread::sleep(MIN_INTERVAL / 2);
        }
        reader.execute_batch("COMMIT").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&wal).unwrap().len() > 0 {
            assert!(
                Instant::now() < deadline,
                "the log was not truncated within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `SqliteMeta`'s commits nudge the thread: its log reaches the
    /// database file without an explicit checkpoint (the writer's own
    /// threshold is far above what is written here).
    #[test]
    fn metadata_commits_are_checkpointed() {
        use crate::meta::MetaStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.sqlite3");
        let meta = crate::sqlite::SqliteMeta::open(&path).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for project in 1..=200 {
            meta.write(|tx| crate::persons::ensure_project(tx, project, 0).map(|_| ()))
                .unwrap();
        }
        wait_for_len(&path, before + 4096);
        assert!(meta.checkpointer.is_some());
        let ro = crate::sqlite::SqliteMeta::open_read_only(&path).unwrap();
        assert!(
            ro.checkpointer.is_none(),
            "a read-only handle has no thread"
        );
    }
}
