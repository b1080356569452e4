//! `properties_match(properties, filters)`: whether a row's `properties`
//! JSON satisfies a list of property filters, given as JSON text
//! (`'[{"key": "$browser", "value": "Chrome", "operator": "exact"}]'`),
//! the store's property filters
//! ([`elide_store::predicate::PropertyFilter`]) compared as PostHog's
//! queries compare properties ([`Comparison::Text`]: by their text, so
//! `"5"` equals `5`; numbers by value; `gt`/`lt` on numbers and numeric
//! strings; JSON null unset; `is_not` matches an absent key). Only the
//! filtered keys' values are parsed. The filters must be a constant; a
//! malformed list is an error naming what is wrong. The relative dates of
//! the date operators (`-7d`) are resolved when the query is planned, at
//! the query's start time (its `now()`), so that every batch reads them
//! alike.

use std::sync::Arc;

use arrow::array::{Array, ArrayAccessor, ArrayRef, AsArray, BooleanArray};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    lit, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::HashMap;

use elide_store::predicate::{Comparison, PropertiesMatcher, PropertyFilter};

/// Name of the function.
pub const PROPERTIES_MATCH: &str = "properties_match";

/// The function. It keeps the matchers it prepared, by their filters'
/// text: a query calls it once per batch with the same filters, and a
/// regular expression is then compiled once per query, not per batch
/// (the function is registered with each session, so they last as long
/// as the query; a call [`ScalarUDFImpl::simplify`] rewrites shares them).
pub struct PropertiesMatch {
    signature: Signature,
    prepared: Arc<std::sync::Mutex<Prepared>>,
}

/// What one function (one query) prepared.
struct Prepared {
    by_text: HashMap<String, Arc<PropertiesMatcher<'static>>>,
    /// Regular expressions compiled so far.
    patterns: usize,
    /// Most regular expressions the query may compile in all.
    budget: usize,
}

/// Most regular expressions one HogQL query's `properties_match` calls
/// compile ([`PropertiesMatch::udf_with_budget`]; each call's list holds
/// at most [`elide_store::predicate::MAX_PATTERNS`]). The analytics build
/// their own calls from lists bounded where they are parsed, and a
/// session that reads many cohorts reads each one's (at most 20).
pub const MAX_QUERY_PATTERNS: usize = 100;

/// Most matchers one function keeps (past it, it starts over): more than
/// the distinct lists an analytics query writes (each branch of an `OR`
/// property group is its own list: a hundred in one `properties`, and a
/// funnel's steps have their own), so that none is parsed again per
/// batch. Its regular expressions are bounded by the query's budget; the
/// rest of a matcher is its filters' text.
const MAX_PREPARED: usize = 1024;

impl std::fmt::Debug for PropertiesMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PropertiesMatch")
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

// The same function whatever it has prepared.
impl PartialEq for PropertiesMatch {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for PropertiesMatch {}

impl std::hash::Hash for PropertiesMatch {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state)
    }
}

impl PropertiesMatch {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        Self::udf_with_budget(usize::MAX)
    }

    /// The function, compiling at most `budget` regular expressions in
    /// all (a user's query: [`MAX_QUERY_PATTERNS`]).
    pub fn udf_with_budget(budget: usize) -> ScalarUDF {
        ScalarUDF::new_from_impl(PropertiesMatch {
            signature: Signature::any(2, Volatility::Immutable),
            prepared: Arc::new(std::sync::Mutex::new(Prepared {
                by_text: HashMap::new(),
                patterns: 0,
                budget,
            })),
        })
    }

    /// The matcher of `filters` (parsed and checked the first time).
    fn matcher(
        &self,
        filters: &str,
    ) -> std::result::Result<Arc<PropertiesMatcher<'static>>, String> {
        if let Some(m) = self.prepared().by_text.get(filters) {
            return Ok(Arc::clone(m));
        }
        // Counted before anything is compiled; charged when stored (two
        // batches that prepare the same list at once pay once).
        let read = read_filters(filters)?;
        let n = elide_store::predicate::pattern_count(read.iter());
        let over = |p: &Prepared| {
            (p.patterns.saturating_add(n) > p.budget).then(|| {
                format!(
                    "{PROPERTIES_MATCH}: a query compiles at most {} regular expressions in all",
                    p.budget
                )
            })
        };
        if let Some(e) = over(&self.prepared()) {
            return Err(e);
        }
        let m = Arc::new(PropertiesMatcher::owning(checked(read)?, Comparison::Text));
        let mut prepared = self.prepared();
        if let Some(m) = prepared.by_text.get(filters) {
            return Ok(Arc::clone(m));
        }
        if let Some(e) = over(&prepared) {
            return Err(e);
        }
        prepared.patterns += n;
        if prepared.by_text.len() >= MAX_PREPARED {
            prepared.by_text.clear();
        }
        prepared.by_text.insert(filters.to_string(), Arc::clone(&m));
        Ok(m)
    }

    /// The prepared matchers (a poisoned map is only a cache: taken as it
    /// is).
    fn prepared(&self) -> std::sync::MutexGuard<'_, Prepared> {
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Parse and check a filter list; a filter without `operator` is `exact`,
/// as in PostHog.
pub fn parse_filters(text: &str) -> std::result::Result<Vec<PropertyFilter>, String> {
    checked(read_filters(text)?)
}

