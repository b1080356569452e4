//! The metadata as Arrow batches, for the query layer's `persons`,
//! `person_distinct_ids` and `person_overrides` tables. Each call reads
//! one consistent view of the metadata, so a query planned after a
//! deletion returned never sees the deleted person.
//!
//! A table is read from SQLite one row at a time into batches of
//! [`BATCH_ROWS`] rows, and each batch is handed to the caller's
//! [`Charge`] as soon as it is built, before the next row is read. The
//! query layer charges them to the query's memory limit, so a table
//! larger than the limit is refused after at most one batch past it,
//! never read whole first.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::error::{PersonsError, Result};
use crate::meta::MetaStore;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Schema of `persons`.
pub fn persons_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("uuid", DataType::Utf8, false),
            Field::new("project_id", DataType::Int64, false),
            Field::new("properties", DataType::Utf8, false),
            Field::new("created_at", ts(), false),
            Field::new("is_identified", DataType::Boolean, false),
            Field::new("version", DataType::Int64, false),
        ]))
    }))
}

/// Schema of `person_distinct_ids`.
pub fn distinct_ids_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("project_id", DataType::Int64, false),
            Field::new("distinct_id", DataType::Utf8, false),
            Field::new("person_id", DataType::Utf8, false),
        ]))
    }))
}

/// Schema of `person_overrides`.
pub fn overrides_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("project_id", DataType::Int64, false),
            Field::new("old_person_id", DataType::Utf8, false),
            Field::new("override_person_id", DataType::Utf8, false),
        ]))
    }))
}

/// Rows per batch of a table's load: the unit it is charged by.
pub const BATCH_ROWS: usize = 4096;

/// Called with each batch as it is built, before the next row is read:
/// an error stops the load and is returned (a query's memory limit).
pub type Charge<'a> = &'a mut dyn FnMut(&RecordBatch) -> Result<()>;

/// Builds a table's batches of [`BATCH_ROWS`] rows, charging each.
struct Batches<'c, B> {
    schema: SchemaRef,
    builders: B,
    rows: usize,
    done: Vec<RecordBatch>,
    charge: Charge<'c>,
}

impl<'c, B: ColumnBuilders> Batches<'c, B> {
    fn new(schema: SchemaRef, builders: B, charge: Charge<'c>) -> Self {
        Batches {
            schema,
            builders,
            rows: 0,
            done: Vec::new(),
            charge,
        }
    }

    /// One more row was appended: close the batch when it is full.
    fn row_added(&mut self) -> Result<()> {
        self.rows += 1;
        if self.rows == BATCH_ROWS {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        let b = RecordBatch::try_new(Arc::clone(&self.schema), self.builders.finish())
            .map_err(|e| PersonsError::Internal(format!("building a batch: {e}")))?;
        self.rows = 0;
        (self.charge)(&b)?;
        self.done.push(b);
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<RecordBatch>> {
        if self.rows > 0 || self.done.is_empty() {
            self.close()?;
        }
        Ok(self.done)
    }
}

/// A table's column builders.
trait ColumnBuilders {
    /// The columns of the rows appended since the last call.
    fn finish(&mut self) -> Vec<ArrayRef>;
}

#[derive(Default)]
struct PersonColumns {
    id: Int64Builder,
    uuid: StringBuilder,
    project_id: Int64Builder,
    properties: StringBuilder,
    created_at: TimestampMicrosecondBuilder,
    is_identified: BooleanBuilder,
    version: Int64Builder,
}

impl ColumnBuilders for PersonColumns {
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.id.finish()),
            Arc::new(self.uuid.finish()),
            Arc::new(self.project_id.finish()),
            Arc::new(self.properties.finish()),
            Arc::new(self.created_at.finish().with_timezone("UTC")),
            Arc::new(self.is_identified.finish()),
            Arc::new(self.version.finish()),
        ]
    }
}

/// Three columns: a project and two strings.
#[derive(Default)]
struct TripleColumns {
    project_id: Int64Builder,
    a: StringBuilder,
    b: StringBuilder,
}

impl ColumnBuilders for TripleColumns {
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.project_id.finish()),
            Arc::new(self.a.finish()),
            Arc::new(self.b.finish()),
        ]
    }
}

