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

use serde_json::{json, Map, Value};

use super::{invalid, BREAKDOWN_NULL, BREAKDOWN_OTHER};
use crate::error::Result;

/// Longest formula text.
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
            return invalid(format!("a formula is at most {MAX_LEN} characters"));
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
                "formula {text:?}: unexpected {:?}; formulas only support arithmetic ( + - * / % ** ) between series",
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
        if x.is_finite() {
            x
        } else {
            0.0
        }
    }

    /// PostHog's label of its row.
    fn label(&self) -> String {
        self.custom_name
            .clone()
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
                Op::Mod => a - b * (a / b).floor(),
                Op::Pow if a == 0.0 && b < 0.0 => 0.0,
                Op::Pow => a.powf(b),
            }
        }
    }
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
        } else if c.is_ascii_digit() || c == b'.' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            // An exponent: 1e3, 2.5e-2.
            if i < b.len() && b[i] == b'e' {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let text = s[start..i].replace('_', "");
            match text.parse::<f64>() {
                Ok(n) if n.is_finite() => out.push(Token::Num(n)),
                _ => return invalid(format!("formula: {:?} is not a number", &s[start..i])),
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
                self.at += 1;
                self.deeper()?;
                let e = self.sum()?;
                self.depth -= 1;
                if !self.sym(")") {
                    return invalid("formula: a parenthesis is not closed");
                }
                Ok(e)
            }
            Some(t) => invalid(format!(
                "formula: unexpected {t:?}; formulas only support arithmetic ( + - * / % ** ) between series"
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
    let key = |r: &Value| r.get("breakdown_value").cloned().unwrap_or(Value::Null);
    // The breakdown values in the order they first appear.
    let mut values: Vec<Value> = Vec::new();
    for r in rows.iter().flatten() {
        let k = key(r);
        if !values.contains(&k) {
            values.push(k);
        }
    }
    let periods = rows
        .iter()
        .flatten()
        .find_map(|r| r.get("data").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0);
    let mut out = Vec::new();
    for f in formulas {
        let mut computed = Vec::new();
        for k in &values {
            let group: Vec<Option<&Value>> = rows
                .iter()
                .map(|series| series.iter().find(|r| key(r) == *k))
                .collect();
            let Some(base) = group.iter().flatten().next() else {
                continue;
            };
            let mut row = (*base).clone();
            let Some(o) = row.as_object_mut() else {
                continue;
            };
            o.insert("label".into(), json!(f.label()));
            o.insert("action".into(), Value::Null);
            let number = |r: Option<&&Value>, field: &str, i: Option<usize>| -> f64 {
                r.and_then(|r| match i {
                    Some(i) => r.get(field)?.as_array()?.get(i)?.as_f64(),
                    None => r.get(field)?.as_f64(),
                })
                .unwrap_or(0.0)
            };
            if total_value {
                let v: Vec<f64> = group
                    .iter()
                    .map(|r| number(r.as_ref(), "aggregated_value", None))
                    .collect();
                o.insert("aggregated_value".into(), json!(f.eval(&v)));
                o.insert("data".into(), Value::Null);
                o.insert("count".into(), json!(0));
            } else {
                let data: Vec<f64> = (0..periods)
                    .map(|i| {
                        let v: Vec<f64> = group
                            .iter()
                            .map(|r| number(r.as_ref(), "data", Some(i)))
                            .collect();
                        f.eval(&v)
                    })
                    .collect();
                o.insert("count".into(), json!(data.iter().sum::<f64>()));
                o.insert("data".into(), json!(data));
            }
            computed.push(row);
        }
        if values.iter().any(|v| !v.is_null()) {
            let class = |r: &Value| match r.get("breakdown_value").and_then(Value::as_str) {
                Some(BREAKDOWN_OTHER) => 0,
                Some(BREAKDOWN_NULL) => 1,
                _ => 2,
            };
            let total = |r: &Value| {
                r.get("aggregated_value")
                    .and_then(Value::as_f64)
                    .unwrap_or_else(|| {
                        r.get("data")
                            .and_then(Value::as_array)
                            .map_or(0.0, |d| d.iter().filter_map(Value::as_f64).sum())
                    })
            };
            computed.sort_by(|a, b| {
                class(b)
                    .cmp(&class(a))
                    .then_with(|| total(b).total_cmp(&total(a)))
                    .then_with(|| key(b).to_string().cmp(&key(a).to_string()))
            });
        }
        out.extend(computed);
    }
    out
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
        assert_eq!(value("A - B - C - 1", &v), 2.0, "left to right");
        assert_eq!(value("1e3 + 1_000 + .5", &v), 2000.5);
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
        assert!(refused("A +", 2).contains("ends"));
        assert!(refused("(A", 2).contains("not closed"));
        assert!(refused("A B", 2).contains("unexpected"));
        assert!(refused("1.2.3", 2).contains("not a number"));
        assert!(refused(&"(".repeat(100), 1).contains("deep"));
        assert!(refused(&"-".repeat(100), 1).contains("deep"));
        assert!(refused(&"A+".repeat(600), 1).contains("characters"));
    }
}
