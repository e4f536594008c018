//! The XenAPI value model shared by both wire formats.
//!
//! XenAPI types map onto one small tree: `string`, refs, uuids and enums are
//! [`Value::String`]; XenAPI `int` is 64-bit and travels as a decimal string
//! in XML-RPC but as a number in JSON-RPC, so it has its own variant
//! [`Value::Int`]; `set` is [`Value::Array`]; maps and records are
//! [`Value::Struct`] (keys are strings on both wires). XML-RPC `<nil/>` and
//! JSON `null` are [`Value::Nil`].
//!
//! Because XML-RPC clients send XenAPI ints as strings (and JSON-RPC clients
//! as numbers), the accessors here are lenient in the direction XAPI is:
//! [`Value::as_int`] accepts a decimal string, [`Value::as_bool`] accepts
//! `"true"`/`"false"`.

#[allow(unused_imports)]
use crate::prelude::*;

/// One XenAPI value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string, ref, uuid or enum value.
    String(String),
    /// A XenAPI `int` (64-bit).
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A XenAPI `float`.
    Double(f64),
    /// A XenAPI `datetime`, kept in XML-RPC's `YYYYMMDDTHH:MM:SSZ` form.
    DateTime(String),
    /// A `set`.
    Array(Vec<Value>),
    /// A `map` or a record.
    Struct(BTreeMap<String, Value>),
    /// XML-RPC `<nil/>`, JSON `null`.
    Nil,
}

/// The value as a person reads it (tables of the command line): scalars
/// bare (`true`, `42`, `Running`), sets as `a, b`, maps as `k: v; k2: v2`,
/// nil empty. Scripts want the typed form (`--json`).
impl core::fmt::Display for Value {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Value::String(s) | Value::DateTime(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
            Value::Struct(m) => {
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                Ok(())
            }
            Value::Nil => Ok(()),
        }
    }
}

impl Value {
    /// Builds a string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// Builds a struct from `(key, value)` pairs.
    pub fn record<K: Into<String>>(fields: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Struct(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Builds an array of strings (a `string set` or `ref set`).
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
    }

    /// An empty struct (an empty XenAPI map).
    pub fn empty_map() -> Value {
        Value::Struct(BTreeMap::new())
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::DateTime(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, from a number or a decimal string.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::String(s) => s.trim().parse().ok(),
            Value::Double(d) if (*d as i64) as f64 == *d && *d > -9.0e18 && *d < 9.0e18 => {
                Some(*d as i64)
            }
            _ => None,
        }
    }

    /// The float, from a double, an int or a decimal string.
    pub fn as_double(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            Value::Int(i) => Some(*i as f64),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The boolean, from a boolean or `"true"`/`"false"`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The fields, if this is a struct.
    pub fn as_struct(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Struct(m) => Some(m),
            _ => None,
        }
    }

    /// A field of a struct.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_struct().and_then(|m| m.get(key))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Value {
        Value::Double(d)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Value {
        Value::Array(a)
    }
}

impl From<BTreeMap<String, Value>> for Value {
    fn from(m: BTreeMap<String, Value>) -> Value {
        Value::Struct(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_accessors() {
        assert_eq!(Value::str("268435456").as_int(), Some(268_435_456));
        assert_eq!(Value::Int(-3).as_int(), Some(-3));
        assert_eq!(Value::str("x").as_int(), None);
        assert_eq!(Value::str("true").as_bool(), Some(true));
        assert_eq!(Value::Bool(false).as_bool(), Some(false));
        assert_eq!(Value::Int(2).as_double(), Some(2.0));
        let r = Value::record([("a", Value::Int(1))]);
        assert_eq!(r.get("a"), Some(&Value::Int(1)));
        assert_eq!(r.get("b"), None);
    }

    #[test]
    fn plain_display_for_people() {
        assert_eq!(Value::Bool(true).to_string(), "true");
        assert_eq!(Value::Int(21).to_string(), "21");
        assert_eq!(Value::str("Running").to_string(), "Running");
        assert_eq!(Value::strings(["a", "b"]).to_string(), "a, b");
        assert_eq!(
            Value::record([("x", Value::Int(1)), ("y", Value::str("z"))]).to_string(),
            "x: 1; y: z"
        );
        assert_eq!(Value::Nil.to_string(), "");
    }
}
