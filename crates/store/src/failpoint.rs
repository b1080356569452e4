//! Failpoints: named places where tests make the process fail on purpose.
//!
//! Compiled to nothing unless the `failpoints` feature is on. With it, the
//! environment variable `ELIDE_FAILPOINT=name` (or [`set`]) makes the named
//! point abort the process (as a crash would) or, with `name=error`, return
//! an error from the enclosing function.

/// Evaluate a failpoint.
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        {
            $crate::failpoint::run_hook($name);
            if let Some(action) = $crate::failpoint::hit($name) {
                match action {
                    $crate::failpoint::Action::Abort => std::process::abort(),
                    $crate::failpoint::Action::Error => {
                        return Err($crate::StoreError::Internal(format!(
                            "failpoint {} triggered",
                            $name
                        ))
                        .into())
                    }
                }
            }
        }
    };
}

/// What a triggered failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Abort the process.
    Abort,
    /// Return an error.
    Error,
}

#[cfg(feature = "failpoints")]
static ACTIVE: std::sync::Mutex<Option<(String, Action)>> = std::sync::Mutex::new(None);

/// Arm a failpoint (None disarms).
#[cfg(feature = "failpoints")]
pub fn set(spec: Option<(&str, Action)>) {
    if let Ok(mut a) = ACTIVE.lock() {
        *a = spec.map(|(n, act)| (n.to_string(), act));
    }
}

/// What a test runs at a failpoint: the process goes on afterwards.
#[cfg(feature = "failpoints")]
pub type Hook = std::sync::Arc<dyn Fn() + Send + Sync>;

#[cfg(feature = "failpoints")]
static HOOKS: std::sync::Mutex<Vec<(String, Hook)>> = std::sync::Mutex::new(Vec::new());

/// Run `hook` each time the failpoint `name` is passed (`None` removes
/// the hooks of `name`), for tests that act at an exact point of an
/// operation: another thread's write between two of its steps, or a
/// crash image taken there. A hook runs on the operation's own thread,
/// with whatever locks the operation holds at that point.
#[cfg(feature = "failpoints")]
pub fn set_hook(name: &str, hook: Option<Hook>) {
    if let Ok(mut h) = HOOKS.lock() {
        h.retain(|(n, _)| n != name);
        if let Some(hook) = hook {
            h.push((name.to_string(), hook));
        }
    }
}

/// Run the hooks of `name` (outside the registry's lock, so a hook may
/// pass other failpoints).
#[cfg(feature = "failpoints")]
pub fn run_hook(name: &str) {
    let hooks: Vec<Hook> = match HOOKS.lock() {
        Ok(h) => h
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect(),
        Err(_) => return,
    };
    for f in hooks {
        f();
    }
}

/// Is `name` armed?
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> Option<Action> {
    if let Ok(a) = ACTIVE.lock() {
        if let Some((n, act)) = &*a {
            return (n == name).then_some(*act);
        }
    }
    let spec = std::env::var("ELIDE_FAILPOINT").ok()?;
    let (n, act) = match spec.split_once('=') {
        Some((n, "error")) => (n.to_string(), Action::Error),
        Some((n, _)) => (n.to_string(), Action::Abort),
        None => (spec, Action::Abort),
    };
    (n == name).then_some(act)
}
