//! Capture through the persons layer, as PostHog's SDKs send events:
//! identity (`$identify` merges the anonymous id into the person), person
//! properties, then the deletion of a person with their events, and a SQL
//! query over events and persons that no longer counts them.
//!
//!     cargo run --example persons        (needs the `persons` feature, on by default)
use std::sync::Arc;

use elide::arrow::util::pretty::print_batches;
use elide::persons::capture::parse_payload_text;
use elide::persons::{DeletePersons, Persons};
use elide::{Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = std::env::temp_dir().join(format!("elide-persons-{}", std::process::id()));
    let store = Store::open(&work, StoreOptions::default())?;
    let persons = Arc::new(Persons::open(store.clone())?);
    persons.ensure_project(1)?;

    // What posthog-js sends: an anonymous visit, then identify with $set.
    let payload = r#"{"batch": [
        {"event": "$pageview", "distinct_id": "anon-1", "properties": {"$current_url": "/pricing"}},
        {"event": "$identify", "distinct_id": "ada@example.com",
         "properties": {"$anon_distinct_id": "anon-1", "$set": {"email": "ada@example.com"}}},
        {"event": "purchase", "distinct_id": "ada@example.com", "properties": {"amount": 42}},
        {"event": "$pageview", "distinct_id": "grace", "properties": {"$set": {"plan": "free"}}}
    ]}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64;
    let events = parse_payload_text(payload, now)?;
    persons.capture(1, &events)?;
    let found = persons.by_distinct_ids(1, &["ada@example.com".to_string()])?;
    let ada = found.values().next().ok_or("ada has no person")?;
    println!(
        "ada: {} ids {:?}, properties {:?}",
        ada.uuid, ada.distinct_ids, ada.properties
    );

    // Events and persons in one session (the persons tables are read afresh at each scan).
    let ctx = elide::app::sql::session(&persons)?;
    let sql = "SELECT p.properties, count(*) AS events FROM events e
               JOIN person_distinct_ids d ON d.distinct_id = e.distinct_id AND d.project_id = e.project_id
               JOIN persons p ON p.uuid = d.person_id GROUP BY 1 ORDER BY 2 DESC";
    let rt = elide::tokio::runtime::Runtime::new()?;
    print_batches(&rt.block_on(elide::run_sql(&ctx, sql))?.batches)?;

    // Erase ada: profile, ids and events, hidden when this returns.
    let request = DeletePersons {
        distinct_ids: vec!["ada@example.com".into()],
        delete_events: true,
        ..Default::default()
    };
    let result = persons.delete(1, &request)?;
    println!("deleted {} person(s)", result.persons_deleted);
    let after = rt.block_on(elide::run_sql(&ctx, sql))?;
    print_batches(&after.batches)?;
    println!("{} person(s) left with events", after.num_rows());
    drop(ctx);
    drop(persons);
    store.close()?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
