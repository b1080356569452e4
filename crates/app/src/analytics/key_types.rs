//! `elide_key_types(json)`: the keys of a JSON object, each prefixed by
//! its value's kind (`s:` text, `n:` number, `b:` true or false, `z:`
//! null, `o:` an object or a list), read in one pass over the text; NULL
//! for NULL, for text that is not JSON and for JSON that is no object.
//! The property definitions read the properties' names and types with it
//! (one parse per row, where a lookup per key would parse the object
//! once per key).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The function's name in SQL.
pub(crate) const NAME: &str = "elide_key_types";

/// The function, to register on a session.
pub(crate) fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(KeyTypes {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyTypes {
    signature: Signature,
}

impl ScalarUDFImpl for KeyTypes {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Utf8,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        let values = arrow::compute::cast(&values, &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        let mut out = ListBuilder::new(StringBuilder::new());
        for i in 0..values.len() {
            let keys = if values.is_null(i) {
                None
            } else {
                key_types(values.value(i))
            };
            match keys {
                Some(keys) => {
                    for k in keys {
                        out.values().append_value(k);
                    }
                    out.append(true);
                }
                None => out.append(false),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// `kind:key` of each member of the object `text` (`None`: not a JSON
/// object).
pub(crate) fn key_types(text: &str) -> Option<Vec<String>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let keys = de.deserialize_map(Members).ok()?;
    de.end().ok()?;
    Some(keys)
}

struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Kind(kind) = map.next_value()?;
            out.push(format!("{kind}:{key}"));
        }
        Ok(out)
    }
}

/// A value's kind, the value itself skipped.
struct Kind(char);

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindOf)
    }
}

struct KindOf;

impl<'de> Visitor<'de> for KindOf {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind('b'))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind('n'))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
        Ok(Kind('n'))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind('n'))
    }

    fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind('s'))
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind('z'))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Kind('o'))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Kind('o'))
    }
}

#[cfg(test)]
mod tests {
    use super::key_types;

    #[test]
    fn each_members_kind_in_one_pass() {
        assert_eq!(
            key_types(
                r#"{"a": "x", "b": 1.5, "c": -2, "d": true, "e": null, "f": [1], "g": {"h": 1}, "i\"j": "k"}"#
            ),
            Some(
                ["s:a", "n:b", "n:c", "b:d", "z:e", "o:f", "o:g", "s:i\"j"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert_eq!(key_types("{}"), Some(Vec::new()));
        for not_an_object in ["[1]", "3", "\"x\"", "null", "{", "{\"a\": 1} x", ""] {
            assert_eq!(key_types(not_an_object), None, "{not_an_object}");
        }
    }
}
