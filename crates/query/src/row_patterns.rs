//! Patterns that change from row to row, bounded.
//!
//! `s ~ p`, `s SIMILAR TO p`, `s LIKE p` and the `regexp_*` functions
//! compile their pattern into a regular expression. A constant pattern is
//! compiled once per batch. A pattern computed from the row
//! (`regexp_like(event, concat(distinct_id, '\w{1,200}'))`) is compiled
//! for each distinct value in each batch, under the `regex` crate's
//! default limits: one such pattern takes ~50 ms to compile in a release
//! build, a batch of 8 192 rows minutes. The query's deadline is checked
//! only between batches ([`crate::deadline`]), so a `query:read` key could
//! keep the cores busy long past its timeout.
//!
//! [`PatternRewrite`] (an analyzer pass that runs before type coercion)
//! wraps each such pattern that is not a literal (or whose flags are not)
//! in `elide_pattern_guard(pattern, flags, caller, text)`. The guard
//! returns the pattern unchanged after checking, for each batch, the
//! patterns (with their flags) of the rows whose text is not NULL (all
//! rows for `regexp_count`, which compiles first), as the function will
//! compile them:
//!
//! - a regular expression holds at most [`MAX_PATTERN_BYTES`] bytes (its
//!   parse takes memory in proportion before its size is known; a LIKE
//!   pattern, whose regex is only text and wildcards, is not capped);
//! - it compiles to at most [`REGEX_SIZE_LIMIT`] (the limits of property
//!   filters);
//! - what one batch compiles takes at most [`MAX_BATCH_BYTES`] compiled,
//!   all together: each distinct (pattern, flags) of a regex function
//!   (they keep what they compiled for the batch), each change of pattern
//!   from one row to the next of LIKE and ILIKE (arrow's LIKE keeps only
//!   the previous row's).
//!
//! So one call's patterns compile in a bounded time per batch (the
//! check's, then the function's); a query of several such calls pays
//! each. A LIKE pattern is checked only when arrow would compile it (not
//! for `abc%`, `%abc`, `%abc%` or no wildcard at all); an ILIKE pattern
//! always is. The forms: `~`, `~*`, `!~`, `!~*`, `~~`, `~~*`, `!~~`,
//! `!~~*`, `[NOT] LIKE`, `[NOT] ILIKE`, `[NOT] SIMILAR TO` and the
//! functions of [`REGEX_FUNCTIONS`].
//!
//! Invariant: the guard changes no result; it only refuses. Literal
//! patterns with literal flags are not wrapped (they were compiled once
//! per batch before and still are), and a guard whose pattern and flags
//! constant folding made literals gives the pattern back unchecked. A
//! call to the guard written in the query is no guard: the rewrite wraps
//! its result again, unless it is exactly the call the rewrite makes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{exec_err, DFSchema, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::{Like, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use elide_store::predicate::{MAX_PATTERN_BYTES, REGEX_SIZE_LIMIT};
use regex_automata::meta;
use regex_automata::util::syntax;

/// The guard's name.
pub const PATTERN_GUARD: &str = "elide_pattern_guard";

/// Most memory the distinct patterns of one batch may take compiled (as
/// `regex_automata` measures it: both directions' automata, literal
/// prefilters), which grows with the time they take to compile: at the
/// most, about 0.3 s of checking and 0.3 s of the function's own
/// compiling per batch in a release build (docs/benchmarks.md).
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// `elide_pattern_guard(pattern, flags, caller, text)`: `pattern`, after
/// the checks of the module docs. `flags` is the regex flags the function
/// prefixes (`i`, `s`, …; NULL for none), `caller` the function or
/// operator that compiles it (`LIKE` and `ILIKE` compile a LIKE pattern;
/// all others a regular expression), `text` what it is matched against
/// (a row whose text is NULL compiles nothing).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PatternGuard {
    signature: Signature,
}

