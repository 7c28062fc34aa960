//! Compact JSON for records: byte for byte what `serde_json::to_writer`
//! writes, in about half the time on our records.
//!
//! serde_json looks every byte of every key and string up in its escape
//! table and writes each piece through `io::Write`. Records are mostly short
//! plain strings (keys, names, timestamps, hex) and numbers, so here a
//! string is checked eight bytes at a time and copied whole when it needs no
//! escape; numbers use the same `itoa` and `zmij` (shortest round-trip
//! floats) that serde_json uses, so every value is spelled the same. The
//! tests at the bottom compare the two on every byte value and value shape,
//! and debug builds (so every test run) compare them on every record
//! written (`Record::write_json`).

use serde::ser::{self, Serialize};
use std::fmt::{self, Display};

/// Serialising a value that JSON cannot hold (a map key that is not a
/// string or a number, a custom error from a `Serialize` impl).
#[derive(Debug)]
pub struct Error(String);

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Appends `value` as one line of compact JSON (no newline).
pub fn write<T: ?Sized + Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Writer { out })
}

pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// No byte needs an escape: none is a control byte (< 0x20), `"` or `\`.
/// Eight bytes at a time with the exact "has a byte less than n" and "has
/// a zero byte" word tests.
fn plain(s: &[u8]) -> bool {
    let mut words = s.chunks_exact(8);
    let mut bad = 0u64;
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        bad |= x.wrapping_sub(ONES * 0x20) & !x;
        bad |= quote.wrapping_sub(ONES) & !quote;
        bad |= slash.wrapping_sub(ONES) & !slash;
    }
    bad & HIGH == 0
        && words
            .remainder()
            .iter()
            .all(|&c| c >= 0x20 && c != b'"' && c != b'\\')
}

/// The escapes serde_json writes: the short forms, else `\u00xx`.
fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if short.is_empty() {
            let hex = crate::record::HEX;
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                hex[(c >> 4) as usize],
                hex[(c & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// The inside of a string (no quotes).
fn str_contents(out: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
    } else {
        escape_into(out, s.as_bytes());
    }
}

pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    str_contents(out, s);
    out.push(b'"');
}

fn int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// serde_json writes non-finite floats as `null`.
pub(crate) fn float<F: zmij::Float>(out: &mut Vec<u8>, v: F, finite: bool) {
    if finite {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `Display` output as a string, escaped as it is written.
pub(crate) fn display<T: ?Sized + Display>(out: &mut Vec<u8>, v: &T) -> Result<(), Error> {
    out.push(b'"');
    fmt::write(&mut Escaping(out), format_args!("{v}"))
        .map_err(|_| Error("a Display impl failed".into()))?;
    out.push(b'"');
    Ok(())
}

struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        str_contents(self.0, s);
        Ok(())
    }
}

/// Arrays and objects: a comma before every element but the first, and
/// what closes it (`}}` / `]}` for the variant forms).
pub struct Compound<'a, 'b> {
    w: &'b mut Writer<'a>,
    first: bool,
    close: &'static [u8],
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.w.out.push(b',');
        }
    }

    fn end(self) {
        self.w.out.extend_from_slice(self.close);
    }

    fn element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        self.comma();
        v.serialize(&mut *self.w)
    }

    /// A struct field. Its name is a `&'static str` of the program (an
    /// identifier or a serde rename), so it is written without a scan;
    /// debug builds check that it needs no escape.
    fn field<T: ?Sized + Serialize>(&mut self, key: &'static str, v: &T) -> Result<(), Error> {
        debug_assert!(plain(key.as_bytes()), "field name {key:?} needs escaping");
        let out = &mut *self.w.out;
        out.reserve(key.len() + 4);
        if self.first {
            self.first = false;
        } else {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        v.serialize(&mut *self.w)
    }
}

impl<'a> Writer<'a> {
    fn open<'b>(&'b mut self, open: &[u8], close: &'static [u8]) -> Compound<'a, 'b> {
        self.out.extend_from_slice(open);
        Compound {
            w: self,
            first: true,
            close,
        }
    }

    /// `{"variant":` of the externally tagged enum forms.
    fn variant_key(&mut self, variant: &str) {
        self.out.push(b'{');
        string(self.out, variant);
        self.out.push(b':');
    }
}

/// The ten integer methods of a `Serializer`: `$body` with `self` bound to
/// `$s` and the value to `$v`.
macro_rules! ints {
    (|$s:ident, $v:ident| $body:expr) => {
        ints!(@ $s $v $body; serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
            serialize_u32: u32, serialize_u64: u64, serialize_u128: u128);
    };
    (@ $s:ident $v:ident $body:expr; $($name:ident : $t:ty),*) => {$(
        fn $name(self, $v: $t) -> Result<(), Error> {
            let $s = self;
            $body
        }
    )*};
}

