use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatchReader};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, NaiveTime};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::*;

fn cfg(events: u64, persons: u64, projects: u32, seed: u64) -> GenConfig {
    GenConfig {
        events,
        persons,
        projects,
        seed,
        days: 30,
        batch_rows: 4_096,
        ..GenConfig::default()
    }
}

/// All rows of a config, flattened into plain vectors.
#[derive(Default)]
struct Rows {
    uuid: Vec<String>,
    event: Vec<String>,
    distinct_id: Vec<String>,
    person_id: Vec<Option<String>>,
    project_id: Vec<i64>,
    ts: Vec<i64>,
    properties: Vec<Option<String>>,
    session_id: Vec<Option<String>>,
}

fn opt_str(col: &arrow::array::StringArray, i: usize) -> Option<String> {
    col.is_valid(i).then(|| col.value(i).to_string())
}

fn collect(batches: impl IntoIterator<Item = RecordBatch>) -> Rows {
    let mut rows = Rows::default();
    for b in batches {
        let s = |i: usize| b.column(i).as_string::<i32>();
        let ts = b.column(5).as_primitive::<TimestampMicrosecondType>();
        let project = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert!(s(0).is_valid(i) && s(1).is_valid(i) && s(2).is_valid(i));
            rows.uuid.push(s(0).value(i).to_string());
            rows.event.push(s(1).value(i).to_string());
            rows.distinct_id.push(s(2).value(i).to_string());
            rows.person_id.push(opt_str(s(3), i));
            rows.project_id.push(project.value(i));
            rows.ts.push(ts.value(i));
            rows.properties.push(opt_str(s(6), i));
            rows.session_id.push(opt_str(s(7), i));
        }
    }
    rows
}

fn generate(c: GenConfig) -> Rows {
    collect(Generator::new(c).expect("valid config"))
}

fn write(c: GenConfig, path: &std::path::Path) -> GenSummary {
    write_parquet(c, path, &mut |_| {}).expect("write parquet")
}

#[test]
fn same_seed_gives_identical_bytes_and_different_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let sa = write(cfg(20_000, 2_000, 3, 7), &a);
    let sb = write(cfg(20_000, 2_000, 3, 7), &b);
    write(cfg(20_000, 2_000, 3, 8), &c);
    let (ba, bb, bc) = (
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        std::fs::read(&c).unwrap(),
    );
    assert_eq!(sa, sb);
    assert_eq!(sa.bytes, ba.len() as u64);
    assert!(ba == bb, "same config must give byte-identical files");
    assert!(ba != bc, "different seeds must give different files");
    assert!(!ba.windows(b"parquet-rs".len()).any(|w| w == b"parquet-rs"));
}

#[test]
fn parquet_round_trip_matches_generator_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.parquet");
    let c = cfg(10_000, 500, 2, 3);
    let mut calls = Vec::new();
    let summary = write_parquet(c.clone(), &path, &mut |n| calls.push(n)).unwrap();
    assert_eq!(summary.events, 10_000);
    assert_eq!(calls, vec![4_096, 8_192, 10_000]);

    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(reader.schema(), events_schema());
    let from_file = collect(reader.map(|b| b.unwrap()));
    let direct = generate(c);
    assert_eq!(from_file.uuid, direct.uuid);
    assert_eq!(from_file.ts, direct.ts);
    assert_eq!(from_file.properties, direct.properties);
    let distinct_persons: HashSet<_> = direct.person_id.iter().flatten().collect();
    assert_eq!(summary.persons_seen, distinct_persons.len() as u64);
}

#[test]
fn exact_row_counts_and_batch_sizes() {
    for (events, batch_rows) in [
        (0u64, 10usize),
        (1, 10),
        (9_999, 1_000),
        (10_000, 1_000),
        (5, 65_536),
    ] {
        let c = GenConfig {
            batch_rows,
            ..cfg(events, 100, 2, 1)
        };
        let sizes: Vec<usize> = Generator::new(c).unwrap().map(|b| b.num_rows()).collect();
        assert_eq!(
            sizes.iter().sum::<usize>() as u64,
            events,
            "events={events}"
        );
        assert!(sizes.iter().all(|&n| n > 0 && n <= batch_rows));
    }
    let dir = tempfile::tempdir().unwrap();
    let summary = write(cfg(0, 0, 0, 1), &dir.path().join("empty"));
    assert_eq!((summary.events, summary.persons_seen), (0, 0));
}

