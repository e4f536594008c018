//! Measuring a record against the field limits of [`crate::limits`]
//! without encoding it: a serde serializer that walks the record as the
//! pool database's JSON encoding would, checks each field as it passes
//! (strings, maps, their keys and values) and adds up the encoded size,
//! allocating nothing. Every `VM.create` and every record edit is checked,
//! so this is on the create+start path; building a `serde_json::Value` and
//! encoding it to measure it cost more than the rest of the engine's work.
//!
//! The size is exact for what records hold (strings, integers, booleans,
//! maps, sequences, nulls): JSON's escapes are counted as `serde_json`
//! writes them. A float is counted as its longest form; if the total then
//! exceeds the limit, the caller encodes the record to know the exact size.

use alloc::format;
use core::fmt;

use serde::ser::{self, Serialize};

use crate::action::ActionError;
use crate::limits::{too_big, MAX_MAP_ENTRIES, MAX_MAP_KEY, MAX_MAP_VALUE, MAX_STRING};

/// What measuring found: the encoded size, and whether it is an upper
/// bound rather than exact (floats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Measure {
    /// Encoded bytes (JSON, compact).
    pub size: usize,
    /// `size` may exceed the exact size.
    pub bound: bool,
}

/// Walks `rec`, a record (a struct of fields), checking its fields;
/// returns its encoded size.
pub(crate) fn measure<T: Serialize + ?Sized>(rec: &T) -> Result<Measure, ActionError> {
    let mut m = Measure {
        size: 0,
        bound: false,
    };
    match rec.serialize(Walk {
        m: &mut m,
        at: At::Record,
    }) {
        Ok(()) => Ok(m),
        Err(Stop(e)) => Err(e),
    }
}

/// Where the walk is, which decides the checks.
#[derive(Clone, Copy)]
enum At {
    /// The record itself.
    Record,
    /// The value of the record's field.
    Field(&'static str),
    /// A key of a map field.
    Key(&'static str),
    /// A value of a map field.
    Value(&'static str),
    /// Deeper: counted, not checked.
    Deep,
}

/// What the entries of a compound value are.
#[derive(Clone, Copy)]
enum Entries {
    /// The record's fields.
    Fields,
    /// A map field's entries (a struct in a field is checked as a map).
    MapOf(&'static str),
    /// Counted, not checked (sequences, anything deeper).
    Deep,
}

/// A limit was exceeded (or, never in practice, a serializer error).
#[derive(Debug)]
pub(crate) struct Stop(ActionError);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl core::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Stop(ActionError::internal(msg))
    }
}

fn too_many_keys(field: &str) -> Stop {
    Stop(too_big(
        field,
        "",
        format!("more than {MAX_MAP_ENTRIES} keys"),
    ))
}

fn key_too_long(field: &str, key: &str) -> Stop {
    Stop(too_big(
        field,
        key,
        format!("a key longer than {MAX_MAP_KEY} bytes"),
    ))
}

/// The encoded length of `s` as a JSON string, quotes included, escaped as
/// `serde_json` escapes: `"` and `\`, the five short control escapes, other
/// control bytes as `\u00XX`.
fn str_len(s: &str) -> usize {
    s.len()
        + 2
        + s.bytes()
            .map(|b| usize::from(ESCAPE[usize::from(b)]))
            .sum::<usize>()
}

/// What escaping adds to a byte: 1 for a two-byte escape, 5 for `\u00XX`.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = 5;
        b += 1;
    }
    t[0x08] = 1;
    t[0x0c] = 1;
    t[b'\n' as usize] = 1;
    t[b'\r' as usize] = 1;
    t[b'\t' as usize] = 1;
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t
};

fn u64_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn i64_len(n: i64) -> usize {
    usize::from(n < 0) + u64_len(n.unsigned_abs())
}

/// The serializer: counts into `m`, checks by `at`.
struct Walk<'m> {
    m: &'m mut Measure,
    at: At,
}

impl<'m> Walk<'m> {
    fn add(&mut self, n: usize) {
        self.m.size = self.m.size.saturating_add(n);
    }

    /// Opens a compound value: `open` bytes now, `close` at its end.
    fn open(
        mut self,
        entries: Entries,
        len: Option<usize>,
        open: usize,
        close: usize,
    ) -> Result<Compound<'m>, Stop> {
        if let (Entries::MapOf(f), Some(n)) = (entries, len) {
            if n > MAX_MAP_ENTRIES {
                return Err(too_many_keys(f));
            }
        }
        self.add(open);
        Ok(Compound {
            m: self.m,
            entries,
            n: 0,
            close,
        })
    }

    /// How the entries of a map or struct here are checked.
    fn entries(&self) -> Entries {
        match self.at {
            At::Record => Entries::Fields,
            At::Field(f) => Entries::MapOf(f),
            _ => Entries::Deep,
        }
    }
}

