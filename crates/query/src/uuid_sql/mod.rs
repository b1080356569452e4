//! UUID columns of 16 bytes with the SQL of text.
//!
//! The store keeps `events.uuid`, `events.person_id` and `recordings.uuid`
//! as `FixedSizeBinary(16)`, and scans expose them so: grouping, counting
//! distinct values and comparing move 16 bytes instead of 36 characters.
//! SQL users keep writing `person_id = '…'` and read text. [`UuidSql`], an
//! analyzer rule installed by `register_functions` before DataFusion's type
//! coercion, treats every `FixedSizeBinary(16)` expression as a UUID and
//! rewrites:
//!
//! - a comparison of a UUID with a string literal (`=`, `<>`, `<`, …,
//!   `IS [NOT] DISTINCT FROM`, `IN (…)`, `BETWEEN`, `CASE person_id WHEN
//!   '…'`): the literal becomes 16 bytes (a literal that is not a UUID is
//!   a planning error, as in ClickHouse and PostgreSQL);
//! - a UUID meeting any other string expression — a comparison, a join
//!   key (`ON`, `USING`), `IN (SELECT …)`, `UNION`, `CASE` branches,
//!   `LIKE`, `CAST(… AS VARCHAR)`, a scalar function's argument, an
//!   aggregate other than those that only compare or count — becomes its
//!   text ([`uuid_text_udf`]); a subquery or `UNION` input whose UUID
//!   column meets text gives that column as text;
//! - the statement's output, and the rows a `COPY` writes: UUID columns
//!   become their text.
//!
//! Lowercase text and bytes sort alike, so ranges, `min`/`max` and
//! `ORDER BY` agree with the text's order.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{plan_err, DFSchema, DataFusionError, NullEquality, Result, ScalarValue};
use datafusion::logical_expr::dml::CopyTo;
use datafusion::logical_expr::expr::{Between, Case, InList, InSubquery, Like};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, Cast, Expr, ExprSchemable, Join, LogicalPlan, Operator, Projection, TryCast, Union,
    WindowFrame, WindowFrameBound, WindowFrameUnits,
};
use datafusion::optimizer::analyzer::AnalyzerRule;

mod functions;

pub use functions::planned_uuid_text_udf;
use functions::PlannedUuidText;
pub use functions::{uuid_from_text_udf, uuid_text_udf, UuidFromTextUdf, UuidTextUdf};

const UUID: DataType = DataType::FixedSizeBinary(16);

/// `e` with a hint when a planning error is about a UUID column: a string
/// function given one fails while the statement is planned, before
/// [`UuidSql`] runs (as PostgreSQL's `length(uuid)` does), and DataFusion's
/// message speaks of `FixedSizeBinary(16)`.
pub fn with_uuid_hint(e: DataFusionError) -> DataFusionError {
    match e.find_root() {
        DataFusionError::Plan(m) if m.contains("FixedSizeBinary(16)") => {
            DataFusionError::Plan(format!(
                "{m}\nHint: FixedSizeBinary(16) is a UUID column (person_id, uuid): it \
                 compares with UUID text and reads as text, and a function that takes \
                 text takes CAST(person_id AS VARCHAR)"
            ))
        }
        _ => e,
    }
}

/// The analyzer rule (see the module docs).
#[derive(Debug, Default)]
pub struct UuidSql;

/// Turns a UUID literal compared with a UUID column into its bytes while
/// the SQL is planned, before [`UuidSql`] runs: DataFusion's SQL planner
/// types the operand of `NOT` as it builds it, and `person_id = '…'` does
/// not type as text against bytes, so `NOT (person_id = '…')` failed to
/// plan. The same conversion as the analyzer's (`meet`), for `=`, `<>`,
/// `<`, `<=`, `>`, `>=` with a string literal on either side; text that
/// is not a UUID is the analyzer's error ("not a UUID"). Against text
/// that is not a literal (`NOT (person_id = distinct_id)`), the UUID is
/// wrapped in [`PlannedUuidText`], which the analyzer turns into its text
/// (or, at the top of a filter or join, back into bytes against the text
/// parsed: `uuid_equality`).
#[derive(Debug, Default)]
pub struct UuidLiterals;

