//! A [`FileSystem`] that records what a power loss would leave (feature
//! `testing`).
//!
//! It performs every operation on the real file system, so the store runs
//! normally, and keeps beside it a model of durability:
//!
//! * a file's content is durable as of its last `fsync` (`sync_file`,
//!   `sync_data`, `truncate`); bytes written since may be lost;
//! * a directory entry (a file or a subdirectory created, renamed or
//!   removed) is durable after its directory's `fsync`;
//! * a path survives only if every directory above it survives.
//!
//! [`CrashFs::image`] writes that durable image into another directory;
//! opening it is reopening after a power loss at that instant. Cut points
//! can also be planned by operation count ([`CrashFs::plan_cut`]): the
//! image is written just before the operation with that number runs, so a
//! test can cut in the middle of a commit, a flush or a compaction.
//!
//! Files under the root that the store does not write through the seam
//! (the `LOCK` file, SQLite's files) are untracked. The image leaves them
//! out unless a passthrough rule names them, in which case their live
//! content is copied (right for SQLite, which makes its own commits
//! durable before they return).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::io::{AppendFile, FileSystem, StdFs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File(u64),
    Dir,
}

#[derive(Debug, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

type Passthrough = Box<dyn Fn(&Path) -> bool + Send + Sync>;

#[derive(Default)]
struct Model {
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    /// Relative path -> what is there now.
    live: BTreeMap<PathBuf, Kind>,
    /// Relative path -> what a power loss would leave.
    durable: BTreeMap<PathBuf, Kind>,
    ops: u64,
    /// Planned cuts: operation number -> image directory.
    cuts: BTreeMap<u64, PathBuf>,
    images_written: Vec<(u64, PathBuf)>,
    errors: Vec<String>,
    /// Seed of out-of-order loss of unsynced pages (see
    /// [`CrashFs::reorder_unsynced`]).
    reorder: Option<u64>,
}

/// The recording file system. Paths outside `root` pass through untracked.
pub struct CrashFs {
    root: PathBuf,
    model: Mutex<Model>,
    passthrough: Option<Passthrough>,
}

impl std::fmt::Debug for CrashFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashFs").field("root", &self.root).finish()
    }
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let r = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            out.push((r.clone(), true));
            walk(root, &r, out)?;
        } else {
            out.push((r, false));
        }
    }
    Ok(())
}

