//! `elide bench-http`: the server over loopback, behind the figures in
//! `docs/benchmarks.md`.
//!
//! 1. the in-process pipeline: the same PostHog batches through
//!    `Persons::capture` directly (one call per batch of `--batch`
//!    events, as a request would), for the ratio;
//! 2. capture throughput: `--clients` keep-alive connections each posting
//!    `/batch/` requests of `--batch` events for `--seconds`;
//! 3. under load: capture paced at half that rate while one client times
//!    persons lists (`GET …/persons/?limit=100`) and another bulk deletes
//!    of 100 persons with their events; p50/p99 of each;
//! 4. deletion visibility: after each bulk delete's 202, the query endpoint
//!    counts those persons' events stored before the request was sent (and
//!    polls if any remain); events captured for their ids meanwhile are
//!    stored, with no person, and are not counted.
//!
//! The server runs in this process on its own runtime, as `elide serve`
//! runs it; clients are plain threads speaking HTTP/1.1 over TCP, with
//! request bodies made before the clock starts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elide_app::{App, AppConfig};
use elide_persons::capture::parse_line;
use serde_json::{json, Value};

use crate::cli::progress_bar;
use crate::output::anyhow_lite::Result;
use crate::sample::Mix;

/// Arguments of `elide bench-http`.
#[derive(Debug, clap::Args)]
pub struct BenchHttpArgs {
    /// Data directory (must be empty or absent).
    #[arg(long)]
    data_dir: PathBuf,
    /// Concurrent capture clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Events per capture request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds of the throughput phase (and of the phase under load).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Persons made before the timed phases (at least 1).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    persons: u64,
    /// Bulk deletions of 100 persons in the phase under load.
    #[arg(long, default_value_t = 20)]
    deletes: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// A blocking HTTP/1.1 client on one keep-alive connection.
struct Conn {
    addr: SocketAddr,
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Conn {
            addr,
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// One request; the status and body.
    fn call(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.w.write_all(head.as_bytes())?;
        self.w.write_all(body)?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut out = vec![0; len];
        self.r.read_exact(&mut out)?;
        Ok((status, out))
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1e3
}

#[derive(Debug, serde::Serialize)]
struct Report {
    clients: usize,
    batch: usize,
    pipeline_events_per_s: f64,
    http_events_per_s: f64,
    http_to_pipeline_ratio: f64,
    http_requests: u64,
    load_events_per_s: f64,
    list_ms_p50: f64,
    list_ms_p99: f64,
    lists: usize,
    bulk_delete_ms_p50: f64,
    bulk_delete_ms_p99: f64,
    bulk_deletes: usize,
    /// Bulk deletions whose persons' events the query endpoint still
    /// counted after the 202 (0: invisible when the 202 returned).
    deletes_visible_after_202: usize,
    /// Longest time from a 202 until the query counted none (ms).
    delete_to_invisible_ms_max: f64,
}

/// Request bodies of `n` batches of the mix.
fn bodies(mix: &mut Mix, token: &str, n: usize, batch: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let events: Vec<Value> = (0..batch)
                .filter_map(|_| serde_json::from_str(&mix.next()).ok())
                .collect();
            json!({"api_key": token, "batch": events, "sent_at": chrono::Utc::now().to_rfc3339()})
                .to_string()
                .into_bytes()
        })
        .collect()
}

/// Run `elide bench-http`.
pub fn run(a: BenchHttpArgs) -> Result<()> {
    if a.data_dir.exists() && std::fs::read_dir(&a.data_dir)?.next().is_some() {
        return Err(format!("{} is not empty", a.data_dir.display()).into());
    }
    if a.clients == 0 || a.batch == 0 || a.seconds == 0 {
        return Err("--clients, --batch and --seconds must be at least 1".into());
    }
    // Each bulk deletion takes 100 persons no deletion took before: a
    // person deleted twice would have only person-less events left (capture
    // goes on for its ids), which a deletion by distinct id does not touch,
    // and the visibility check would wait for them in vain.
    if a.persons < a.deletes as u64 * 100 {
        return Err(format!(
            "--persons ({}) must be at least 100 x --deletes ({}): each bulk deletion takes 100 persons not deleted before",
            a.persons, a.deletes
        )
        .into());
    }
    let start_us = chrono::Utc::now().timestamp_micros() - 86_400_000_000;
    let per_client = (a.seconds as usize * 200).max(50);

    // 1. The in-process pipeline, on its own directory.
    let pipeline_rate = {
        let app = App::open(AppConfig::new(a.data_dir.join("pipeline")))?;
        let mut mix = Mix::new(42, a.persons, start_us, 10);
        warm(&app, &mut mix, a.persons)?;
        let now = chrono::Utc::now().timestamp_micros();
        let n = (a.clients * per_client / 4).max(1);
        let batches: Vec<Vec<elide_persons::CaptureEvent>> = (0..n)
            .map(|_| {
                (0..a.batch)
                    .flat_map(|i| parse_line(i + 1, &mix.next(), now).unwrap_or_default())
                    .collect()
            })
            .collect();
        let bar = progress_bar(n as u64, "pipeline");
        let t = Instant::now();
        let mut events = 0u64;
        for b in &batches {
            events += app.persons().capture(1, b)?.stats.events;
            bar.inc(1);
        }
        let rate = events as f64 / t.elapsed().as_secs_f64();
        bar.finish_and_clear();
        app.close()?;
        rate
    };

    // 2. The server.
    let app = App::open(AppConfig::new(a.data_dir.join("http")))?;
    let boot = app
        .bootstrap("bench")?
        .ok_or("the benchmark directory already had projects")?;
    let (token, key) = (boot.project.api_token.clone(), boot.secret.clone());
    let mut mix = Mix::new(42, a.persons, start_us, 10);
    warm(&app, &mut mix, a.persons)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("elide-http")
        .build()?;
    let state = elide_server::AppState::new(app.clone(), elide_server::ServerConfig::default())?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(elide_server::serve(state.clone(), listener, async move {
        let _ = stop_rx.await;
    }));

    let all: Vec<Vec<Vec<u8>>> = (0..a.clients)
        .map(|_| bodies(&mut mix, &token, per_client, a.batch))
        .collect();
    let sent = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(a.seconds, "capture");
    let t = Instant::now();
    let deadline = t + Duration::from_secs(a.seconds);
    let threads: Vec<_> = all
        .into_iter()
        .map(|mine| {
            let (sent, requests) = (Arc::clone(&sent), Arc::clone(&requests));
            let batch = a.batch as u64;
            std::thread::spawn(move || -> Result<()> {
                let mut c = Conn::open(addr)?;
                for body in mine.iter().cycle() {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let (s, b) = c.call("POST", "/batch/", None, body)?;
                    if s != 200 {
                        return Err(format!(
                            "capture answered {s}: {}",
                            String::from_utf8_lossy(&b)
                        )
                        .into());
                    }
                    sent.fetch_add(batch, Ordering::Relaxed);
                    requests.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        bar.set_position(t.elapsed().as_secs().min(a.seconds));
    }
    for th in threads {
        th.join().map_err(|_| "a client thread panicked")??;
    }
    let http_rate = sent.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // 3. Under load: capture paced at half the rate.
    let target = http_rate / 2.0;
    let stop = Arc::new(AtomicBool::new(false));
    let loaded = Arc::new(AtomicU64::new(0));
    // Bodies first: making them takes seconds, which must not count.
    let paced: Vec<Vec<Vec<u8>>> = (0..a.clients)
        .map(|_| bodies(&mut mix, &token, per_client / 2, a.batch))
        .collect();
    let load_started = Instant::now();
    let pacers: Vec<_> = paced
        .into_iter()
        .map(|my| {
            let (stop, loaded) = (Arc::clone(&stop), Arc::clone(&loaded));
            let interval =
                Duration::from_secs_f64(a.batch as f64 * a.clients as f64 / target.max(1.0));
            std::thread::spawn(move || -> Result<()> {
                let mut c = Conn::open(addr)?;
                let mut next = Instant::now();
                for body in my.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (s, b) = c.call("POST", "/batch/", None, body)?;
                    if s != 200 {
                        return Err(format!(
                            "capture answered {s}: {}",
                            String::from_utf8_lossy(&b)
                        )
                        .into());
                    }
                    loaded.fetch_add(1, Ordering::Relaxed);
                    next += interval;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
                Ok(())
            })
        })
        .collect();
    let lister = {
        let (stop, key) = (Arc::clone(&stop), key.clone());
        std::thread::spawn(move || -> Result<Vec<Duration>> {
            let mut c = Conn::open(addr)?;
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (s, _) =
                    c.call("GET", "/api/projects/1/persons/?limit=100", Some(&key), b"")?;
                if s != 200 {
                    return Err(format!("persons list answered {s}").into());
                }
                lat.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(lat)
        })
    };
    let mut del_lat = Vec::new();
    let mut visible_after = 0usize;
    let mut to_invisible = Duration::ZERO;
    let bar = progress_bar(a.deletes as u64, "deletes");
    let mut c = Conn::open(addr)?;
    for d in 0..a.deletes {
        let ids: Vec<String> = (0..100u64)
            .map(|i| Mix::known_id(d as u64 * 100 + i))
            .collect();
        let body = json!({"distinct_ids": ids, "delete_events": true}).to_string();
        // Capture goes on for these ids (their new events are stored, with
        // no person): what must be gone at the 202 is what was stored
        // before the request.
        let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let t = Instant::now();
        let (s, b) = c.call(
            "POST",
            "/api/projects/1/persons/bulk_delete/",
            Some(&key),
            body.as_bytes(),
        )?;
        if s != 202 {
            return Err(
                format!("bulk_delete answered {s}: {}", String::from_utf8_lossy(&b)).into(),
            );
        }
        let returned = Instant::now();
        del_lat.push(returned - t);
        let list = ids
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",");
        let q = json!({"query": {"kind": "HogQLQuery",
            "query": format!("select count() from events where distinct_id in ({list}) and inserted_at < '{before}'")}})
        .to_string();
        let mut first = true;
        loop {
            let (s, b) = c.call("POST", "/api/projects/1/query/", Some(&key), q.as_bytes())?;
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if s != 200 {
                return Err(format!("query answered {s}: {v}").into());
            }
            if v["results"][0][0].as_i64() == Some(0) {
                break;
            }
            if first {
                visible_after += 1;
                first = false;
            }
            if returned.elapsed() > Duration::from_secs(30) {
                return Err("deleted events still counted 30 s after the 202".into());
            }
        }
        to_invisible = to_invisible.max(if first {
            Duration::ZERO
        } else {
            returned.elapsed()
        });
        bar.inc(1);
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
    stop.store(true, Ordering::Relaxed);
    let load_s = load_started.elapsed().as_secs_f64();
    let mut list_lat = lister.join().map_err(|_| "the list client panicked")??;
    for p in pacers {
        p.join().map_err(|_| "a capture client panicked")??;
    }
    let load_rate = loaded.load(Ordering::Relaxed) as f64 * a.batch as f64 / load_s;

    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    state.stop_capture();
    drop(state);
    drop(rt);
    app.close()?;

    let r = Report {
        clients: a.clients,
        batch: a.batch,
        pipeline_events_per_s: pipeline_rate,
        http_events_per_s: http_rate,
        http_to_pipeline_ratio: http_rate / pipeline_rate.max(1e-9),
        http_requests: requests.load(Ordering::Relaxed),
        load_events_per_s: load_rate,
        lists: list_lat.len(),
        list_ms_p50: pct(&mut list_lat, 0.5),
        list_ms_p99: pct(&mut list_lat, 0.99),
        bulk_deletes: del_lat.len(),
        bulk_delete_ms_p50: pct(&mut del_lat, 0.5),
        bulk_delete_ms_p99: pct(&mut del_lat, 0.99),
        deletes_visible_after_202: visible_after,
        delete_to_invisible_ms_max: to_invisible.as_secs_f64() * 1e3,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "capture over HTTP: {:.0} events/s ({} clients x {} events per request, {} requests)\n\
             in-process pipeline: {:.0} events/s; HTTP / pipeline = {:.2}\n\
             under load ({:.0} events/s): persons list p50 {:.1} ms p99 {:.1} ms ({} lists); \
             bulk_delete of 100 p50 {:.1} ms p99 {:.1} ms ({} deletes)\n\
             deleted events still counted after the 202: {} of {} deletions (longest until gone: {:.1} ms)",
            r.http_events_per_s,
            r.clients,
            r.batch,
            r.http_requests,
            r.pipeline_events_per_s,
            r.http_to_pipeline_ratio,
            r.load_events_per_s,
            r.list_ms_p50,
            r.list_ms_p99,
            r.lists,
            r.bulk_delete_ms_p50,
            r.bulk_delete_ms_p99,
            r.bulk_deletes,
            r.deletes_visible_after_202,
            r.bulk_deletes,
            r.delete_to_invisible_ms_max
        );
    }
    Ok(())
}

/// Every person's first events, through the pipeline directly.
fn warm(app: &App, mix: &mut Mix, persons: u64) -> Result<()> {
    let now = chrono::Utc::now().timestamp_micros();
    let lines: Vec<String> = (0..persons).flat_map(|i| mix.warmup(i)).collect();
    let bar = progress_bar(lines.len() as u64, "warm-up");
    for chunk in lines.chunks(10_000) {
        let mut events = Vec::with_capacity(chunk.len());
        for (i, l) in chunk.iter().enumerate() {
            events.extend(parse_line(i + 1, l, now)?);
        }
        app.persons().capture(1, &events)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    app.store().flush()?;
    Ok(())
}
