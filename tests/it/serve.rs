//! `elide serve` as a process: first start prints working credentials,
//! `projects`/`keys` administer a directory the server then serves, and
//! SIGTERM (or two signals) during a capture burst loses no acknowledged
//! event; the next start recovers, also from a SIGKILL during captures and
//! person deletions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running `elide serve` and what it printed before listening.
struct Server {
    child: Child,
    addr: String,
    banner: String,
    /// What it printed on stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Wait until stderr holds `text` (panics after `limit`).
    fn wait_stderr(&self, text: &str, limit: Duration) {
        let t = Instant::now();
        while !self.stderr.lock().expect("stderr").contains(text) {
            assert!(t.elapsed() < limit, "no {text:?} on stderr");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Server {
    start_env(dir, extra, &[])
}

/// [`start`] with more environment variables.
fn start_env(dir: &std::path::Path, extra: &[&str], env: &[(&str, String)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elide"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("ELIDE_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn elide serve");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (errs, pipe) = (Arc::clone(&stderr), child.stderr.take().expect("stderr"));
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Ok(mut e) = errs.lock() {
                e.push_str(&line);
                e.push('\n');
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .expect("stdout");
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.strip_prefix("Elide listening on http://") {
            break rest.split_whitespace().next().expect("addr").to_string();
        }
    };
    // Keep draining stdout so that the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr,
        banner,
        stderr,
    }
}

/// One HTTP/1.1 request; the status and body, or `None` when the
/// connection failed (the server is gone or stopping).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = body.unwrap_or("");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status: u16 = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn secret(banner: &str, prefix: &str) -> String {
    banner
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| w.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {banner}"))
        .to_string()
}

fn signal(child: &Child, sig: i32) {
    // kill(1) rather than libc::kill: the tests hold no unsafe code.
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -{sig} {}", child.id());
}

/// SIGTERM, and a clean exit within a minute.
fn stop_server(s: &mut Server) {
    signal(&s.child, libc::SIGTERM);
    assert!(wait(&mut s.child, Duration::from_secs(60)).success());
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("the server did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Events of a query, run through the server.
fn count(addr: &str, key: &str, sql: &str) -> i64 {
    let body = json!({"query": {"kind": "HogQLQuery", "query": sql}}).to_string();
    let (status, text) = http(
        addr,
        "POST",
        "/api/projects/1/query/",
        Some(key),
        Some(&body),
    )
    .expect("query answered");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["results"][0][0].as_i64().expect("count")
}

/// A first start that cannot bind its port makes no project: the next
/// start is the first, prints the key and loads the demo sample.
#[test]
fn a_first_start_that_cannot_bind_makes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("addr").port();
    let out = Command::new(env!("CARGO_BIN_EXE_elide"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--demo",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("ELIDE_LOG", "warn")
        .output()
        .expect("run elide serve");
    assert!(!out.status.success());
    drop(taken);
    let mut s = start(dir.path(), &["--demo"]);
    assert!(s.banner.contains("phx_"), "{}", s.banner);
    assert!(s.banner.contains("Loaded the demo sample"), "{}", s.banner);
    stop_server(&mut s);
}

#[test]
fn first_start_prints_working_credentials_and_demo_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start(dir.path(), &["--demo"]);
    let token = secret(&s.banner, "phc_");
    let key = secret(&s.banner, "phx_");
    let body = json!({"api_key": token, "batch": [{"event": "hello", "distinct_id": "newcomer"}]});
    let (status, text) =
        http(&s.addr, "POST", "/batch/", None, Some(&body.to_string())).expect("capture");
    assert_eq!((status, text.as_str()), (200, r#"{"status":"Ok"}"#));
    let (status, text) =
        http(&s.addr, "GET", "/api/projects/1/persons/", Some(&key), None).expect("persons");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert!(
        v["results"].as_array().is_some_and(|r| r.len() > 10),
        "the demo made persons"
    );
    assert!(count(&s.addr, &key, "select count() from events") > 1000);
    // The key is stored only as a hash.
    let db = std::fs::read(dir.path().join("metadata.sqlite3")).expect("metadata");
    assert!(!db.windows(key.len()).any(|w| w == key.as_bytes()));
    stop_server(&mut s);
    // A second start creates nothing more and keeps the data.
    let mut s2 = start(dir.path(), &[]);
    assert!(!s2.banner.contains("phx_"), "{}", s2.banner);
    assert_eq!(
        count(
            &s2.addr,
            &key,
            "select count() from events where distinct_id = 'newcomer'"
        ),
        1
    );
    stop_server(&mut s2);
}

#[test]
fn projects_and_keys_made_offline_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("data");
    let run = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_elide"))
            .args(args)
            .arg("--data-dir")
            .arg(&d)
            .args(["--format", "json"])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    };
    let p = run(&["projects", "create", "--name", "Web"]);
    assert_eq!(p["id"], 1);
    let token = p["api_token"].as_str().expect("token").to_string();
    assert!(token.starts_with("phc_"));
    let k = run(&[
        "keys",
        "create",
        "--project",
        "1",
        "--scopes",
        "person:read,query:read",
        "--label",
        "ci",
    ]);
    let key = k["key"].as_str().expect("key").to_string();
    assert!(key.starts_with("phx_"));
    assert_eq!(k["scopes"], json!(["person:read", "query:read"]));
    let all = run(&["keys", "create", "--project", "1", "--scopes", "all"]);
    let listed = run(&["keys", "list", "--project", "1"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(!listed.to_string().contains(&key));
    let projects = run(&["projects", "list"]);
    assert_eq!(projects[0]["name"], "Web");

    let mut s = start(&d, &[]);
    assert!(
        !s.banner.contains("phx_"),
        "the server made a key: {}",
        s.banner
    );
    let body = json!({"api_key": token, "batch": [{"event": "$identify", "distinct_id": "u"}]});
    assert_eq!(
        http(&s.addr, "POST", "/batch/", None, Some(&body.to_string())).map(|r| r.0),
        Some(200)
    );
    let (status, _) =
        http(&s.addr, "GET", "/api/projects/1/persons/", Some(&key), None).expect("list");
    assert_eq!(status, 200);
    // The read-only key may not delete.
    let del = json!({"distinct_ids": ["u"]}).to_string();
    let (status, _) = http(
        &s.addr,
        "POST",
        "/api/projects/1/persons/bulk_delete/",
        Some(&key),
        Some(&del),
    )
    .expect("delete");
    assert_eq!(status, 403);
    stop_server(&mut s);

    // Revoked offline: refused when served again.
    let id = k["id"].as_i64().expect("id").to_string();
    run(&["keys", "revoke", "--project", "1", "--key", &id]);
    let mut s = start(&d, &[]);
    let (status, _) =
        http(&s.addr, "GET", "/api/projects/1/persons/", Some(&key), None).expect("list");
    assert_eq!(status, 401);
    let all_key = all["key"].as_str().expect("key");
    let (status, _) = http(
        &s.addr,
        "GET",
        "/api/projects/1/persons/",
        Some(all_key),
        None,
    )
    .expect("list");
    assert_eq!(status, 200);
    stop_server(&mut s);
}

/// Clients posting batches until the server goes away; returns each
/// acknowledged event's distinct id.
fn burst(
    addr: &str,
    token: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|c| {
            let addr = addr.to_string();
            let token = token.to_string();
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut n = 0u64;
                let mut failures = 0;
                while !stop.load(Ordering::Relaxed) && failures < 20 {
                    let ids: Vec<String> = (0..20).map(|i| format!("c{c}-{n}-{i}")).collect();
                    n += 1;
                    let events: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"event": "burst", "distinct_id": id}))
                        .collect();
                    let body = json!({"api_key": token, "batch": events}).to_string();
                    match http(&addr, "POST", "/batch/", None, Some(&body)) {
                        Some((200, _)) => acked.extend(ids),
                        _ => failures += 1,
                    }
                }
                acked
            })
        })
        .collect()
}