impl CrashFs {
    /// Track everything under `root` (created if missing). What is there
    /// already counts as durable.
    pub fn new(root: &Path) -> io::Result<Arc<CrashFs>> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let mut m = Model::default();
        let mut found = Vec::new();
        walk(&root, Path::new(""), &mut found)?;
        for (rel, is_dir) in found {
            let kind = if is_dir {
                Kind::Dir
            } else {
                let bytes = std::fs::read(root.join(&rel))?;
                let id = m.next_inode;
                m.next_inode += 1;
                m.inodes.insert(
                    id,
                    Inode {
                        live: bytes.clone(),
                        durable: bytes,
                    },
                );
                Kind::File(id)
            };
            m.live.insert(rel.clone(), kind);
            m.durable.insert(rel, kind);
        }
        Ok(Arc::new(CrashFs {
            root,
            model: Mutex::new(m),
            passthrough: None,
        }))
    }

    /// Like [`CrashFs::new`], copying untracked files for which `rule`
    /// holds (relative path) into images as they are live.
    pub fn with_passthrough(
        root: &Path,
        rule: impl Fn(&Path) -> bool + Send + Sync + 'static,
    ) -> io::Result<Arc<CrashFs>> {
        let fs = CrashFs::new(root)?;
        let mut fs = Arc::try_unwrap(fs).map_err(|_| io::Error::other("shared"))?;
        fs.passthrough = Some(Box::new(rule));
        Ok(Arc::new(fs))
    }

    /// The tracked root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Operations performed so far (the clock of [`CrashFs::plan_cut`]).
    pub fn ops(&self) -> u64 {
        self.model.lock().map(|m| m.ops).unwrap_or(0)
    }

    /// Write the durable image into `dest` just before operation number
    /// `op` runs (if it ever does).
    pub fn plan_cut(&self, op: u64, dest: PathBuf) {
        if let Ok(mut m) = self.model.lock() {
            m.cuts.insert(op, dest);
        }
    }

    /// Model disks that write unsynced pages back out of order: in images
    /// taken from now on, a file written past its last fsync keeps either
    /// only its synced bytes, or its full length with each unsynced 4 KiB
    /// page either as written or zeroed (chosen at random from `seed`).
    pub fn reorder_unsynced(&self, seed: u64) {
        if let Ok(mut m) = self.model.lock() {
            m.reorder = Some(seed);
        }
    }

    /// Images written by planned cuts: (operation number, directory).
    pub fn images(&self) -> Vec<(u64, PathBuf)> {
        self.model
            .lock()
            .map(|m| m.images_written.clone())
            .unwrap_or_default()
    }

    /// Errors met while writing planned images.
    pub fn errors(&self) -> Vec<String> {
        self.model
            .lock()
            .map(|m| m.errors.clone())
            .unwrap_or_default()
    }

    /// Write the durable image now into `dest` (created; must be empty).
    pub fn image(&self, dest: &Path) -> io::Result<()> {
        let m = self.lock()?;
        self.write_image(&m, dest)
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Model>> {
        self.model
            .lock()
            .map_err(|_| io::Error::other("crash fs model poisoned"))
    }

    fn write_image(&self, m: &Model, dest: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dest)?;
        let survives = |rel: &Path| -> bool {
            rel.ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .all(|a| m.durable.get(a) == Some(&Kind::Dir))
        };
        for (rel, kind) in &m.durable {
            if !survives(rel) {
                continue;
            }
            let to = dest.join(rel);
            match kind {
                Kind::Dir => std::fs::create_dir_all(&to)?,
                Kind::File(id) => {
                    if let Some(p) = to.parent() {
                        std::fs::create_dir_all(p)?;
                    }
                    let bytes = match m.inodes.get(id) {
                        Some(i) => surviving(i, m.reorder.map(|s| s ^ (*id << 20) ^ m.ops)),
                        None => Vec::new(),
                    };
                    std::fs::write(&to, bytes)?;
                }
            }
        }
        if let Some(rule) = &self.passthrough {
            let mut found = Vec::new();
            walk(&self.root, Path::new(""), &mut found)?;
            for (rel, is_dir) in found {
                if is_dir || m.live.contains_key(&rel) || !rule(&rel) {
                    continue;
                }
                let to = dest.join(&rel);
                if let Some(p) = to.parent() {
                    std::fs::create_dir_all(p)?;
                }
                // A file may vanish between the walk and the copy (SQLite's
                // journal); that is what a crash then would see too.
                match std::fs::copy(self.root.join(&rel), &to) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The tracked relative path of `path`, if under the root.
    fn rel(&self, path: &Path) -> Option<PathBuf> {
        crate::io::canonical_lenient(path)?
            .strip_prefix(&self.root)
            .ok()
            .map(Path::to_path_buf)
    }

    /// Count an operation, writing a planned image first.
    fn tick(&self, m: &mut Model) {
        let op = m.ops;
        m.ops += 1;
        if let Some(dest) = m.cuts.remove(&op) {
            match self.write_image(m, &dest) {
                Ok(()) => m.images_written.push((op, dest)),
                Err(e) => m.errors.push(format!("image at op {op}: {e}")),
            }
        }
    }

    fn new_inode(m: &mut Model, bytes: Vec<u8>) -> u64 {
        let id = m.next_inode;
        m.next_inode += 1;
        m.inodes.insert(
            id,
            Inode {
                live: bytes,
                durable: Vec::new(),
            },
        );
        id
    }
}

#[derive(Debug)]
struct TrackedAppend {
    fs: Arc<CrashFs>,
    inner: Arc<dyn AppendFile>,
    inode: Option<u64>,
}

impl AppendFile for TrackedAppend {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut m = self.fs.lock()?;
        self.fs.tick(&mut m);
        self.inner.write_all(buf)?;
        if let Some(i) = self.inode.and_then(|id| m.inodes.get_mut(&id)) {
            i.live.extend_from_slice(buf);
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut m = self.fs.lock()?;
        self.fs.tick(&mut m);
        self.inner.sync_data()?;
        if let Some(i) = self.inode.and_then(|id| m.inodes.get_mut(&id)) {
            i.durable = i.live.clone();
        }
        Ok(())
    }
}

/// The [`FileSystem`] to give the store: a shared handle on a [`CrashFs`].
#[derive(Debug, Clone)]
pub struct CrashFsHandle(pub Arc<CrashFs>);

impl FileSystem for CrashFsHandle {
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let fs = &self.0;
        let mut m = fs.lock()?;
        fs.tick(&mut m);
        let inner = StdFs.create_new(path)?;
        let inode = match fs.rel(path) {
            Some(rel) => {
                let id = CrashFs::new_inode(&mut m, Vec::new());
                m.live.insert(rel, Kind::File(id));
                Some(id)
            }
            None => None,
        };
        Ok(Arc::new(TrackedAppend {
            fs: Arc::clone(fs),
            inner,
            inode,
        }))
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.0.write_new(path, bytes)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.0.sync_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.0.sync_dir(path)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename_noreplace(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.0.truncate(path, len)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path)
    }
}

/// What of a file survives: its synced bytes, or, with out-of-order loss,
/// possibly some unsynced pages too (the rest of its length zeroed).
fn surviving(i: &Inode, reorder: Option<u64>) -> Vec<u8> {
    let (Some(seed), true) = (reorder, i.live.len() > i.durable.len()) else {
        return i.durable.clone();
    };
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    if next() % 2 == 0 {
        return i.durable.clone();
    }
    let mut out = i.live.clone();
    const PAGE: usize = 4096;
    let first = i.durable.len() / PAGE;
    for page in first..out.len().div_ceil(PAGE) {
        let lo = (page * PAGE).max(i.durable.len());
        let hi = ((page + 1) * PAGE).min(out.len());
        if next() % 2 == 0 {
            out[lo..hi].fill(0);
        }
    }
    out
}

/// The tracked operations ([`CrashFsHandle`] is the [`FileSystem`]).
impl CrashFs {
    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut m = self.lock()?;
        self.tick(&mut m);
        StdFs.write_new(path, bytes)?;
        if let Some(rel) = self.rel(path) {
            let id = CrashFs::new_inode(&mut m, bytes.to_vec());
            m.live.insert(rel, Kind::File(id));
        }
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut m = self.lock()?;
        self.tick(&mut m);
        StdFs.sync_file(path)?;
        if let Some(Kind::File(id)) = self.rel(path).and_then(|r| m.live.get(&r).copied()) {
            if let Some(i) = m.inodes.get_mut(&id) {
                i.durable = i.live.clone();
            }
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut m = self.lock()?;
        self.tick(&mut m);
        StdFs.sync_dir(path)?;
        if let Some(dir) = self.rel(path) {
            let is_child = |p: &Path| p.parent() == Some(dir.as_path());
            let live: Vec<(PathBuf, Kind)> = m
                .live
                .iter()
                .filter(|(p, _)| is_child(p))
                .map(|(p, k)| (p.clone(), *k))
                .collect();
            m.durable.retain(|p, _| !is_child(p));
            m.durable.extend(live);
        }
        Ok(())
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut m = self.lock()?;
        self.tick(&mut m);
        StdFs.rename_noreplace(from, to)?;
        if let (Some(f), Some(t)) = (self.rel(from), self.rel(to)) {
            if let Some(k) = m.live.remove(&f) {
                m.live.insert(t, k);
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut m = self.lock()?;
        self.tick(&mut m);
        let rel = self.rel(path);
        StdFs.remove_file(path)?;
        if let Some(r) = rel {
            m.live.remove(&r);
        }
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut m = self.lock()?;
        self.tick(&mut m);
        StdFs.truncate(path, len)?;
        if let Some(Kind::File(id)) = self.rel(path).and_then(|r| m.live.get(&r).copied()) {
            if let Some(i) = m.inodes.get_mut(&id) {
                i.live.truncate(len as usize);
                i.durable = i.live.clone();
            }
        }
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut m = self.lock()?;
        self.tick(&mut m);
        StdFs.create_dir_all(path)?;
        if let Some(rel) = self.rel(path) {
            for a in rel.ancestors().filter(|a| !a.as_os_str().is_empty()) {
                m.live.entry(a.to_path_buf()).or_insert(Kind::Dir);
            }
        }
        Ok(())
    }
}
