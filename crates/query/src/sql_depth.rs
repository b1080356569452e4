//! How deep user SQL may nest its expressions, and parsing it safely.
//!
//! sqlparser bounds its own recursion (50 levels of parentheses, calls,
//! subqueries), but it builds a chain of binary operators (`a + b + …`,
//! `x OR y OR …`) in a loop: a query of 100 000 characters can nest
//! ~50 000 levels. Planning, evaluating, cloning, printing and dropping an
//! expression recurse once per level, and a chain of ~2 000 overflowed a
//! 2 MiB thread stack: the process aborted (a server, for every client).
//!
//! So a statement is parsed on a stack of its own ([`on_parse_stack`]),
//! its depth measured there ([`too_deep`], a visit that stops at the first
//! level past [`MAX_EXPR_DEPTH`]), and a statement refused is dropped there
//! too. What passes nests at most [`MAX_EXPR_DEPTH`] levels, which the
//! threads that plan and run queries must hold: the server's query threads
//! have 16 MiB stacks, as have the command line's.

use std::ops::ControlFlow;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Visit, Visitor};

/// Deepest nesting of expressions accepted (ClickHouse's default
/// `max_ast_depth`).
pub const MAX_EXPR_DEPTH: usize = 1000;

/// Most tables (each `FROM` item and each joined one, subqueries
/// included) one statement may name. A list of tables or joins is a
/// flat list to the parser but a chain of joins to the planner, one level
/// per table: tens of thousands fit in a query's text.
pub const MAX_TABLES: usize = 256;

/// The stack a parse runs on: enough to drop a tree of the ~50 000 levels
/// a 100 000-character query can nest. Only the pages used are touched.
pub const PARSE_STACK: usize = 256 << 20;

/// A thread stack that holds planning and running a statement of
/// [`MAX_EXPR_DEPTH`] levels, with room to spare (a release build
/// overflowed 2 MiB at ~2 000 levels; a debug build uses more per level).
pub const QUERY_STACK: usize = 16 << 20;

/// The refusal of a statement nested too deep.
pub fn too_deep_message() -> String {
    format!(
        "the query nests expressions or set operations (UNION …) more than {MAX_EXPR_DEPTH} deep, \
         or names more than {MAX_TABLES} tables: use IN (…) for a list of values"
    )
}

/// Run `f` (a parse) on a stack of [`PARSE_STACK`] bytes.
pub fn on_parse_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::grow(PARSE_STACK, f)
}