fn stop_under_load(signals: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start(dir.path(), &["--shutdown-grace-s", "20"]);
    let token = secret(&s.banner, "phc_");
    let key = secret(&s.banner, "phx_");
    let stop = Arc::new(AtomicBool::new(false));
    let clients = burst(&s.addr, &token, 6, &stop);
    if signals > 1 {
        // A slow query in flight keeps the graceful stop waiting, so that
        // the second signal is what ends the process.
        let (addr, key) = (s.addr.clone(), key.clone());
        std::thread::spawn(move || {
            let q = "select sum(a.value * b.value) from generate_series(1, 1000000) a, generate_series(1, 1000000) b";
            let body = json!({"query": {"kind": "HogQLQuery", "query": q}}).to_string();
            let _ = http(
                &addr,
                "POST",
                "/api/projects/1/query/",
                Some(&key),
                Some(&body),
            );
        });
    }
    std::thread::sleep(Duration::from_millis(1500));
    signal(&s.child, libc::SIGTERM);
    if signals > 1 {
        // Signals sent before the server saw the first would merge into one.
        s.wait_stderr("Stopping", Duration::from_secs(30));
        signal(&s.child, libc::SIGTERM);
    }
    let status = wait(&mut s.child, Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect();
    if signals == 1 {
        assert!(status.success(), "graceful stop: {status:?}");
    } else {
        assert_eq!(status.code(), Some(130), "second signal: exit at once");
    }
    assert!(
        acked.len() > 100,
        "the burst ran ({} acknowledged)",
        acked.len()
    );
    // The next start recovers every acknowledged event.
    let mut s2 = start(dir.path(), &[]);
    let total = count(
        &s2.addr,
        &key,
        "select count() from events where event = 'burst'",
    );
    let distinct = count(
        &s2.addr,
        &key,
        "select count(distinct distinct_id) from events where event = 'burst'",
    );
    assert!(
        distinct >= acked.len() as i64,
        "acknowledged {} events, {distinct} distinct ids recovered ({total} rows)",
        acked.len()
    );
    // Spot-check acknowledged ids one by one (first, middle, last of each client).
    for id in acked.iter().step_by((acked.len() / 50).max(1)) {
        let n = count(
            &s2.addr,
            &key,
            &format!("select count() from events where distinct_id = '{id}'"),
        );
        assert_eq!(n, 1, "acknowledged event {id} lost or doubled");
    }
    stop_server(&mut s2);
}

#[test]
fn sigterm_during_a_capture_burst_loses_no_acknowledged_event() {
    stop_under_load(1);
}

#[test]
fn a_second_signal_exits_at_once_and_the_next_start_recovers() {
    stop_under_load(2);
}

/// Clients that connect and send nothing neither keep their connections
/// nor lock others out: a silent connection (new, or kept alive after a
/// request) is closed after `--header-timeout-s`, and past
/// `--max-connections` the next client waits for a slot instead of the
/// server running out of file descriptors.
#[test]
fn silent_connections_are_closed_and_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start(
        dir.path(),
        &["--header-timeout-s", "1", "--max-connections", "3"],
    );
    // Closed by the server: a read sees the end (or a reset), not a
    // time-out of its own.
    let closed_by_server = |c: &mut TcpStream| {
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = [0u8; 1024];
        loop {
            match c.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    };
    let mut silent = TcpStream::connect(&s.addr).expect("connect");
    assert!(
        closed_by_server(&mut silent),
        "a silent connection stays open"
    );
    let mut half = TcpStream::connect(&s.addr).expect("connect");
    half.write_all(b"GET /_health HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    assert!(closed_by_server(&mut half), "a half-sent head stays open");
    let mut kept = TcpStream::connect(&s.addr).expect("connect");
    kept.write_all(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    assert!(
        closed_by_server(&mut kept),
        "a kept-alive connection stays open"
    );
    // Three silent connections take every slot; a request still gets
    // its answer once the server has closed them.
    let hold: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&s.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    let (status, _) = http(&s.addr, "GET", "/_health", None, None).expect("health answered");
    assert_eq!(status, 200);
    // It waited for a slot (the held ones close a second after they
    // connected): a lower bound, which a slow machine only makes longer.
    assert!(
        asked.elapsed() >= Duration::from_millis(400),
        "answered past the cap after {:?}",
        asked.elapsed()
    );
    drop(hold);
    stop_server(&mut s);
}

/// The persons of `dids` (at most 200) by distinct id: each one's UUID.
fn persons_of(addr: &str, key: &str, dids: &[String]) -> std::collections::HashMap<String, String> {
    let body = json!({ "distinct_ids": dids }).to_string();
    let (status, text) = http(
        addr,
        "POST",
        "/api/projects/1/persons/batch_by_distinct_ids/",
        Some(key),
        Some(&body),
    )
    .expect("lookup answered");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["results"]
        .as_object()
        .expect("results")
        .iter()
        .map(|(d, p)| (d.clone(), p["uuid"].as_str().expect("uuid").to_string()))
        .collect()
}

/// SIGKILL while captures and person deletions run: the next start has
/// every acknowledged event once, every acknowledged deletion done (the
/// person and all its events gone), and every other deletion done whole
/// or not at all (one cut short is finished by the start).
#[test]
fn sigkill_during_captures_and_deletions_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path(), &[]);
    let token = secret(&s.banner, "phc_");
    let key = secret(&s.banner, "phx_");
    const VISITS: i64 = 5;
    let victims: Vec<String> = (0..200).map(|i| format!("victim-{i}")).collect();
    let events: Vec<Value> = victims
        .iter()
        .flat_map(|v| {
            (0..VISITS)
                .map(move |n| json!({"event": "visit", "distinct_id": v, "properties": {"n": n}}))
        })
        .collect();
    let body = json!({"api_key": token, "batch": events}).to_string();
    let (status, text) = http(&s.addr, "POST", "/batch/", None, Some(&body)).expect("capture");
    assert_eq!(status, 200, "{text}");
    let uuids = persons_of(&s.addr, &key, &victims);
    assert_eq!(uuids.len(), victims.len());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = burst(&s.addr, &token, 4, &stop);
    let deleter = {
        let (addr, key) = (s.addr.clone(), key.clone());
        let order: Vec<(String, String)> = victims
            .iter()
            .map(|v| (v.clone(), uuids[v].clone()))
            .collect();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for (did, uuid) in order {
                let path = format!("/api/projects/1/persons/{uuid}/?delete_events=true");
                match http(&addr, "DELETE", &path, Some(&key), None) {
                    Some((202, _)) => acked.push(did),
                    Some((status, text)) => panic!("deletion answered {status}: {text}"),
                    None => break,
                }
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let mut child = s.child;
    signal(&child, libc::SIGKILL);
    let _ = wait(&mut child, Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect();
    let deleted = deleter.join().expect("deleter");
    assert!(
        acked.len() > 100,
        "the burst ran ({} acknowledged)",
        acked.len()
    );
    assert!(!deleted.is_empty(), "the deletions ran");
    eprintln!(
        "killed after {} acknowledged captures and {} of {} deletions",
        acked.len(),
        deleted.len(),
        victims.len()
    );
    let mut s2 = start(dir.path(), &[]);
    // Every acknowledged capture, once.
    let distinct = count(
        &s2.addr,
        &key,
        "select count(distinct distinct_id) from events where event = 'burst'",
    );
    let total = count(
        &s2.addr,
        &key,
        "select count() from events where event = 'burst'",
    );
    assert!(
        distinct >= acked.len() as i64 && total == distinct,
        "acknowledged {} events; {distinct} distinct ids, {total} rows recovered",
        acked.len()
    );
    // Deletions: acknowledged ones done, the others whole or not at all.
    let body = json!({"query": {"kind": "HogQLQuery", "query":
        "select distinct_id, count() from events where event = 'visit' group by distinct_id"}})
    .to_string();
    let (status, text) = http(
        &s2.addr,
        "POST",
        "/api/projects/1/query/",
        Some(&key),
        Some(&body),
    )
    .expect("query answered");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let visits: std::collections::HashMap<String, i64> = v["results"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r[0].as_str().expect("id").to_string(),
                r[1].as_i64().expect("n"),
            )
        })
        .collect();
    let persons = persons_of(&s2.addr, &key, &victims);
    for v in &victims {
        let (n, person) = (visits.get(v).copied().unwrap_or(0), persons.contains_key(v));
        if deleted.contains(v) {
            assert!(
                n == 0 && !person,
                "{v}: deletion acknowledged, {n} events left, person kept: {person}"
            );
        } else {
            assert!(
                (n == 0 && !person) || (n == VISITS && person),
                "{v}: a deletion half done ({n} events left, person kept: {person})"
            );
        }
    }
    stop_server(&mut s2);
}

/// `elide serve --data-dir s3://…`: the demo data, captures and queries go
/// through an S3 server (s3s-fs on 127.0.0.1); the local directory holds
/// the ingest log and the metadata, and a restart finds everything.
#[test]
fn a_server_on_an_object_store_captures_and_queries_across_restarts() {
    use elide_store::s3_server::S3Server;
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(&dir.path().join("s3"), "bucket").expect("s3 server");
    let local = dir.path().join("local");
    let local_arg = local.to_str().expect("utf-8");
    let url = std::path::Path::new("s3://bucket/analytics");
    let env = s3.env();
    let mut s = start_env(url, &["--local-dir", local_arg, "--demo"], &env);
    let token = secret(&s.banner, "phc_");
    let key = secret(&s.banner, "phx_");
    let body = json!({"api_key": token, "batch": [{"event": "hello", "distinct_id": "newcomer"}]});
    let (status, text) =
        http(&s.addr, "POST", "/batch/", None, Some(&body.to_string())).expect("capture");
    assert_eq!((status, text.as_str()), (200, r#"{"status":"Ok"}"#));
    let all = count(&s.addr, &key, "select count() from events");
    assert!(all > 1000, "the demo's events: {all}");
    stop_server(&mut s);
    // Parts and manifests are objects; the local directory has none.
    let objects = s3.root().join("bucket").join("analytics");
    assert!(objects.join("manifest").is_dir() && objects.join("parts").is_dir());
    assert!(!local.join("manifest").exists() && !local.join("parts").exists());
    assert!(local.join("metadata.sqlite3").is_file());
    let mut s2 = start_env(url, &["--local-dir", local_arg], &env);
    assert_eq!(count(&s2.addr, &key, "select count() from events"), all);
    assert_eq!(
        count(
            &s2.addr,
            &key,
            "select count() from events where distinct_id = 'newcomer'"
        ),
        1
    );
    stop_server(&mut s2);
}

/// `--export-delta-every-s`: the server exports at start and keeps the
/// Delta table current; a person's deleted events reach it as deletion
/// vectors without anyone running `elide export delta`.
#[test]
fn the_server_keeps_a_delta_export_current() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start(dir.path(), &["--demo", "--export-delta-every-s", "1"]);
    let key = secret(&s.banner, "phx_");
    let log = dir.path().join("parts/events/_delta_log");
    let commits = |log: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(log)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let until = |what: &str, ok: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !ok() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no {what} within a minute"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The demo's parts are exported at start.
    until("first export", &|| commits(&log).len() >= 2);
    let before = commits(&log);
    let (status, text) =
        http(&s.addr, "GET", "/api/projects/1/persons/", Some(&key), None).expect("persons");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let person = v["results"][0]["uuid"]
        .as_str()
        .expect("a person")
        .to_string();
    let (status, text) = http(
        &s.addr,
        "POST",
        &format!("/api/projects/1/persons/{person}/delete_events/"),
        Some(&key),
        None,
    )
    .expect("delete_events");
    assert_eq!(status, 202, "{text}");
    // A commit after the deletion gives the affected files their vectors.
    until("deletion vectors in the export", &|| {
        commits(&log)
            .iter()
            .filter(|c| !before.contains(c))
            .any(|c| {
                // An `add` carrying a vector with rows in it (a `remove`
                // names the vector it retires too: not enough).
                std::fs::read_to_string(log.join(c)).is_ok_and(|t| {
                    t.lines()
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                        .any(|a| a["add"]["deletionVector"]["cardinality"].as_u64() > Some(0))
                })
            })
    });
    let (status, text) = http(&s.addr, "GET", "/metrics", None, None).expect("metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("elide_delta_exports_total{table=\"events\",outcome=\"committed\"}"),
        "{text}"
    );
    stop_server(&mut s);
}
