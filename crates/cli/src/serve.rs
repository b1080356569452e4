//! `elide serve`: the PostHog-compatible HTTP server over a data
//! directory, and `elide projects …` / `elide keys …`, which administer a
//! data directory that no server holds.
//!
//! Start: open the directory (creating it), and on the first start of an
//! empty one make project 1 with a capture token and a personal API key
//! with every scope, print both once (the key is stored only as a hash),
//! and with `--demo` capture a generated sample through the persons
//! pipeline. Then serve; the store's background worker flushes and
//! compacts (off-peak window, erasure deadline, deleted-fraction
//! threshold).
//!
//! Stop: the first SIGTERM or SIGINT stops accepting connections and lets
//! in-flight requests finish (at most `--shutdown-grace-s`), commits what
//! capture has queued, flushes and closes the store. A second signal exits
//! at once; the next start recovers from the ingest log.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use elide_app::{App, AppConfig};
use elide_persons::capture::parse_line;
use elide_server::{AppState, ServerConfig};
use serde_json::json;

use crate::output::anyhow_lite::Result;
use crate::output::{csv_field, Format};
use crate::sample::Mix;

/// Arguments of `elide serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, default_value = "elide-data")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0: any free port, printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// On first start, also capture a small generated sample (persons
    /// that identify, pageviews, purchases) so that the API shows data.
    #[arg(long)]
    pub demo: bool,
    /// Longest a query may run, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub query_timeout_s: u64,
    /// Longest a request may take, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_s: u64,
    /// Queries that may run at once; the others wait for a slot within
    /// their timeout. All queries together hold at most this many times
    /// the 2 GiB one query may hold.
    #[arg(long, default_value_t = elide_server::DEFAULT_QUERY_CONCURRENCY as u64, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub query_concurrency: u64,
    /// Connections open at once; the next client waits until one closes.
    /// Default: the process's limit of open files less a quarter (at
    /// least 256), kept for the store.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,
    /// Longest a connection may take to send a request's head (a new
    /// connection, or a kept-alive one between requests) before it is
    /// closed, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_s: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_s: u64,
    /// Keep a Delta Lake export of every table current (`parts/<table>`,
    /// as `elide export delta` writes it): export at start and then every
    /// N seconds, so Delta readers see a deletion within N seconds.
    /// Off by default.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub export_delta_every_s: Option<u64>,
}

/// Persons of the `--demo` sample.
const DEMO_PERSONS: u64 = 200;
/// Events of the `--demo` sample (after each person's first events).
const DEMO_EVENTS: u64 = 6_000;
/// The sample spans this many days up to now.
const DEMO_DAYS: i64 = 14;