/// A sequence, map or struct being walked.
struct Compound<'m> {
    m: &'m mut Measure,
    entries: Entries,
    /// Entries so far.
    n: usize,
    /// Closing bytes (`]` or `}`, one more `}` for a variant).
    close: usize,
}

impl Compound<'_> {
    fn add(&mut self, n: usize) {
        self.m.size = self.m.size.saturating_add(n);
    }

    /// Counts the comma before an entry, and the entry against the limit.
    fn next(&mut self) -> Result<(), Stop> {
        if self.n > 0 {
            self.add(1);
        }
        self.n += 1;
        match self.entries {
            Entries::MapOf(f) if self.n > MAX_MAP_ENTRIES => Err(too_many_keys(f)),
            _ => Ok(()),
        }
    }

    fn walk<T: Serialize + ?Sized>(&mut self, at: At, v: &T) -> Result<(), Stop> {
        v.serialize(Walk { m: self.m, at })
    }

    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Stop> {
        if self.n > 0 {
            self.add(1);
        }
        self.n += 1;
        self.walk(At::Deep, v)
    }

    /// A struct field: `"name":value`.
    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, v: &T) -> Result<(), Stop> {
        self.next()?;
        let at = match self.entries {
            Entries::Fields => At::Field(name),
            Entries::MapOf(f) if name.len() > MAX_MAP_KEY => return Err(key_too_long(f, name)),
            Entries::MapOf(f) => At::Value(f),
            Entries::Deep => At::Deep,
        };
        self.add(str_len(name) + 1);
        self.walk(at, v)
    }

    fn finish(mut self) -> Result<(), Stop> {
        let close = self.close;
        self.add(close);
        Ok(())
    }
}