/// A filter list's filters, checked (their regular expressions compiled
/// once).
fn checked(filters: Vec<PropertyFilter>) -> std::result::Result<Vec<PropertyFilter>, String> {
    elide_store::predicate::validate_text_list(&filters)?;
    Ok(filters)
}

/// A filter list read, not checked.
fn read_filters(text: &str) -> std::result::Result<Vec<PropertyFilter>, String> {
    let not_a_list = |e: serde_json::Error| {
        format!("{PROPERTIES_MATCH}: the filters are not a JSON list of filters: {e}")
    };
    let mut raw: serde_json::Value = serde_json::from_str(text).map_err(not_a_list)?;
    if let Some(list) = raw.as_array_mut() {
        for f in list.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            f.entry("operator").or_insert_with(|| "exact".into());
        }
    }
    serde_json::from_value(raw).map_err(not_a_list)
}

/// Whether each row of a text column passes `m`.
fn each_row<'a>(a: impl ArrayAccessor<Item = &'a str>, m: &PropertiesMatcher) -> BooleanBuffer {
    BooleanBuffer::collect_bool(a.len(), |i| m.matches((!a.is_null(i)).then(|| a.value(i))))
}

impl ScalarUDFImpl for PropertiesMatch {
    fn name(&self) -> &str {
        PROPERTIES_MATCH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                Ok(DataType::Boolean)
            }
            t => plan_err!("{PROPERTIES_MATCH}: properties must be text, not {t}"),
        }
    }

    /// The filters with their relative dates resolved at the query's
    /// start ([`PropertyFilter::dates_resolved_at`]); a list that does not
    /// parse is left as it is (its error comes when the function runs).
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let resolved = match (&args[..], info.query_execution_start_time()) {
            ([_, Expr::Literal(s, _)], Some(now)) => s
                .try_as_str()
                .flatten()
                // Only a date operator has anything to resolve (a parse
                // compiles the filters' regular expressions).
                .filter(|text| text.contains("is_date_"))
                .and_then(|text| parse_filters(text).ok())
                .and_then(|filters| {
                    let changed: Vec<Option<PropertyFilter>> =
                        filters.iter().map(|f| f.dates_resolved_at(now)).collect();
                    changed.iter().any(Option::is_some).then(|| {
                        filters
                            .into_iter()
                            .zip(changed)
                            .map(|(f, r)| r.unwrap_or(f))
                            .collect::<Vec<_>>()
                    })
                })
                .and_then(|filters| serde_json::to_string(&filters).ok()),
            _ => None,
        };
        let Some(text) = resolved else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        let mut args = args;
        args[1] = lit(text);
        Ok(ExprSimplifyResult::Simplified(Expr::ScalarFunction(
            // The rewritten call shares what this one prepared and its
            // budget.
            ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(PropertiesMatch {
                    signature: self.signature.clone(),
                    prepared: Arc::clone(&self.prepared),
                })),
                args,
            ),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let filters = match &args.args[1] {
            ColumnarValue::Scalar(s) => match s.try_as_str() {
                Some(Some(t)) => t.to_string(),
                _ => return exec_err!("{PROPERTIES_MATCH}: the filters must be a text literal"),
            },
            ColumnarValue::Array(_) => {
                return exec_err!("{PROPERTIES_MATCH}: the filters must be a constant")
            }
        };
        let m = match self.matcher(&filters) {
            Ok(m) => m,
            Err(e) => return exec_err!("{e}"),
        };
        let props = args.args[0].to_array(args.number_rows)?;
        // Read as stored (the scan gives views): a cast to `Utf8` would
        // copy every row's text first.
        let out = match props.data_type() {
            DataType::Utf8View => each_row(props.as_string_view(), &m),
            DataType::Utf8 => each_row(props.as_string::<i32>(), &m),
            DataType::LargeUtf8 => each_row(props.as_string::<i64>(), &m),
            DataType::Null => BooleanBuffer::collect_bool(props.len(), |_| m.matches(None)),
            t => return exec_err!("{PROPERTIES_MATCH}: properties must be text, not {t}"),
        };
        Ok(ColumnarValue::Array(
            Arc::new(BooleanArray::new(out, None)) as ArrayRef
        ))
    }
}