/// All persons (of one project, or all), in batches of [`BATCH_ROWS`],
/// each passed to `charge` as it is built (the read stops at its first
/// error). At least one batch, empty when there are no persons.
pub fn persons_batches<M: MetaStore>(
    meta: &M,
    project: Option<i64>,
    charge: Charge<'_>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Batches::new(persons_schema(), PersonColumns::default(), charge);
    meta.read(|tx| {
        tx.each_person_text(project, &mut |r| {
            let c = &mut out.builders;
            c.id.append_value(r.id);
            c.uuid.append_value(&r.uuid);
            c.project_id.append_value(r.project_id);
            c.properties.append_value(r.properties);
            c.created_at.append_value(r.created_at_us);
            c.is_identified.append_value(r.is_identified);
            c.version.append_value(r.version);
            out.row_added()
        })
    })?;
    out.finish()
}

/// All distinct ids with their person's UUID, in batches as
/// [`persons_batches`].
pub fn distinct_ids_batches<M: MetaStore>(
    meta: &M,
    project: Option<i64>,
    charge: Charge<'_>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Batches::new(distinct_ids_schema(), TripleColumns::default(), charge);
    meta.read(|tx| {
        tx.each_distinct_id(project, &mut |p, d, u| {
            let c = &mut out.builders;
            c.project_id.append_value(p);
            c.a.append_value(d);
            c.b.append_value(u.hyphenated().to_string());
            out.row_added()
        })
    })?;
    out.finish()
}