impl ExprPlanner for UuidLiterals {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use datafusion::sql::sqlparser::ast::BinaryOperator as B;
        let RawBinaryExpr { op, left, right } = expr;
        if !matches!(op, B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq) {
            return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }));
        }
        let ty = |e: &Expr| e.get_type(schema).ok();
        let uuid = |e: &Expr| is_uuid(&ty(e));
        // Text that is not a literal: the UUID meets it as its text, which
        // the analyzer would choose too (`Meet::UuidAsText`), and which an
        // equality at the top of a filter or a join turns back into bytes
        // (`uuid_equality`). An outer query's column met by `=` is parsed
        // instead, anywhere, as the analyzer does (`Meet::Other`), so that
        // decorrelation sees `Column = f(outer)`.
        let text_expr = |e: &Expr| string_literal(e).is_none() && is_text(&ty(e));
        let outer_eq = |e: &Expr| op == B::Eq && matches!(e, Expr::OuterReferenceColumn(..));
        let (left, right) = match (string_literal(&left), string_literal(&right)) {
            (None, Some(s)) if uuid(&left) => (left, uuid_literal(s)?),
            (Some(s), None) if uuid(&right) => (uuid_literal(s)?, right),
            _ if uuid(&left) && text_expr(&right) && outer_eq(&right) => (left, from_text(right)),
            _ if text_expr(&left) && uuid(&right) && outer_eq(&left) => (from_text(left), right),
            _ if uuid(&left) && text_expr(&right) => (planned_text(left), right),
            _ if text_expr(&left) && uuid(&right) => (left, planned_text(right)),
            _ => (left, right),
        };
        Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }))
    }
}

fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(v, _) => v.try_as_str().flatten(),
        _ => None,
    }
}

fn uuid_literal(s: &str) -> Result<Expr> {
    match uuid::Uuid::try_parse(s) {
        Ok(u) => Ok(Expr::Literal(
            ScalarValue::FixedSizeBinary(16, Some(u.as_bytes().to_vec())),
            None,
        )),
        Err(e) => plan_err!("not a UUID ({s:?}): {e}"),
    }
}

fn text(e: Expr) -> Expr {
    uuid_text_udf().call(vec![e])
}

/// `e` as its text while the SQL is planned ([`PlannedUuidText`]).
fn planned_text(e: Expr) -> Expr {
    planned_uuid_text_udf().call(vec![e])
}

/// The argument of `e` when `e` is [`PlannedUuidText`]'s call.
fn planned_arg(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::ScalarFunction(f) if f.func.inner().downcast_ref::<PlannedUuidText>().is_some() => {
            f.args.first()
        }
        _ => None,
    }
}

/// `e` as 16 bytes when it is a string literal (an error when the text is
/// not a UUID), else as it is.
fn literal_as_bytes(e: Expr) -> Result<Expr> {
    match string_literal(&e) {
        Some(s) => uuid_literal(s),
        None => Ok(e),
    }
}

fn from_text(e: Expr) -> Expr {
    uuid_from_text_udf().call(vec![e])
}

/// A string literal compared as text with a UUID's text: its canonical
/// form when it is a UUID (so case and braces do not matter), else as is.
fn canonical_literal(e: Expr) -> Expr {
    match string_literal(&e).and_then(|s| uuid::Uuid::try_parse(s).ok()) {
        Some(u) => Expr::Literal(ScalarValue::Utf8(Some(u.hyphenated().to_string())), None),
        None => e,
    }
}

/// An operand compared as text with a UUID's text: a UUID as its text, a
/// literal canonical.
fn text_operand(e: Expr, schema: &DFSchema) -> Expr {
    match is_uuid(&e.get_type(schema).ok()) {
        true => text(e),
        false => canonical_literal(e),
    }
}

/// Two sides of an equality (of types `lt` and `rt`) that a NULL answers
/// as a `false` would: when one is a UUID and the other text, the text
/// parsed into bytes (NULL where it is not a UUID); otherwise as they are.
fn text_side_parsed(
    l: Expr,
    lt: &Option<DataType>,
    r: Expr,
    rt: &Option<DataType>,
) -> (Expr, Expr) {
    match (is_uuid(lt), is_uuid(rt)) {
        (true, false) if is_text(rt) => (l, from_text(r)),
        (false, true) if is_text(lt) => (from_text(l), r),
        _ => (l, r),
    }
}

