//! UUID columns stored as 16 bytes, read through SQL as text.
//!
//! The store keeps the event `uuid` column as `FixedSizeBinary(16)`
//! (`elide_store::schema::uuid_field`); parts written before hold it as
//! its text. SQL sees one type for both: the text, as `Utf8View` (see
//! `provider::scan_schema`). This module owns the conversion:
//!
//! - [`UuidTextAdapterFactory`] adapts the scan's projection and filters
//!   to each part file: a column the table reads as text but the file
//!   holds as 16 bytes becomes [`UuidText`] of that column; everything
//!   else goes to DataFusion's default adapter (which casts a legacy
//!   file's `Utf8` to `Utf8View`, as for every string column).
//! - [`UuidText`] formats 16-byte UUIDs as lowercase, hyphenated text.
//!
//! Only the columns a query reads are converted, and only for the rows
//! the scan decodes.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use elide_store::schema::uuid_text_view;

/// The text (`Utf8View`) of a 16-byte UUID expression.
#[derive(Debug, Eq)]
pub struct UuidText {
    arg: Arc<dyn PhysicalExpr>,
}

impl PartialEq for UuidText {
    fn eq(&self, other: &Self) -> bool {
        self.arg.eq(&other.arg)
    }
}

impl Hash for UuidText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.arg.hash(state);
    }
}

impl UuidText {
    /// The text of `arg`, which evaluates to `FixedSizeBinary(16)`.
    pub fn new(arg: Arc<dyn PhysicalExpr>) -> Self {
        UuidText { arg }
    }
}

impl fmt::Display for UuidText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uuid_text({})", self.arg)
    }
}

impl PhysicalExpr for UuidText {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        let nullable = self.arg.nullable(input_schema)?;
        Ok(Arc::new(Field::new(
            self.arg.return_field(input_schema)?.name(),
            DataType::Utf8View,
            nullable,
        )))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        match self.arg.evaluate(batch)? {
            ColumnarValue::Array(a) => match a.data_type() {
                DataType::FixedSizeBinary(16) => Ok(ColumnarValue::Array(Arc::new(
                    uuid_text_view(a.as_fixed_size_binary()),
                ))),
                other => exec_err!("uuid_text of {other}, expected FixedSizeBinary(16)"),
            },
            ColumnarValue::Scalar(s @ ScalarValue::FixedSizeBinary(16, _)) => {
                let text = uuid_text_view(s.to_array_of_size(1)?.as_fixed_size_binary());
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &text, 0,
                )?))
            }
            ColumnarValue::Scalar(s) => exec_err!("uuid_text of {}", s.data_type()),
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
            Ok([arg]) => Ok(Arc::new(UuidText::new(arg))),
            Err(c) => exec_err!("uuid_text takes one argument, got {}", c.len()),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uuid_text(")?;
        self.arg.fmt_sql(f)?;
        write!(f, ")")
    }
}

/// Adapts scan expressions to a part file whose UUID columns may be 16
/// bytes where the table reads text (see the module docs).
#[derive(Debug, Default)]
pub struct UuidTextAdapterFactory;

impl PhysicalExprAdapterFactory for UuidTextAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        // Columns read as text that the file holds as 16 bytes.
        let binary: Vec<String> = logical_file_schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &DataType::Utf8View)
            .filter(|f| {
                physical_file_schema
                    .field_with_name(f.name())
                    .is_ok_and(|p| p.data_type() == &DataType::FixedSizeBinary(16))
            })
            .map(|f| f.name().clone())
            .collect();
        // The default adapter sees those columns as the file's own fields
        // (type, nullability and metadata), so it leaves them bare columns
        // (no cast) for `UuidText` to wrap.
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
                    return Ok(Transformed::yes(
                        Arc::new(UuidText::new(Arc::clone(&e))) as Arc<dyn PhysicalExpr>
                    ));
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
    fn formats_arrays_and_scalars_and_refuses_other_types() {
        let schema = Arc::new(Schema::new(vec![uuid_field("uuid", true)]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(bytes()) as ArrayRef]).unwrap();
        let e = UuidText::new(Arc::new(Column::new("uuid", 0)));
        let out = e.evaluate(&batch).unwrap().into_array(2).unwrap();
        let out = out.as_string_view();
        assert_eq!((out.value(0), out.is_null(1)), (U, true));
        assert_eq!(
            e.return_field(&schema).unwrap().data_type(),
            &DataType::Utf8View
        );
        let lit = datafusion::physical_expr::expressions::lit(ScalarValue::FixedSizeBinary(
            16,
            Some(uuid::Uuid::parse_str(U).unwrap().as_bytes().to_vec()),
        ));
        match UuidText::new(lit).evaluate(&batch).unwrap() {
            ColumnarValue::Scalar(ScalarValue::Utf8View(Some(t))) => assert_eq!(t, U),
            other => panic!("{other:?}"),
        }
        let wrong = UuidText::new(datafusion::physical_expr::expressions::lit(1i64));
        assert!(wrong.evaluate(&batch).is_err());
    }

    #[test]
    fn the_adapter_wraps_16_byte_columns_and_casts_text_ones() {
        let logical = Arc::new(Schema::new(vec![
            Field::new("uuid", DataType::Utf8View, true),
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
        let got = a.rewrite(col("uuid", 0)).unwrap();
        assert_eq!(got.to_string(), "uuid_text(uuid@0)");
        // Other columns are the default adapter's (a cast to views).
        assert!(a
            .rewrite(col("event", 1))
            .unwrap()
            .to_string()
            .contains("CAST"));
        let b = UuidTextAdapterFactory.create(logical, old_part).unwrap();
        let got = b.rewrite(col("uuid", 0)).unwrap().to_string();
        assert!(!got.contains("uuid_text") && got.contains("CAST"), "{got}");
    }
}
