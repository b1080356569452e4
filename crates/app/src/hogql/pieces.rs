//! Pieces of HogQL given one at a time, as PostHog's `EventsQuery` takes
//! them (`select`, `where` and `orderBy` are lists of expressions): each is
//! parsed alone, as the only expression (or ordering) of a query that
//! holds nothing else, with the same bounds as a whole query
//! ([`super::parse_one`]), and given back as the parser prints it.
//!
//! Invariant: a piece is exactly one expression. The statement it was
//! parsed in must print as nothing but that expression (so a clause the
//! parser read after it, `INTO t`, `|> WHERE …`, is refused, not
//! dropped), and the printed text must parse again to itself: a literal
//! the parser prints without its escapes (`X'''…'`) would otherwise end
//! early in the query a caller builds and let the rest of the piece out
//! of its place. A caller puts each piece in parentheses.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr, Statement, Visit, Visitor};

use super::{parse_one, refused};
use crate::error::{AppError, Result};
use elide_query::sql_depth;

/// Aggregate functions (lower case): HogQL's and DataFusion's. A piece
/// calling one outside a subquery aggregates (PostHog's
/// `has_aggregation`).
const AGGREGATES: &[&str] = &[
    "count",
    "countif",
    "countdistinct",
    "sum",
    "sumif",
    "avg",
    "avgif",
    "min",
    "minif",
    "max",
    "maxif",
    "uniq",
    "uniqexact",
    "uniqif",
    "uniqexactif",
    "any",
    "anylast",
    "any_value",
    "argmax",
    "argmin",
    "grouparray",
    "groupuniqarray",
    "median",
    "quantile",
    "quantiles",
    "quantileexact",
    "quantiletdigest",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "stddevpop",
    "stddevsamp",
    "var",
    "var_pop",
    "var_samp",
    "variance",
    "varpop",
    "varsamp",
    "covar",
    "covar_pop",
    "covar_samp",
    "corr",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "percentile_cont",
    "first_value",
    "last_value",
    "nth_value",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "bit_and",
    "bit_or",
    "bit_xor",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "grouping",
];

/// One expression: its text as printed, and whether it aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The expression, as the parser prints it (comments dropped).
    pub text: String,
    /// Its `AS` name, if it has one (a column's only).
    pub alias: Option<String>,
    /// Whether it calls an aggregate function outside a subquery.
    pub aggregates: bool,
    /// Whether, outside a subquery, it calls a window function (`… OVER
    /// (…)`) or one that returns a set of rows (`unnest`, `arrayJoin`):
    /// its rows then depend on other rows than its own, so a caller
    /// cannot narrow the rows it reads by its own ordering first.
    pub spans_rows: bool,
}

fn query_of(sql: &str, what: &str) -> Result<Box<ast::Query>> {
    // The error names the piece's list (`where: send one statement…`).
    let parsed = sql_depth::on_parse_stack(|| parse_one(sql)).map_err(|e| match e {
        AppError::InvalidQuery(m) => refused(format!("{what}: {m}")),
        other => other,
    })?;
    match parsed {
        Statement::Query(q) => Ok(q),
        _ => Err(refused(format!("{what} is not one expression"))),
    }
}

/// The only item of `q`'s `SELECT`, if `q` prints as `SELECT <item>`
/// and nothing else.
fn only_item(q: &ast::Query) -> Option<&SelectItem> {
    let SetExpr::Select(s) = &*q.body else {
        return None;
    };
    let item = match s.projection.as_slice() {
        [item] => item,
        _ => return None,
    };
    (q.to_string() == format!("SELECT {item}")).then_some(item)
}

/// `piece` once: its expression and alias.
fn expression_once(piece: &str, what: &str) -> Result<(Expr, Option<ast::Ident>)> {
    let q = query_of(&format!("SELECT {piece}\n"), what)?;
    match only_item(&q) {
        Some(SelectItem::UnnamedExpr(e)) => Ok((e.clone(), None)),
        Some(SelectItem::ExprWithAlias { expr, alias }) => Ok((expr.clone(), Some(alias.clone()))),
        _ => Err(refused(format!("{what} {piece:?} is not one expression"))),
    }
}

/// `piece` as one HogQL expression (`what` names it in errors).
pub fn expression(piece: &str, what: &str) -> Result<Piece> {
    let (e, alias) = expression_once(piece, what)?;
    let text = e.to_string();
    // The printed text parses to itself, alone.
    match expression_once(&text, what) {
        Ok((again, None)) if again.to_string() == text => {}
        _ => {
            return Err(refused(format!(
                "{what} {piece:?} does not read back as the same expression (a literal Elide cannot quote: use '…' strings)"
            )))
        }
    }
    let found = calls(&e);
    Ok(Piece {
        text,
        alias: alias.map(|a| a.value),
        aggregates: found.aggregates,
        spans_rows: found.spans_rows,
    })
}