/// `e` (an equality that a NULL answers as a `false` would) with the text
/// side of a UUID-against-text comparison parsed into bytes. A UUID that
/// the SQL planner already gave as its text ([`UuidLiterals`]) counts as
/// the UUID.
fn uuid_equality(e: Expr, schema: &DFSchema) -> Expr {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) if string_literal(&left).is_none() && string_literal(&right).is_none() => {
            // A UUID the planner gave as its text, against other text.
            let unwrap = |side: &Expr, other: &Expr| {
                planned_arg(side)
                    .filter(|a| {
                        is_uuid(&a.get_type(schema).ok())
                            && planned_arg(other).is_none()
                            && is_text(&other.get_type(schema).ok())
                    })
                    .cloned()
            };
            let (left, right) = match (unwrap(&left, &right), unwrap(&right, &left)) {
                (Some(l), _) => (Box::new(l), right),
                (None, Some(r)) => (left, Box::new(r)),
                (None, None) => (left, right),
            };
            let (lt, rt) = (left.get_type(schema).ok(), right.get_type(schema).ok());
            let (l, r) = text_side_parsed(*left, &lt, *right, &rt);
            Expr::BinaryExpr(BinaryExpr::new(Box::new(l), Operator::Eq, Box::new(r)))
        }
        e => e,
    }
}

/// What a UUID compared by `op` with `other` (of type `other_ty`, not a
/// UUID) needs.
enum Meet {
    /// `other` replaced: a literal by its bytes, an outer query's text
    /// parsed (a correlated subquery's `e.person_id = outer.uuid`, so that
    /// decorrelation still sees `Column = f(outer)`).
    Other(Expr),
    /// The UUID compared as its text.
    UuidAsText,
    /// Nothing to do (not text).
    Nothing,
}

fn meet(op: Operator, other: &Expr, other_ty: &Option<DataType>) -> Result<Meet> {
    if let Some(s) = string_literal(other) {
        return Ok(Meet::Other(uuid_literal(s)?));
    }
    if !is_text(other_ty) {
        return Ok(Meet::Nothing);
    }
    if op == Operator::Eq && matches!(other, Expr::OuterReferenceColumn(..)) {
        return Ok(Meet::Other(from_text(other.clone())));
    }
    Ok(Meet::UuidAsText)
}

/// `exprs` with each UUID among them as its text.
fn uuids_as_text(exprs: Vec<Expr>, schema: &DFSchema) -> Vec<Expr> {
    exprs
        .into_iter()
        .map(|e| match is_uuid(&e.get_type(schema).ok()) {
            true => text(e),
            false => e,
        })
        .collect()
}

/// Each top-level conjunct of `e` through [`uuid_equality`].
fn uuid_equalities(e: Expr, schema: &DFSchema) -> Expr {
    let parts = datafusion::logical_expr::utils::split_conjunction_owned(e);
    let parts: Vec<Expr> = parts
        .into_iter()
        .map(|c| uuid_equality(c, schema))
        .collect();
    datafusion::logical_expr::utils::conjunction(parts)
        .unwrap_or(Expr::Literal(ScalarValue::Boolean(Some(true)), None))
}

/// Aggregates that only compare or count their argument: they work on the
/// bytes (and return a UUID, read as text at the output).
const BYTE_AGGREGATES: &[&str] = &[
    "count",
    "min",
    "max",
    "approx_distinct",
    "first_value",
    "last_value",
    "nth_value",
    "grouping",
];

fn is_uuid(t: &Option<DataType>) -> bool {
    t.as_ref() == Some(&UUID)
}

fn is_text(t: &Option<DataType>) -> bool {
    t.as_ref().is_some_and(DataType::is_string)
}

