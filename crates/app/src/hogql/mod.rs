//! HogQL, the forms PostHog users' scripts use most, on DataFusion's SQL.
//!
//! A query is parsed once (sqlparser, the parser DataFusion uses), the
//! parsed statement is rewritten, and the rewritten statement is planned
//! by DataFusion: no text is ever substituted into SQL. What is rewritten:
//!
//! | HogQL | becomes |
//! |---|---|
//! | `properties.$browser`, `properties['$browser']`, `e.properties.a.b` | `json_as_text(properties, '$browser')` (strings bare, other values as JSON text, missing → NULL) |
//! | `person.properties.email` (also `e.person.properties…`) | `elide_person_property(distinct_id, 'email')`: the properties of the event's person now |
//! | `person_id` (also `e.person_id`) | itself, which the runner then reads as the person that owns the event's distinct id now (PostHog's person overrides), else the UUID the event carries |
//! | `count()` | `count(*)` |
//! | `countIf(c)`, `sumIf(x, c)`, `avgIf(x, c)`, `minIf`, `maxIf` | the aggregate with `FILTER (WHERE c)` |
//! | `uniq(x)`, `uniqExact(x)` | `count(DISTINCT x)` (exact) |
//! | `toDate(x)`, `toString(x)`, `toInt(x)`, `toFloat(x)`, `toDateTime(x)` | casts |
//! | `toStartOfMinute/Hour/Day(x)` | `date_trunc(unit, x)` (a time) |
//! | `toStartOfMonth/Quarter/Year(x)` | `date_trunc(unit, x)` as a `DATE`, as ClickHouse's |
//! | `toStartOfWeek(x[, mode])` (an even mode or none: from Sunday; odd: from Monday, as ClickHouse's), `toMonday(x)` | `date_trunc('week', …)` shifted, as a `DATE` |
//! | `today()`, `yesterday()` | `current_date()`, minus a day |
//! | `dateDiff(unit, a, b)` | `elide_date_diff` (ClickHouse: boundaries crossed, UTC) |
//! | `JSONExtractString/Int/Float/Bool/Raw(j, k…)`, `JSONHas(j, k)` | `json_get_*`, `''`/`0`/`false` when missing (ClickHouse's defaults) |
//! | `if`, `multiIf`, `ifNull`, `match`, `like`…, `startsWith`, `position`, `empty`, `toYear`…, `toDayOfWeek`, `toUnixTimestamp`, `dateAdd`/`dateSub`, `toTimeZone(t, 'UTC')`, `argMax`, `groupArray`, `countDistinct`, `uniqIf`, … | DataFusion's forms of the same (docs/api.md lists each) |
//!
//! `now()` and the rest are DataFusion's own. Only one `SELECT` (or
//! `WITH … SELECT`, `UNION`, `VALUES`) statement is accepted; the caller
//! plans it with DDL, DML and statements disallowed.
//!
//! ClickHouse's function calls are rewritten in `calls`; the functions the
//! rewrite calls are in [`functions`].

mod calls;
pub mod functions;
pub mod pieces;

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use elide_query::sql_depth;

use crate::error::{AppError, Result};

/// Longest HogQL text accepted (characters).
pub const MAX_QUERY_LEN: usize = 100_000;

/// A parsed and rewritten query.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The statement to plan.
    pub statement: Statement,
    /// Whether it reads the event's person (`person.properties…`): the
    /// runner then loads each distinct id's person properties.
    pub uses_person: bool,
    /// Whether it names a `person_id` column: the runner then gives
    /// `events.person_id` the person that owns the event's distinct id
    /// now, as PostHog applies its person overrides.
    pub uses_person_id: bool,
    /// Whether the outermost query has its own `LIMIT`.
    pub has_limit: bool,
}

fn refused(msg: impl Into<String>) -> AppError {
    AppError::InvalidQuery(msg.into())
}

