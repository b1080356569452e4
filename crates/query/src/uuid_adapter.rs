//! UUID columns of parts written before UUIDs were stored as 16 bytes.
//!
//! The store keeps the event `uuid` and `person_id` columns as
//! `FixedSizeBinary(16)` (`elide_store::schema::uuid_field`), and scans
//! expose them so (`provider::scan_schema`; SQL reads them as text through
//! [`crate::uuid_sql`]). Parts written by earlier builds hold the text.
//! [`UuidTextAdapterFactory`] adapts the scan's projection and pushed-down
//! filters to each part file: a column the table reads as 16 bytes but
//! the file holds as text becomes [`UuidParse`] of that column; everything
//! else goes to DataFusion's default adapter (which casts a legacy file's
//! `Utf8` to `Utf8View`, as for every string column). Only the columns a
//! query reads are converted, and only in the rows the scan decodes.
//! Compaction rewrites such parts in the new form.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};

/// The 16 bytes of UUID text (a part written before UUIDs were stored
/// as bytes). Text that is not a UUID is an error (the store validated it
/// at ingest).
#[derive(Debug, Eq)]
pub struct UuidParse {
    arg: Arc<dyn PhysicalExpr>,
}

impl PartialEq for UuidParse {
    fn eq(&self, other: &Self) -> bool {
        self.arg.eq(&other.arg)
    }
}

impl Hash for UuidParse {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.arg.hash(state);
    }
}

impl fmt::Display for UuidParse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uuid_parse({})", self.arg)
    }
}

impl PhysicalExpr for UuidParse {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        let nullable = self.arg.nullable(input_schema)?;
        Ok(Arc::new(elide_store::schema::uuid_field(
            self.arg.return_field(input_schema)?.name(),
            nullable,
        )))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let a = self.arg.evaluate(batch)?.into_array(batch.num_rows())?;
        let a = arrow::compute::cast(&a, &DataType::Utf8)?;
        match elide_store::schema::parse_uuids(a.as_string::<i32>().iter()) {
            Ok(b) => Ok(ColumnarValue::Array(Arc::new(b))),
            Err((row, reason)) => exec_err!("row {row} of a part: {reason}"),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.arg]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        match <[_; 1]>::try_from(children) {
            Ok([arg]) => Ok(Arc::new(UuidParse { arg })),
            Err(c) => exec_err!("uuid_parse takes one argument, got {}", c.len()),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uuid_parse(")?;
        self.arg.fmt_sql(f)?;
        write!(f, ")")
    }
}

/// Adapts scan expressions to a part file whose UUID columns may be text
/// where the table reads 16 bytes (see the module docs).
#[derive(Debug, Default)]
pub struct UuidTextAdapterFactory;

impl PhysicalExprAdapterFactory for UuidTextAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        // Columns read as 16 bytes that the file holds as text.
        let binary: Vec<String> = logical_file_schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &DataType::FixedSizeBinary(16))
            .filter(|f| {
                physical_file_schema
                    .field_with_name(f.name())
                    .is_ok_and(|p| p.data_type().is_string())
            })
            .map(|f| f.name().clone())
            .collect();
        // The default adapter sees those columns as the file's own fields
        // (type, nullability and metadata), so it leaves them bare columns
        // (no cast) for `UuidParse` to wrap.
        let logical = if binary.is_empty() {
            logical_file_schema
        } else {
            let fields: Vec<FieldRef> = logical_file_schema
                .fields()
                .iter()
                .map(|f| match physical_file_schema.field_with_name(f.name()) {
                    Ok(p) if binary.contains(f.name()) => Arc::new(p.clone()),
                    _ => Arc::clone(f),
                })
                .collect();
            Arc::new(Schema::new_with_metadata(
                fields,
                logical_file_schema.metadata().clone(),
            ))
        };
        Ok(Arc::new(UuidTextAdapter {
            binary,
            inner: DefaultPhysicalExprAdapterFactory.create(logical, physical_file_schema)?,
        }))
    }
}

#[derive(Debug)]
struct UuidTextAdapter {
    binary: Vec<String>,
    inner: Arc<dyn PhysicalExprAdapter>,
}

impl PhysicalExprAdapter for UuidTextAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        let expr = self.inner.rewrite(expr)?;
        if self.binary.is_empty() {
            return Ok(expr);
        }
        // Bottom-up: a column is wrapped once, and the wrapper's own
        // child (the same column) is not visited again.
        expr.transform_up(|e| {
            if let Some(c) = e.downcast_ref::<Column>() {
                if self.binary.iter().any(|b| b == c.name()) {
                    return Ok(Transformed::yes(Arc::new(UuidParse {
                        arg: Arc::clone(&e),
                    })
                        as Arc<dyn PhysicalExpr>));
                }
            }
            Ok(Transformed::no(e))
        })
        .data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, FixedSizeBinaryArray};
    use arrow::datatypes::Field;
    use elide_store::schema::uuid_field;

    const U: &str = "0192b1c2-d3e4-4f56-8789-0a1b2c3d4e5f";

    fn bytes() -> FixedSizeBinaryArray {
        let u = uuid::Uuid::parse_str(U).unwrap();
        FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            [Some(u.as_bytes().to_vec()), None].into_iter(),
            16,
        )
        .unwrap()
    }

    #[test]
    fn parses_text_and_refuses_what_is_not_a_uuid() {
        let schema = Arc::new(Schema::new(vec![Field::new("uuid", DataType::Utf8, true)]));
        let text = |v: Vec<Option<&str>>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(arrow::array::StringArray::from(v)) as ArrayRef],
            )
            .unwrap()
        };
        let e = UuidParse {
            arg: Arc::new(Column::new("uuid", 0)),
        };
        let out = e
            .evaluate(&text(vec![Some(U), None]))
            .unwrap()
            .into_array(2)
            .unwrap();
        assert_eq!(out.as_fixed_size_binary(), &bytes());
        let f = e.return_field(&schema).unwrap();
        assert!(elide_store::schema::is_uuid_field(&f), "{f:?}");
        let err = e.evaluate(&text(vec![Some("nope")])).unwrap_err();
        assert!(err.to_string().contains("row 0"), "{err}");
    }

    #[test]
    fn the_adapter_parses_text_parts_and_leaves_16_byte_ones() {
        let logical = Arc::new(Schema::new(vec![
            uuid_field("uuid", true),
            Field::new("event", DataType::Utf8View, false),
        ]));
        let new_part = Arc::new(Schema::new(vec![
            uuid_field("uuid", true),
            Field::new("event", DataType::Utf8, false),
        ]));
        let old_part = Arc::new(Schema::new(vec![
            Field::new("uuid", DataType::Utf8, true),
            Field::new("event", DataType::Utf8, false),
        ]));
        let col = |n: &str, i| Arc::new(Column::new(n, i)) as Arc<dyn PhysicalExpr>;
        let a = UuidTextAdapterFactory
            .create(Arc::clone(&logical), new_part)
            .unwrap();
        assert_eq!(a.rewrite(col("uuid", 0)).unwrap().to_string(), "uuid@0");
        assert!(a
            .rewrite(col("event", 1))
            .unwrap()
            .to_string()
            .contains("CAST"));
        let b = UuidTextAdapterFactory.create(logical, old_part).unwrap();
        assert_eq!(
            b.rewrite(col("uuid", 0)).unwrap().to_string(),
            "uuid_parse(uuid@0)"
        );
    }
}