/// `plan` with the UUID columns that `pick` (index, field) chooses as their
/// text, under the same names.
fn as_text(plan: LogicalPlan, pick: impl Fn(usize, &Field) -> bool) -> Result<LogicalPlan> {
    let schema = Arc::clone(plan.schema());
    let picked = |i: usize, f: &Field| f.data_type() == &UUID && pick(i, f);
    if !schema.iter().enumerate().any(|(i, (_, f))| picked(i, f)) {
        return Ok(plan);
    }
    let exprs = schema
        .iter()
        .enumerate()
        .map(|(i, (q, f))| {
            let col = Expr::Column(datafusion::common::Column::new(q.cloned(), f.name()));
            match picked(i, f) {
                true => text(col).alias_qualified(q.cloned(), f.name()),
                false => col,
            }
        })
        .collect();
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(plan),
    )?))
}

fn is_comparison(op: &Operator) -> bool {
    use Operator::*;
    matches!(
        op,
        Eq | NotEq | Lt | LtEq | Gt | GtEq | IsDistinctFrom | IsNotDistinctFrom
    )
}

impl UuidSql {
    fn rewrite(&self, e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        let ty = |e: &Expr| e.get_type(schema).ok();
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_comparison(&op) => {
                let (lt, rt) = (ty(&left), ty(&right));
                // (whether the UUID is on the left, what it needs)
                let side = match (is_uuid(&lt), is_uuid(&rt)) {
                    (true, false) => Some((true, meet(op, &right, &rt)?)),
                    (false, true) => Some((false, meet(op, &left, &lt)?)),
                    _ => None,
                };
                let (l, r) = match side {
                    Some((true, Meet::Other(r))) => (*left, r),
                    Some((true, Meet::UuidAsText)) => (text(*left), *right),
                    Some((false, Meet::Other(l))) => (l, *right),
                    Some((false, Meet::UuidAsText)) => (*left, text(*right)),
                    _ => {
                        return Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                            left,
                            op,
                            right,
                        })))
                    }
                };
                Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(l),
                    op,
                    Box::new(r),
                ))))
            }
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) if is_uuid(&ty(&expr)) => {
                let literal = |v: &Expr| string_literal(v).is_some();
                let text_item = |v: &Expr| !literal(v) && is_text(&ty(v));
                if list.iter().any(text_item) {
                    // Against text: all as text, UUID literals canonical.
                    let list = list.into_iter().map(|v| text_operand(v, schema)).collect();
                    Ok(Transformed::yes(Expr::InList(InList::new(
                        Box::new(text(*expr)),
                        list,
                        negated,
                    ))))
                } else if list.iter().any(literal) {
                    // Literals among UUIDs (or alone): literals to bytes.
                    let list = list
                        .into_iter()
                        .map(literal_as_bytes)
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Transformed::yes(Expr::InList(InList::new(
                        expr, list, negated,
                    ))))
                } else {
                    Ok(Transformed::no(Expr::InList(InList::new(
                        expr, list, negated,
                    ))))
                }
            }
            // `'…' IN (person_id, …)` with only UUIDs and literals in the
            // list: all of it as bytes, as `person_id = '…'` is (text that
            // is not a UUID is an error).
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) if string_literal(&expr).is_some()
                && list.iter().any(|v| is_uuid(&ty(v)))
                && list
                    .iter()
                    .all(|v| is_uuid(&ty(v)) || string_literal(v).is_some()) =>
            {
                let list = list
                    .into_iter()
                    .map(literal_as_bytes)
                    .collect::<Result<Vec<_>>>()?;
                Ok(Transformed::yes(Expr::InList(InList::new(
                    Box::new(literal_as_bytes(*expr)?),
                    list,
                    negated,
                ))))
            }
            // `text IN (person_id, …)`: the UUIDs as text, UUID literals
            // canonical.
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) if is_text(&ty(&expr)) && list.iter().any(|v| is_uuid(&ty(v))) => {
                let list = list.into_iter().map(|v| text_operand(v, schema)).collect();
                Ok(Transformed::yes(Expr::InList(InList::new(
                    Box::new(canonical_literal(*expr)),
                    list,
                    negated,
                ))))
            }
            Expr::Between(Between {
                expr,
                negated,
                low,
                high,
            }) if is_uuid(&ty(&expr)) => {
                let literal = |e: &Expr| string_literal(e).is_some();
                let text_bound = |e: &Expr| !literal(e) && is_text(&ty(e));
                if text_bound(&low) || text_bound(&high) {
                    // Against text: the UUID as text, UUID literals canonical.
                    return Ok(Transformed::yes(Expr::Between(Between::new(
                        Box::new(text(*expr)),
                        negated,
                        Box::new(text_operand(*low, schema)),
                        Box::new(text_operand(*high, schema)),
                    ))));
                }
                let bound = |e: Box<Expr>| match string_literal(&e) {
                    Some(s) => uuid_literal(s).map(Box::new),
                    None => Ok(e),
                };
                let changed = literal(&low) || literal(&high);
                let b = Expr::Between(Between::new(expr, negated, bound(low)?, bound(high)?));
                Ok(Transformed::new_transformed(b, changed))
            }
            Expr::Case(Case {
                expr,
                when_then_expr,
                else_expr,
            }) => {
                let mut changed = false;
                // `CASE person_id WHEN '…'`: the same choice as a comparison.
                let (expr, when_then_expr) = match expr {
                    Some(base) if is_uuid(&ty(&base)) => {
                        let whens: Vec<&Expr> = when_then_expr.iter().map(|(w, _)| &**w).collect();
                        if whens.iter().all(|w| string_literal(w).is_some()) && !whens.is_empty() {
                            changed = true;
                            let wt = when_then_expr
                                .into_iter()
                                .map(|(w, t)| {
                                    let w = uuid_literal(string_literal(&w).unwrap_or_default())?;
                                    Ok((Box::new(w), t))
                                })
                                .collect::<Result<Vec<_>>>()?;
                            (Some(base), wt)
                        } else if whens.iter().any(|w| is_text(&ty(w))) {
                            changed = true;
                            let wt = when_then_expr
                                .into_iter()
                                .map(|(w, t)| (Box::new(text_operand(*w, schema)), t))
                                .collect();
                            (Some(Box::new(text(*base))), wt)
                        } else {
                            (Some(base), when_then_expr)
                        }
                    }
                    other => (other, when_then_expr),
                };
                // Branches of UUIDs and of text: the UUIDs as text.
                let results: Vec<Option<DataType>> = when_then_expr
                    .iter()
                    .map(|(_, t)| ty(t))
                    .chain(else_expr.iter().map(|e| ty(e)))
                    .collect();
                let mixed = results.iter().any(is_uuid)
                    && results.iter().any(|t| !is_uuid(t) && is_text(t));
                let branch = |e: Box<Expr>| match mixed && is_uuid(&ty(&e)) {
                    true => Box::new(text(*e)),
                    false => e,
                };
                let when_then_expr = when_then_expr
                    .into_iter()
                    .map(|(w, t)| (w, branch(t)))
                    .collect();
                let else_expr = else_expr.map(branch);
                let case = Expr::Case(Case::new(expr, when_then_expr, else_expr));
                Ok(Transformed::new_transformed(case, changed || mixed))
            }
            Expr::InSubquery(InSubquery {
                expr,
                mut subquery,
                negated,
            }) => {
                let sub = subquery
                    .subquery
                    .schema()
                    .fields()
                    .first()
                    .map(|f| f.data_type().clone());
                let et = ty(&expr);
                if is_uuid(&et) && is_text(&sub) {
                    Ok(Transformed::yes(Expr::InSubquery(InSubquery::new(
                        Box::new(text(*expr)),
                        subquery,
                        negated,
                    ))))
                } else if is_uuid(&sub) && string_literal(&expr).is_some() {
                    // `'…' IN (SELECT person_id …)`: the literal to bytes.
                    let lit = uuid_literal(string_literal(&expr).unwrap_or_default())?;
                    Ok(Transformed::yes(Expr::InSubquery(InSubquery::new(
                        Box::new(lit),
                        subquery,
                        negated,
                    ))))
                } else if is_text(&et) && is_uuid(&sub) {
                    let plan = Arc::unwrap_or_clone(subquery.subquery);
                    subquery.subquery = Arc::new(as_text(plan, |i, _| i == 0)?);
                    Ok(Transformed::yes(Expr::InSubquery(InSubquery::new(
                        expr, subquery, negated,
                    ))))
                } else {
                    Ok(Transformed::no(Expr::InSubquery(InSubquery::new(
                        expr, subquery, negated,
                    ))))
                }
            }
            Expr::AggregateFunction(mut f)
                if !BYTE_AGGREGATES.contains(&f.func.name())
                    && f.params.args.iter().any(|a| is_uuid(&ty(a))) =>
            {
                f.params.args = uuids_as_text(f.params.args, schema);
                Ok(Transformed::yes(Expr::AggregateFunction(f)))
            }
            // A RANGE frame ordered by a UUID: DataFusion only knows ranges
            // over numbers, strings and times. With UNBOUNDED and CURRENT
            // ROW bounds (the default frame of `OVER (ORDER BY …)`) a RANGE
            // frame is its peer groups: the same frame in GROUPS units.
            Expr::WindowFunction(mut w)
                if w.params.window_frame.units == WindowFrameUnits::Range
                    && w.params
                        .order_by
                        .first()
                        .is_some_and(|s| is_uuid(&ty(&s.expr))) =>
            {
                let f = &w.params.window_frame;
                let free =
                    |b: &WindowFrameBound| b.is_unbounded() || b == &WindowFrameBound::CurrentRow;
                if !(free(&f.start_bound) && free(&f.end_bound)) {
                    return plan_err!(
                        "a RANGE frame with an offset cannot be ordered by a UUID column \
                         (use ROWS or GROUPS)"
                    );
                }
                w.params.window_frame = WindowFrame::new_bounds(
                    WindowFrameUnits::Groups,
                    f.start_bound.clone(),
                    f.end_bound.clone(),
                );
                Ok(Transformed::yes(Expr::WindowFunction(w)))
            }
            Expr::Cast(Cast { expr, field })
                if is_uuid(&ty(&expr)) && field.data_type().is_string() =>
            {
                Ok(Transformed::yes(Expr::Cast(Cast {
                    expr: Box::new(text(*expr)),
                    field,
                })))
            }
            Expr::TryCast(TryCast { expr, field })
                if is_uuid(&ty(&expr)) && field.data_type().is_string() =>
            {
                Ok(Transformed::yes(Expr::TryCast(TryCast {
                    expr: Box::new(text(*expr)),
                    field,
                })))
            }
            Expr::Like(mut l) if is_uuid(&ty(&l.expr)) => {
                l.expr = Box::new(text(*l.expr));
                Ok(Transformed::yes(Expr::Like(l)))
            }
            Expr::SimilarTo(mut l) if is_uuid(&ty(&l.expr)) => {
                l.expr = Box::new(text(*l.expr));
                Ok(Transformed::yes(Expr::SimilarTo(Like { ..l })))
            }
            // The planner's text of a UUID: `uuid_text`, or the argument
            // itself where it has become text.
            Expr::ScalarFunction(f)
                if f.func.inner().downcast_ref::<PlannedUuidText>().is_some() =>
            {
                match f.args.into_iter().next() {
                    Some(a) if is_uuid(&ty(&a)) => Ok(Transformed::yes(text(a))),
                    Some(a) => Ok(Transformed::yes(a)),
                    None => plan_err!("planned_uuid_text without its argument"),
                }
            }
            // Functions see text (`concat(person_id, …)`, `length`, …).
            Expr::ScalarFunction(mut f)
                if !matches!(f.name(), "uuid_text" | "uuid_from_text")
                    && f.args.iter().any(|a| is_uuid(&ty(a))) =>
            {
                f.args = uuids_as_text(f.args, schema);
                Ok(Transformed::yes(Expr::ScalarFunction(f)))
            }
            e => Ok(Transformed::no(e)),
        }
    }

    /// Plan-level meetings of UUIDs and text: join keys, `UNION` inputs,
    /// the rows a `COPY` writes.
    fn fix_plan(plan: LogicalPlan) -> Result<LogicalPlan> {
        match plan {
            LogicalPlan::Join(mut j) => {
                let (ls, rs) = (Arc::clone(j.left.schema()), Arc::clone(j.right.schema()));
                let nulls_match = j.null_equality == NullEquality::NullEqualsNull;
                j.on =
                    j.on.into_iter()
                        .map(|(l, r)| {
                            let (lt, rt) = (l.get_type(&ls).ok(), r.get_type(&rs).ok());
                            if nulls_match {
                                // `INTERSECT` / `EXCEPT` (NULL matches
                                // NULL): text that is not a UUID must not
                                // become a NULL that matches; compared as
                                // text, as a `UNION` of the two is.
                                return match (is_uuid(&lt), is_uuid(&rt)) {
                                    (true, false) if is_text(&rt) => (text(l), r),
                                    (false, true) if is_text(&lt) => (l, text(r)),
                                    _ => (l, r),
                                };
                            }
                            // Join keys: a NULL matches nothing, as text
                            // that is not a UUID would; bytes stay bytes.
                            text_side_parsed(l, &lt, r, &rt)
                        })
                        .collect();
                Ok(LogicalPlan::Join(Join { ..j }))
            }
            LogicalPlan::Union(u) => {
                let width = u.schema.fields().len();
                let types = |i: usize| {
                    u.inputs
                        .iter()
                        .filter_map(move |p| p.schema().fields().get(i).map(|f| f.data_type()))
                };
                let mixed: Vec<bool> = (0..width)
                    .map(|i| types(i).any(|t| t == &UUID) && types(i).any(|t| t.is_string()))
                    .collect();
                if !mixed.contains(&true) {
                    // Inputs whose types changed alike (a UUID branch now
                    // text everywhere): the schema follows them.
                    let stale = u.inputs.iter().any(|p| {
                        p.schema()
                            .fields()
                            .iter()
                            .zip(u.schema.fields())
                            .any(|(a, b)| a.data_type() != b.data_type())
                    });
                    return Ok(LogicalPlan::Union(match stale {
                        true => Union::try_new_with_loose_types(u.inputs)?,
                        false => u,
                    }));
                }
                let inputs = u
                    .inputs
                    .into_iter()
                    .map(|p| {
                        as_text(Arc::unwrap_or_clone(p), |i, _| {
                            mixed.get(i).copied().unwrap_or(false)
                        })
                        .map(Arc::new)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(LogicalPlan::Union(Union::try_new_with_loose_types(inputs)?))
            }
            LogicalPlan::Copy(c) => {
                let input = as_text(Arc::unwrap_or_clone(c.input), |_, _| true)?;
                Ok(LogicalPlan::Copy(CopyTo {
                    input: Arc::new(input),
                    ..c
                }))
            }
            p => Ok(p),
        }
    }

    /// The statement's output with its UUID columns as text.
    fn output_as_text(plan: LogicalPlan) -> Result<LogicalPlan> {
        let query = !matches!(
            plan,
            LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::DescribeTable(_)
        );
        match query {
            true => as_text(plan, |_, _| true),
            false => Ok(plan),
        }
    }
}

impl AnalyzerRule for UuidSql {
    fn name(&self) -> &str {
        "uuid_sql"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        let plan = plan
            .transform_up_with_subqueries(|p| {
                let schema = merge_schema(&p.inputs());
                // Equalities of UUIDs with text at the top of a filter or a
                // join condition compare bytes (see `uuid_equality`).
                let p = match p {
                    LogicalPlan::Filter(mut f) => {
                        f.predicate = uuid_equalities(f.predicate, &schema);
                        LogicalPlan::Filter(f)
                    }
                    LogicalPlan::Join(mut j) => {
                        j.filter = j.filter.map(|f| uuid_equalities(f, &schema));
                        LogicalPlan::Join(j)
                    }
                    p => p,
                };
                // Rewritten expressions keep their names: nodes above refer
                // to them by name (`GROUP BY 1`, an aggregate's output).
                let names = NamePreserver::new(&p);
                let p = p
                    .map_expressions(|e| {
                        // Grouping sets are left as they are: an alias
                        // around one would unmake it.
                        if matches!(e, Expr::GroupingSet(_)) {
                            return Ok(Transformed::no(e));
                        }
                        let name = names.save(&e);
                        e.transform_up(|e| self.rewrite(e, &schema))
                            .map(|t| t.update_data(|e| name.restore(e)))
                    })?
                    .data;
                // Children may have changed types (a UUID now text): the
                // node's schema follows, as type coercion does.
                Ok(Transformed::yes(Self::fix_plan(p)?.recompute_schema()?))
            })
            .data()?;
        Self::output_as_text(plan)
    }
}

#[cfg(test)]
mod tests;
