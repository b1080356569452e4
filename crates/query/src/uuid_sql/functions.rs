//! The functions the UUID rule calls: `uuid_text` and `uuid_from_text`.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use elide_store::schema::uuid_text_view;

use super::UUID;

/// `uuid_text(uuid)`: the lowercase, hyphenated text of 16-byte UUIDs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UuidTextUdf {
    signature: Signature,
}

/// The [`UuidTextUdf`] function.
pub fn uuid_text_udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(UuidTextUdf {
            signature: Signature::exact(vec![UUID], Volatility::Immutable),
        }))
    });
    Arc::clone(&UDF)
}

impl ScalarUDFImpl for UuidTextUdf {
    fn name(&self) -> &str {
        "uuid_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        // Views, as the scans return every other string column.
        Ok(DataType::Utf8View)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = args.args[0].to_array(args.number_rows)?;
        match a.data_type() {
            DataType::FixedSizeBinary(16) => Ok(ColumnarValue::Array(Arc::new(uuid_text_view(
                a.as_fixed_size_binary(),
            )) as ArrayRef)),
            t => exec_err!("uuid_text of {t}"),
        }
    }
}

/// What [`super::UuidLiterals`] puts around a UUID that meets text while
/// the SQL is planned, so that the comparison types (`NOT (person_id =
/// distinct_id)`): its text, named as the UUID itself (so the names of
/// the expressions around it do not change). Not registered, so no user
/// writes it; [`super::UuidSql`] replaces it by `uuid_text`, or by its
/// argument where that has become text (a `UNION` or `CASE` that types as
/// a UUID while the SQL is planned).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PlannedUuidText {
    signature: Signature,
}

/// The [`PlannedUuidText`] function. Not for a SQL session (users must
/// not write it); a process that decodes Elide's plans (a distributed
/// worker) registers it, since analysis leaves it inside `GROUPING SETS`.
pub fn planned_uuid_text_udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(PlannedUuidText {
            signature: Signature::any(1, Volatility::Immutable),
        }))
    });
    Arc::clone(&UDF)
}

impl ScalarUDFImpl for PlannedUuidText {
    fn name(&self) -> &str {
        "planned_uuid_text"
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [a] => Ok(a.schema_name().to_string()),
            _ => exec_err!("planned_uuid_text takes one argument"),
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8View)
    }

    /// Where the rule leaves it (inside `GROUPING SETS`, which it does not
    /// rewrite): `uuid_text` of a UUID, text as it is.
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(v) = args.args.first() else {
            return exec_err!("planned_uuid_text takes one argument");
        };
        let a = v.to_array(args.number_rows)?;
        match a.data_type() {
            DataType::FixedSizeBinary(16) => Ok(ColumnarValue::Array(Arc::new(uuid_text_view(
                a.as_fixed_size_binary(),
            )) as ArrayRef)),
            t if t.is_string() => Ok(ColumnarValue::Array(arrow::compute::cast(
                &a,
                &DataType::Utf8View,
            )?)),
            t => exec_err!("planned_uuid_text of {t}"),
        }
    }
}

/// `uuid_from_text(text)`: the 16 bytes of UUID text in any form the
/// `uuid` crate parses; NULL for text that is not a UUID. Put on the text
/// side of an equality that a NULL answers as a `false` would (a join key,
/// a top-level conjunct of a filter or join condition), it keeps the UUID
/// column bare: compared as bytes, and decorrelation of a subquery still
/// sees a column.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UuidFromTextUdf {
    signature: Signature,
}

/// The [`UuidFromTextUdf`] function.
pub fn uuid_from_text_udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(UuidFromTextUdf {
            signature: Signature::uniform(
                1,
                vec![DataType::Utf8, DataType::Utf8View, DataType::LargeUtf8],
                Volatility::Immutable,
            ),
        }))
    });
    Arc::clone(&UDF)
}

impl ScalarUDFImpl for UuidFromTextUdf {
    fn name(&self) -> &str {
        "uuid_from_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(UUID)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = args.args[0].to_array(args.number_rows)?;
        let a = arrow::compute::cast(&a, &DataType::Utf8)?;
        let mut b = arrow::array::FixedSizeBinaryBuilder::with_capacity(a.len(), 16);
        for v in a.as_string::<i32>() {
            match v.and_then(|v| uuid::Uuid::try_parse(v).ok()) {
                Some(u) => b.append_value(u.as_bytes())?,
                None => b.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish()) as ArrayRef))
    }
}
