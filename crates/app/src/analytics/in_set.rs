//! One scalar function for "is this text in that set": the analytics'
//! blocked ids, deleted persons and cohort members, each a session
//! function of one text argument answering a boolean (its NULL answer
//! chosen by the caller). A run of equal values (a part holds a distinct
//! id's, or a person's, rows together) is tested once.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder};
use arrow::datatypes::DataType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// What a set answers of one text.
pub(crate) type Test = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// `name(x)`: `test(x)`, and `on_null` for NULL.
pub(crate) fn udf(name: impl Into<String>, test: Test, on_null: Option<bool>) -> ScalarUDF {
    ScalarUDF::new_from_impl(InSet {
        name: name.into(),
        test,
        on_null,
        signature: Signature::any(1, Volatility::Stable),
    })
}

struct InSet {
    name: String,
    test: Test,
    on_null: Option<bool>,
    signature: Signature,
}

impl std::fmt::Debug for InSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InSet").field("name", &self.name).finish()
    }
}

// The same function when it tests with the same set.
impl PartialEq for InSet {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.test, &other.test)
    }
}

impl Eq for InSet {}

impl Hash for InSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        std::ptr::hash(Arc::as_ptr(&self.test) as *const u8, state);
    }
}

impl ScalarUDFImpl for InSet {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        let values = arrow::compute::cast(&values, &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        let mut out = BooleanBuilder::with_capacity(values.len());
        let mut last: Option<(&str, bool)> = None;
        for i in 0..values.len() {
            if values.is_null(i) {
                out.append_option(self.on_null);
                continue;
            }
            let v = values.value(i);
            let hit = match last {
                Some((l, b)) if l == v => b,
                _ => (self.test)(v),
            };
            last = Some((v, hit));
            out.append_value(hit);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}