/// Parse `sql` and rewrite its HogQL forms. Anything but one query is
/// refused.
pub fn rewrite(sql: &str) -> Result<Rewritten> {
    let statement = sql_depth::on_parse_stack(|| parse_one(sql))?;
    let Statement::Query(query) = statement else {
        return Err(refused(
            "only SELECT queries are accepted: the query endpoint is read-only",
        ));
    };
    let has_limit = query.limit_clause.is_some() || query.fetch.is_some();
    let names = output_names(&query.body);
    let mut statement = Statement::Query(query);
    let mut uses = Uses::default();
    let mut error: Option<AppError> = None;
    let _ = ast::visit_expressions_mut(&mut statement, |e| match rewrite_expr(e, &mut uses) {
        Ok(()) => ControlFlow::Continue(()),
        Err(err) => {
            error = Some(err);
            ControlFlow::Break(())
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if let Statement::Query(q) = &mut statement {
        keep_output_names(&mut q.body, &names);
    }
    Ok(Rewritten {
        statement,
        uses_person: uses.person,
        uses_person_id: uses.person_id,
        has_limit,
    })
}

/// The one statement of `sql`, if its expressions nest at most
/// [`sql_depth::MAX_EXPR_DEPTH`] deep. Whatever is refused is dropped
/// here, on the caller's stack (the parse stack, see [`sql_depth`]): a
/// parse that fails half way drops what it built too.
fn parse_one(sql: &str) -> Result<Statement> {
    if sql.chars().count() > MAX_QUERY_LEN {
        return Err(refused(format!(
            "the query is longer than {MAX_QUERY_LEN} characters"
        )));
    }
    if sql_depth::doubling_call_depth(sql).is_some_and(|d| d > sql_depth::MAX_DOUBLING_CALLS) {
        return Err(refused(sql_depth::doubling_calls_message()));
    }
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| refused(format!("syntax error: {e}")))?;
    if sql_depth::too_deep(&statements) {
        return Err(refused(sql_depth::too_deep_message()));
    }
    match (statements.pop(), statements.is_empty()) {
        (Some(s), true) => Ok(s),
        (None, _) => Err(refused("the query is empty")),
        (Some(_), false) => Err(refused("send one statement per query")),
    }
}

/// The text of each unaliased output expression of the outermost
/// `SELECT` (the first of a set operation), before rewriting.
fn output_names(body: &ast::SetExpr) -> Vec<Option<String>> {
    match body {
        ast::SetExpr::Select(s) => s
            .projection
            .iter()
            .map(|item| match item {
                ast::SelectItem::UnnamedExpr(e) => Some(e.to_string()),
                _ => None,
            })
            .collect(),
        ast::SetExpr::SetOperation { left, .. } => output_names(left),
        ast::SetExpr::Query(q) => output_names(&q.body),
        _ => Vec::new(),
    }
}

/// Name the outermost output columns whose expression a rewrite changed
/// after the HogQL the user wrote (`count()`, `properties.$browser`), not
/// after the rewritten form.
fn keep_output_names(body: &mut ast::SetExpr, names: &[Option<String>]) {
    match body {
        ast::SetExpr::Select(s) => {
            for (item, name) in s.projection.iter_mut().zip(names) {
                if let (ast::SelectItem::UnnamedExpr(e), Some(name)) = (&*item, name) {
                    if e.to_string() != *name {
                        *item = ast::SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: Ident::with_quote('"', name.clone()),
                        };
                    }
                }
            }
        }
        ast::SetExpr::SetOperation { left, .. } => keep_output_names(left, names),
        ast::SetExpr::Query(q) => keep_output_names(&mut q.body, names),
        _ => {}
    }
}

/// What a query reads of the event's person.
#[derive(Debug, Default)]
struct Uses {
    /// `person.properties…`.
    person: bool,
    /// A `person_id` column.
    person_id: bool,
}

/// Rewrite one expression in place (its children are rewritten already:
/// the visitor calls this after them).
fn rewrite_expr(e: &mut Expr, uses: &mut Uses) -> Result<()> {
    let replacement = match e {
        Expr::Identifier(i) => {
            uses.person_id |= is(i, "person_id");
            None
        }
        Expr::CompoundIdentifier(parts) => {
            // A property named `person_id` is a property, not the column.
            let property = parts.iter().any(|p| is(p, "properties"));
            if !property && parts.last().is_some_and(|p| is(p, "person_id")) {
                uses.person_id = true;
            }
            property_access(parts, &mut uses.person)
        }
        Expr::CompoundFieldAccess { root, access_chain } => {
            // `e.person.properties['plan']` parses as `e` then a chain of
            // dots and subscripts: flatten it to names.
            let mut parts: Vec<Ident> = match root.as_ref() {
                Expr::Identifier(i) => vec![i.clone()],
                Expr::CompoundIdentifier(p) => p.clone(),
                _ => return Ok(()),
            };
            for a in access_chain.iter() {
                match a {
                    ast::AccessExpr::Dot(Expr::Identifier(i)) => parts.push(i.clone()),
                    ast::AccessExpr::Subscript(ast::Subscript::Index { index }) => {
                        match string_literal(index) {
                            Some(k) => parts.push(Ident::with_quote('\'', k)),
                            None => return Ok(()),
                        }
                    }
                    _ => return Ok(()),
                }
            }
            property_access(&parts, &mut uses.person)
        }
        Expr::Function(f) => calls::function(f)?,
        // `POSITION(needle IN s)` counts bytes too, as ClickHouse's.
        Expr::Position { expr, r#in } => Some(call(
            functions::POSITION,
            vec![r#in.as_ref().clone(), expr.as_ref().clone()],
        )),
        Expr::BinaryOp { left, op, right } if is_comparison(op) => {
            typed_comparison(left, right);
            typed_comparison(right, left);
            None
        }
        _ => None,
    };
    if let Some(r) = replacement {
        *e = r;
    }
    Ok(())
}

fn is_comparison(op: &ast::BinaryOperator) -> bool {
    use ast::BinaryOperator::*;
    matches!(op, Eq | NotEq | Gt | Lt | GtEq | LtEq)
}

/// A property read (`properties.x`, `person.properties.x`: text) compared
/// with a number is read as a number (`TRY_CAST(… AS DOUBLE)`, NULL when it
/// is none), as PostHog types a numeric property; compared with `true` or
/// `false`, the literal becomes its JSON text. Without this, the text was
/// cast strictly to the literal's type and one value such as `9.99` or
/// `"n/a"` failed the whole query.
fn typed_comparison(property: &mut Expr, other: &mut Expr) {
    let is_property = matches!(&*property, Expr::Function(f)
        if matches!(f.name.to_string().as_str(), "json_as_text" | functions::PERSON_PROPERTY));
    if !is_property {
        return;
    }
    let number = |e: &Expr| match e {
        Expr::Value(v) => matches!(v.value, Value::Number(..)),
        Expr::UnaryOp { op, expr } => {
            matches!(op, ast::UnaryOperator::Minus | ast::UnaryOperator::Plus)
                && matches!(&**expr, Expr::Value(v) if matches!(v.value, Value::Number(..)))
        }
        _ => false,
    };
    if number(other) {
        *property = Expr::Cast {
            kind: ast::CastKind::TryCast,
            expr: Box::new(property.clone()),
            data_type: ast::DataType::Double(ast::ExactNumberInfo::None),
            array: false,
            format: None,
        };
    } else if let Expr::Value(v) = other {
        if let Value::Boolean(b) = v.value {
            v.value = Value::SingleQuotedString(b.to_string());
        }
    }
}

/// A positive integer literal `n` becomes `n - 1`, and `0` (no element in
/// ClickHouse) an index past any array (the JSON functions take no NULL
/// there); any other expression is left as it is.
fn one_based_index(e: &mut Expr) {
    let Expr::Value(v) = e else {
        return;
    };
    let Value::Number(n, long) = &v.value else {
        return;
    };
    match n.parse::<i64>() {
        Ok(0) => v.value = Value::Number(i64::MAX.to_string(), *long),
        Ok(k) if k > 0 => v.value = Value::Number((k - 1).to_string(), *long),
        _ => {}
    }
}

fn string_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `ident` is the name `name` (a quoted key is never a name).
fn is(ident: &Ident, name: &str) -> bool {
    ident.quote_style != Some('\'') && ident.value.eq_ignore_ascii_case(name)
}

/// `[q.]properties.k…` and `[q.]person.properties.k…`: the property
/// read, or `None` when `parts` is no property access.
fn property_access(parts: &[Ident], uses_person: &mut bool) -> Option<Expr> {
    let at = parts.iter().position(|p| is(p, "properties"))?;
    let keys: Vec<String> = parts[at + 1..].iter().map(|i| i.value.clone()).collect();
    if at >= 1 && is(&parts[at - 1], "person") {
        // The event's person: through its distinct id.
        let mut id = parts[..at - 1].to_vec();
        id.push(Ident::new("distinct_id"));
        let id = if id.len() == 1 {
            Expr::Identifier(id.remove(0))
        } else {
            Expr::CompoundIdentifier(id)
        };
        *uses_person = true;
        let mut args = vec![id];
        args.extend(keys.into_iter().map(literal));
        return Some(call(functions::PERSON_PROPERTY, args));
    }
    if keys.is_empty() || at > 1 {
        // `e.properties` is the column itself; deeper qualifiers are not
        // HogQL's.
        return None;
    }
    let column = if at == 0 {
        Expr::Identifier(parts[0].clone())
    } else {
        Expr::CompoundIdentifier(parts[..=at].to_vec())
    };
    let mut args = vec![column];
    args.extend(keys.into_iter().map(literal));
    Some(call("json_as_text", args))
}

fn literal(s: String) -> Expr {
    Expr::value(Value::SingleQuotedString(s))
}

fn list(args: Vec<FunctionArg>) -> FunctionArguments {
    FunctionArguments::List(FunctionArgumentList {
        duplicate_treatment: None,
        args,
        clauses: Vec::new(),
    })
}

fn unnamed(e: Expr) -> FunctionArg {
    FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
}

/// A call of `name` on `args`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: list(args.into_iter().map(unnamed).collect()),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// `template` (our own SQL, never the user's) parsed, with `__x0`,
/// `__x1`, … replaced by `args`.
fn template(template: &str, args: Vec<Expr>) -> Result<Expr> {
    let mut e = Parser::new(&GenericDialect {})
        .try_with_sql(template)
        .and_then(|mut p| p.parse_expr())
        .map_err(|err| AppError::InvalidQuery(format!("internal template {template}: {err}")))?;
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if let Expr::Identifier(i) = x {
            if let Some(n) = i
                .value
                .strip_prefix("__x")
                .and_then(|n| n.parse::<usize>().ok())
            {
                if let Some(a) = args.get(n) {
                    *x = a.clone();
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(e)
}

/// The plain positional arguments of a call (`None` when there are
/// other kinds: named, wildcards, a subquery).
fn plain_args(f: &ast::Function) -> Option<Vec<Expr>> {
    match &f.args {
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::Subquery(_) => None,
        FunctionArguments::List(l) => {
            if l.duplicate_treatment.is_some() || !l.clauses.is_empty() {
                return None;
            }
            l.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                })
                .collect()
        }
    }
}

fn arity(name: &str, args: &[Expr], n: std::ops::RangeInclusive<usize>) -> Result<()> {
    if n.contains(&args.len()) {
        Ok(())
    } else if n.start() == n.end() {
        Err(refused(format!(
            "{name} takes {} argument(s), got {}",
            n.start(),
            args.len()
        )))
    } else {
        Err(refused(format!(
            "{name} takes {} to {} arguments, got {}",
            n.start(),
            n.end(),
            args.len()
        )))
    }
}

#[cfg(test)]
mod tests;
