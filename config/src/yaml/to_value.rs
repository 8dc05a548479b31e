//! [`Value::from_serialize`] without the JSON text: a serializer that builds the tree directly,
//! as writing the value with `serde_json` and reading that text back into a [`Value`] would
//! (the same numbers, `null`s, externally tagged enums and string map keys), in field order.
//! Every generated object passed through that text twice; on a 100,000-rule policy it was a
//! tenth of `generate`.

use indexmap::IndexMap;
use serde::ser::{self, Serialize};

use super::Value;

type Error = serde_json::Error;

fn custom(msg: &str) -> Error {
    ser::Error::custom(msg)
}

/// The serializer: each call returns the value built.
pub(super) struct ToValue;

impl ser::Serializer for ToValue {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Tagged<Seq>;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = Tagged<Map>;

    fn serialize_bool(self, v: bool) -> Result<Value, Error> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Error> {
        // JSON text reads a non-negative integer back as unsigned: the same Number either way.
        Ok(Value::Number(v.into()))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Error> {
        Ok(Value::Number(v.into()))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Error> {
        // As the text would have it (f32's shortest digits, read back as an f64).
        Value::from_serialize_text(&v)
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Error> {
        // serde_json writes a non-finite float as `null`.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn serialize_char(self, v: char) -> Result<Value, Error> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Error> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        Ok(Value::Sequence(
            v.iter()
                .map(|b| Value::Number(u64::from(*b).into()))
                .collect(),
        ))
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
    ) -> Result<Value, Error> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        Ok(tagged(variant, v.serialize(ToValue)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
        Ok(Seq(Vec::with_capacity(len.unwrap_or(0).min(4096))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Tagged<Seq>, Error> {
        Ok(Tagged(variant, self.serialize_seq(Some(len))?))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Map, Error> {
        Ok(Map {
            entries: IndexMap::with_capacity(len.unwrap_or(0).min(4096)),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Map, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Tagged<Map>, Error> {
        Ok(Tagged(variant, self.serialize_map(Some(len))?))
    }
}

/// `{variant: value}`: an externally tagged enum variant.
fn tagged(variant: &str, value: Value) -> Value {
    Value::Mapping(IndexMap::from_iter([(variant.to_owned(), value)]))
}

pub(super) struct Seq(Vec<Value>);

impl Seq {
    fn push<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        self.0.push(v.serialize(ToValue)?);
        Ok(())
    }
}

impl ser::SerializeSeq for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        self.push(v)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Sequence(self.0))
    }
}

impl ser::SerializeTuple for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        self.push(v)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Sequence(self.0))
    }
}

impl ser::SerializeTupleStruct for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        self.push(v)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Sequence(self.0))
    }
}

pub(super) struct Map {
    entries: IndexMap<String, Value>,
    key: Option<String>,
}

impl Map {
    fn insert<T: ?Sized + Serialize>(&mut self, key: String, v: &T) -> Result<(), Error> {
        // As reading JSON text with a repeated key: the later value, at the first one's place.
        self.entries.insert(key, v.serialize(ToValue)?);
        Ok(())
    }
}

impl ser::SerializeMap for Map {
    type Ok = Value;
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key_text(key)?);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| custom("a map value without its key"))?;
        self.insert(key, v)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Mapping(self.entries))
    }
}

impl ser::SerializeStruct for Map {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.insert(key.to_owned(), v)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Mapping(self.entries))
    }
}

/// A tuple or struct variant: its fields, under the variant's name.
pub(super) struct Tagged<T>(&'static str, T);

impl ser::SerializeTupleVariant for Tagged<Seq> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        self.1.push(v)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(tagged(self.0, Value::Sequence(self.1 .0)))
    }
}

impl ser::SerializeStructVariant for Tagged<Map> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.1.insert(key.to_owned(), v)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(tagged(self.0, Value::Mapping(self.1.entries)))
    }
}

/// A map key as JSON text writes it: a string, or a scalar's text (`serde_json` quotes integer,
/// boolean and char keys, and refuses the rest).
fn key_text<T: ?Sized + Serialize>(key: &T) -> Result<String, Error> {
    match key.serialize(ToValue)? {
        Value::String(s) => Ok(s),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(custom("key must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::Value;

    #[derive(Serialize)]
    enum E {
        Unit,
        New(i32),
        Tuple(u8, String),
        Struct { a: Option<bool>, b: f64 },
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Unit;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Every {
        zeta: Vec<E>,
        alpha_beta: Option<String>,
        none: Option<u8>,
        ints: (i8, i16, i32, i64, u8, u16, u32, u64),
        floats: (f32, f64, f64, f64),
        text: (char, &'static str),
        #[serde(with = "serde_bytes_like")]
        bytes: Vec<u8>,
        int_keys: BTreeMap<i32, bool>,
        bool_keys: BTreeMap<bool, ()>,
        unit: Unit,
        #[serde(flatten)]
        extra: BTreeMap<String, u32>,
        json: serde_json::Value,
    }

    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    /// Built directly, the tree is the one the JSON text round trip builds, shape for shape.
    #[test]
    fn the_direct_serializer_builds_what_json_text_does() {
        let every = Every {
            zeta: vec![
                E::Unit,
                E::New(-3),
                E::Tuple(7, "x".into()),
                E::Struct { a: None, b: 0.1 },
            ],
            alpha_beta: Some("yes".into()),
            none: None,
            ints: (-1, 2, -3, i64::MIN, 255, 6, 7, u64::MAX),
            floats: (0.1, 1.0, f64::NAN, -2.5e300),
            text: ('é', "a\"b\n"),
            bytes: vec![0, 1, 255],
            int_keys: BTreeMap::from([(-1, true), (10, false)]),
            bool_keys: BTreeMap::from([(true, ())]),
            unit: Unit,
            extra: BTreeMap::from([("z".to_owned(), 1), ("a".to_owned(), 2)]),
            json: serde_json::json!({"k": [1, -1, 1.5, null, "s", {"n": {}}]}),
        };
        let direct = Value::from_serialize(&every).unwrap();
        let text = Value::from_serialize_text(&every).unwrap();
        assert_eq!(direct, text);
        // Equal as trees, and in field order and number representation too.
        assert_eq!(format!("{direct:?}"), format!("{text:?}"));
        // Map keys JSON cannot write are refused by both.
        let bad = BTreeMap::from([((1, 2), 3)]);
        assert!(Value::from_serialize(&bad).is_err());
        assert!(Value::from_serialize_text(&bad).is_err());
    }
}