/// All person overrides (merged-away UUID → the person it became), in
/// batches as [`persons_batches`].
pub fn overrides_batches<M: MetaStore>(
    meta: &M,
    project: Option<i64>,
    charge: Charge<'_>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Batches::new(overrides_schema(), TripleColumns::default(), charge);
    meta.read(|tx| {
        tx.each_override(project, &mut |p, o, n| {
            let c = &mut out.builders;
            c.project_id.append_value(p);
            c.a.append_value(o.hyphenated().to_string());
            c.b.append_value(n.hyphenated().to_string());
            out.row_added()
        })
    })?;
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::parse_payload;
    use crate::{Persons, PersonsError};
    use arrow::array::{Array, AsArray};
    use elide_store::{Store, StoreOptions};
    use serde_json::Value;

    /// 10,000 persons in project 1, with two ids each, and a third id
    /// whose own person was merged into them for the first 5,000 (5,000
    /// overrides); one person in project 2.
    fn persons() -> (tempfile::TempDir, Persons) {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..StoreOptions::default()
        };
        let p = Persons::open(Store::open(dir.path(), opts).unwrap()).unwrap();
        let events: Vec<_> = (0..10_000)
            .map(|i| {
                serde_json::json!({"event": "$identify", "distinct_id": format!("u{i}"),
                    "properties": {"$anon_distinct_id": format!("a{i}"), "$set": {"n": i}}})
            })
            .collect();
        p.capture(1, &parse_payload(Value::Array(events), 0).unwrap())
            .unwrap();
        let merges: Vec<_> = (0..5_000)
            .flat_map(|i| {
                [
                    serde_json::json!({"event": "e", "distinct_id": format!("m{i}")}),
                    serde_json::json!({"event": "$merge_dangerously", "distinct_id": format!("u{i}"),
                        "properties": {"alias": format!("m{i}")}}),
                ]
            })
            .collect();
        p.capture(1, &parse_payload(Value::Array(merges), 0).unwrap())
            .unwrap();
        let other = serde_json::json!({"event": "e", "distinct_id": "o"});
        p.capture(2, &parse_payload(other, 0).unwrap()).unwrap();
        (dir, p)
    }

    /// The persons table passes each person's stored text through: the
    /// same rows as the parsed persons written out again; a UUID stored
    /// in another form comes out hyphenated lowercase, and properties
    /// that are not an object fail the read as corrupt.
    #[test]
    fn the_persons_table_is_the_stored_text_checked() {
        let (dir, p) = persons();
        let read = |p: &Persons| persons_batches(p.meta(), None, &mut |_| Ok(()));
        let rows = |batches: &[RecordBatch]| -> Vec<(i64, String, String)> {
            let mut out = Vec::new();
            for b in batches {
                let ids = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                let uuids = b.column(1).as_string::<i32>();
                let props = b.column(3).as_string::<i32>();
                for i in 0..b.num_rows() {
                    out.push((
                        ids.value(i),
                        uuids.value(i).to_string(),
                        props.value(i).to_string(),
                    ));
                }
            }
            out
        };
        let parsed: Vec<(i64, String, String)> = p
            .meta()
            .read(|tx| tx.all_persons(None))
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    r.uuid.hyphenated().to_string(),
                    Value::Object(r.properties).to_string(),
                )
            })
            .collect();
        assert_eq!(parsed.len(), 10_001);
        assert_eq!(rows(&read(&p).unwrap()), parsed);
        let db = rusqlite::Connection::open(dir.path().join(crate::sqlite::METADATA_FILE)).unwrap();
        let first = parsed[0].0;
        db.execute(
            "UPDATE persons SET uuid = upper(uuid) WHERE id = ?1",
            [first],
        )
        .unwrap();
        assert_eq!(rows(&read(&p).unwrap()), parsed, "formatted as it was");
        db.execute(
            "UPDATE persons SET properties = '[1]' WHERE id = ?1",
            [first],
        )
        .unwrap();
        let e = read(&p).unwrap_err();
        assert!(matches!(e, PersonsError::Corrupt(_)), "{e}");
    }

    /// Each table is read in batches of `BATCH_ROWS`, all rows once, and a
    /// refusing charge stops the read at the batch it refused: the rows
    /// after it are not read (a table larger than a query's memory is
    /// never built whole).
    #[test]
    fn tables_are_read_in_batches_and_stop_at_the_first_refusal() {
        let (_dir, p) = persons();
        type F = fn(&SqliteMeta, Option<i64>, Charge<'_>) -> Result<Vec<RecordBatch>>;
        use crate::SqliteMeta;
        let tables: [(&str, F, usize); 3] = [
            ("persons", persons_batches::<SqliteMeta>, 10_000),
            ("ids", distinct_ids_batches::<SqliteMeta>, 25_000),
            ("overrides", overrides_batches::<SqliteMeta>, 5_000),
        ];
        for (name, f, rows) in tables {
            let mut charged = Vec::new();
            let all = f(p.meta(), Some(1), &mut |b| {
                charged.push(b.num_rows());
                Ok(())
            })
            .unwrap();
            let sizes: Vec<usize> = all.iter().map(RecordBatch::num_rows).collect();
            assert_eq!(sizes, charged, "{name}: every batch charged once");
            assert_eq!(sizes.iter().sum::<usize>(), rows, "{name}");
            assert!(sizes.iter().all(|&n| n <= BATCH_ROWS), "{name}: {sizes:?}");
            assert_eq!(all.len(), rows.div_ceil(BATCH_ROWS).max(1), "{name}");
            if rows <= BATCH_ROWS {
                continue;
            }
            // Refused at the first batch, with rows left to read.
            let mut calls = 0;
            let e = f(p.meta(), Some(1), &mut |b| {
                calls += 1;
                assert_eq!(b.num_rows(), BATCH_ROWS, "{name}: a full batch");
                Err(PersonsError::InvalidInput("over the limit".into()))
            })
            .expect_err("refused");
            assert!(e.to_string().contains("over the limit"), "{e}");
            assert_eq!(calls, 1, "{name}: read on after the refusal");
        }
        // Only the project asked for, and every person once.
        let all = persons_batches(p.meta(), Some(2), &mut |_| Ok(())).unwrap();
        assert_eq!(all.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        let all = persons_batches(p.meta(), Some(1), &mut |_| Ok(())).unwrap();
        let mut ns: Vec<i64> = all
            .iter()
            .flat_map(|b| {
                let props = b.column(3).as_string::<i32>();
                (0..props.len())
                    .map(|i| {
                        let v: Value = serde_json::from_str(props.value(i)).unwrap();
                        v["n"].as_i64().unwrap()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        ns.sort_unstable();
        assert_eq!(ns, (0..10_000).collect::<Vec<_>>());
    }

    /// HogQL's map of person properties stops at the first refused charge.
    #[test]
    fn the_properties_map_stops_at_the_first_refusal() {
        let (_dir, p) = persons();
        let mut total = 0;
        let map = p
            .properties_by_distinct_id(1, &mut |n| {
                total += n;
                Ok(())
            })
            .unwrap();
        assert_eq!(map.len(), 25_000);
        assert_eq!(map["a7"]["n"], 7);
        assert_eq!(map["m7"]["n"], 7);
        let mut seen = 0;
        let e = p
            .properties_by_distinct_id(1, &mut |n| {
                seen += n;
                if seen > total / 10 {
                    return Err(PersonsError::InvalidInput("over the limit".into()));
                }
                Ok(())
            })
            .expect_err("refused");
        assert!(e.to_string().contains("over the limit"), "{e}");
        assert!(
            seen < total / 10 + 1000,
            "read on after the refusal: {seen} of {total}"
        );
    }
}
