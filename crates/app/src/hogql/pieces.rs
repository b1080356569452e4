//! Pieces of HogQL given one at a time, as PostHog's `EventsQuery` takes
//! them (`select`, `where` and `orderBy` are lists of expressions): each is
//! parsed alone, as the only expression (or ordering) of a query that
//! holds nothing else, with the same bounds as a whole query
//! ([`super::parse_one`]), and given back as the parser prints it. A piece
//! is therefore exactly one expression: text that would close it and go
//! on (`x FROM t UNION SELECT y`, a second statement) is refused, and what
//! a caller builds from the pieces parses to what each piece said.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr, Statement};

use super::{parse_one, refused, MAX_QUERY_LEN};
use crate::error::Result;
use elide_query::sql_depth;

/// HogQL's aggregate functions (lower case): a piece calling one
/// aggregates (PostHog's `has_aggregation`).
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
    "any",
    "anylast",
    "argmax",
    "argmin",
    "grouparray",
    "groupuniqarray",
    "median",
    "quantile",
    "quantiles",
    "stddevpop",
    "stddevsamp",
    "varpop",
    "varsamp",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
];

/// One expression: its text as printed, and whether it aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The expression, as the parser prints it (comments dropped).
    pub text: String,
    /// Whether it calls an aggregate function.
    pub aggregates: bool,
}

fn query_of(sql: &str, what: &str) -> Result<Box<ast::Query>> {
    if sql.chars().count() > MAX_QUERY_LEN {
        return Err(refused(format!(
            "{what} is longer than {MAX_QUERY_LEN} characters"
        )));
    }
    // The error names the piece's list (`where: send one statement…`).
    let parsed = sql_depth::on_parse_stack(|| parse_one(sql)).map_err(|e| match e {
        crate::error::AppError::InvalidQuery(m) => refused(format!("{what}: {m}")),
        other => other,
    })?;
    match parsed {
        Statement::Query(q) => Ok(q),
        _ => Err(refused(format!("{what} is not one expression"))),
    }
}

/// The only item of a `SELECT` that holds nothing else.
fn only_item(q: &ast::Query) -> Option<&SelectItem> {
    let SetExpr::Select(s) = &*q.body else {
        return None;
    };
    let bare = q.with.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && s.from.is_empty()
        && s.selection.is_none()
        && s.having.is_none()
        && s.distinct.is_none()
        && s.named_window.is_empty()
        && s.qualify.is_none()
        && matches!(&s.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    (bare && s.projection.len() == 1).then(|| &s.projection[0])
}

/// `piece` as one HogQL expression (`what` names it in errors).
pub fn expression(piece: &str, what: &str) -> Result<Piece> {
    let q = query_of(&format!("SELECT {piece}\n"), what)?;
    if q.order_by.is_some() {
        return Err(refused(format!("{what} {piece:?} is not one expression")));
    }
    match only_item(&q) {
        Some(SelectItem::UnnamedExpr(e)) => Ok(Piece {
            text: e.to_string(),
            aggregates: aggregates(e),
        }),
        Some(SelectItem::ExprWithAlias { expr, alias }) => Ok(Piece {
            text: format!("{expr} AS {alias}"),
            aggregates: aggregates(expr),
        }),
        _ => Err(refused(format!("{what} {piece:?} is not one expression"))),
    }
}

/// `piece` as one ordering (`expression [ASC|DESC]`).
pub fn ordering(piece: &str, what: &str) -> Result<String> {
    let q = query_of(&format!("SELECT 1 ORDER BY {piece}\n"), what)?;
    let one = match &q.order_by {
        Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(list),
            interpolate: None,
        }) if list.len() == 1 => Some(list[0].to_string()),
        _ => None,
    };
    match (only_item(&q), one) {
        (Some(SelectItem::UnnamedExpr(_)), Some(o)) => Ok(o),
        _ => Err(refused(format!("{what} {piece:?} is not one ordering"))),
    }
}

/// Whether `e` calls an aggregate function (or counts with `count(*)`).
fn aggregates(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if let Expr::Function(f) = x {
            let name = f.name.to_string().to_ascii_lowercase();
            if AGGREGATES.contains(&name.as_str()) && f.over.is_none() {
                found = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    found
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
            expression("sumIf(1, event = 'a') + 1", "select")
                .expect("sum")
                .aggregates
        );
        assert!(
            !expression("countries", "select")
                .expect("a name")
                .aggregates
        );
        assert_eq!(
            expression("event AS e", "select").expect("alias").text,
            "event AS e"
        );
        for bad in [
            "event FROM events UNION SELECT uuid",
            "1; DROP TABLE x",
            "event, uuid",
            "event WHERE 1",
            "",
            "event ORDER BY 1",
            "(",
        ] {
            assert!(expression(bad, "select").is_err(), "{bad:?}");
        }
        assert_eq!(
            ordering("timestamp DESC", "orderBy").expect("desc"),
            "timestamp DESC"
        );
        assert_eq!(ordering("count()", "orderBy").expect("plain"), "count()");
        for bad in ["timestamp DESC, event", "1 LIMIT 5", "x) FROM t --"] {
            assert!(ordering(bad, "orderBy").is_err(), "{bad:?}");
        }
        // Nesting past the bounds is refused before it is parsed deeply.
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(expression(&deep, "where").is_err());
    }
}
