//! Trends formulas (`trendsFilter.formula`, `formulas`, `formulaNodes`):
//! arithmetic between the series, `A` the first, as PostHog's
//! `FormulaAST` computes it — per period (with a total value, of the
//! series' one values), per breakdown value when there is a breakdown.
//!
//! The language is PostHog's (Python's arithmetic): numbers, the series
//! letters (any case), `+ - * / % **`, unary `-` and `+`, parentheses;
//! `**` binds tighter than a unary minus on its left and groups from the
//! right, `%` is Python's floored modulo. Dividing (or `%`) by zero, and
//! `0 ** -n`, give 0, as PostHog's `ZeroDivisionError` does; a result
//! that is no finite number (where Python raises an overflow or gives a
//! complex number) is 0 too. Anything else (a name that is not a series,
//! a call, a comparison) is refused when the query is read.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::{invalid, BREAKDOWN_NULL, BREAKDOWN_OTHER};
use crate::error::Result;

/// Longest formula text (bytes).
const MAX_LEN: usize = 1_000;

/// Deepest nesting of parentheses and operators.
const MAX_DEPTH: usize = 64;

/// A formula of a trends query.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    /// The text, as given.
    pub text: String,
    /// `custom_name`, the label of its row.
    pub custom_name: Option<String>,
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Num(f64),
    /// A series (0 = `A`).
    Series(usize),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl Formula {
    /// Parse `text` over `series` series.
    pub fn parse(text: &str, custom_name: Option<String>, series: usize) -> Result<Formula> {
        if text.len() > MAX_LEN {
            return invalid(format!("a formula is at most {MAX_LEN} bytes"));
        }
        let tokens = tokens(&text.to_lowercase())?;
        let mut p = Parser {
            tokens,
            at: 0,
            series,
            depth: 0,
        };
        let expr = p.sum()?;
        if p.at != p.tokens.len() {
            return invalid(format!(
                "formula {text:?}: unexpected '{}'; formulas only support arithmetic ( + - * / % ** ) between series",
                p.tokens[p.at]
            ));
        }
        Ok(Formula {
            text: text.to_string(),
            custom_name,
            expr,
        })
    }

    /// Its value for the series' values `v` (a missing one is 0).
    pub fn eval(&self, v: &[f64]) -> f64 {
        let x = eval(&self.expr, v);
        // (`+ 0.0`: no negative zero, which PostHog's integers do not
        // have.)
        if x.is_finite() {
            x + 0.0
        } else {
            0.0
        }
    }

    /// PostHog's label of its row.
    fn label(&self) -> String {
        self.custom_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("Formula ({})", self.text))
    }
}

fn eval(e: &Expr, v: &[f64]) -> f64 {
    match e {
        Expr::Num(n) => *n,
        Expr::Series(i) => v.get(*i).copied().unwrap_or(0.0),
        Expr::Neg(x) => -eval(x, v),
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, v), eval(b, v));
            match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                Op::Div if b == 0.0 => 0.0,
                Op::Div => a / b,
                Op::Mod if b == 0.0 => 0.0,
                // CPython's float modulo: the remainder takes the sign
                // of the divisor.
                Op::Mod => {
                    let r = a % b;
                    if r != 0.0 && (r < 0.0) != (b < 0.0) {
                        r + b
                    } else {
                        r
                    }
                }
                Op::Pow if a == 0.0 && b < 0.0 => 0.0,
                Op::Pow => a.powf(b),
            }
        }
    }
}