#[test]
fn timestamps_sorted_within_range_and_spread_over_days() {
    let c = GenConfig {
        end_day: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        ..cfg(50_000, 1_000, 3, 11)
    };
    let end_us = c
        .end_day
        .and_time(NaiveTime::MIN)
        .and_utc()
        .timestamp_micros();
    let start_us = end_us - i64::from(c.days) * 86_400_000_000;
    let rows = generate(c.clone());
    assert_eq!(rows.ts.len(), 50_000);
    assert!(
        rows.ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps must be sorted"
    );
    assert!(rows.ts.iter().all(|&t| (start_us..end_us).contains(&t)));
    let mut per_day = vec![0u64; c.days as usize];
    for &t in &rows.ts {
        per_day[((t - start_us) / 86_400_000_000) as usize] += 1;
    }
    let mean = 50_000.0 / f64::from(c.days);
    assert!(
        per_day
            .iter()
            .all(|&n| (n as f64) > mean * 0.3 && (n as f64) < mean * 2.0),
        "{per_day:?}"
    );
    // Mostly distinct microsecond timestamps (not all piled on a few instants).
    let distinct: HashSet<_> = rows.ts.iter().collect();
    assert!(distinct.len() > 49_000);
}

#[test]
fn projects_in_range_and_skewed_to_project_one() {
    let rows = generate(cfg(30_000, 5_000, 5, 2));
    let mut counts = [0u64; 6];
    for &p in &rows.project_id {
        assert!((1..=5).contains(&p), "project {p}");
        counts[p as usize] += 1;
    }
    assert!(counts[1..].iter().all(|&n| n > 0), "{counts:?}");
    let mut persons_per_project = [0u64; 6];
    for i in 0..5_000 {
        persons_per_project[person_project(i, 5) as usize] += 1;
    }
    assert!(persons_per_project[1] > persons_per_project[2]);
    assert!(
        persons_per_project[1] > persons_per_project[5] * 3,
        "{persons_per_project:?}"
    );
}

#[test]
fn event_names_are_skewed() {
    let rows = generate(cfg(40_000, 1_000, 2, 5));
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for e in &rows.event {
        *counts.entry(e.as_str()).or_default() += 1;
    }
    let share = |name: &str| counts.get(name).copied().unwrap_or(0) as f64 / 40_000.0;
    let top = counts.iter().max_by_key(|(_, &n)| n).map(|(k, _)| *k);
    assert_eq!(top, Some("$pageview"));
    for (name, pct) in [
        ("$pageview", 0.45),
        ("$autocapture", 0.25),
        ("$feature_flag_called", 0.10),
        ("$pageleave", 0.08),
        ("$exception", 0.05),
        ("$identify", 0.03),
        ("signup", 0.02),
        ("purchase", 0.02),
    ] {
        assert!((share(name) - pct).abs() < 0.015, "{name}: {}", share(name));
    }
    assert_eq!(counts.len(), 8);
}

#[test]
fn properties_are_json_objects_with_expected_keys() {
    let rows = generate(cfg(20_000, 1_000, 3, 9));
    let mut emails = 0;
    let mut purchases = 0;
    for (i, p) in rows.properties.iter().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(p.as_deref().expect("properties present")).unwrap();
        let obj = v.as_object().expect("object");
        let url = obj["$current_url"].as_str().unwrap();
        assert!(url.starts_with("https://app.example.com/"), "{url}");
        assert!(
            ["Chrome", "Safari", "Firefox", "Edge"].contains(&obj["$browser"].as_str().unwrap())
        );
        assert!(obj["$os"].is_string());
        if let Some(email) = obj.get("email") {
            emails += 1;
            let project = rows.project_id[i];
            assert!(email
                .as_str()
                .unwrap()
                .ends_with(&format!("@example{project}.com")));
        }
        if rows.event[i] == "purchase" {
            purchases += 1;
            assert!(obj["amount"].as_f64().unwrap() > 0.0);
        }
    }
    assert!(purchases > 0);
    let email_share = f64::from(emails) / 20_000.0;
    assert!(email_share > 0.03 && email_share < 0.4, "{email_share}");
}

#[test]
fn person_activity_is_zipf_skewed() {
    let rows = generate(cfg(50_000, 10_000, 4, 13));
    let mut per_person: HashMap<&str, u64> = HashMap::new();
    for p in rows.person_id.iter().flatten() {
        *per_person.entry(p.as_str()).or_default() += 1;
    }
    let mut counts: Vec<u64> = per_person.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let total: u64 = counts.iter().sum();
    let top: u64 = counts.iter().take(100).sum(); // top 1% of the 10k persons
    assert!(
        top as f64 > 0.25 * total as f64,
        "top 1% have {top} of {total}"
    );
    // Most persons are light: the median seen person has only a few events.
    assert!(counts[counts.len() / 2] <= 3);
    // Person 0 is the most active one.
    let p0 = person_uuid(person_project(0, 4), 0).to_string();
    assert_eq!(per_person[p0.as_str()], counts[0]);
}