impl PatternGuard {
    fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(PatternGuard {
            signature: Signature::any(4, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for PatternGuard {
    fn name(&self) -> &str {
        PATTERN_GUARD
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    /// A pattern and flags that constant folding made literals: the
    /// pattern is given back, compiled once per batch, as a literal
    /// written in the query is.
    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let mut args = args;
        match (args.first(), args.get(1)) {
            (Some(Expr::Literal(..)), Some(Expr::Literal(..))) => {
                Ok(ExprSimplifyResult::Simplified(args.swap_remove(0)))
            }
            _ => Ok(ExprSimplifyResult::Original(args)),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [pattern, flags, caller, text] = &args.args[..] else {
            return exec_err!("{PATTERN_GUARD} takes 4 arguments");
        };
        let caller = match caller {
            ColumnarValue::Scalar(s) => s.try_as_str().flatten().unwrap_or("?").to_string(),
            ColumnarValue::Array(_) => {
                return exec_err!("{PATTERN_GUARD}: caller must be a constant")
            }
        };
        let kind = match caller.as_str() {
            "LIKE" => Kind::Like,
            "ILIKE" => Kind::ILike,
            _ => Kind::Regex,
        };
        let text = match text {
            ColumnarValue::Scalar(s) if s.is_null() => return Ok(pattern.clone()),
            ColumnarValue::Scalar(_) => None,
            ColumnarValue::Array(a) => Some(a.as_ref()),
        };
        if let (Some(patterns), flags) = (texts(pattern)?, texts(flags)?) {
            let rows = Rows {
                patterns: patterns.as_ref(),
                flags: flags.as_deref(),
                text,
                count: args.number_rows,
            };
            check_batch(&rows, kind, &caller)?;
        }
        Ok(pattern.clone())
    }
}

/// How the caller compiles its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regex,
    Like,
    ILike,
}

/// `v` as a text array (a constant as one row); `None` when it is not
/// text (NULL, or a type no cast makes text: nothing is compiled).
fn texts(v: &ColumnarValue) -> Result<Option<ArrayRef>> {
    let a = match v {
        ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
        ColumnarValue::Array(a) => Arc::clone(a),
    };
    Ok(match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(a),
        DataType::Null => None,
        _ => cast(&a, &DataType::Utf8View).ok(),
    })
}

/// Row `i` of a text array from [`texts`] (a constant's one row for all).
fn text_at(a: &dyn Array, i: usize) -> Option<&str> {
    let i = if a.len() == 1 { 0 } else { i };
    if i >= a.len() || a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(a.as_string_view().value(i)),
        _ => None,
    }
}

/// A batch's patterns, flags and texts.
struct Rows<'a> {
    patterns: &'a dyn Array,
    flags: Option<&'a dyn Array>,
    /// `None`: a constant text that is not NULL.
    text: Option<&'a dyn Array>,
    count: usize,
}

impl<'a> Rows<'a> {
    /// Row `i`'s pattern and flags, unless it compiles nothing (a NULL
    /// pattern or text).
    fn at(&self, i: usize) -> Option<(&'a str, Option<&'a str>)> {
        if self.text.is_some_and(|t| i >= t.len() || t.is_null(i)) {
            return None;
        }
        let p = text_at(self.patterns, i)?;
        Some((p, self.flags.and_then(|f| text_at(f, i))))
    }
}

/// Check what one batch compiles (see the module docs): each distinct
/// (pattern, flags) of a regex function, each change of pattern of LIKE.
fn check_batch(rows: &Rows, kind: Kind, caller: &str) -> Result<()> {
    let mut sizes: HashMap<(&str, Option<&str>), usize> = HashMap::new();
    let mut previous = None;
    let mut total = 0usize;
    let mut compiles = 0usize;
    for i in 0..rows.count.max(1) {
        let Some(row) = rows.at(i) else {
            continue;
        };
        let charged = match sizes.get(&row) {
            None => {
                let size = compiled_size(row.0, row.1, kind, caller)?;
                sizes.insert(row, size);
                Some(size)
            }
            // LIKE compiles again whenever the pattern changes.
            Some(&size) if kind != Kind::Regex && previous != Some(row) => Some(size),
            Some(_) => None,
        };
        previous = Some(row);
        if let Some(size) = charged {
            compiles += 1;
            total = total.saturating_add(size);
        }
        if total > MAX_BATCH_BYTES {
            return exec_err!(
                "{caller}: the patterns of one batch of rows compile to more than {} MiB together ({compiles} compiled so far); a pattern that changes from row to row is compiled for every batch: use fewer distinct patterns, or a constant one",
                MAX_BATCH_BYTES >> 20
            );
        }
    }
    Ok(())
}

/// Memory `pattern` takes compiled as `kind` with `flags` (0 when the
/// caller compiles nothing), or the error that refuses it.
fn compiled_size(pattern: &str, flags: Option<&str>, kind: Kind, caller: &str) -> Result<usize> {
    let shown: String = pattern.chars().take(60).collect();
    let shown = match shown.len() < pattern.len() {
        true => format!("{shown:?}…"),
        false => format!("{shown:?}"),
    };
    let (text, syntax) = match kind {
        Kind::Like if !like_compiles(pattern) => return Ok(0),
        Kind::Like | Kind::ILike => (
            like_regex(pattern),
            syntax::Config::new()
                .case_insensitive(kind == Kind::ILike)
                .dot_matches_new_line(true),
        ),
        Kind::Regex => {
            // An empty pattern matches everything without a regex.
            if pattern.is_empty() {
                return Ok(0);
            }
            if pattern.len() > MAX_PATTERN_BYTES {
                return exec_err!(
                    "{caller}: a pattern that is not a constant holds at most {MAX_PATTERN_BYTES} bytes, got {} ({shown})",
                    pattern.len()
                );
            }
            // As the functions build it: the flags prefixed, `g` (all
            // matches, for regexp_replace) not a regex flag.
            let flags: String = flags
                .unwrap_or_default()
                .chars()
                .filter(|c| *c != 'g')
                .collect();
            let text = match flags.is_empty() {
                true => pattern.to_string(),
                false => format!("(?{flags}){pattern}"),
            };
            (text, syntax::Config::new())
        }
    };
    let built = meta::Regex::builder()
        .configure(
            meta::Config::new()
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .onepass_size_limit(Some(REGEX_SIZE_LIMIT))
                .dfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .hybrid_cache_capacity(REGEX_SIZE_LIMIT / 2),
        )
        .syntax(syntax)
        .build(&text);
    match built {
        Ok(re) => Ok(re.memory_usage()),
        Err(e) if e.size_limit().is_some() => exec_err!(
            "{caller}: a pattern that is not a constant compiles to at most {} KiB; {shown} is larger (Unicode classes such as \\w and counted repetitions grow it)",
            REGEX_SIZE_LIMIT >> 10
        ),
        Err(e) => match e.syntax_error() {
            Some(syntax) => exec_err!("{caller}: invalid regular expression {shown}: {syntax}"),
            None => exec_err!("{caller}: invalid regular expression {shown}: {e}"),
        },
    }
}

/// Whether arrow compiles the LIKE `pattern` into a regex (as its
/// `Predicate::like`): not without wildcards, nor for `abc%`, `%abc` or
/// `%abc%`.
fn like_compiles(pattern: &str) -> bool {
    let wild = |s: &str| s.contains(['%', '_', '\\']);
    if !wild(pattern) {
        return false;
    }
    let inner_start = pattern.strip_prefix('%');
    let inner_end = pattern.strip_suffix('%');
    let both = inner_start.and_then(|s| s.strip_suffix('%'));
    let plain = |s: Option<&str>| s.is_some_and(|s| !wild(s));
    !(plain(inner_end) || plain(inner_start) || plain(both))
}

/// The regex arrow compiles for a LIKE pattern (its `regex_like`): `%` is
/// `.*`, `_` is `.`, a backslash escapes the next character, the rest is
/// literal; anchored at the start unless it begins with `%`, at the end
/// unless it ends with `%`.
fn like_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars().peekable();
    match chars.peek() {
        Some('%') => {
            chars.next();
        }
        _ => out.push('^'),
    }
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => push_literal(&mut out, next),
                None => out.push_str("\\\\"),
            },
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            c => push_literal(&mut out, c),
        }
    }
    match out.strip_suffix(".*") {
        Some(s) => s.to_string(),
        None => out + "$",
    }
}

