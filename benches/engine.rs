//! Criterion benchmarks of the engine at a small scale (200k events); the
//! 10M-event figures come from `elide bench` (see docs/benchmarks.md).
//!
//! Run: `cargo bench --bench engine`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use elide::store::{DeleteSpec, Store, StoreOptions, Table};

const EVENTS: u64 = 200_000;

fn load(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let cfg = elide_gen::GenConfig {
        events: EVENTS,
        persons: 2_000,
        projects: 2,
        seed: 7,
        ..Default::default()
    };
    for b in elide_gen::Generator::new(cfg).unwrap() {
        store.append(Table::Events, &b).unwrap();
    }
    store.flush().unwrap();
    store
}

fn ids(project: i64, n: u64) -> Vec<String> {
    (0..n)
        .map(|i| elide_gen::person_distinct_id(project, i))
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(65_536));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let cfg = elide_gen::GenConfig {
        events: 65_536,
        persons: 2_000,
        projects: 2,
        seed: 1,
        ..Default::default()
    };
    let batch = elide_gen::Generator::new(cfg).unwrap().next().unwrap();
    g.bench_function("batch_64k", |b| {
        b.iter(|| store.append(Table::Events, &batch).unwrap())
    });
    g.finish();
    drop(store);

    let clean_dir = tempfile::tempdir().unwrap();
    let clean = load(clean_dir.path());
    let del_dir = tempfile::tempdir().unwrap();
    let deleted = load(del_dir.path());
    // Warm the index, then delete 1% of the persons of each project.
    for p in 1..=2 {
        deleted.delete(DeleteSpec::ids(p, ids(p, 10))).unwrap();
    }

    let mut g = c.benchmark_group("delete");
    let mut next = 100u64;
    g.bench_function("one_distinct_id", |b| {
        b.iter_batched(
            || {
                next += 1;
                vec![elide_gen::person_distinct_id(1, next % 1000)]
            },
            |ids| deleted.delete(DeleteSpec::ids(1, ids)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("scan");
    for (name, store) in [("no_tombstones", &clean), ("with_tombstones", &deleted)] {
        let ctx = Arc::new(elide::query::session_context(store).unwrap());
        for (q, sql) in [
            ("count_by_event", "SELECT event, count(*) FROM events WHERE project_id = 1 GROUP BY event"),
            ("distinct_persons_by_day", "SELECT date_trunc('day', timestamp), count(DISTINCT person_id) FROM events GROUP BY 1"),
        ] {
            g.bench_function(format!("{q}/{name}"), |b| {
                b.iter(|| rt.block_on(async { ctx.sql(sql).await.unwrap().collect().await.unwrap() }))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