impl<'m> ser::Serializer for Walk<'m> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Compound<'m>;
    type SerializeTuple = Compound<'m>;
    type SerializeTupleStruct = Compound<'m>;
    type SerializeTupleVariant = Compound<'m>;
    type SerializeMap = Compound<'m>;
    type SerializeStruct = Compound<'m>;
    type SerializeStructVariant = Compound<'m>;

    fn serialize_bool(mut self, v: bool) -> Result<(), Stop> {
        self.add(if v { 4 } else { 5 });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Stop> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Stop> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Stop> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(mut self, v: i64) -> Result<(), Stop> {
        // A number as a map key is written quoted.
        let quotes = if matches!(self.at, At::Key(_)) { 2 } else { 0 };
        self.add(i64_len(v) + quotes);
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Stop> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Stop> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Stop> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(mut self, v: u64) -> Result<(), Stop> {
        let quotes = if matches!(self.at, At::Key(_)) { 2 } else { 0 };
        self.add(u64_len(v) + quotes);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Stop> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(mut self, v: f64) -> Result<(), Stop> {
        if v.is_finite() {
            // The longest form `ryu` writes, quoted if a key.
            self.add(24 + 2);
            self.m.bound = true;
        } else {
            self.add(4);
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Stop> {
        let mut buf = [0; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }

    fn serialize_str(mut self, v: &str) -> Result<(), Stop> {
        match self.at {
            At::Field(f) if v.len() > MAX_STRING => {
                return Err(Stop(too_big(
                    f,
                    v,
                    format!("longer than {MAX_STRING} bytes"),
                )))
            }
            At::Key(f) if v.len() > MAX_MAP_KEY => return Err(key_too_long(f, v)),
            At::Value(f) if v.len() > MAX_MAP_VALUE => {
                return Err(Stop(too_big(
                    f,
                    v,
                    format!("a value longer than {MAX_MAP_VALUE} bytes"),
                )))
            }
            _ => {}
        }
        self.add(str_len(v));
        Ok(())
    }

    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), Stop> {
        // An array of numbers.
        let digits: usize = v.iter().map(|b| u64_len((*b).into())).sum();
        self.add(2 + digits + v.len().saturating_sub(1));
        Ok(())
    }

    fn serialize_none(mut self) -> Result<(), Stop> {
        self.add(4);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Stop> {
        v.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Stop> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Stop> {
        self.serialize_none()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Stop> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Stop> {
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Stop> {
        // `{"variant":value}`
        self.add(str_len(variant) + 3);
        v.serialize(Walk {
            m: self.m,
            at: At::Deep,
        })
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'m>, Stop> {
        self.open(Entries::Deep, len, 1, 1)
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'m>, Stop> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'m>, Stop> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'m>, Stop> {
        // `{"variant":[...]}`
        self.open(Entries::Deep, Some(len), str_len(variant) + 3, 2)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'m>, Stop> {
        let entries = self.entries();
        self.open(entries, len, 1, 1)
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'m>, Stop> {
        let entries = self.entries();
        self.open(entries, Some(len), 1, 1)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'m>, Stop> {
        // `{"variant":{...}}`
        self.open(Entries::Deep, Some(len), str_len(variant) + 3, 2)
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Stop> {
        self.element(v)
    }

    fn end(self) -> Result<(), Stop> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Stop> {
        self.element(v)
    }

    fn end(self) -> Result<(), Stop> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Stop> {
        self.element(v)
    }

    fn end(self) -> Result<(), Stop> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Stop> {
        self.element(v)
    }

    fn end(self) -> Result<(), Stop> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Stop> {
        self.next()?;
        let at = match self.entries {
            Entries::MapOf(f) => At::Key(f),
            _ => At::Deep,
        };
        self.walk(at, k)?;
        // The colon.
        self.add(1);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Stop> {
        let at = match self.entries {
            Entries::MapOf(f) => At::Value(f),
            _ => At::Deep,
        };
        self.walk(at, v)
    }

    fn end(self) -> Result<(), Stop> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), Stop> {
        self.field(name, v)
    }

    fn end(self) -> Result<(), Stop> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), Stop> {
        self.field(name, v)
    }

    fn end(self) -> Result<(), Stop> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::{String, ToString};
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::action::{Class, Record, VmRecord};

    fn exact<T: Serialize>(rec: &T) -> usize {
        serde_json::to_vec(rec).unwrap().len()
    }

    /// Strings with every escape class `serde_json` has, and non-ASCII.
    fn awkward() -> Vec<String> {
        vec![
            String::new(),
            "plain".into(),
            "quote \" and backslash \\".into(),
            "\u{8}\u{c}\n\r\t".into(),
            "\u{0}\u{1}\u{1f} \u{7f}".into(),
            "é ✓ 𝄞".into(),
        ]
    }

    #[test]
    fn sizes_are_exact_for_every_class() {
        for class in Class::ALL {
            let rec = crate::db::decode(class, b"{}").unwrap();
            let m = measure(&rec).unwrap();
            if class == Class::Task {
                // `progress` is a float: a bound.
                assert!(m.bound && m.size >= exact(&rec), "{class}");
            } else {
                assert_eq!(
                    m,
                    Measure {
                        size: exact(&rec),
                        bound: false
                    },
                    "{class}"
                );
            }
        }
    }

    #[test]
    fn sizes_are_exact_with_escapes_maps_and_lists() {
        let mut v = VmRecord {
            domid: -42,
            memory_static_max: i64::MAX,
            VCPUs_max: i64::MIN,
            ..VmRecord::default()
        };
        for (i, s) in awkward().into_iter().enumerate() {
            v.other_config.insert(s.clone(), s.clone());
            v.platform.insert(i.to_string(), s.clone());
            v.tags.push(s.clone());
            v.name_description.push_str(&s);
        }
        let rec = Record::Vm(v);
        assert_eq!(
            measure(&rec).unwrap(),
            Measure {
                size: exact(&rec),
                bound: false
            }
        );
        // Through the inner record too (`check_new` measures that).
        let Record::Vm(v) = rec else { unreachable!() };
        assert_eq!(measure(&v).unwrap().size, exact(&v));
    }

    #[test]
    fn checks_name_the_field() {
        let field = |e: ActionError| match e {
            ActionError::ValueNotSupported { field, .. } => field,
            e => panic!("{e:?}"),
        };
        let v = VmRecord {
            PV_args: "a".repeat(MAX_STRING + 1),
            ..VmRecord::default()
        };
        assert_eq!(field(measure(&v).unwrap_err()), "PV_args");
        // Sequences' strings are not field strings: only the size bounds
        // them.
        let v = VmRecord {
            tags: vec!["t".repeat(MAX_STRING + 1)],
            ..VmRecord::default()
        };
        assert!(measure(&v).is_ok());
        let mut v = VmRecord::default();
        v.xenstore_data
            .insert("k".repeat(MAX_MAP_KEY + 1), String::new());
        assert_eq!(field(measure(&v).unwrap_err()), "xenstore_data");
        let mut v = VmRecord::default();
        v.platform.insert("k".into(), "v".repeat(MAX_MAP_VALUE + 1));
        assert_eq!(field(measure(&v).unwrap_err()), "platform");
        let v = VmRecord {
            VCPUs_params: (0..=MAX_MAP_ENTRIES)
                .map(|i| (i.to_string(), String::new()))
                .collect(),
            ..VmRecord::default()
        };
        assert_eq!(field(measure(&v).unwrap_err()), "VCPUs_params");
    }
}