fn push_literal(out: &mut String, c: char) {
    if regex_syntax::is_meta_character(c) {
        out.push('\\');
    }
    out.push(c);
}

/// The analyzer pass that wraps patterns that are not literals in the
/// guard (see the module docs). Idempotent: a guarded pattern is left.
#[derive(Debug)]
pub(crate) struct PatternRewrite;

/// The regex functions: name, the place of their flags argument, and
/// whether a row whose text is NULL compiles nothing (`regexp_count`
/// compiles the row's pattern before it reads the text).
const REGEX_FUNCTIONS: [(&str, usize, bool); 5] = [
    ("regexp_like", 2, true),
    ("regexp_match", 2, true),
    ("regexp_replace", 3, true),
    ("regexp_count", 3, false),
    ("regexp_instr", 4, true),
];

impl PatternRewrite {
    pub(crate) const NAME: &'static str = "elide_row_patterns";
}

/// `pattern` wrapped in the guard, unless it and `flags` are literals, or
/// it is this very guard already (the rewrite met twice).
fn guarded(pattern: Expr, flags: Expr, caller: &str, text: &Expr) -> Transformed<Expr> {
    let caller = literal(caller);
    let done = match &pattern {
        Expr::Literal(..) => matches!(flags, Expr::Literal(..)),
        Expr::ScalarFunction(f) => {
            f.name() == PATTERN_GUARD
                && matches!(&f.args[..], [_, fl, c, t] if *fl == flags && *c == caller && t == text)
        }
        _ => false,
    };
    if done {
        return Transformed::no(pattern);
    }
    Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
        guard_udf(),
        vec![pattern, flags, caller, text.clone()],
    )))
}

