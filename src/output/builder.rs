//! A JSON object written straight into the output buffer, key by key (as
//! Suricata's `jsonbuilder.rs`): the OCSF, ECS and EVE forms are built with
//! it, with no intermediate `serde_json::Value`. Strings are escaped by
//! `output::json`, so every form spells a string as JSON Lines does.
//! An object or array closes when it is dropped.

use super::json;
use serde::Serialize;
use std::fmt::Display;

/// Members made once and added to every record with [`Obj::raw_members`]:
/// what `f` writes into an object, without its braces.
pub fn members(f: impl FnOnce(&mut Obj<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut Obj::new(&mut out));
    out.get(1..out.len() - 1).unwrap_or_default().to_vec()
}

pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Opens an object at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// Keys are names of the program (`&'static str`), written unescaped.
    fn key(&mut self, k: &'static str) {
        debug_assert!(!k.contains(['"', '\\']), "key {k:?}");
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.key(k);
        json::string(self.out, v);
        self
    }

    /// Left out when `None` (these forms leave out what is unknown).
    pub fn opt_str(&mut self, k: &'static str, v: Option<&str>) -> &mut Self {
        if let Some(v) = v {
            self.str(k, v);
        }
        self
    }

    pub fn u64(&mut self, k: &'static str, v: u64) -> &mut Self {
        self.key(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    pub fn opt_u64(&mut self, k: &'static str, v: Option<u64>) -> &mut Self {
        if let Some(v) = v {
            self.u64(k, v);
        }
        self
    }

    pub fn i64(&mut self, k: &'static str, v: i64) -> &mut Self {
        self.key(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    pub fn f64(&mut self, k: &'static str, v: f64) -> &mut Self {
        self.key(k);
        json::float(self.out, v, v.is_finite());
        self
    }

    pub fn bool(&mut self, k: &'static str, v: bool) -> &mut Self {
        self.key(k);
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        self
    }

    pub fn opt_bool(&mut self, k: &'static str, v: Option<bool>) -> &mut Self {
        if let Some(v) = v {
            self.bool(k, v);
        }
        self
    }

    /// A value's `Display` text as a string (addresses, MACs, times).
    pub fn disp<T: Display + ?Sized>(&mut self, k: &'static str, v: &T) -> &mut Self {
        self.key(k);
        // Display impls of the program's own types do not fail.
        let _ = json::display(self.out, v);
        self
    }

    pub fn opt_disp<T: Display>(&mut self, k: &'static str, v: Option<T>) -> &mut Self {
        if let Some(v) = v {
            self.disp(k, &v);
        }
        self
    }

    /// A value as JSON Lines writes it (a blindspot sub-object kept whole).
    pub fn ser<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> &mut Self {
        self.key(k);
        let start = self.out.len();
        if json::write(self.out, v).is_err() {
            // Plain structs with string keys do not fail; never leave half a value.
            self.out.truncate(start);
            self.out.extend_from_slice(b"null");
        }
        self
    }

    /// Bytes that are already one JSON value.
    pub fn raw(&mut self, k: &'static str, v: &[u8]) -> &mut Self {
        self.key(k);
        self.out.extend_from_slice(v);
        self
    }

    /// Members that are already JSON text (`"a":1,"b":2`), made once.
    pub fn raw_members(&mut self, members: &[u8]) -> &mut Self {
        if !members.is_empty() {
            if !std::mem::take(&mut self.first) {
                self.out.push(b',');
            }
            self.out.extend_from_slice(members);
        }
        self
    }

    pub fn obj(&mut self, k: &'static str) -> Obj<'_> {
        self.key(k);
        Obj::new(self.out)
    }

    pub fn arr(&mut self, k: &'static str) -> Arr<'_> {
        self.key(k);
        Arr::new(self.out)
    }

    /// An array of strings.
    pub fn strs<S: AsRef<str>>(&mut self, k: &'static str, v: &[S]) -> &mut Self {
        let mut a = self.arr(k);
        for s in v {
            a.str(s.as_ref());
        }
        drop(a);
        self
    }
}

impl Drop for Obj<'_> {
    fn drop(&mut self) {
        self.out.push(b'}');
    }
}

pub struct Arr<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Arr<'a> {
    fn new(out: &'a mut Vec<u8>) -> Arr<'a> {
        out.push(b'[');
        Arr { out, first: true }
    }

    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.comma();
        json::string(self.out, v);
        self
    }

    pub fn disp<T: Display + ?Sized>(&mut self, v: &T) -> &mut Self {
        self.comma();
        let _ = json::display(self.out, v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.comma();
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    pub fn obj(&mut self) -> Obj<'_> {
        self.comma();
        Obj::new(self.out)
    }
}

impl Drop for Arr<'_> {
    fn drop(&mut self) {
        self.out.push(b']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_objects_are_valid_json() {
        let mut out = Vec::new();
        {
            let mut o = Obj::new(&mut out);
            o.str("a", "x\"y\n").u64("b", 7).opt_str("none", None);
            {
                let mut t = o.obj("t");
                t.bool("c", true).f64("f", 0.5).f64("nan", f64::NAN);
                t.arr("e");
            }
            o.strs("s", &["p", "q"]);
            let mut a = o.arr("objs");
            a.obj().i64("n", -3);
            a.u64(1);
        }
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::json!({"a": "x\"y\n", "b": 7, "t": {"c": true, "f": 0.5, "nan": null, "e": []},
                "s": ["p", "q"], "objs": [{"n": -3}, 1]})
        );
    }
}