/// Whether the expressions under `node` nest deeper than
/// [`MAX_EXPR_DEPTH`], or it names more than [`MAX_TABLES`] tables.
pub fn too_deep<V: Visit + ?Sized>(node: &V) -> bool {
    struct Depth {
        now: usize,
        tables: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_table_factor(
            &mut self,
            _: &datafusion::sql::sqlparser::ast::TableFactor,
        ) -> ControlFlow<()> {
            self.tables += 1;
            if self.tables > MAX_TABLES {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now += 1;
            if self.now > MAX_EXPR_DEPTH {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
        // A chain of set operations (`SELECT 1 UNION SELECT 1 …`) is built
        // in a loop too, and planned by recursion: its levels count as
        // expressions do.
        // (Added to the depth while inside the query, so that chains in
        // parentheses inside a chain add up.)
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            self.now += set_depth(&q.body) - 1;
            if self.now > MAX_EXPR_DEPTH {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            self.now -= set_depth(&q.body) - 1;
            ControlFlow::Continue(())
        }
    }
    node.visit(&mut Depth { now: 0, tables: 0 }).is_break()
}

/// How deep the set operations of `body` nest (1 for a plain `SELECT`,
/// which adds no level), walked without recursion.
fn set_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut todo = vec![(body, 1usize)];
    while let Some((e, d)) = todo.pop() {
        deepest = deepest.max(d);
        if let SetExpr::SetOperation { left, right, .. } = e {
            todo.push((left, d + 1));
            todo.push((right, d + 1));
        }
    }
    deepest
}

/// [`too_deep`] for DataFusion's statements (its own `COPY`, `EXPLAIN`
/// and `CREATE EXTERNAL TABLE` included).
pub fn statement_too_deep(s: &DFStatement) -> bool {
    match s {
        DFStatement::Statement(s) => too_deep(s.as_ref()),
        DFStatement::CopyTo(c) => match &c.source {
            CopyToSource::Relation(_) => false,
            CopyToSource::Query(q) => too_deep(q.as_ref()),
        },
        DFStatement::Explain(e) => statement_too_deep(&e.statement),
        DFStatement::CreateExternalTable(t) => {
            too_deep(&t.columns) || t.order_exprs.iter().any(too_deep)
        }
        DFStatement::Reset(_) => false,
    }
}

/// Most calls that cost twice per level of nesting may nest in one
/// another:
///
/// - sqlparser parses `POSITION`, `CEIL`, `FLOOR`, `OVERLAY`, `CAST`,
///   `TRY_CAST`, `SAFE_CAST`, `CONVERT`, `TRY_CONVERT`, `SUBSTRING`,
///   `SUBSTR`, `EXTRACT` and `CASE` by trying their special syntax
///   (`POSITION(a IN b)`, `CEIL(x TO unit)`, `SUBSTRING(x FROM 1)`, …),
///   which reads the first argument before it can fail, and, when it
///   fails, again as a plain call;
/// - DataFusion simplifies `COALESCE` (and `IFNULL`, `NVL`, `NVL2`,
///   which are it) to a `CASE` that names its first argument twice.
///
/// Measured in a release build over HTTP (docs/benchmarks.md): 12 levels
/// of the earlier `position` rewrite took 51 s and 14 were killed for
/// memory; 22 levels of `coalesce(x, 'a')` took 17 s, all on a thread
/// the request's timeout does not stop.
pub const MAX_DOUBLING_CALLS: usize = 10;

/// The words of [`MAX_DOUBLING_CALLS`].
const DOUBLING: [&str; 17] = [
    "POSITION",
    "CEIL",
    "FLOOR",
    "OVERLAY",
    "CAST",
    "TRY_CAST",
    "SAFE_CAST",
    "CONVERT",
    "TRY_CONVERT",
    "SUBSTRING",
    "SUBSTR",
    "EXTRACT",
    "CASE",
    "COALESCE",
    "IFNULL",
    "NVL",
    "NVL2",
];

/// How deep calls of the words that double per level ([`DOUBLING`]) nest
/// in `sql`, read from its tokens (one pass, before any parse); `None`
/// when it does not tokenize (the parse then says why).
pub fn doubling_call_depth(sql: &str) -> Option<usize> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
    // Per open parenthesis, whether a doubling word opened it.
    let mut open: Vec<bool> = Vec::new();
    let (mut depth, mut most, mut after_word) = (0usize, 0usize, false);
    for t in &tokens {
        match t {
            Token::Whitespace(_) => continue,
            Token::Word(w) => {
                after_word = DOUBLING.iter().any(|r| w.value.eq_ignore_ascii_case(r));
                continue;
            }
            Token::LParen => {
                open.push(after_word);
                if after_word {
                    depth += 1;
                    most = most.max(depth);
                }
            }
            // (The guard pops once for every closing parenthesis.)
            Token::RParen if open.pop() == Some(true) => depth -= 1,
            _ => {}
        }
        after_word = false;
    }
    Some(most)
}

/// The refusal of a statement past [`MAX_DOUBLING_CALLS`].
pub fn doubling_calls_message() -> String {
    format!(
        "the query nests POSITION, CEIL, FLOOR, OVERLAY, CAST, CONVERT, SUBSTRING, EXTRACT, \
         CASE, COALESCE, IFNULL or NVL calls more than {MAX_DOUBLING_CALLS} deep"
    )
}

/// Parse `sql` as `state` would (its dialect and recursion limit), on a
/// stack of its own, refusing a statement nested deeper than
/// [`MAX_EXPR_DEPTH`] (a plan error).
pub fn parse_checked(state: &SessionState, sql: &str) -> Result<DFStatement> {
    let dialect = state.config().options().sql_parser.dialect;
    if doubling_call_depth(sql).is_some_and(|d| d > MAX_DOUBLING_CALLS) {
        return Err(DataFusionError::Plan(doubling_calls_message()));
    }
    on_parse_stack(|| {
        let s = state.sql_to_statement(sql, &dialect)?;
        if statement_too_deep(&s) {
            return Err(DataFusionError::Plan(too_deep_message()));
        }
        Ok(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// Calls that double per level of nesting are refused past their limit,
    /// before any parse; others nest freely.
    #[test]
    fn doubling_calls_are_bounded_before_the_parse() {
        let nest = |f: &str, n: usize| format!("SELECT {}'x'{}", f.repeat(n), ", 'a')".repeat(n));
        assert_eq!(doubling_call_depth(&nest("position(", 3)), Some(3));
        assert_eq!(doubling_call_depth(&nest("Position (", 3)), Some(3));
        assert_eq!(doubling_call_depth(&nest("concat(", 30)), Some(0));
        assert_eq!(doubling_call_depth(&nest("ifNull(", 4)), Some(4));
        // Siblings do not add up; a parenthesis inside a call counts once.
        assert_eq!(
            doubling_call_depth(
                "SELECT cast(1 AS int), cast((1) AS int), position('a', cast(1 AS text))"
            ),
            Some(2)
        );
        assert_eq!(
            doubling_call_depth("SELECT 'position(' , \"cast\"(1)"),
            Some(1)
        );
        let ctx = SessionContext::new();
        let state = ctx.state();
        assert!(parse_checked(&state, &nest("position(", MAX_DOUBLING_CALLS)).is_ok());
        for f in [
            "position(",
            "substring(",
            "substr(",
            "extract(",
            "case(",
            "try_convert(",
        ] {
            let err = parse_checked(&state, &nest(f, 40)).expect_err("refused");
            assert!(err.to_string().contains("more than"), "{f} {err}");
        }
    }

    /// Chains of each kind at the limit parse; one level more, or tens of
    /// thousands more (with or without a syntax error after them), are
    /// refused without overflowing this test thread's stack.
    #[test]
    fn depth_is_bounded_whatever_the_chain() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        // `SELECT 1 + 1 …`: n additions nest n + 1 levels.
        let sums = |n: usize| format!("SELECT 1{}", " + 1".repeat(n));
        assert!(parse_checked(&state, &sums(MAX_EXPR_DEPTH - 1)).is_ok());
        let unions = format!("SELECT 1{}", " UNION SELECT 1".repeat(MAX_EXPR_DEPTH - 2));
        assert!(parse_checked(&state, &unions).is_ok());
        let tables = format!("SELECT 1 FROM t{}", ", t".repeat(MAX_TABLES - 1));
        assert!(parse_checked(&state, &tables).is_ok());
        for sql in [
            sums(MAX_EXPR_DEPTH),
            sums(24_000),
            format!(
                "SELECT 1 FROM t WHERE {}",
                vec!["a = 1"; 30_000].join(" OR ")
            ),
            format!(
                "COPY (SELECT 1{}) TO '/tmp/x.parquet'",
                " + 1".repeat(5_000)
            ),
            format!("EXPLAIN SELECT 1{}", " * 2".repeat(5_000)),
            format!("SELECT 1{}", " UNION SELECT 1".repeat(MAX_EXPR_DEPTH)),
            format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(6_600)),
            format!(
                "SELECT x FROM (SELECT 1 AS x{})",
                " EXCEPT SELECT 2".repeat(3_000)
            ),
            // Tables listed or joined: a chain of joins to the planner.
            format!("SELECT 1 FROM t{}", ", t".repeat(MAX_TABLES)),
            format!("SELECT 1 FROM t{}", " JOIN t USING (a)".repeat(12_000)),
            format!(
                "SELECT 1 FROM t WHERE a IN ({})",
                vec!["SELECT a FROM t"; MAX_TABLES + 1].join(" UNION ALL ")
            ),
            // Chains of 600 inside a chain of 600, in parentheses.
            {
                let chain =
                    |inner: &str| format!("SELECT 1{}{inner}", " UNION SELECT 1".repeat(600));
                chain(&format!(" UNION ({})", chain("")))
            },
        ] {
            let e = parse_checked(&state, &sql).unwrap_err();
            assert!(e.to_string().contains("more than 1000 deep"), "{e}");
        }
        // A parse that fails after building a deep chain drops it on the
        // parse stack too.
        let e = parse_checked(&state, &format!("{} +", sums(24_000))).unwrap_err();
        assert!(!e.to_string().contains("deep"), "{e}");
    }
}
