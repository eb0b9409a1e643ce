//! Register decoding: Modbus words → numbers. Pure, no I/O.
//!
//! A Modbus register is a big-endian 16-bit word. Wider values span 2 or 4
//! registers, and meters disagree on the order of those words and of the
//! bytes inside them; [`WordOrder`] names the four layouts seen in the field
//! the way Telegraf and most vendor manuals do (`ABCD` = big-endian, high word
//! first). This module turns words into a [`Raw`] value and back (the
//! simulator encodes with the same tables), and does nothing else: scaling,
//! unit conversion and plausibility live in `modbus::assemble`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Number type of a register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl DataType {
    /// Registers (16-bit words) the type occupies.
    pub fn words(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Byte and word layout of a multi-register value, named by where the bytes
/// of the big-endian value `A B C D` (or `A..H`) end up on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum WordOrder {
    /// Big-endian: high word first, high byte first (the Modbus default).
    #[default]
    ABCD,
    /// Low word first, bytes big-endian within each word ("word swap").
    CDAB,
    /// High word first, bytes swapped within each word ("byte swap").
    BADC,
    /// Fully little-endian.
    DCBA,
}

impl WordOrder {
    pub fn name(self) -> &'static str {
        match self {
            WordOrder::ABCD => "ABCD",
            WordOrder::CDAB => "CDAB",
            WordOrder::BADC => "BADC",
            WordOrder::DCBA => "DCBA",
        }
    }
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded register value before scaling, keeping its bit pattern so that
/// "not available" markers (0xFFFF, 0x8000_0000, …) can be matched exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Raw {
    /// The value's bits in big-endian order, right-aligned (u16 uses the low 16).
    pub bits: u64,
    pub dtype: DataType,
}

impl Raw {
    /// The numeric value; NaN and ±inf pass through for the caller to reject.
    pub fn to_f64(self) -> f64 {
        let b = self.bits;
        match self.dtype {
            DataType::U16 => f64::from(b as u16),
            DataType::I16 => f64::from(b as u16 as i16),
            DataType::U32 => f64::from(b as u32),
            DataType::I32 => f64::from(b as u32 as i32),
            DataType::U64 => b as f64,
            DataType::I64 => (b as i64) as f64,
            DataType::F32 => f64::from(f32::from_bits(b as u32)),
            DataType::F64 => f64::from_bits(b),
        }
    }
}

/// Decode `words` (exactly `dtype.words()` of them) laid out in `order`.
///
/// Panics if `words` has the wrong length: the planner guarantees it, and a
/// wrong length is a bug, not bad data.
pub fn decode(words: &[u16], dtype: DataType, order: WordOrder) -> Raw {
    let n = dtype.words() as usize;
    assert_eq!(words.len(), n, "decode: {dtype} needs {n} words");
    let mut be = [0u8; 8];
    let bytes = &mut be[8 - 2 * n..];
    wire_to_be(words, order, bytes);
    Raw {
        bits: u64::from_be_bytes(be),
        dtype,
    }
}

/// Encode `value` (converted to `dtype`, saturating for integers) into words
/// laid out in `order`. Used by the simulator; the inverse of [`decode`].
pub fn encode(value: f64, dtype: DataType, order: WordOrder) -> Vec<u16> {
    let bits: u64 = match dtype {
        DataType::U16 => u64::from(value.round().clamp(0.0, f64::from(u16::MAX)) as u16),
        DataType::I16 => u64::from(
            value
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16 as u16,
        ),
        DataType::U32 => u64::from(value.round().clamp(0.0, f64::from(u32::MAX)) as u32),
        DataType::I32 => u64::from(
            value
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32 as u32,
        ),
        DataType::U64 => value.round().max(0.0) as u64,
        DataType::I64 => value.round() as i64 as u64,
        DataType::F32 => u64::from((value as f32).to_bits()),
        DataType::F64 => value.to_bits(),
    };
    encode_bits(bits, dtype, order)
}