/// Run `elide serve`.
pub fn serve(a: ServeArgs) -> Result<()> {
    let app = App::open(AppConfig {
        store: elide_store::StoreOptions::from_env(),
        ..AppConfig::new(&a.data_dir)
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("elide-http")
        .build()?;
    // Listeners made before anything is printed or served, so that no
    // signal is missed (a signal before them would kill the process).
    let mut signals = {
        let _in_runtime = rt.enter();
        Signals::new()?
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind(a.bind))?;
    // The first project and its key only once the port is ours: a start
    // that cannot bind makes nothing it could not show.
    let made = app.bootstrap("Default project")?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let mut out = std::io::stdout().lock();
    match &made {
        Some(b) => {
            writeln!(
                out,
                "Created project {} \"{}\" in {}.\n  capture token (public, for SDKs): {}\n  personal API key (shown once, stored only as a hash): {}\n",
                b.project.id,
                b.project.name,
                a.data_dir.display(),
                b.project.api_token,
                b.secret
            )?;
            if a.demo {
                let n = load_demo(&app, b.project.id)?;
                writeln!(out, "Loaded the demo sample: {n} events of {DEMO_PERSONS} persons over {DEMO_DAYS} days.\n")?;
            }
            writeln!(
                out,
                "Try:\n  curl -s {base}/batch/ -H 'Content-Type: application/json' \\\n    -d '{{\"api_key\":\"{token}\",\"batch\":[{{\"event\":\"signed_up\",\"distinct_id\":\"user-1\",\"properties\":{{\"$set\":{{\"email\":\"one@example.com\"}}}}}}]}}'\n  curl -s -H 'Authorization: Bearer {key}' {base}/api/projects/{p}/persons/\n  curl -s -H 'Authorization: Bearer {key}' {base}/api/projects/{p}/query/ -H 'Content-Type: application/json' \\\n    -d '{{\"query\":{{\"kind\":\"HogQLQuery\",\"query\":\"select event, count() from events group by event order by 2 desc\"}}}}'\n",
                token = b.project.api_token,
                key = b.secret,
                p = b.project.id,
            )?;
        }
        None => {
            let projects = app.persons().projects()?;
            writeln!(
                out,
                "Serving {} project(s) of {} (keys: elide keys list --data-dir {} --project P).",
                projects.len(),
                a.data_dir.display(),
                a.data_dir.display()
            )?;
            if a.demo {
                writeln!(
                    out,
                    "(--demo loads its sample only on the first start of an empty data directory.)"
                )?;
            }
        }
    }
    writeln!(
        out,
        "Elide listening on {base} (API schema: {base}/api/schema/)"
    )?;
    out.flush()?;
    drop(out);

    let config = ServerConfig {
        query_timeout: Duration::from_secs(a.query_timeout_s),
        request_timeout: Duration::from_secs(a.request_timeout_s),
        // At most 256 (the flag's range).
        query_concurrency: usize::try_from(a.query_concurrency).unwrap_or(256),
        max_connections: a
            .max_connections
            .map_or_else(elide_server::conn::default_max_connections, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        header_timeout: Duration::from_secs(a.header_timeout_s),
        ..ServerConfig::default()
    };
    let state = AppState::new(app.clone(), config)?;
    let exporter = a
        .export_delta_every_s
        .map(|s| crate::delta_exporter::Exporter::start(app.clone(), Duration::from_secs(s)))
        .transpose()?;
    let grace = Duration::from_secs(a.shutdown_grace_s);
    let served = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            signals.next().await;
            tracing::info!("stopping: no new connections; in-flight requests finish");
            eprintln!("Stopping (a second signal exits at once)...");
            let _ = stop_tx.send(());
            signals.next().await;
            eprintln!("Second signal: exiting now; the next start recovers.");
            std::process::exit(130);
        });
        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(elide_server::serve(state.clone(), listener, async move {
            let _ = stop_rx.await;
            let _ = stopping_tx.send(true);
        }));
        let mut stopping = stopping_rx;
        let mut server = server;
        let r = tokio::select! {
            r = &mut server => r,
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_s = grace.as_secs(), "requests still running after the grace period; closing");
                server.abort();
                Ok(Ok(()))
            }
        };
        Ok::<_, std::io::Error>(r)
    })?;
    if let Some(e) = exporter {
        e.stop();
    }
    // Commit and answer what capture has queued, then close the store.
    state.stop_capture();
    drop(state);
    drop(rt);
    let closed = app.close();
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) if e.is_cancelled() => {}
        Err(e) => return Err(format!("server task failed: {e}").into()),
    }
    closed?;
    eprintln!("Stopped; data flushed and the store closed.");
    Ok(())
}

/// SIGTERM and SIGINT, listened to from creation on.
pub(crate) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Capture the demo sample into `project`; returns the events captured.
fn load_demo(app: &App, project: i64) -> Result<u64> {
    let now = chrono::Utc::now().timestamp_micros();
    let span = DEMO_DAYS * 86_400_000_000;
    let total = DEMO_PERSONS * 2 + DEMO_EVENTS;
    let mut mix = Mix::new(7, DEMO_PERSONS, now - span, span / total as i64);
    let mut lines: Vec<String> = (0..DEMO_PERSONS).flat_map(|i| mix.warmup(i)).collect();
    lines.extend((0..DEMO_EVENTS).map(|_| mix.next()));
    // One unit: a failure leaves nothing of the sample behind.
    const CHUNK: usize = 5_000;
    let mut batches = lines.chunks(CHUNK).enumerate().map(|(c, chunk)| {
        let mut b = elide_persons::CaptureBatch {
            events: Vec::with_capacity(chunk.len()),
            lines: Vec::with_capacity(chunk.len()),
        };
        for (i, l) in chunk.iter().enumerate() {
            let line = c * CHUNK + i + 1;
            for e in parse_line(line, l, now)? {
                b.events.push(e);
                b.lines.push(line);
            }
        }
        Ok(b)
    });
    let out = app
        .persons()
        .capture_all(project, &mut batches, &mut |_| {})?;
    app.store().flush()?;
    Ok(out.stats.events)
}

