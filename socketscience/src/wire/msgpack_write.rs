//! MessagePack values written as Python's `msgpack` writes them (the
//! reading side is `msgpack.rs`, beside it): `rmp_serde` through
//! [`Compat`], and rmp's writers for the metadata.

use serde::ser::{self, Serialize, Serializer};

// Values are written as Python's `msgpack` writes them: `rmp_serde` with
// two of its choices changed, at every level of a value.
//
// - A unit struct is nil (`0xc0`), as `None` is in Python and `null` in
//   JSON; `rmp_serde` writes an empty array, which Python reads as `[]`.
//   (`rmp_serde` reads both as a unit struct, so older nodes still
//   understand newer ones.)
// - A `u128` or `i128` is an integer in its smallest form when it fits 64
//   bits, and refused otherwise: MessagePack has no larger integers, and
//   `rmp_serde`'s 16 raw bytes read back in Python as `bytes`, not as the
//   number.

/// Writes `value` as MessagePack into `buf`, structs as maps of field names
/// (what Python reads as dicts).
pub(crate) fn write_msgpack<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), String> {
    let mut serializer = rmp_serde::Serializer::new(buf).with_struct_map();
    value
        .serialize(Compat(&mut serializer))
        .map_err(|e| e.to_string())
}

/// The name `rmp_serde` gives its ext-type newtype; its value passes through
/// untouched.
const EXT: &str = "_ExtStruct";

/// A serializer that hands everything to `S`, changing unit structs and
/// 128-bit integers.
struct Compat<S>(S);

/// A value whose serialisation goes through [`Compat`].
struct Inner<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Inner<'_, T> {
    #[inline]
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Compat(serializer))
    }
}

fn too_wide<E: ser::Error>(n: &dyn std::fmt::Display) -> E {
    E::custom(format_args!(
        "the integer {n} does not fit 64 bits, and MessagePack (so Python's msgpack too) \
         has no larger integers; send it as a string, or keep 128-bit fields within the \
         range of `i64`/`u64`"
    ))
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(#[inline]
        fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.0.$method($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for Compat<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compat<S::SerializeSeq>;
    type SerializeTuple = Compat<S::SerializeTuple>;
    type SerializeTupleStruct = Compat<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compat<S::SerializeTupleVariant>;
    type SerializeMap = Compat<S::SerializeMap>;
    type SerializeStruct = Compat<S::SerializeStruct>;
    type SerializeStructVariant = Compat<S::SerializeStructVariant>;

    forward! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    #[inline]
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        if let Ok(v) = u64::try_from(v) {
            self.0.serialize_u64(v)
        } else if let Ok(v) = i64::try_from(v) {
            self.0.serialize_i64(v)
        } else {
            Err(too_wide(&v))
        }
    }

    #[inline]
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        match u64::try_from(v) {
            Ok(v) => self.0.serialize_u64(v),
            Err(_) => Err(too_wide(&v)),
        }
    }

    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Inner(value))
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        if name == EXT {
            self.0.serialize_newtype_struct(name, value)
        } else {
            self.0.serialize_newtype_struct(name, &Inner(value))
        }
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Inner(value))
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Compat)
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Compat)
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Compat)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Compat)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Compat)
    }

    #[inline]
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Compat)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Compat)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! compound {
    ($trait:ident, $($method:ident),*) => {
        impl<S: ser::$trait> ser::$trait for Compat<S> {
            type Ok = S::Ok;
            type Error = S::Error;
            $(#[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
                self.0.$method(&Inner(value))
            })*
            #[inline]
            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeMap, serialize_key, serialize_value);

macro_rules! fields {
    ($trait:ident) => {
        impl<S: ser::$trait> ser::$trait for Compat<S> {
            type Ok = S::Ok;
            type Error = S::Error;
            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), S::Error> {
                self.0.serialize_field(key, &Inner(value))
            }
            #[inline]
            fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
                self.0.skip_field(key)
            }
            #[inline]
            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    };
}

fields!(SerializeStruct);
fields!(SerializeStructVariant);

// rmp's writers for a `Vec` (which never fails), each behind one plain
// function: rmp's generic code is compiled once, not at every use. The
// short forms every envelope uses (a key of under 32 bytes, a map of under
// 16 entries) push rmp's one-byte marker directly: rmp's writer goes
// through `Write` and its error paths for that one byte.

#[inline]
pub(crate) fn write_msgpack_str(buf: &mut Vec<u8>, s: &str) {
    if s.len() < 32 {
        buf.push(rmp::Marker::FixStr(s.len() as u8).to_u8());
        buf.extend_from_slice(s.as_bytes());
    } else {
        write_msgpack_long_str(buf, s);
    }
}

#[inline(never)]
fn write_msgpack_long_str(buf: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(buf, s);
}

#[inline]
pub(crate) fn write_map_len(buf: &mut Vec<u8>, len: usize) {
    if len < 16 {
        buf.push(rmp::Marker::FixMap(len as u8).to_u8());
    } else {
        write_long_map_len(buf, len);
    }
}

#[inline(never)]
fn write_long_map_len(buf: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_map_len(buf, len as u32);
}

pub(crate) fn write_array_len(buf: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_array_len(buf, len as u32);
}

pub(crate) fn write_msgpack_uint(buf: &mut Vec<u8>, n: u64) {
    let _ = rmp::encode::write_uint(buf, n);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        write_msgpack(&mut buf, value).map(|()| buf)
    }

    #[derive(serde::Serialize)]
    struct Unit;

    #[derive(serde::Serialize)]
    struct Fields {
        unit: Unit,
        wide: u128,
        list: Vec<Option<Unit>>,
        map: BTreeMap<String, i128>,
    }

    #[test]
    fn unit_structs_are_nil_at_every_level() {
        assert_eq!(bytes(&Unit).unwrap(), [0xc0]);
        let fields = Fields {
            unit: Unit,
            wide: 300,
            list: vec![Some(Unit), None],
            map: BTreeMap::from([("n".to_owned(), -1)]),
        };
        let mut expected = vec![0x84];
        expected.extend(b"\xa4unit\xc0");
        expected.extend(b"\xa4wide\xcd\x01\x2c");
        expected.extend(b"\xa4list\x92\xc0\xc0");
        expected.extend(b"\xa3map\x81\xa1n\xff");
        assert_eq!(bytes(&fields).unwrap(), expected);
    }

    #[test]
    fn wide_integers_are_64_bit_integers_or_refused() {
        assert_eq!(
            bytes(&u128::from(u64::MAX)).unwrap(),
            b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"
        );
        assert_eq!(
            bytes(&i128::from(u64::MAX)).unwrap(),
            b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"
        );
        assert_eq!(
            bytes(&i128::from(i64::MIN)).unwrap(),
            b"\xd3\x80\0\0\0\0\0\0\0"
        );
        assert_eq!(bytes(&5i128).unwrap(), [5]);
        for e in [
            bytes(&(u128::from(u64::MAX) + 1)).unwrap_err(),
            bytes(&(i128::from(i64::MIN) - 1)).unwrap_err(),
        ] {
            assert!(e.contains("does not fit 64 bits"), "{e}");
        }
    }
}
