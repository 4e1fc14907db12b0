//! Exact serde encodings of floating-point state: values are written as
//! their IEEE-754 bit patterns, so a restored model holds bit-identical
//! numbers (decimal text does not guarantee that) and scores exactly like
//! the model that was saved.
//!
//! Human-readable formats (JSON) get the bit patterns as integers, as
//! models were always saved; binary formats (the postcard model format of
//! [`crate::scoring`]) get them as little-endian bytes, one length prefix
//! per vector and no per-value overhead.

use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Reads a byte string of a binary format.
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte string of little-endian floats")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

/// The bytes of a binary format's float vector whose values take `width`
/// bytes each.
fn binary_bytes<'de, D: Deserializer<'de>>(d: D, width: usize) -> Result<Vec<u8>, D::Error> {
    let bytes = d.deserialize_bytes(BytesVisitor)?;
    if bytes.len() % width != 0 {
        return Err(D::Error::custom(format!(
            "float vector of {} bytes is not a whole number of {width}-byte values",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// `#[serde(with = "bits::f64s")]` for a `Vec<f64>`.
pub mod f64s {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.iter()
                .map(|x| x.to_bits())
                .collect::<Vec<u64>>()
                .serialize(s)
        } else {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            s.serialize_bytes(&bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        if d.is_human_readable() {
            Ok(Vec::<u64>::deserialize(d)?
                .into_iter()
                .map(f64::from_bits)
                .collect())
        } else {
            Ok(binary_bytes(d, 8)?
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect())
        }
    }
}

/// `#[serde(with = "bits::f32s")]` for a `Vec<f32>`.
pub mod f32s {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.iter()
                .map(|x| x.to_bits())
                .collect::<Vec<u32>>()
                .serialize(s)
        } else {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            s.serialize_bytes(&bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        if d.is_human_readable() {
            Ok(Vec::<u32>::deserialize(d)?
                .into_iter()
                .map(f32::from_bits)
                .collect())
        } else {
            Ok(binary_bytes(d, 4)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
    }
}

/// `#[serde(with = "bits::one_f64")]` for one `f64`.
pub mod one_f64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.to_bits().serialize(s)
        } else {
            v.to_le_bytes().serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        if d.is_human_readable() {
            Ok(f64::from_bits(u64::deserialize(d)?))
        } else {
            Ok(f64::from_le_bytes(<[u8; 8]>::deserialize(d)?))
        }
    }
}

/// `#[serde(with = "bits::one_f32")]` for one `f32`.
pub mod one_f32 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.to_bits().serialize(s)
        } else {
            v.to_le_bytes().serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        if d.is_human_readable() {
            Ok(f32::from_bits(u32::deserialize(d)?))
        } else {
            Ok(f32::from_le_bytes(<[u8; 4]>::deserialize(d)?))
        }
    }
}
