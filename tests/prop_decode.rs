//! Property tests of register decoding (`modbus::decode`) and of turning a
//! poll's words into values (`modbus::assemble::MeterPlan::assemble`): any
//! words, every data type and word order, arbitrary profiles with "not
//! available" markers, scales and ratios.
//!
//! `PROPTEST_CASES=20000 cargo test --test prop_decode` for a long run
//! (docs/fuzzing.md).

use pqwatch::modbus::assemble::{DropReason, MeterPlan, Ratios};
use pqwatch::modbus::decode::{DataType, WordOrder, decode, encode_bits};
use pqwatch::profile::{Derived, DerivedOp, FunctionCode, Profile, Register};
use pqwatch::schema::Unit;
use proptest::prelude::*;
mod prop_support;
use prop_support::cases;
use std::collections::BTreeMap;
use std::sync::Arc;

const TYPES: [DataType; 8] = [
    DataType::U16,
    DataType::I16,
    DataType::U32,
    DataType::I32,
    DataType::U64,
    DataType::I64,
    DataType::F32,
    DataType::F64,
];
const ORDERS: [WordOrder; 4] = [
    WordOrder::ABCD,
    WordOrder::CDAB,
    WordOrder::BADC,
    WordOrder::DCBA,
];
const UNITS: [&str; 6] = ["V", "kV", "A", "kW", "Wh", "%"];

fn dtype() -> impl Strategy<Value = DataType> {
    prop::sample::select(TYPES.to_vec())
}

fn order() -> impl Strategy<Value = WordOrder> {
    prop::sample::select(ORDERS.to_vec())
}

/// Bit patterns meters actually send when something is wrong, plus noise.
fn special_bits(dtype: DataType) -> BoxedStrategy<u64> {
    let width = 16 * u32::from(dtype.words());
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut fixed = vec![0u64, mask, 1u64 << (width - 1), mask >> 1];
    match dtype {
        DataType::F32 => fixed.extend([
            0x7FC0_0000,
            0xFFC0_0000,
            0x7F80_0000,
            0xFF80_0000,
            0x7F80_0001,
            0x7F7F_FFFF,
            0x0000_0001,
        ]),
        DataType::F64 => fixed.extend([
            0x7FF8_0000_0000_0000,
            0x7FF0_0000_0000_0000,
            0xFFF0_0000_0000_0000,
            0x7FEF_FFFF_FFFF_FFFF,
            0xFFEF_FFFF_FFFF_FFFF,
            0x0000_0000_0000_0001,
        ]),
        _ => {}
    }
    prop_oneof![
        prop::sample::select(fixed),
        any::<u64>().prop_map(move |b| b & mask),
    ]
    .boxed()
}

/// A register map as a profile would describe it, valid the way
/// `profile::parse` checks it: registers inside 0..=65535, a limit of
/// 1..=125 registers per read that holds the widest value.
#[derive(Debug, Clone)]
struct Spec {
    regs: Vec<RegSpec>,
    max_registers: u16,
    max_gap: u16,
    even_count: bool,
    /// (op is ratio, input indices)
    derived: Vec<(bool, Vec<usize>)>,
    ratios: (f64, f64),
}

#[derive(Debug, Clone)]
struct RegSpec {
    function: FunctionCode,
    address: u16,
    dtype: DataType,
    order: WordOrder,
    scale: f64,
    unit: &'static str,
    emit: bool,
    not_available: Vec<u64>,
}