/// A Python number literal's value: decimal integers (no leading zero
/// but in 0), `0x`/`0o`/`0b` integers, floats (`1.`, `.5`, `1e3`,
/// `2.5e-2`), with single underscores between digits.
fn number(t: &str) -> Option<f64> {
    /// Digits of `radix` with single underscores between them (and, after
    /// a prefix, one before the first).
    fn digits(t: &str, radix: u32, after_prefix: bool) -> Option<String> {
        let t = if after_prefix {
            t.strip_prefix('_').unwrap_or(t)
        } else {
            t
        };
        if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
            return None;
        }
        let d: String = t.chars().filter(|&c| c != '_').collect();
        d.chars().all(|c| c.is_digit(radix)).then_some(d)
    }
    let finite = |x: f64| x.is_finite().then_some(x);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = t.strip_prefix(prefix) {
            let d = digits(rest, radix, true)?;
            // Past 2^53 a float keeps its magnitude, as Python's.
            let mut x = 0.0f64;
            for c in d.chars() {
                x = x * f64::from(radix) + f64::from(c.to_digit(radix)?);
            }
            return finite(x);
        }
    }
    let (mantissa, exponent) = match t.find('e') {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], Some(&mantissa[i + 1..])),
        None => (mantissa, None),
    };
    let int = if int.is_empty() && frac.is_some() {
        String::new()
    } else {
        digits(int, 10, false)?
    };
    let frac = match frac {
        None => None,
        Some("") if !int.is_empty() => Some(String::new()),
        Some(f) => Some(digits(f, 10, false)?),
    };
    let exp = match exponent {
        None => None,
        Some(e) => {
            let (sign, e) = match e.as_bytes().first() {
                Some(b'+') => ("", &e[1..]),
                Some(b'-') => ("-", &e[1..]),
                _ => ("", e),
            };
            Some(format!("{sign}{}", digits(e, 10, false)?))
        }
    };
    // A decimal integer has no leading zero (but 0, 00, …).
    if frac.is_none() && exp.is_none() && int.len() > 1 && int.starts_with('0') {
        return int.chars().all(|c| c == '0').then_some(0.0);
    }
    let text = format!(
        "{}{}{}",
        if int.is_empty() { "0" } else { &int },
        frac.map(|f| format!(".{f}0")).unwrap_or_default(),
        exp.map(|e| format!("e{e}")).unwrap_or_default()
    );
    finite(text.parse().ok()?)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Name(String),
    Sym(&'static str),
}

