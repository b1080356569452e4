//! ClickHouse's function calls in HogQL rewritten to DataFusion's
//! ([`function`]): the table of `rewrite_call`, and what it needs to
//! tell a condition (`is_condition`) and to write a date format
//! (`clickhouse_format`). Each template names each argument once, so a
//! nested call grows linearly.

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, Value,
};

use super::{
    arity, call, functions, list, literal, one_based_index, plain_args, refused, string_literal,
    template, unnamed,
};
use crate::error::Result;

/// A HogQL (ClickHouse) function call rewritten to DataFusion's, or
/// `None` to keep it. A rewritten call written with what its rewrite
/// would drop (`FILTER (WHERE …)`, `IGNORE NULLS`, `WITHIN GROUP`) is
/// refused, not answered without it; so is any call with ClickHouse's
/// parameters (`f(p)(x)`) but `quantile`'s, which DataFusion would drop.
pub(super) fn function(f: &mut ast::Function) -> Result<Option<Expr>> {
    let name = f.name.to_string().to_ascii_lowercase();
    let original = f.name.to_string();
    if !matches!(f.parameters, FunctionArguments::None) && !name.starts_with("quantile") {
        return Err(refused(format!(
            "{original}: ClickHouse's parameters ({original}(…)(x)) are not taken"
        )));
    }
    let clauses = f.filter.is_some() || f.null_treatment.is_some() || !f.within_group.is_empty();
    let filter = f.filter.is_some();
    let out = rewrite_call(f)?;
    // `uniq`, and `sum` and `avg` of a condition, keep the call's own
    // clauses.
    if out.is_some() && clauses && !matches!(name.as_str(), "uniq" | "uniqexact" | "sum" | "avg") {
        return Err(refused(format!(
            "{original}: FILTER (WHERE …), IGNORE/RESPECT NULLS and WITHIN GROUP are not taken with it{}",
            if filter {
                " (countIf, sumIf, avgIf, minIf, maxIf and uniqIf take a condition)"
            } else {
                ""
            }
        )));
    }
    Ok(out)
}

/// ClickHouse's `formatDateTime` format as chrono's (`to_char`): each
/// `%` specifier ClickHouse documents, mapped to chrono's of the same
/// output (`%i` minutes, `%M` the month's name, `%W` the weekday's, `%c`
/// the month's number, `%f` microseconds, …); a specifier with no
/// counterpart (`%Q`, the quarter) or none at all is refused.
fn clickhouse_format(f: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(f.len() + 8);
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            return Err("the format ends with a lone %".into());
        };
        out.push_str(match spec {
            'a' => "%a",
            'b' => "%b",
            'c' | 'm' => "%m",
            'C' => "%C",
            'd' => "%d",
            'D' => "%m/%d/%y",
            // Unpadded, as ClickHouse's default since 25.5.
            'e' => "%-d",
            'f' => "%6f",
            'F' => "%Y-%m-%d",
            'g' => "%g",
            'G' => "%G",
            'h' | 'I' | 'l' => "%I",
            'H' | 'k' => "%H",
            'i' => "%M",
            'j' => "%j",
            'M' => "%B",
            'n' => "\n",
            'p' => "%p",
            'r' => "%I:%M %p",
            'R' => "%H:%M",
            's' | 'S' => "%S",
            't' => "\t",
            'T' => "%H:%M:%S",
            'u' => "%u",
            'V' => "%V",
            'w' => "%w",
            'W' => "%A",
            'y' => "%y",
            'Y' => "%Y",
            'z' => "%z",
            '%' => "%%",
            other => return Err(format!("%{other} is not a format specifier served here")),
        });
    }
    Ok(out)
}

/// Whether `e` is a condition by its form (a comparison, a logical
/// operator, a test, or a call of a function that answers true or false),
/// as what the rewrite has made of it: ClickHouse's conditions are 1 or 0.
fn is_condition(e: &Expr) -> bool {
    use ast::BinaryOperator as B;
    match e {
        Expr::Nested(inner) => is_condition(inner),
        Expr::BinaryOp { op, .. } => matches!(
            op,
            B::Eq
                | B::NotEq
                | B::Lt
                | B::LtEq
                | B::Gt
                | B::GtEq
                | B::And
                | B::Or
                | B::Xor
                | B::PGRegexMatch
                | B::PGRegexIMatch
                | B::PGRegexNotMatch
                | B::PGRegexNotIMatch
                | B::PGLikeMatch
                | B::PGILikeMatch
                | B::PGNotLikeMatch
                | B::PGNotILikeMatch
        ),
        Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            ..
        } => true,
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsNotTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::InSubquery { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::SimilarTo { .. }
        | Expr::RLike { .. } => true,
        Expr::Value(v) => matches!(v.value, ast::Value::Boolean(_)),
        Expr::Function(f) => matches!(
            f.name.to_string().to_ascii_lowercase().as_str(),
            "starts_with"
                | "ends_with"
                | "regexp_like"
                | "array_has"
                | "array_has_all"
                | "array_has_any"
                | "properties_match"
                | "json_contains"
                | functions::EMPTY
        ),
        _ => false,
    }
}

