//! [`App`]: a data directory opened for a long-lived process (the server):
//! the store with its background flusher and compaction worker, the
//! persons layer, and the first-start bootstrap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use elide_persons::{ApiKey, Persons, Project};
use elide_store::{Store, StoreOptions};

use crate::Result;

/// How to open an [`App`].
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// Store options (background flush and compaction on by default; the
    /// environment is not read: `elide serve` passes
    /// [`StoreOptions::from_env`]).
    pub store: StoreOptions,
}

impl AppConfig {
    /// Defaults for `data_dir`: a writer with background work, creating
    /// the store if the directory holds none.
    pub fn new(data_dir: impl Into<PathBuf>) -> AppConfig {
        AppConfig {
            data_dir: data_dir.into(),
            store: StoreOptions::default(),
        }
    }
}

/// An open data directory: the store and its persons layer.
#[derive(Clone)]
pub struct App {
    store: Store,
    persons: Arc<Persons>,
    dir: PathBuf,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("dir", &self.dir).finish()
    }
}

/// What the first start of a server made: shown once, never stored in
/// clear (the key is kept only as a hash).
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The project made.
    pub project: Project,
    /// The personal API key made, with all scopes.
    pub key: ApiKey,
    /// The key itself.
    pub secret: String,
}

impl App {
    /// Open (or create) the data directory for a long-lived writer.
    pub fn open(cfg: AppConfig) -> Result<App> {
        let mut cfg = cfg;
        // A URL (`s3://bucket/prefix`) opens its local directory, with
        // the object store in the options.
        cfg.data_dir = crate::wiring::locate(&cfg.data_dir, &mut cfg.store)?;
        let store = Store::open(&cfg.data_dir, cfg.store)?;
        let persons = match Persons::open(store.clone()) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let _ = store.close();
                return Err(e.into());
            }
        };
        Ok(App {
            store,
            persons,
            dir: cfg.data_dir,
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The persons layer.
    pub fn persons(&self) -> &Arc<Persons> {
        &self.persons
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// On a data directory with no project: make project 1 and a personal
    /// API key with every scope. `None` when projects exist already.
    pub fn bootstrap(&self, project_name: &str) -> Result<Option<Bootstrap>> {
        if !self.persons.projects()?.is_empty() {
            return Ok(None);
        }
        let (project, key, secret) = self.persons.create_project_with_key(
            project_name,
            &["*".to_string()],
            "created at first start",
        )?;
        Ok(Some(Bootstrap {
            project,
            key,
            secret,
        }))
    }

    /// Write buffered rows into parts and release the directory (the last
    /// handle to go closes it).
    pub fn close(self) -> Result<()> {
        let flushed = self.store.flush();
        drop(self.persons);
        self.store.close()?;
        flushed?;
        Ok(())
    }
}
