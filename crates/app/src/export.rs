//! The subject-access export written out, for the command line (`elide
//! persons export`) and the server (`GET …/persons/{id}/export/`):
//!
//! * **NDJSON**: one JSON object per line — `{"type": "person", …}` (the
//!   profile with every distinct id, and `merged_person_uuids`), one
//!   `{"type": "activity", …}` per activity entry, one `{"type": "event",
//!   …}` or `{"type": "recording", …}` per row (every stored column), and
//!   a last `{"type": "summary", "rows": {…}}` that lets a reader check it
//!   got everything.
//! * **Parquet**: one file of the rows of both tables in one schema (a
//!   `table` column, then the union of the tables' columns, absent ones
//!   null); the person, merged UUIDs and activity as JSON in the file's
//!   key-value metadata (`elide.person`, `elide.merged_person_uuids`,
//!   `elide.activity`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, StringArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use elide_persons::{ExportSink, PersonExport};
use elide_store::{StoreError, Table};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// JSON lines.
    Ndjson,
    /// One parquet file.
    Parquet,
}

impl ExportFormat {
    /// `ndjson` or `parquet`.
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "ndjson" | "jsonl" => Some(ExportFormat::Ndjson),
            "parquet" => Some(ExportFormat::Parquet),
            _ => None,
        }
    }
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("writing the export: {e}"))
}

/// The one schema of a parquet export: `table`, then the union of the
/// tables' stored columns, all nullable, UUIDs as their text (as
/// [`elide_store::Store::rows_of_distinct_ids`] delivers them).
fn union_schema() -> SchemaRef {
    let mut fields = vec![Field::new("table", arrow::datatypes::DataType::Utf8, false)];
    for t in Table::ALL {
        for f in t.def().schema().fields() {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(match elide_store::schema::is_uuid_field(f) {
                    true => elide_store::schema::text_field(f).with_nullable(true),
                    false => f.as_ref().clone().with_nullable(true),
                });
            }
        }
    }
    Arc::new(Schema::new(fields))
}

fn kind(t: Table) -> &'static str {
    match t {
        Table::Events => "event",
        Table::Recordings => "recording",
    }
}

/// An [`ExportSink`] writing `format` to `out`.
pub struct ExportWriter<W: Write + Send> {
    format: ExportFormat,
    out: Option<W>,
    parquet: Option<ArrowWriter<W>>,
    schema: SchemaRef,
    rows: BTreeMap<&'static str, u64>,
}

impl<W: Write + Send> ExportWriter<W> {
    /// A writer of `format` into `out`.
    pub fn new(format: ExportFormat, out: W) -> Self {
        ExportWriter {
            format,
            out: Some(out),
            parquet: None,
            schema: union_schema(),
            rows: BTreeMap::new(),
        }
    }

    /// Finish the output (the NDJSON summary line, the parquet footer)
    /// and return the destination.
    pub fn finish(mut self) -> elide_store::Result<W> {
        match self.format {
            ExportFormat::Ndjson => {
                let mut out = self.out.take().ok_or_else(|| io("no output"))?;
                writeln!(out, "{}", json!({"type": "summary", "rows": self.rows})).map_err(io)?;
                Ok(out)
            }
            ExportFormat::Parquet => {
                let w = self.parquet.take().ok_or_else(|| io("no person written"))?;
                w.into_inner().map_err(io)
            }
        }
    }

    fn line(&mut self, v: &Value) -> elide_store::Result<()> {
        let out = self.out.as_mut().ok_or_else(|| io("no output"))?;
        serde_json::to_writer(&mut *out, v).map_err(io)?;
        out.write_all(b"\n").map_err(io)
    }
}

impl<W: Write + Send> ExportSink for ExportWriter<W> {
    fn person(&mut self, meta: &PersonExport) -> elide_persons::Result<()> {
        let wrap = |e: StoreError| elide_persons::PersonsError::from(e);
        match self.format {
            ExportFormat::Ndjson => {
                let mut p = json!({"type": "person"});
                if let (Value::Object(o), Value::Object(person)) = (
                    &mut p,
                    serde_json::to_value(&meta.person)
                        .map_err(io)
                        .map_err(wrap)?,
                ) {
                    o.extend(person);
                    o.insert(
                        "merged_person_uuids".into(),
                        json!(meta.merged_person_uuids),
                    );
                }
                self.line(&p).map_err(wrap)?;
                for a in &meta.activity {
                    let mut v = serde_json::to_value(a).map_err(io).map_err(wrap)?;
                    if let Value::Object(o) = &mut v {
                        o.insert("type".into(), json!("activity"));
                    }
                    self.line(&v).map_err(wrap)?;
                }
            }
            ExportFormat::Parquet => {
                let kv = |k: &str, v: String| KeyValue::new(k.to_string(), v);
                let props = WriterProperties::builder()
                    .set_key_value_metadata(Some(vec![
                        kv("elide.person", json_text(&meta.person)),
                        kv(
                            "elide.merged_person_uuids",
                            json_text(&meta.merged_person_uuids),
                        ),
                        kv("elide.activity", json_text(&meta.activity)),
                    ]))
                    .build();
                let out = self.out.take().ok_or_else(|| wrap(io("no output")))?;
                let w = ArrowWriter::try_new(out, Arc::clone(&self.schema), Some(props))
                    .map_err(io)
                    .map_err(wrap)?;
                self.parquet = Some(w);
            }
        }
        Ok(())
    }

    fn rows(&mut self, table: Table, batch: RecordBatch) -> elide_store::Result<()> {
        *self.rows.entry(table.name()).or_default() += batch.num_rows() as u64;
        match self.format {
            ExportFormat::Ndjson => {
                let mut buf = Vec::new();
                {
                    let mut w = arrow::json::ArrayWriter::new(&mut buf);
                    w.write(&batch).map_err(io)?;
                    w.finish().map_err(io)?;
                }
                let rows: Vec<Value> = if buf.is_empty() {
                    Vec::new()
                } else {
                    serde_json::from_slice(&buf).map_err(io)?
                };
                for mut r in rows {
                    if let Value::Object(o) = &mut r {
                        o.insert("type".into(), json!(kind(table)));
                    }
                    self.line(&r)?;
                }
            }
            ExportFormat::Parquet => {
                let n = batch.num_rows();
                let cols: Vec<ArrayRef> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| {
                        if f.name() == "table" {
                            Arc::new(StringArray::from(vec![table.name(); n])) as ArrayRef
                        } else {
                            batch
                                .column_by_name(f.name())
                                .cloned()
                                .unwrap_or_else(|| new_null_array(f.data_type(), n))
                        }
                    })
                    .collect();
                let b = RecordBatch::try_new(Arc::clone(&self.schema), cols)?;
                self.parquet
                    .as_mut()
                    .ok_or_else(|| io("rows before the person"))?
                    .write(&b)
                    .map_err(io)?;
            }
        }
        Ok(())
    }
}

/// JSON text of a value, for the parquet metadata (these types always
/// serialize).
fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