fn reg_spec() -> impl Strategy<Value = RegSpec> {
    (
        prop::bool::ANY,
        prop_oneof![0u16..300, 65_400u16..=65_535],
        dtype(),
        order(),
        prop_oneof![
            Just(1.0),
            Just(0.1),
            Just(-0.001),
            Just(1e300),
            Just(1e-300),
            -1e6..1e6f64
        ],
        prop::sample::select(UNITS.to_vec()),
        prop::bool::weighted(0.85),
    )
        .prop_flat_map(|(holding, address, dtype, order, scale, unit, emit)| {
            // Keep the value inside the address space, as parse requires.
            let address = address.min((65_536 - u32::from(dtype.words())) as u16);
            let scale = if scale == 0.0 { 1.0 } else { scale };
            prop::collection::vec(special_bits(dtype), 0..3).prop_map(move |not_available| {
                RegSpec {
                    function: if holding {
                        FunctionCode::Holding
                    } else {
                        FunctionCode::Input
                    },
                    address,
                    dtype,
                    order,
                    scale,
                    unit,
                    emit,
                    not_available,
                }
            })
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(reg_spec(), 1..14),
        1u16..=125,
        0u16..=125,
        prop::bool::ANY,
        (
            prop_oneof![Just(1.0), Just(100.0), 1e-3..1e5f64],
            prop_oneof![Just(1.0), Just(1e300), 1e-3..1e5f64],
        ),
    )
        .prop_flat_map(|(regs, max_registers, max_gap, even_count, ratios)| {
            let n = regs.len();
            let widest = regs.iter().map(|r| r.dtype.words()).max().unwrap_or(1);
            let need = if even_count {
                widest + (widest & 1)
            } else {
                widest
            };
            let max_registers = max_registers.max(need);
            let derived = prop::collection::vec(
                (prop::bool::ANY, prop::collection::vec(0..n, 1..4)).prop_map(
                    |(ratio, mut inputs)| {
                        if ratio {
                            inputs.resize(2, inputs[0]);
                        }
                        (ratio, inputs)
                    },
                ),
                0..3,
            );
            (
                Just(regs),
                Just(max_registers),
                Just(max_gap),
                Just(even_count),
                derived,
                Just(ratios),
            )
        })
        .prop_map(
            |(regs, max_registers, max_gap, even_count, derived, ratios)| Spec {
                regs,
                max_registers,
                max_gap,
                even_count,
                derived,
                ratios,
            },
        )
}

fn profile(s: &Spec) -> Profile {
    let registers: Vec<Register> = s
        .regs
        .iter()
        .enumerate()
        .map(|(i, r)| Register {
            name: format!("r{i}"),
            function: r.function,
            address: r.address,
            dtype: r.dtype,
            order: r.order,
            scale: r.scale,
            unit: r.unit.parse::<Unit>().expect("known unit"),
            emit: r.emit,
            confidence: None,
            doc: None,
            not_available: r.not_available.clone(),
        })
        .collect();
    let derived = s
        .derived
        .iter()
        .enumerate()
        .map(|(i, (ratio, inputs))| Derived {
            name: format!("d{i}"),
            op: if *ratio {
                DerivedOp::RatioPercent
            } else {
                DerivedOp::Sum
            },
            inputs: inputs.clone(),
            unit: "%",
        })
        .collect();
    Profile {
        name: "prop".into(),
        vendor: String::new(),
        model: String::new(),
        description: String::new(),
        source: String::new(),
        notes: Vec::new(),
        max_registers: s.max_registers,
        max_gap: s.max_gap,
        even_count: s.even_count,
        registers,
        derived,
        origin: "proptest".into(),
    }
}

/// What one read returned: its words, some of them overwritten with a
/// register's special pattern, possibly cut short, or no answer at all.
#[derive(Debug, Clone)]
enum Reply {
    Words {
        seed: Vec<u16>,
        /// (register index, bits) written over that register's words.
        patterns: Vec<(usize, u64)>,
        cut: Option<usize>,
    },
    Failed,
}

fn reply(nregs: usize) -> impl Strategy<Value = Reply> {
    prop_oneof![
        8 => (
            prop::collection::vec(any::<u16>(), 0..130),
            prop::collection::vec((0..nregs, any::<u64>(), prop::bool::ANY), 0..6),
            prop::option::weighted(0.1, 0usize..130),
        )
            .prop_map(|(seed, patterns, cut)| Reply::Words {
                seed,
                // `true`: pick the register's own marker or a float special.
                patterns: patterns
                    .into_iter()
                    .map(|(i, b, own)| (i, if own { b | (1 << 63) } else { b }))
                    .collect(),
                cut,
            }),
        1 => Just(Reply::Failed),
    ]
}

/// Bits to plant for register `r` from a drawn `b`.
fn planted(r: &Register, b: u64) -> u64 {
    let width = 16 * u32::from(r.dtype.words());
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    if b >> 63 == 1 {
        let pick = (b as usize) % (r.not_available.len() + 3);
        match (pick.checked_sub(3), r.dtype) {
            (Some(k), _) => r.not_available[k],
            (None, DataType::F32) => [0x7FC0_0000, 0x7F80_0000, 0xFF80_0000][pick],
            (None, DataType::F64) => [
                0x7FF8_0000_0000_0001,
                0x7FF0_0000_0000_0000,
                0xFFF0_0000_0000_0000,
            ][pick],
            (None, _) => [0, mask, mask >> 1][pick],
        }
    } else {
        b & mask
    }
}

fn words_of(plan: &MeterPlan, replies: &[Reply]) -> Vec<Option<Vec<u16>>> {
    let regs = &plan.profile.registers;
    plan.requests
        .iter()
        .enumerate()
        .map(|(k, req)| match &replies[k % replies.len()] {
            Reply::Failed => None,
            Reply::Words {
                seed,
                patterns,
                cut,
            } => {
                let mut w: Vec<u16> = (0..req.count as usize)
                    .map(|j| seed.get(j).copied().unwrap_or(j as u16 ^ 0xA5A5))
                    .collect();
                for &(i, b) in patterns {
                    let r = &regs[i];
                    if !req.items.contains(&i) {
                        continue;
                    }
                    let off = (r.address - req.start) as usize;
                    let bits = encode_bits(planted(r, b), r.dtype, r.order);
                    w[off..off + bits.len()].copy_from_slice(&bits);
                }
                if let Some(c) = cut {
                    w.truncate(*c);
                }
                Some(w)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(cases(1000, "proptest-regressions/prop_decode.txt"))]

    /// Any words of the right length decode, for every type and order; the
    /// bits survive a round trip through the encoder; integers are finite.
    #[test]
    fn decode_any_words(
        dtype in dtype(),
        order in order(),
        words in prop::collection::vec(any::<u16>(), 4),
    ) {
        let words = &words[..dtype.words() as usize];
        let raw = decode(words, dtype, order);
        prop_assert_eq!(raw.dtype, dtype);
        let width = 16 * u32::from(dtype.words());
        if width < 64 {
            prop_assert_eq!(raw.bits >> width, 0, "bits beyond the type's width");
        }
        prop_assert_eq!(encode_bits(raw.bits, dtype, order), words.to_vec());
        let v = raw.to_f64();
        if !dtype.is_float() {
            prop_assert!(v.is_finite());
        }
        // The same value in big-endian order decodes to the same number.
        let be = encode_bits(raw.bits, dtype, WordOrder::ABCD);
        let again = decode(&be, dtype, WordOrder::ABCD).to_f64();
        prop_assert!(v.to_bits() == again.to_bits() || (v.is_nan() && again.is_nan()));
    }

    /// A poll's words, whatever they are, become finite values; NaN, ±inf
    /// and "not available" markers are dropped and reported, never written.
    #[test]
    fn assemble_writes_only_finite_values(
        (spec, replies) in spec().prop_flat_map(|s| {
            let n = s.regs.len();
            (Just(s), prop::collection::vec(reply(n), 1..6))
        })
    ) {
        let profile = Arc::new(profile(&spec));
        let plan = MeterPlan::new(
            profile.clone(),
            None,
            Ratios { pt: spec.ratios.0, ct: spec.ratios.1 },
        )
        .expect("every output of the profile");
        let results = words_of(&plan, &replies);
        let out = plan.assemble(&results);

        // Register index → the words its read returned (complete ones only).
        let mut got: BTreeMap<usize, Vec<u16>> = BTreeMap::new();
        for (req, words) in plan.requests.iter().zip(&results) {
            let Some(words) = words else { continue };
            for &i in &req.items {
                let r = &profile.registers[i];
                let off = (r.address - req.start) as usize;
                if let Some(w) = words.get(off..off + r.dtype.words() as usize) {
                    got.insert(i, w.to_vec());
                }
            }
        }

        let mut seen = std::collections::BTreeSet::new();
        for (name, v) in &out.values {
            prop_assert!(v.is_finite(), "{name} = {v}");
            prop_assert!(seen.insert(name.to_string()), "{name} written twice");
            if let Some(i) = name.strip_prefix('r').and_then(|s| s.parse::<usize>().ok()) {
                let r = &profile.registers[i];
                prop_assert!(r.emit, "{name} is an input only");
                let w = got.get(&i).expect("a written value was read");
                let raw = decode(w, r.dtype, r.order);
                prop_assert!(!r.not_available.contains(&raw.bits), "{name}: marker written");
                prop_assert!(raw.to_f64().is_finite(), "{name}: non-finite raw written");
            }
        }
        for (name, why) in &out.dropped {
            prop_assert!(seen.insert(name.to_string()), "{name} both written and dropped");
            if let Some(i) = name.strip_prefix('r').and_then(|s| s.parse::<usize>().ok()) {
                let r = &profile.registers[i];
                let raw = decode(&got[&i], r.dtype, r.order);
                match why {
                    DropReason::NotAvailable => {
                        prop_assert!(r.not_available.contains(&raw.bits));
                    }
                    DropReason::NotFinite => prop_assert!(!r.not_available.contains(&raw.bits)),
                    DropReason::ZeroDenominator => prop_assert!(false, "{name}: not derived"),
                }
            }
        }
        // Every emitted register that was read in full is accounted for.
        for (&i, w) in &got {
            let r = &profile.registers[i];
            if !r.emit {
                continue;
            }
            prop_assert!(seen.contains(&r.name), "{} read but neither written nor dropped", r.name);
            let raw = decode(w, r.dtype, r.order);
            if r.not_available.contains(&raw.bits) || !raw.to_f64().is_finite() {
                prop_assert!(
                    out.dropped.iter().any(|(n, _)| **n == *r.name),
                    "{}: bad data not dropped", r.name
                );
            }
        }
    }
}

/// A Schneider-style "not available" marker on an f32 register that is
/// also a finite number (0xFFC0_0000 is a NaN; 0x7F7F_FFFF = f32::MAX is
/// not): a marker is dropped even when it decodes to a finite number.
#[test]
fn a_marker_that_is_a_finite_number_is_still_dropped() {
    let s = Spec {
        regs: vec![RegSpec {
            function: FunctionCode::Holding,
            address: 0,
            dtype: DataType::F32,
            order: WordOrder::ABCD,
            scale: 1.0,
            unit: "V",
            emit: true,
            not_available: vec![0x7F7F_FFFF],
        }],
        max_registers: 125,
        max_gap: 0,
        even_count: false,
        derived: vec![],
        ratios: (1.0, 1.0),
    };
    let plan = MeterPlan::new(Arc::new(profile(&s)), None, Ratios::ONE).unwrap();
    let out = plan.assemble(&[Some(vec![0x7F7F, 0xFFFF])]);
    assert!(out.values.is_empty(), "{out:?}");
    assert_eq!(out.dropped.len(), 1);
    assert_eq!(out.dropped[0].1, DropReason::NotAvailable);
}

/// A finite raw value times a huge scale and ratio overflows to infinity:
/// dropped as not finite, never written.
#[test]
fn a_product_that_overflows_is_dropped() {
    let s = Spec {
        regs: vec![RegSpec {
            function: FunctionCode::Input,
            address: 10,
            dtype: DataType::F64,
            order: WordOrder::DCBA,
            scale: 1e300,
            unit: "kW",
            emit: true,
            not_available: vec![],
        }],
        max_registers: 125,
        max_gap: 0,
        even_count: false,
        derived: vec![],
        ratios: (1e5, 1e5),
    };
    let plan = MeterPlan::new(Arc::new(profile(&s)), None, Ratios { pt: 1e5, ct: 1e5 }).unwrap();
    let words = pqwatch::modbus::decode::encode(1e10, DataType::F64, WordOrder::DCBA);
    let out = plan.assemble(&[Some(words)]);
    assert!(out.values.is_empty(), "{out:?}");
    assert_eq!(out.dropped[0].1, DropReason::NotFinite);
}