impl<'a, 'b> ser::Serializer for &'b mut Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'b>;
    type SerializeTuple = Compound<'a, 'b>;
    type SerializeTupleStruct = Compound<'a, 'b>;
    type SerializeTupleVariant = Compound<'a, 'b>;
    type SerializeMap = Compound<'a, 'b>;
    type SerializeStruct = Compound<'a, 'b>;
    type SerializeStructVariant = Compound<'a, 'b>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    ints!(|w, v| {
        int(w.out, v);
        Ok(())
    });
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        float(self.out, v, v.is_finite());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        float(self.out, v, v.is_finite());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.out, v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let mut c = self.open(b"[", b"]");
        for b in v {
            c.element(b)?;
        }
        c.end();
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Error> {
        self.serialize_str(v)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.variant_key(variant);
        v.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a, 'b>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a, 'b>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.variant_key(variant);
        Ok(self.open(b"[", b"]}"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a, 'b>, Error> {
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.variant_key(variant);
        Ok(self.open(b"{", b"}}"))
    }
    fn collect_str<T: ?Sized + Display>(self, v: &T) -> Result<(), Error> {
        display(self.out, v)
    }
}

/// Arrays, whatever serde calls them.
macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
                self.element(v)
            }
            fn end(self) -> Result<(), Error> {
                Compound::end(self);
                Ok(())
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, k: &T) -> Result<(), Error> {
        self.comma();
        k.serialize(Key(&mut *self.w.out))
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        self.w.out.push(b':');
        v.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

/// Objects with named fields.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Error> {
                self.field(key, v)
            }
            fn end(self) -> Result<(), Error> {
                Compound::end(self);
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

/// Map keys, as serde_json takes them: strings, and numbers and booleans
/// written as strings; anything else is an error.
struct Key<'a>(&'a mut Vec<u8>);

fn not_a_key() -> Error {
    Error("key must be a string".into())
}

impl Key<'_> {
    fn quoted(self, f: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        self.0.push(b'"');
        f(self.0);
        self.0.push(b'"');
        Ok(())
    }
}

impl ser::Serializer for Key<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.quoted(|o| o.extend_from_slice(if v { b"true" } else { b"false" }))
    }
    ints!(|k, v| k.quoted(|o| int(o, v)));
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(Error("float key must be finite".into()));
        }
        self.quoted(|o| float(o, v, true))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(Error("float key must be finite".into()));
        }
        self.quoted(|o| float(o, v, true))
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.0, v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        string(self.0, v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(not_a_key())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Error> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Err(not_a_key())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Error> {
        string(self.0, v);
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_key())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(not_a_key())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_key())
    }
    fn collect_str<T: ?Sized + Display>(self, v: &T) -> Result<(), Error> {
        display(self.0, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn same<T: Serialize>(v: &T) -> String {
        let mut ours = Vec::new();
        write(&mut ours, v).unwrap();
        let theirs = serde_json::to_vec(v).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
        String::from_utf8(ours).unwrap()
    }

    #[test]
    fn strings_escape_like_serde_json() {
        // Every byte value in every position of a word, and at the tail.
        for c in 0u8..=0x7f {
            for pos in [0, 3, 7, 8, 12] {
                let mut s = vec![b'a'; 13];
                s[pos] = c;
                same(&String::from_utf8(s).unwrap());
            }
        }
        // DEL and non-ASCII go through as they are, as in serde_json.
        assert_eq!(
            same(&"a\"b\\c\n\u{1}\u{7f}é☃"),
            "\"a\\\"b\\\\c\\n\\u0001\u{7f}é☃\""
        );
        same(&"");
        same(&"\u{8}\u{c}\r\t\u{1f} ");
    }

    #[test]
    fn numbers_floats_and_shapes_like_serde_json() {
        same(&(u64::MAX, i64::MIN, u128::MAX, -0i32, 255u8));
        same(&[
            0.0f64,
            -0.0,
            1.0,
            0.1,
            1e21,
            1e-7,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
        ]);
        same(&[1.5f32, f32::NAN, 3.4e38]);
        same(&(Some(1u8), None::<u8>, (), 'x', true, false));
        same(&serde_bytes_like(b"\x00\xff"));
        let mut m = BTreeMap::new();
        m.insert("k\"ey", vec![1u16, 2]);
        m.insert("", vec![]);
        same(&m);
        let mut n = BTreeMap::new();
        n.insert(7u32, "seven");
        same(&n);
        same(&serde_json::json!({"a": [1, {"b": null}], "c": "d\u{0}"}));
        #[derive(serde::Serialize)]
        enum E {
            Unit,
            New(u8),
            Tuple(u8, &'static str),
            Struct { a: u8, b: Option<bool> },
        }
        same(&[
            E::Unit,
            E::New(1),
            E::Tuple(2, "x"),
            E::Struct { a: 3, b: None },
        ]);
        #[derive(serde::Serialize)]
        struct Empty {}
        same(&Empty {});
        same(&Vec::<u8>::new());
    }

    #[test]
    fn bad_keys_are_errors() {
        let mut m = BTreeMap::new();
        m.insert(vec![1u8], 1);
        assert!(write(&mut Vec::new(), &m).is_err());
        assert!(serde_json::to_vec(&m).is_err());
    }

    fn serde_bytes_like(b: &'static [u8]) -> impl Serialize {
        struct B(&'static [u8]);
        impl Serialize for B {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        B(b)
    }
}