/// `piece` as one ordering (`expression [ASC|DESC]`): its text is the
/// whole ordering, direction included.
pub fn ordering(piece: &str, what: &str) -> Result<Piece> {
    let once = |p: &str| -> Result<(String, Calls)> {
        let q = query_of(&format!("SELECT 1 ORDER BY {p}\n"), what)?;
        let one = match &q.order_by {
            Some(ast::OrderBy {
                kind: ast::OrderByKind::Expressions(list),
                interpolate: None,
            }) if list.len() == 1 => Some((list[0].to_string(), calls(&list[0].expr))),
            _ => None,
        };
        match one {
            Some((o, found)) if q.to_string() == format!("SELECT 1 ORDER BY {o}") => Ok((o, found)),
            _ => Err(refused(format!("{what} {piece:?} is not one ordering"))),
        }
    };
    let (text, found) = once(piece)?;
    match once(&text) {
        Ok((again, _)) if again == text => Ok(Piece {
            text,
            alias: None,
            aggregates: found.aggregates,
            spans_rows: found.spans_rows,
        }),
        _ => Err(refused(format!(
            "{what} {piece:?} does not read back as the same ordering (a literal Elide cannot quote: use '…' strings)"
        ))),
    }
}

/// Set-returning functions (lower case): a row of the input may give
/// none or several rows.
const SET_RETURNING: &[&str] = &["unnest", "arrayjoin", "array_join"];

/// Finds aggregate, window and set-returning calls outside subqueries.
#[derive(Default)]
struct Calls {
    depth: usize,
    aggregates: bool,
    spans_rows: bool,
}

impl Visitor for Calls {
    type Break = ();

    fn pre_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase())
                .unwrap_or_default();
            if self.depth == 0 {
                if f.over.is_some() || SET_RETURNING.contains(&name.as_str()) {
                    self.spans_rows = true;
                } else if AGGREGATES.contains(&name.as_str()) {
                    self.aggregates = true;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// What `e` calls outside a subquery.
fn calls(e: &Expr) -> Calls {
    let mut v = Calls::default();
    let _ = e.visit(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_one_expression_each() {
        let p = expression(
            "coalesce(properties.$current_url, properties.$screen_name) -- Url / Screen",
            "select",
        )
        .expect("a column");
        assert_eq!(
            p.text,
            "coalesce(properties.$current_url, properties.$screen_name)"
        );
        assert!(!p.aggregates);
        assert!(expression("count()", "select").expect("count").aggregates);
        assert!(
            expression("\"count\"()", "select")
                .expect("quoted")
                .aggregates
        );
        assert!(
            expression("sumIf(1, event = 'a') + 1", "select")
                .expect("sum")
                .aggregates
        );
        assert!(
            expression("stddev_pop(1)", "select")
                .expect("df")
                .aggregates
        );
        assert!(
            !expression("countries", "select")
                .expect("a name")
                .aggregates
        );
        // An aggregate inside a subquery does not make the piece one.
        assert!(
            !expression(
                "distinct_id IN (SELECT distinct_id FROM events GROUP BY 1 HAVING count() > 1)",
                "where"
            )
            .expect("a subquery")
            .aggregates
        );
        let e = expression("event AS e", "select").expect("alias");
        assert_eq!((e.text.as_str(), e.alias.as_deref()), ("event", Some("e")));
        for bad in [
            "event FROM events UNION SELECT uuid",
            "1; DROP TABLE x",
            "event, uuid",
            "event WHERE 1",
            "",
            "event ORDER BY 1",
            "(",
            "event INTO t",
            "event LIMIT 1",
            // Literals printed without their escapes: each would end
            // early in a query built around it.
            "X''' AS c0, properties AS c1 FROM persons --'",
            "N'a'' FROM persons --'",
            "B'a'' FROM persons --'",
        ] {
            assert!(expression(bad, "select").is_err(), "{bad:?}");
        }
        assert_eq!(
            ordering("timestamp DESC", "orderBy").expect("desc").text,
            "timestamp DESC"
        );
        let count = ordering("count()", "orderBy").expect("plain");
        assert_eq!((count.text.as_str(), count.aggregates), ("count()", true));
        let window = ordering("count() OVER (PARTITION BY event) DESC", "orderBy").expect("window");
        assert!(window.spans_rows && !window.aggregates);
        for bad in [
            "timestamp DESC, event",
            "1 LIMIT 5",
            "x) FROM t --",
            "X''' DESC, 1 FROM persons --'",
        ] {
            assert!(ordering(bad, "orderBy").is_err(), "{bad:?}");
        }
        // Nesting past the bounds is refused.
        let deep = vec!["1"; 3000].join(" + ");
        assert!(expression(&deep, "where").is_err());
    }
}