fn guard_udf() -> Arc<ScalarUDF> {
    static GUARD: std::sync::LazyLock<Arc<ScalarUDF>> =
        std::sync::LazyLock::new(|| Arc::new(PatternGuard::udf()));
    Arc::clone(&GUARD)
}

fn literal(s: &str) -> Expr {
    Expr::Literal(ScalarValue::Utf8(Some(s.to_string())), None)
}

fn no_flags() -> Expr {
    Expr::Literal(ScalarValue::Utf8(None), None)
}

impl FunctionRewrite for PatternRewrite {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn rewrite(
        &self,
        expr: Expr,
        _schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        Ok(match expr {
            Expr::Like(like) => {
                let caller = if like.case_insensitive {
                    "ILIKE"
                } else {
                    "LIKE"
                };
                guarded(*like.pattern, no_flags(), caller, &like.expr).update_data(|p| {
                    Expr::Like(Like {
                        pattern: Box::new(p),
                        ..like
                    })
                })
            }
            Expr::SimilarTo(like) => {
                let flags = if like.case_insensitive {
                    literal("i")
                } else {
                    no_flags()
                };
                guarded(*like.pattern, flags, "SIMILAR TO", &like.expr).update_data(|p| {
                    Expr::SimilarTo(Like {
                        pattern: Box::new(p),
                        ..like
                    })
                })
            }
            // `~` and `~~` (LIKE as an operator) and their kin.
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match pattern_operator(op) {
                Some((caller, insensitive)) => {
                    let flags = if insensitive {
                        literal("i")
                    } else {
                        no_flags()
                    };
                    guarded(*right, flags, caller, &left).update_data(|r| {
                        Expr::BinaryExpr(BinaryExpr {
                            left,
                            op,
                            right: Box::new(r),
                        })
                    })
                }
                None => Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right })),
            },
            Expr::ScalarFunction(mut f) => {
                let known = REGEX_FUNCTIONS
                    .iter()
                    .find(|(name, _, _)| *name == f.name())
                    .map(|(_, at, skips)| (*at, *skips));
                match (known, f.args.len()) {
                    (Some((at, skips_null)), n) if n >= 2 => {
                        let flags = f.args.get(at).cloned().unwrap_or_else(no_flags);
                        let caller = f.name().to_string();
                        // A function that compiles whatever the text gets a
                        // text that is never NULL: every row is checked.
                        let text = match skips_null {
                            true => f.args[0].clone(),
                            false => literal(""),
                        };
                        let pattern = std::mem::replace(&mut f.args[1], no_flags());
                        guarded(pattern, flags, &caller, &text).update_data(|p| {
                            f.args[1] = p;
                            Expr::ScalarFunction(f)
                        })
                    }
                    _ => Transformed::no(Expr::ScalarFunction(f)),
                }
            }
            e => Transformed::no(e),
        })
    }
}

/// The caller an operator that compiles its right side is named by in
/// the guard (`LIKE`/`ILIKE` for LIKE patterns, the operator itself for
/// regexes), and whether it adds the `i` flag.
fn pattern_operator(op: Operator) -> Option<(&'static str, bool)> {
    Some(match op {
        Operator::LikeMatch | Operator::NotLikeMatch => ("LIKE", false),
        Operator::ILikeMatch | Operator::NotILikeMatch => ("ILIKE", false),
        Operator::RegexMatch => ("~", false),
        Operator::RegexIMatch => ("~*", true),
        Operator::RegexNotMatch => ("!~", false),
        Operator::RegexNotIMatch => ("!~*", true),
        _ => return None,
    })
}

/// Install the guard and its rewrite on a session (once).
pub(crate) fn register(ctx: &mut datafusion::prelude::SessionContext) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    FunctionRegistry::register_udf(ctx, guard_udf())?;
    let installed = ctx
        .state()
        .analyzer()
        .function_rewrites()
        .iter()
        .any(|r| r.name() == PatternRewrite::NAME);
    if !installed {
        ctx.register_function_rewrite(Arc::new(PatternRewrite))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