#[test]
fn ids_are_consistent_with_public_helpers() {
    let rows = generate(cfg(20_000, 500, 3, 21));
    let mut users = 0;
    let mut anons = HashSet::new();
    let mut uuids = HashSet::new();
    let mut personless = 0;
    let mut no_session = 0;
    for i in 0..rows.uuid.len() {
        let u = uuid::Uuid::parse_str(&rows.uuid[i]).unwrap();
        assert!(uuids.insert(u), "event uuids are unique");
        let d = &rows.distinct_id[i];
        let project = rows.project_id[i];
        match &rows.person_id[i] {
            None => {
                personless += 1;
                assert!(d.starts_with(&format!("guest-{project}-")), "{d}");
            }
            Some(pid) => {
                let idx: u64 = d.rsplit('-').next().unwrap().parse().unwrap();
                assert_eq!(person_project(idx, 3), project);
                assert_eq!(pid, &person_uuid(project, idx).to_string());
                if d.starts_with("user-") {
                    users += 1;
                    assert_eq!(d, &person_distinct_id(project, idx));
                } else {
                    assert_eq!(d, &person_anon_id(project, idx));
                    anons.insert(idx);
                }
            }
        }
        match &rows.session_id[i] {
            None => no_session += 1,
            Some(s) => {
                uuid::Uuid::parse_str(s).unwrap();
            }
        }
    }
    let n = rows.uuid.len() as f64;
    assert!(
        (0.01..0.03).contains(&(f64::from(personless) / n)),
        "{personless}"
    );
    assert!(
        (0.02..0.08).contains(&(f64::from(no_session) / n)),
        "{no_session}"
    );
    assert!(users as f64 > 0.8 * n);
    assert!(anons.len() > 10, "some persons use an anonymous id");
}

#[test]
fn person_id_cache_handles_slot_collisions() {
    let mut cache = crate::persons::PersonIdCache::new();
    for idx in [5u64, 5 + 4_096, 5, 4_096 * 1_000 + 5, 0] {
        let project = person_project(idx, 7);
        let expected = person_uuid(project, idx).to_string();
        assert_eq!(cache.get(project, idx), expected);
    }
}

#[test]
fn sessions_are_per_person_and_day() {
    let rows = generate(cfg(20_000, 200, 1, 4));
    let mut by_session: HashMap<&str, (Option<&String>, i64)> = HashMap::new();
    for i in 0..rows.ts.len() {
        let (Some(s), Some(p)) = (&rows.session_id[i], &rows.person_id[i]) else {
            continue;
        };
        let day = rows.ts[i].div_euclid(86_400_000_000);
        let entry = by_session.entry(s.as_str()).or_insert((Some(p), day));
        assert_eq!(
            *entry,
            (Some(p), day),
            "a session belongs to one person and day"
        );
    }
    assert!(by_session.len() > 100);
}

#[test]
fn invalid_configs_are_errors() {
    let bad = [
        GenConfig {
            persons: 0,
            ..cfg(10, 1, 1, 0)
        },
        GenConfig {
            projects: 0,
            ..cfg(10, 1, 1, 0)
        },
        GenConfig {
            days: 0,
            ..cfg(10, 1, 1, 0)
        },
        GenConfig {
            batch_rows: 0,
            ..cfg(10, 1, 1, 0)
        },
        GenConfig {
            projects: MAX_PROJECTS + 1,
            ..cfg(10, 1, 1, 0)
        },
        GenConfig {
            end_day: NaiveDate::MIN,
            ..cfg(10, 1, 1, 0)
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    for c in bad {
        assert!(
            matches!(Generator::new(c.clone()), Err(GenError::InvalidConfig(_))),
            "{c:?}"
        );
        let path = dir.path().join("bad.parquet");
        assert!(matches!(
            write_parquet(c, &path, &mut |_| {}),
            Err(GenError::InvalidConfig(_))
        ));
        assert!(!path.exists(), "no file is created for an invalid config");
    }
    let missing_dir = dir.path().join("no/such/dir/out.parquet");
    assert!(matches!(
        write_parquet(cfg(10, 1, 1, 0), &missing_dir, &mut |_| {}),
        Err(GenError::Io(_))
    ));
}

/// Throughput check: `cargo test --release -p elide-gen -- --ignored --nocapture`
/// (or, without a release build of the dependencies, add
/// `--config 'profile.dev.package.elide-gen.opt-level=3'` to a dev build).
#[test]
#[ignore]
fn perf_ten_million_events() {
    let dir = tempfile::tempdir().unwrap();
    let c = GenConfig {
        events: 10_000_000,
        persons: 1_000_000,
        projects: 20,
        ..GenConfig::default()
    };
    let t = std::time::Instant::now();
    let rows: usize = Generator::new(c.clone())
        .unwrap()
        .map(|b| b.num_rows())
        .sum();
    let gen_secs = t.elapsed().as_secs_f64();
    assert_eq!(rows, 10_000_000);
    let t = std::time::Instant::now();
    let summary = write(c, &dir.path().join("big.parquet"));
    let write_secs = t.elapsed().as_secs_f64();
    println!("generate: {gen_secs:.1}s, generate+write: {write_secs:.1}s, {summary:?}");
}