/// Encode a raw bit pattern (e.g. a "not available" marker) into words.
pub fn encode_bits(bits: u64, dtype: DataType, order: WordOrder) -> Vec<u16> {
    let n = dtype.words() as usize;
    let be = bits.to_be_bytes();
    let bytes = &be[8 - 2 * n..];
    let mut out = vec![0u16; n];
    be_to_wire(bytes, order, &mut out);
    out
}

/// Wire words → big-endian bytes of the value.
fn wire_to_be(words: &[u16], order: WordOrder, out: &mut [u8]) {
    let n = words.len();
    for (i, w) in words.iter().enumerate() {
        let [hi, lo] = w.to_be_bytes();
        // Position of this wire word in the big-endian value, and whether its
        // two bytes are swapped relative to big-endian.
        let (pos, swapped) = match order {
            WordOrder::ABCD => (i, false),
            WordOrder::CDAB => (n - 1 - i, false),
            WordOrder::BADC => (i, true),
            WordOrder::DCBA => (n - 1 - i, true),
        };
        let (a, b) = if swapped { (lo, hi) } else { (hi, lo) };
        out[2 * pos] = a;
        out[2 * pos + 1] = b;
    }
}

/// Big-endian bytes of the value → wire words.
fn be_to_wire(bytes: &[u8], order: WordOrder, out: &mut [u16]) {
    let n = out.len();
    for (i, slot) in out.iter_mut().enumerate() {
        let (pos, swapped) = match order {
            WordOrder::ABCD => (i, false),
            WordOrder::CDAB => (n - 1 - i, false),
            WordOrder::BADC => (i, true),
            WordOrder::DCBA => (n - 1 - i, true),
        };
        let (a, b) = (bytes[2 * pos], bytes[2 * pos + 1]);
        *slot = if swapped {
            u16::from_be_bytes([b, a])
        } else {
            u16::from_be_bytes([a, b])
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;
    use WordOrder::*;

    // Expected words below are worked out by hand from the IEEE-754 / two's
    // complement bit patterns, not produced by `encode`.

    #[test]
    fn f32_in_every_word_order() {
        // 230.5f32 = 0x4366_8000
        let cases = [
            (ABCD, [0x4366, 0x8000]),
            (CDAB, [0x8000, 0x4366]),
            (BADC, [0x6643, 0x0080]),
            (DCBA, [0x0080, 0x6643]),
        ];
        for (order, words) in cases {
            assert_eq!(decode(&words, F32, order).to_f64(), 230.5, "{order}");
            assert_eq!(encode(230.5, F32, order), words.to_vec(), "{order}");
        }
    }

    #[test]
    fn f64_in_every_word_order() {
        // 1234.5f64 = 0x4093_4A00_0000_0000
        let cases = [
            (ABCD, [0x4093, 0x4A00, 0x0000, 0x0000]),
            (CDAB, [0x0000, 0x0000, 0x4A00, 0x4093]),
            (BADC, [0x9340, 0x004A, 0x0000, 0x0000]),
            (DCBA, [0x0000, 0x0000, 0x004A, 0x9340]),
        ];
        for (order, words) in cases {
            assert_eq!(decode(&words, F64, order).to_f64(), 1234.5, "{order}");
            assert_eq!(encode(1234.5, F64, order), words.to_vec(), "{order}");
        }
    }

    #[test]
    fn sixteen_bit_types() {
        assert_eq!(decode(&[0xFFFF], U16, ABCD).to_f64(), 65535.0);
        assert_eq!(decode(&[0xFFFF], I16, ABCD).to_f64(), -1.0);
        assert_eq!(decode(&[0x8000], I16, ABCD).to_f64(), -32768.0);
        // Byte-swapped single register: 0x3412 read as BADC is 0x1234.
        assert_eq!(decode(&[0x3412], U16, BADC).to_f64(), 4660.0);
        assert_eq!(decode(&[0x3412], U16, DCBA).to_f64(), 4660.0);
        assert_eq!(decode(&[0x1234], U16, CDAB).to_f64(), 4660.0);
    }

    #[test]
    fn thirty_two_bit_integers() {
        // -2 = 0xFFFF_FFFE ; 70000 = 0x0001_1170
        assert_eq!(decode(&[0xFFFF, 0xFFFE], I32, ABCD).to_f64(), -2.0);
        assert_eq!(decode(&[0xFFFE, 0xFFFF], I32, CDAB).to_f64(), -2.0);
        assert_eq!(decode(&[0x0001, 0x1170], U32, ABCD).to_f64(), 70000.0);
        assert_eq!(decode(&[0x1170, 0x0001], U32, CDAB).to_f64(), 70000.0);
        assert_eq!(decode(&[0x0100, 0x7011], U32, BADC).to_f64(), 70000.0);
        assert_eq!(decode(&[0x7011, 0x0100], U32, DCBA).to_f64(), 70000.0);
        // Carlo Gavazzi EM24 style: 2305 (230.5 V × 10) low word first.
        assert_eq!(decode(&[0x0901, 0x0000], I32, CDAB).to_f64(), 2305.0);
    }

    #[test]
    fn sixty_four_bit_integers() {
        // 123_456_789_012 = 0x0000_001C_BE99_1A14
        let abcd = [0x0000, 0x001C, 0xBE99, 0x1A14];
        assert_eq!(decode(&abcd, U64, ABCD).to_f64(), 123_456_789_012.0);
        assert_eq!(decode(&abcd, I64, ABCD).to_f64(), 123_456_789_012.0);
        let cdab = [0x1A14, 0xBE99, 0x001C, 0x0000];
        assert_eq!(decode(&cdab, I64, CDAB).to_f64(), 123_456_789_012.0);
        let badc = [0x0000, 0x1C00, 0x99BE, 0x141A];
        assert_eq!(decode(&badc, U64, BADC).to_f64(), 123_456_789_012.0);
        let dcba = [0x141A, 0x99BE, 0x1C00, 0x0000];
        assert_eq!(decode(&dcba, U64, DCBA).to_f64(), 123_456_789_012.0);
        // -1 as i64 and u64::MAX keep their bits.
        let ones = [0xFFFF; 4];
        assert_eq!(decode(&ones, I64, ABCD).to_f64(), -1.0);
        assert_eq!(decode(&ones, U64, ABCD).bits, u64::MAX);
    }

    #[test]
    fn nan_and_inf_pass_through_for_the_caller() {
        assert!(decode(&[0x7FC0, 0x0000], F32, ABCD).to_f64().is_nan());
        assert_eq!(decode(&[0x7F80, 0x0000], F32, ABCD).to_f64(), f64::INFINITY);
        assert_eq!(
            decode(&[0xFF80, 0x0000], F32, ABCD).to_f64(),
            f64::NEG_INFINITY
        );
    }

    #[test]
    fn encode_is_the_inverse_of_decode_for_every_type_and_order() {
        let values = [0.0, 1.0, 42.0, 1000.0, 65535.0];
        for dtype in [U16, I16, U32, I32, U64, I64, F32, F64] {
            for order in [ABCD, CDAB, BADC, DCBA] {
                for v in values {
                    let w = encode(v, dtype, order);
                    assert_eq!(w.len(), dtype.words() as usize);
                    let back = decode(&w, dtype, order).to_f64();
                    let expect = if dtype == I16 && v > 32767.0 {
                        32767.0
                    } else {
                        v
                    };
                    assert_eq!(back, expect, "{dtype} {order} {v}");
                }
            }
        }
        assert_eq!(encode(-5.0, I16, ABCD), vec![0xFFFB]);
        assert_eq!(encode(-5.0, U16, ABCD), vec![0x0000]);
    }
}