/// `elide projects …`.
#[derive(Debug, clap::Subcommand)]
pub enum ProjectsCommand {
    /// Make a project (and the data directory if needed); prints its id
    /// and capture token.
    Create {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Name.
        #[arg(long)]
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List the projects.
    List {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Change a project's erasure settings (deadline, retention); prints them.
    Update {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The project.
        #[arg(long)]
        project: i64,
        /// Days from a deletion request to its purge_due_by (default 7);
        /// applies to requests made from now on.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        erasure_deadline_days: Option<u32>,
        /// Keep rows this many whole UTC days, then delete them (retention
        /// sweeps: `elide compact`, or a server's background worker); 0
        /// keeps them forever.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=36500))]
        retention_days: Option<u32>,
        /// Keep events of one name this many whole UTC days, as
        /// EVENT=DAYS (repeatable; DAYS 0 removes the limit), e.g.
        /// '$autocapture=30'.
        #[arg(long = "event-retention-days", value_parser = crate::erasure::event_days)]
        event_retention_days: Vec<(String, u32)>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Drop a project: its rows, persons, deletion records and keys.
    Delete {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The project.
        #[arg(long)]
        project: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `elide keys …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a personal API key; prints it once (only its hash is kept).
    Create {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The project the key acts on.
        #[arg(long)]
        project: i64,
        /// `all`, or a comma-separated list of person:read, person:write,
        /// query:read, insight:read, cohort:read, cohort:write, project:read,
        /// project:write, activity_log:read, event_definition:read,
        /// property_definition:read, event:write.
        #[arg(long)]
        scopes: String,
        /// A label for people.
        #[arg(long, default_value = "")]
        label: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List a project's keys (masked).
    List {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The project.
        #[arg(long)]
        project: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a key: requests with it get 401 from then on.
    Revoke {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The project.
        #[arg(long)]
        project: i64,
        /// The key's id (from `elide keys list`).
        #[arg(long)]
        key: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// A project as the API shows it (`GET /api/projects/{id}/`).
fn project_json(p: &elide_persons::Project) -> serde_json::Value {
    json!(elide_server::projects::ProjectView::from(p))
}

/// A key as the API lists it, with its project.
fn key_json(k: &elide_persons::ApiKey) -> serde_json::Value {
    let mut v = json!(elide_server::projects::KeyView::from(k));
    v["project_id"] = json!(k.project_id);
    v
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Run `elide projects …`.
pub fn projects(cmd: ProjectsCommand) -> Result<()> {
    use elide_app::wiring::{self, Access};
    match cmd {
        ProjectsCommand::Create {
            data_dir,
            name,
            format,
        } => {
            let store = wiring::store(&data_dir, Access::Create)?;
            let persons = wiring::persons(&store, Access::Create)?;
            let p = persons.create_project(&name)?;
            drop(persons);
            store.close()?;
            match format {
                Format::Json => print_json(&project_json(&p))?,
                _ => println!(
                    "project {} \"{}\"\ncapture token: {}",
                    p.id, p.name, p.api_token
                ),
            }
        }
        ProjectsCommand::List { data_dir, format } => {
            let store = wiring::store(&data_dir, Access::Read)?;
            let list = if wiring::has_persons(&store) {
                wiring::persons(&store, Access::Read)?.projects()?
            } else {
                Vec::new()
            };
            match format {
                Format::Json => {
                    print_json(&json!(list.iter().map(project_json).collect::<Vec<_>>()))?
                }
                Format::Csv => {
                    println!("id,name,api_token,created_at");
                    for p in &list {
                        println!(
                            "{},{},{},{}",
                            p.id,
                            csv_field(&p.name),
                            p.api_token,
                            elide_persons::persons::iso(p.created_at_us)
                        );
                    }
                }
                Format::Table => {
                    if list.is_empty() {
                        println!("(no projects)");
                    }
                    for p in &list {
                        println!("{:>4}  {:<24} {}", p.id, p.name, p.api_token);
                    }
                }
            }
        }
        ProjectsCommand::Update {
            data_dir,
            project,
            erasure_deadline_days,
            retention_days,
            event_retention_days,
            format,
        } => crate::erasure::update_project(
            &data_dir,
            project,
            erasure_deadline_days,
            retention_days,
            event_retention_days,
            format,
        )?,
        ProjectsCommand::Delete {
            data_dir,
            project,
            format,
        } => {
            let store = wiring::store(&data_dir, Access::Write)?;
            let persons = wiring::persons(&store, Access::Write)?;
            persons.project(project)?;
            let (data, meta) = persons.drop_project(project)?;
            drop(persons);
            store.close()?;
            let v = json!({
                "project_id": project,
                "rows_removed": data.rows_removed,
                "parts_removed": data.parts_removed,
                "bytes_removed": data.bytes_removed,
                "persons_removed": meta.persons,
                "distinct_ids_removed": meta.distinct_ids,
            });
            match format {
                Format::Json => print_json(&v)?,
                _ => println!(
                    "dropped project {project}: {} rows, {} parts, {} persons",
                    data.rows_removed, data.parts_removed, meta.persons
                ),
            }
        }
    }
    Ok(())
}

/// Run `elide keys …`.
pub fn keys(cmd: KeysCommand) -> Result<()> {
    use elide_app::wiring::{self, Access};
    match cmd {
        KeysCommand::Create {
            data_dir,
            project,
            scopes,
            label,
            format,
        } => {
            let scopes: Vec<String> = if scopes.trim() == "all" {
                vec!["*".to_string()]
            } else {
                scopes
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            let store = wiring::store(&data_dir, Access::Write)?;
            let persons = wiring::persons(&store, Access::Write)?;
            let (k, secret) = persons.create_api_key(project, &scopes, &label)?;
            drop(persons);
            store.close()?;
            match format {
                Format::Json => {
                    let mut v = key_json(&k);
                    v["key"] = json!(secret);
                    print_json(&v)?
                }
                _ => println!(
                    "key {} for project {} (scopes {}):\n{secret}\n(shown once: only its hash is kept)",
                    k.id,
                    k.project_id,
                    k.scopes.join(",")
                ),
            }
        }
        KeysCommand::List {
            data_dir,
            project,
            format,
        } => {
            let store = wiring::store(&data_dir, Access::Read)?;
            let keys = wiring::persons(&store, Access::Read)?.api_keys(project)?;
            match format {
                Format::Json => print_json(&json!(keys.iter().map(key_json).collect::<Vec<_>>()))?,
                Format::Csv => {
                    println!("id,label,scopes,mask_value,created_at,revoked_at");
                    for k in &keys {
                        println!(
                            "{},{},{},{},{},{}",
                            k.id,
                            csv_field(&k.label),
                            csv_field(&k.scopes.join(",")),
                            k.mask,
                            elide_persons::persons::iso(k.created_at_us),
                            k.revoked_at_us
                                .map(elide_persons::persons::iso)
                                .unwrap_or_default()
                        );
                    }
                }
                Format::Table => {
                    if keys.is_empty() {
                        println!("(no keys)");
                    }
                    for k in &keys {
                        println!(
                            "{:>4}  {:<18} {:<40} {}{}",
                            k.id,
                            k.mask,
                            k.scopes.join(","),
                            k.label,
                            if k.revoked_at_us.is_some() {
                                "  (revoked)"
                            } else {
                                ""
                            }
                        );
                    }
                }
            }
        }
        KeysCommand::Revoke {
            data_dir,
            project,
            key,
            format,
        } => {
            let store = wiring::store(&data_dir, Access::Write)?;
            let persons = wiring::persons(&store, Access::Write)?;
            persons.revoke_api_key(project, key)?;
            drop(persons);
            store.close()?;
            match format {
                Format::Json => {
                    print_json(&json!({"id": key, "project_id": project, "revoked": true}))?
                }
                _ => println!("revoked key {key} of project {project}"),
            }
        }
    }
    Ok(())
}