fn tokens(s: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            // Python's tokenizer takes the letters, digits, dots and
            // underscores of a number (and an exponent's sign) as one.
            let start = i;
            while i < b.len() {
                let d = b[i];
                let sign = (d == b'+' || d == b'-')
                    && matches!(b[i - 1], b'e')
                    && !s[start..i].starts_with("0x");
                if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' || sign {
                    i += 1;
                } else {
                    break;
                }
            }
            match number(&s[start..i]) {
                Some(n) => out.push(Token::Num(n)),
                None => return invalid(format!("formula: {:?} is not a number", &s[start..i])),
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Token::Name(s[start..i].to_string()));
        } else if s[i..].starts_with("**") {
            out.push(Token::Sym("**"));
            i += 2;
        } else {
            let sym = match c {
                b'+' => "+",
                b'-' => "-",
                b'*' => "*",
                b'/' => "/",
                b'%' => "%",
                b'(' => "(",
                b')' => ")",
                _ => {
                    let ch = s[i..].chars().next().unwrap_or('?');
                    return invalid(format!(
                        "formula: {ch:?} is not allowed; formulas only support arithmetic ( + - * / % ** ) between series"
                    ));
                }
            };
            out.push(Token::Sym(sym));
            i += 1;
        }
    }
    Ok(out)
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Num(n) => write!(f, "{n}"),
            Token::Name(n) => write!(f, "{}", n.to_uppercase()),
            Token::Sym(s) => write!(f, "{s}"),
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    series: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn sym(&mut self, s: &str) -> bool {
        if self.peek()
            == Some(&Token::Sym(match s {
                "+" => "+",
                "-" => "-",
                "*" => "*",
                "/" => "/",
                "%" => "%",
                "**" => "**",
                "(" => "(",
                _ => ")",
            }))
        {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn deeper(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return invalid(format!("a formula nests at most {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    /// `term (('+' | '-') term)*`
    fn sum(&mut self) -> Result<Expr> {
        let mut e = self.term()?;
        loop {
            let op = if self.sym("+") {
                Op::Add
            } else if self.sym("-") {
                Op::Sub
            } else {
                return Ok(e);
            };
            e = Expr::Bin(op, Box::new(e), Box::new(self.term()?));
        }
    }

    /// `unary (('*' | '/' | '%') unary)*`
    fn term(&mut self) -> Result<Expr> {
        let mut e = self.unary()?;
        loop {
            let op = if self.sym("*") {
                Op::Mul
            } else if self.sym("/") {
                Op::Div
            } else if self.sym("%") {
                Op::Mod
            } else {
                return Ok(e);
            };
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    /// `('-' | '+') unary | power`
    fn unary(&mut self) -> Result<Expr> {
        self.deeper()?;
        let e = if self.sym("-") {
            Expr::Neg(Box::new(self.unary()?))
        } else if self.sym("+") {
            self.unary()?
        } else {
            self.power()?
        };
        self.depth -= 1;
        Ok(e)
    }

    /// `atom ('**' unary)?` (right to left)
    fn power(&mut self) -> Result<Expr> {
        let base = self.atom()?;
        if self.sym("**") {
            return Ok(Expr::Bin(Op::Pow, Box::new(base), Box::new(self.unary()?)));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Expr> {
        match self.peek().cloned() {
            Some(Token::Num(n)) => {
                self.at += 1;
                Ok(Expr::Num(n))
            }
            Some(Token::Name(name)) => {
                self.at += 1;
                if self.peek() == Some(&Token::Sym("(")) {
                    return invalid(format!(
                        "formulas only support arithmetic between series (like (A + B) / 2), not {}()",
                        name.to_uppercase()
                    ));
                }
                let index = match name.as_bytes() {
                    [c] if c.is_ascii_lowercase() => Some(usize::from(c - b'a')),
                    _ => None,
                };
                match index.filter(|&i| i < self.series) {
                    Some(i) => Ok(Expr::Series(i)),
                    None => {
                        let names: Vec<String> = (0..self.series.min(26))
                            .map(|i| char::from(b'A' + i as u8).to_string())
                            .collect();
                        invalid(format!(
                            "formula references series {}, but only {} {} defined ({})",
                            name.to_uppercase(),
                            self.series,
                            if self.series == 1 { "series is" } else { "series are" },
                            names.join(", ")
                        ))
                    }
                }
            }
            Some(Token::Sym("(")) => {
                // (Nested through `unary`, which counts the depth.)
                self.at += 1;
                let e = self.sum()?;
                if !self.sym(")") {
                    return invalid("formula: a parenthesis is not closed");
                }
                Ok(e)
            }
            Some(t) => invalid(format!(
                "formula: unexpected '{t}'; formulas only support arithmetic ( + - * / % ** ) between series"
            )),
            None => invalid("formula: it ends where a series or a number is expected"),
        }
    }
}

/// The formulas of `trendsFilter`: `formulaNodes` (`[{formula,
/// custom_name?}]`), else `formulas` (texts), else `formula`, as
/// PostHog's `formula_nodes`; an empty text is none.
pub(super) fn parse_all(f: &Map<String, Value>, series: usize) -> Result<Vec<Formula>> {
    let given = |k: &str| {
        f.get(k)
            .filter(|v| !v.is_null() && *v != &Value::Array(Vec::new()))
    };
    let mut out = Vec::new();
    if let Some(nodes) = given("formulaNodes") {
        let Value::Array(nodes) = nodes else {
            return invalid("trendsFilter.formulaNodes must be a list of {formula, custom_name?}");
        };
        for n in nodes {
            let text = n.get("formula").and_then(Value::as_str).ok_or_else(|| {
                crate::error::AppError::InvalidQuery(
                    "each of trendsFilter.formulaNodes needs its formula (text)".into(),
                )
            })?;
            let name = match n.get("custom_name") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => return invalid(format!("a formula's custom_name is text, got {v}")),
            };
            if !text.trim().is_empty() {
                out.push(Formula::parse(text, name, series)?);
            }
        }
    } else if let Some(list) = given("formulas") {
        let Value::Array(list) = list else {
            return invalid("trendsFilter.formulas must be a list of texts");
        };
        for t in list {
            let Some(text) = t.as_str() else {
                return invalid(format!("each of trendsFilter.formulas is a text, got {t}"));
            };
            if !text.trim().is_empty() {
                out.push(Formula::parse(text, None, series)?);
            }
        }
    } else if let Some(t) = given("formula") {
        let Some(text) = t.as_str() else {
            return invalid(format!("trendsFilter.formula is a text, got {t}"));
        };
        if !text.trim().is_empty() {
            out.push(Formula::parse(text, None, series)?);
        }
    }
    if out.len() > 100 {
        return invalid("at most 100 formulas");
    }
    Ok(out)
}

/// The rows of `formulas` over the series' result rows (`rows[i]`: series
/// `i`'s rows, one per breakdown value), as PostHog's `apply_formula`:
/// per breakdown value (the union of the series'), the series that lack
/// it counting 0; each row keeps the first such row's shape, labelled
/// `Formula (…)` or its `custom_name`, with no `action`; `count` is the
/// sum of its data (with a total value, 0 and `aggregated_value` the
/// formula of the series' values). With a breakdown, the rows are
/// ordered as PostHog's: values before the null one before Other, then by
/// total, largest first.
pub(super) fn rows(formulas: &[Formula], rows: &[Vec<Value>], total_value: bool) -> Vec<Value> {
    let key = |r: &Value| {
        r.get("breakdown_value")
            .map_or_else(String::new, Value::to_string)
    };
    // Per series, its row of each breakdown value; the values in the
    // order they first appear.
    let by_value: Vec<HashMap<String, &Value>> = rows
        .iter()
        .map(|series| series.iter().map(|r| (key(r), r)).collect())
        .collect();
    let mut seen = HashSet::new();
    let values: Vec<String> = rows
        .iter()
        .flatten()
        .map(key)
        .filter(|k| seen.insert(k.clone()))
        .collect();
    let periods = rows
        .iter()
        .flatten()
        .find_map(|r| r.get("data").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0);
    let number = |r: Option<&&Value>, field: &str, i: Option<usize>| -> f64 {
        r.and_then(|r| match i {
            Some(i) => r.get(field)?.as_array()?.get(i)?.as_f64(),
            None => r.get(field)?.as_f64(),
        })
        .unwrap_or(0.0)
    };
    let mut out = Vec::new();
    for f in formulas {
        let mut computed = Vec::new();
        for k in &values {
            let group: Vec<Option<&&Value>> = by_value.iter().map(|m| m.get(k)).collect();
            let Some(base) = group.iter().flatten().next() else {
                continue;
            };
            let mut row = (**base).clone();
            let Some(o) = row.as_object_mut() else {
                continue;
            };
            o.insert("label".into(), json!(f.label()));
            o.insert("action".into(), Value::Null);
            if total_value {
                let v: Vec<f64> = group
                    .iter()
                    .map(|r| number(*r, "aggregated_value", None))
                    .collect();
                o.insert("aggregated_value".into(), json!(f.eval(&v)));
                o.insert("data".into(), Value::Null);
                o.insert("count".into(), json!(0));
            } else {
                let mut v = vec![0.0; group.len()];
                let data: Vec<f64> = (0..periods)
                    .map(|i| {
                        for (x, r) in v.iter_mut().zip(&group) {
                            *x = number(*r, "data", Some(i));
                        }
                        f.eval(&v)
                    })
                    .collect();
                o.insert("count".into(), json!(data.iter().sum::<f64>()));
                o.insert("data".into(), json!(data));
            }
            computed.push(row);
        }
        if rows
            .iter()
            .flatten()
            .any(|r| r.get("breakdown_value").is_some())
        {
            computed.sort_by(|a, b| order(b).cmp_key(&order(a)));
        }
        out.extend(computed);
    }
    out
}

/// What PostHog sorts a formula's breakdown rows by (largest first):
/// values, then the null one, then Other; by total (a total value's, or
/// the sum of the data), `count`, the data, the value's text.
struct SortKey {
    class: u8,
    total: f64,
    count: f64,
    data: Vec<f64>,
    value: String,
}

fn order(r: &Value) -> SortKey {
    let data: Vec<f64> = r
        .get("data")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    SortKey {
        class: match r.get("breakdown_value").and_then(Value::as_str) {
            Some(BREAKDOWN_OTHER) => 0,
            Some(BREAKDOWN_NULL) => 1,
            _ => 2,
        },
        total: r
            .get("aggregated_value")
            .and_then(Value::as_f64)
            .unwrap_or_else(|| data.iter().sum()),
        count: r.get("count").and_then(Value::as_f64).unwrap_or(0.0),
        value: r
            .get("breakdown_value")
            .map_or_else(String::new, Value::to_string),
        data,
    }
}

impl SortKey {
    fn cmp_key(&self, o: &SortKey) -> std::cmp::Ordering {
        self.class
            .cmp(&o.class)
            .then_with(|| self.total.total_cmp(&o.total))
            .then_with(|| self.count.total_cmp(&o.count))
            .then_with(|| {
                self.data
                    .iter()
                    .zip(&o.data)
                    .map(|(a, b)| a.total_cmp(b))
                    .find(|c| c.is_ne())
                    .unwrap_or_else(|| self.data.len().cmp(&o.data.len()))
            })
            .then_with(|| self.value.cmp(&o.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, v: &[f64]) -> f64 {
        Formula::parse(text, None, v.len())
            .expect("formula")
            .eval(v)
    }

    fn refused(text: &str, series: usize) -> String {
        Formula::parse(text, None, series)
            .expect_err("refused")
            .to_string()
    }

    /// Python's arithmetic, as PostHog's `FormulaAST` evaluates it.
    #[test]
    fn arithmetic_is_pythons() {
        let v = [6.0, 3.0, 0.0];
        assert_eq!(value("A + B * 2", &v), 12.0);
        assert_eq!(value("(a + b) / 2", &v), 4.5);
        assert_eq!(value("A / C", &v), 0.0, "ZeroDivisionError is 0");
        assert_eq!(value("A % C", &v), 0.0);
        assert_eq!(value("C ** -1", &v), 0.0);
        assert_eq!(value("-B ** 2", &v), -9.0, "** binds before a unary minus");
        assert_eq!(value("2 ** 3 ** 2", &v), 512.0, "** groups from the right");
        assert_eq!(value("B ** -1 * 3", &v), 1.0);
        assert_eq!(value("-7 % 3", &v), 2.0, "floored modulo");
        assert_eq!(value("7 % -3", &v), -2.0);
        let w = [6.0, 3.0, 2.0];
        assert_eq!(value("A - B - C - 1", &w), 0.0, "left to right");
        assert_eq!(value("A / B * C", &w), 4.0, "left to right");
        assert_eq!(value("A / (B * C)", &w), 1.0);
        assert_eq!(value("5.5 % 0.1", &v), 5.5 % 0.1, "CPython's float modulo");
        assert_eq!(value("-5.5 % 0.1", &v), 0.1 - 5.5 % 0.1);
        assert!(value("-C", &v).is_sign_positive(), "no negative zero");
        assert!(value("0 / -5", &v).is_sign_positive());
        assert_eq!(value("0 ** 0", &v), 1.0);
        for (text, n) in [
            ("1e3 + 1_000 + .5", 2000.5),
            ("1. + 1.e1 + 2.5e-1", 11.25),
            ("0x10 + 0o10 + 0b10 + 0x_f", 41.0),
            ("00 + 0 + 0.5 + 01e1 + 1e1_0", 10_000_000_010.5),
        ] {
            assert_eq!(value(text, &v), n, "{text}");
        }
        let deep = format!("{}A{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(value(&deep, &v), 6.0, "60 parentheses");
        assert_eq!(value("+-+A", &v), -6.0);
        assert_eq!(value("10 ** 400", &v), 0.0, "no finite number");
        assert_eq!(value("(-8) ** 0.5", &v), 0.0, "Python's complex number");
    }

    #[test]
    fn what_is_not_arithmetic_between_series_is_refused() {
        assert!(refused("A + C", 2)
            .contains("references series C, but only 2 series are defined (A, B)"));
        assert!(refused("AB", 2).contains("series AB"));
        assert!(refused("sum(A)", 2).contains("SUM()"));
        assert!(refused("A > B", 2).contains("'>'"));
        assert!(
            refused("A B", 2).contains("unexpected 'B'"),
            "{}",
            refused("A B", 2)
        );
        for bad in [
            "1__0", "1_", "1_.5", "1._5", "007", "0x", "0x1g", "1e", "1e+", "2a", "1..2",
        ] {
            assert!(
                refused(bad, 1).contains("not a number"),
                "{bad}: {}",
                refused(bad, 1)
            );
        }
        assert!(refused("é", 1).contains("not allowed"));
        assert!(refused("A*é", 1).contains("not allowed"));
        assert!(refused("1é", 1).contains("not allowed"));
        assert!(refused("A +", 2).contains("ends"));
        assert!(refused("(A", 2).contains("not closed"));
        assert!(refused("1.2.3", 2).contains("not a number"));
        assert!(refused(&"(".repeat(100), 1).contains("deep"));
        assert!(refused(&"-".repeat(100), 1).contains("deep"));
        assert!(refused(&"A+".repeat(600), 1).contains("bytes"));
    }
}