/// [`function`]'s rewrite.
fn rewrite_call(f: &mut ast::Function) -> Result<Option<Expr>> {
    let name = match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] if i.quote_style.is_none() => i.value.to_ascii_lowercase(),
        _ => return Ok(None),
    };
    if f.over.is_some() && name != "count" {
        return Ok(None);
    }
    let Some(args) = plain_args(f) else {
        return Ok(None);
    };
    let original = f.name.to_string();
    let agg_if = |base: &str, f: &ast::Function, args: Vec<Expr>| -> Result<Option<Expr>> {
        let (value, cond) = match (base, args.as_slice()) {
            ("count", [c]) => (None, c.clone()),
            (_, [v, c]) if base != "count" => (Some(v.clone()), c.clone()),
            _ => {
                return Err(refused(format!(
                    "{original} takes {} argument(s)",
                    if base == "count" { 1 } else { 2 }
                )))
            }
        };
        let mut g = f.clone();
        g.name = ObjectName::from(vec![Ident::new(base)]);
        g.args = list(vec![match value {
            // A condition summed or averaged is 1 or 0 (as `sum`'s).
            Some(v) if (base == "sum" || base == "avg") && is_condition(&v) => {
                unnamed(template("CAST(__x0 AS BIGINT)", vec![v])?)
            }
            Some(v) => unnamed(v),
            None => FunctionArg::Unnamed(FunctionArgExpr::Wildcard),
        }]);
        g.filter = Some(Box::new(cond));
        Ok(Some(Expr::Function(g)))
    };
    let cast = |ty: &str, args: Vec<Expr>| -> Result<Option<Expr>> {
        arity(&original, &args, 1..=1)?;
        template(&format!("CAST(__x0 AS {ty})"), args).map(Some)
    };
    // PostHog's `toInt` and `toFloat` are ClickHouse's
    // `accurateCastOrNull`: a value that is not a number is NULL, not an
    // error that fails the whole query.
    let cast_or_null = |ty: &str, args: Vec<Expr>| -> Result<Option<Expr>> {
        arity(&original, &args, 1..=1)?;
        template(&format!("TRY_CAST(__x0 AS {ty})"), args).map(Some)
    };
    let trunc = |unit: &str, args: Vec<Expr>| -> Result<Option<Expr>> {
        arity(&original, &args, 1..=1)?;
        template(&format!("date_trunc('{unit}', __x0)"), args).map(Some)
    };
    // ClickHouse's week, month, quarter and year starts are dates.
    let trunc_to_date = |unit: &str, args: Vec<Expr>| -> Result<Option<Expr>> {
        arity(&original, &args, 1..=1)?;
        template(&format!("CAST(date_trunc('{unit}', __x0) AS DATE)"), args).map(Some)
    };
    let json = |get: &str, default: &str, mut args: Vec<Expr>| -> Result<Option<Expr>> {
        if args.is_empty() {
            return Err(refused(format!("{original} needs a JSON argument")));
        }
        // ClickHouse's array indices count from 1 (and 0 is no element);
        // the JSON functions' from 0. A literal index is moved down.
        for a in args.iter_mut().skip(1) {
            one_based_index(a);
        }
        let inner = call(get, args);
        template(&format!("coalesce(__x0, {default})"), vec![inner]).map(Some)
    };
    // A fixed rewrite: `args` (in `n`) put into `template`.
    let fixed = |n: std::ops::RangeInclusive<usize>, t: &str, args: Vec<Expr>| {
        arity(&original, &args, n)?;
        template(t, args).map(Some)
    };
    // ClickHouse's date parts, as integers.
    let part = |unit: &str, args: Vec<Expr>| {
        fixed(
            1..=1,
            &format!("CAST(date_part('{unit}', __x0) AS BIGINT)"),
            args,
        )
    };
    match name.as_str() {
        // `quantile(p)(x)`: ClickHouse's parametric form. Exact here (with
        // interpolation, as ClickHouse's own for up to 8 192 values).
        "quantile" | "quantileexact" | "quantiletdigest" => {
            arity(&original, &args, 1..=1)?;
            let level = match &f.parameters {
                FunctionArguments::List(l) => match &l.args[..] {
                    [FunctionArg::Unnamed(FunctionArgExpr::Expr(p))] => p.clone(),
                    _ => return Err(refused(format!("{original}(level)(x) takes one level"))),
                },
                _ => {
                    return Err(refused(format!(
                        "{original} is written {original}(level)(x), a level from 0 to 1"
                    )))
                }
            };
            let mut args = args;
            args.push(level);
            template(
                "percentile_cont(__x1) WITHIN GROUP (ORDER BY TRY_CAST(__x0 AS DOUBLE))",
                args,
            )
            .map(Some)
        }
        "if" => fixed(3..=3, "CASE WHEN __x0 THEN __x1 ELSE __x2 END", args),
        "multiif" => {
            if args.len() < 3 || args.len() % 2 == 0 {
                return Err(refused(format!(
                    "{original} takes pairs of a condition and a value, then the value else (an odd number, at least 3), got {}",
                    args.len()
                )));
            }
            let pairs: Vec<String> = (0..args.len() / 2)
                .map(|i| format!("WHEN __x{} THEN __x{}", 2 * i, 2 * i + 1))
                .collect();
            let t = format!("CASE {} ELSE __x{} END", pairs.join(" "), args.len() - 1);
            template(&t, args).map(Some)
        }
        "ifnull" => fixed(2..=2, "coalesce(__x0, __x1)", args),
        "match" => fixed(2..=2, "regexp_like(__x0, __x1)", args),
        "like" => fixed(2..=2, "__x0 LIKE __x1", args),
        "ilike" => fixed(2..=2, "__x0 ILIKE __x1", args),
        "notlike" => fixed(2..=2, "__x0 NOT LIKE __x1", args),
        "notilike" => fixed(2..=2, "__x0 NOT ILIKE __x1", args),
        "startswith" => fixed(2..=2, "starts_with(__x0, __x1)", args),
        "endswith" => fixed(2..=2, "ends_with(__x0, __x1)", args),
        // ClickHouse counts bytes; `positionUTF8` characters.
        "position" => {
            arity(&original, &args, 2..=2)?;
            Ok(Some(call(functions::POSITION, args)))
        }
        "positionutf8" => fixed(2..=2, "strpos(__x0, __x1)", args),
        "empty" => {
            arity(&original, &args, 1..=1)?;
            Ok(Some(call(functions::EMPTY, args)))
        }
        "notempty" => {
            arity(&original, &args, 1..=1)?;
            template("NOT __x0", vec![call(functions::EMPTY, args)]).map(Some)
        }
        "lowerutf8" => fixed(1..=1, "lower(__x0)", args),
        "upperutf8" => fixed(1..=1, "upper(__x0)", args),
        "lengthutf8" => fixed(1..=1, "character_length(__x0)", args),
        "replaceall" => fixed(3..=3, "replace(__x0, __x1, __x2)", args),
        "replaceregexpall" => {
            arity(&original, &args, 3..=3)?;
            // ClickHouse's replacement names groups `\1`; a `$` is itself
            // (Rust's regex reads `$1`, so a literal one is doubled).
            let mut args = args;
            if let Some(r) = string_literal(&args[2]) {
                args[2] = literal(r.replace('$', "$$"));
            }
            template("regexp_replace(__x0, __x1, __x2, 'g')", args).map(Some)
        }
        "splitbychar" | "splitbystring" => fixed(2..=2, "string_to_array(__x1, __x0)", args),
        "has" => fixed(2..=2, "array_has(__x0, __x1)", args),
        "trimboth" => fixed(1..=1, "btrim(__x0)", args),
        "trimleft" => fixed(1..=1, "ltrim(__x0)", args),
        "trimright" => fixed(1..=1, "rtrim(__x0)", args),
        "toyear" => part("year", args),
        "toquarter" => part("quarter", args),
        "tomonth" => part("month", args),
        "todayofmonth" => part("day", args),
        "todayofyear" => part("doy", args),
        "tohour" => part("hour", args),
        "tominute" => part("minute", args),
        "tosecond" => part("second", args),
        // ClickHouse's default: Monday 1 to Sunday 7.
        "todayofweek" => fixed(
            1..=1,
            "(CAST(date_part('dow', __x0) AS BIGINT) + 6) % 7 + 1",
            args,
        ),
        "tounixtimestamp" => fixed(
            1..=1,
            "CAST(floor(date_part('epoch', __x0)) AS BIGINT)",
            args,
        ),
        "datetrunc" | "date_trunc" => fixed(2..=2, "date_trunc(__x0, __x1)", args),
        // Intervals counted from the epoch, as ClickHouse's for seconds to
        // days (weeks from a Thursday, where ClickHouse's start on Monday;
        // months and years: DataFusion's `date_bin` refuses them).
        "tostartofinterval" => fixed(
            2..=2,
            "date_bin(__x1, __x0, TIMESTAMP '1970-01-01 00:00:00')",
            args,
        ),
        "dateadd" | "date_add" | "datesub" | "date_sub" => {
            arity(&original, &args, 3..=3)?;
            let unit = match &args[0] {
                Expr::Identifier(i) => i.value.to_ascii_lowercase(),
                e => match string_literal(e) {
                    Some(u) => u.to_ascii_lowercase(),
                    None => {
                        return Err(refused(format!(
                            "{original}: the unit is a word (second, minute, hour, day, week, month, quarter, year), got {e}"
                        )))
                    }
                },
            };
            let unit = unit.trim_end_matches('s');
            if ![
                "second", "minute", "hour", "day", "week", "month", "quarter", "year",
            ]
            .contains(&unit)
            {
                return Err(refused(format!(
                    "{original}: {unit:?} is not a unit (second, minute, hour, day, week, month, quarter, year)"
                )));
            }
            let op = if name.contains("sub") { "-" } else { "+" };
            // An interval of `n` units from its text (DataFusion does not
            // multiply an interval by a number); a quarter is 3 months.
            let (times, unit) = match unit {
                "quarter" => (" * 3", "month"),
                u => ("", u),
            };
            template(
                &format!(
                    // `||`: a NULL count is a NULL time (`concat` skips it).
                    "__x2 {op} CAST(CAST(CAST(__x1 AS BIGINT){times} AS VARCHAR) || ' {unit}' AS INTERVAL)"
                ),
                args,
            )
            .map(Some)
        }
        // Elide's times are UTC: converting to UTC changes nothing, and
        // other zones are refused rather than ignored.
        "totimezone" => {
            arity(&original, &args, 2..=2)?;
            match string_literal(&args[1])
                .map(|z| z.to_ascii_uppercase())
                .as_deref()
            {
                Some("UTC") | Some("ETC/UTC") => Ok(Some(args[0].clone())),
                _ => Err(refused(format!(
                    "{original}: only 'UTC' is served (Elide's times are UTC), got {}",
                    args[1]
                ))),
            }
        }
        // ClickHouse's format (a literal) as chrono's, for `to_char`.
        "formatdatetime" => {
            arity(&original, &args, 2..=3)?;
            if let Some(zone) = args.get(2) {
                if !string_literal(zone)
                    .is_some_and(|z| matches!(z.to_ascii_uppercase().as_str(), "UTC" | "ETC/UTC"))
                {
                    return Err(refused(format!(
                        "{original}: only 'UTC' is served (Elide's times are UTC), got {zone}"
                    )));
                }
            }
            let Some(format) = string_literal(&args[1]) else {
                return Err(refused(format!(
                    "{original}: the format must be a text literal, got {}",
                    args[1]
                )));
            };
            let chrono =
                clickhouse_format(&format).map_err(|e| refused(format!("{original}: {e}")))?;
            let mut args = args;
            args.truncate(1);
            args.push(literal(chrono));
            fixed(2..=2, "to_char(__x0, __x1)", args)
        }
        "now64" => {
            arity(&original, &args, 0..=1)?;
            template("now()", Vec::new()).map(Some)
        }
        // ClickHouse's skip NULL values, and rows without an order.
        // (Each template names each argument once: a template that
        // repeated one would double a nested call at each level.)
        "argmax" => fixed(
            2..=2,
            "first_value(__x0 ORDER BY __x1 DESC NULLS LAST) IGNORE NULLS",
            args,
        ),
        "argmin" => fixed(
            2..=2,
            "first_value(__x0 ORDER BY __x1 ASC NULLS LAST) IGNORE NULLS",
            args,
        ),
        "any" => fixed(1..=1, "any_value(__x0)", args),
        "anylast" => fixed(1..=1, "last_value(__x0) IGNORE NULLS", args),
        // ClickHouse's arrays of an aggregate leave NULLs out, and are
        // empty (not NULL) with nothing in them.
        "grouparray" => fixed(1..=1, "coalesce(array_agg(__x0) IGNORE NULLS, [])", args),
        "groupuniqarray" => fixed(
            1..=1,
            "coalesce(array_agg(DISTINCT __x0) IGNORE NULLS, [])",
            args,
        ),
        "countdistinct" => fixed(1..=1, "count(DISTINCT __x0)", args),
        "uniqif" | "uniqexactif" => fixed(2..=2, "count(DISTINCT __x0) FILTER (WHERE __x1)", args),
        "count" if args.is_empty() => {
            f.args = list(vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]);
            Ok(None)
        }
        // A condition is ClickHouse's 1 or 0: its sum counts the rows
        // where it holds, its average is their share. DataFusion's sum
        // and avg take no booleans, so the condition is cast; the call
        // keeps its own clauses.
        "sum" | "avg" if args.len() == 1 && is_condition(&args[0]) => {
            let mut g = f.clone();
            g.args = list(vec![unnamed(template(
                "CAST(__x0 AS BIGINT)",
                vec![args[0].clone()],
            )?)]);
            Ok(Some(Expr::Function(g)))
        }
        "countif" => agg_if("count", f, args),
        "sumif" => agg_if("sum", f, args),
        "avgif" => agg_if("avg", f, args),
        "minif" => agg_if("min", f, args),
        "maxif" => agg_if("max", f, args),
        "uniq" | "uniqexact" => {
            arity(&original, &args, 1..=1)?;
            let mut g = f.clone();
            g.name = ObjectName::from(vec![Ident::new("count")]);
            g.args = FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: Some(ast::DuplicateTreatment::Distinct),
                args: args.into_iter().map(unnamed).collect(),
                clauses: Vec::new(),
            });
            Ok(Some(Expr::Function(g)))
        }
        // PostHog's `toDate` of text is `toDateOrNull`: what is not a date
        // is NULL, not a failed query.
        "todate" => cast_or_null("DATE", args),
        "tostring" => cast("VARCHAR", args),
        "toint" | "toint64" => cast_or_null("BIGINT", args),
        "tofloat" | "tofloat64" => cast_or_null("DOUBLE", args),
        "todatetime" => {
            arity(&original, &args, 1..=1)?;
            // By the argument's type, not its spelling: a number is
            // seconds since the epoch, as ClickHouse's `toDateTime`, also
            // when it is a column or an expression.
            Ok(Some(call(functions::TO_DATETIME, args)))
        }
        "tostartofminute" => trunc("minute", args),
        "tostartofhour" => trunc("hour", args),
        "tostartofday" => trunc("day", args),
        "tostartofmonth" => trunc_to_date("month", args),
        "tostartofquarter" => trunc_to_date("quarter", args),
        "tostartofyear" => trunc_to_date("year", args),
        "tomonday" => trunc_to_date("week", args),
        "tostartofweek" => {
            arity(&original, &args, 1..=2)?;
            let mut args = args;
            // ClickHouse's mode: its lowest bit says whether weeks start
            // on Monday (PostHog writes 0 for Sunday, 3 for Monday).
            let monday = match args.get(1) {
                None => false,
                Some(Expr::Value(v)) => match &v.value {
                    Value::Number(n, _) => match n.parse::<u8>() {
                        Ok(m) if m <= 9 => m % 2 == 1,
                        _ => {
                            return Err(refused(format!("{original}: the mode is 0 to 9, got {n}")))
                        }
                    },
                    other => {
                        return Err(refused(format!(
                            "{original}: the mode is a number 0 to 9, got {other}"
                        )))
                    }
                },
                Some(other) => {
                    return Err(refused(format!(
                        "{original}: the mode is a number 0 to 9, written out; got {other}"
                    )))
                }
            };
            args.truncate(1);
            if monday {
                trunc_to_date("week", args)
            } else {
                template(
                    "CAST(date_trunc('week', __x0 + INTERVAL '1 day') - INTERVAL '1 day' AS DATE)",
                    args,
                )
                .map(Some)
            }
        }
        "today" => {
            arity(&original, &args, 0..=0)?;
            template("current_date()", args).map(Some)
        }
        "yesterday" => {
            arity(&original, &args, 0..=0)?;
            template("current_date() - INTERVAL '1 day'", args).map(Some)
        }
        "datediff" | "date_diff" => {
            arity(&original, &args, 3..=3)?;
            Ok(Some(call(functions::DATE_DIFF, args)))
        }
        "jsonextractstring" => json("json_get_str", "''", args),
        "jsonextractint" => json("json_get_int", "0", args),
        "jsonextractfloat" => json("json_get_float", "0.0", args),
        "jsonextractbool" => json("json_get_bool", "false", args),
        "jsonextractraw" => json("json_get_json", "''", args),
        "jsonhas" => {
            arity(&original, &args, 2..=2)?;
            Ok(Some(call("json_contains", args)))
        }
        _ => Ok(None),
    }
}
