//! The profile file format and its validation: raw serde types mirroring
//! the TOML (schema in `docs/profiles.md`), and [`parse`], which turns one
//! file into a [`Profile`] or a [`ProfileError`] listing every problem, each
//! naming its key.
//!
//! Pure: text in, profile out. Reading files and choosing between built-in
//! and user profiles is [`Registry`](super::Registry)'s job.

use super::{Confidence, Derived, DerivedOp, FunctionCode, Profile, ProfileError, Register};
use crate::modbus::decode::{DataType, WordOrder};
use crate::schema::{self, Unit};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    vendor: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    source: String,
    max_registers: u16,
    max_gap: Option<u16>,
    #[serde(default)]
    even_count: bool,
    #[serde(default)]
    notes: Vec<String>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    field: Vec<RawField>,
    #[serde(default)]
    harmonics: Vec<RawHarmonics>,
    #[serde(default)]
    derived: Vec<RawDerived>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    function: Option<u8>,
    #[serde(rename = "type")]
    dtype: Option<DataType>,
    word_order: Option<WordOrder>,
    scale: Option<f64>,
    not_available: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    address: u16,
    unit: String,
    function: Option<u8>,
    #[serde(rename = "type")]
    dtype: Option<DataType>,
    word_order: Option<WordOrder>,
    scale: Option<f64>,
    doc: Option<String>,
    confidence: Option<Confidence>,
    not_available: Option<Vec<String>>,
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHarmonics {
    name: String,
    base: u16,
    stride: u16,
    orders: [u16; 2],
    value: HarmonicValue,
    function: Option<u8>,
    #[serde(rename = "type")]
    dtype: Option<DataType>,
    word_order: Option<WordOrder>,
    confidence: Option<Confidence>,
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum HarmonicValue {
    Absolute,
    Percent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerived {
    name: String,
    op: String,
    inputs: Vec<String>,
    unit: Option<String>,
    #[allow(dead_code)]
    confidence: Option<Confidence>,
    #[allow(dead_code)]
    note: Option<String>,
}

/// Parse and validate one profile from TOML text.
///
/// Problems are collected, not returned at the first: the header, then each
/// `[[field]]`, `[[harmonics]]` and `[[derived]]` entry in file order, then
/// the checks that need every register (read size, overlaps).
pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
    let fail = |problems: Vec<String>| ProfileError {
        origin: origin.to_string(),
        problems,
    };
    let raw: RawProfile = toml::from_str(text).map_err(|e| fail(vec![toml_error(&e)]))?;
    let mut p = Vec::new();
    let (max_gap, default_fc) = check_header(&raw, &mut p);

    let mut b = Builder {
        defaults: &raw.defaults,
        default_fc,
        registers: Vec::new(),
        derived: Vec::new(),
        names: HashMap::new(),
        p,
    };
    for (i, f) in raw.field.iter().enumerate() {
        b.field(i, f);
    }
    for (i, h) in raw.harmonics.iter().enumerate() {
        b.harmonics(i, h);
    }
    for (i, dv) in raw.derived.iter().enumerate() {
        b.derived(i, dv);
    }
    let Builder {
        registers,
        derived,
        mut p,
        ..
    } = b;

    check_read_size(&raw, &registers, &mut p);
    if registers.iter().all(|r| !r.emit) && derived.is_empty() {
        p.push("field: a profile needs at least one field".into());
    }
    check_overlaps(&registers, &mut p);

    if !p.is_empty() {
        return Err(fail(p));
    }
    Ok(Profile {
        name: raw.name,
        vendor: raw.vendor,
        model: raw.model,
        description: raw.description,
        source: raw.source,
        notes: raw.notes,
        max_registers: raw.max_registers,
        max_gap,
        even_count: raw.even_count,
        registers,
        derived,
        origin: origin.to_string(),
    })
}

/// The top-level keys and `[defaults]`, checked before any entry because
/// every entry falls back on the defaults. Returns the effective `max_gap`
/// and the default function code (None if absent or invalid).
fn check_header(raw: &RawProfile, p: &mut Vec<String>) -> (u16, Option<FunctionCode>) {
    if !valid_profile_name(&raw.name) {
        p.push(format!(
            "name: \"{}\" must be lowercase letters, digits and '-'",
            raw.name
        ));
    }
    if !(1..=125).contains(&raw.max_registers) {
        p.push(format!(
            "max_registers: {} is outside 1..=125 (the Modbus limit for one read)",
            raw.max_registers
        ));
    }
    let max_gap = raw.max_gap.unwrap_or(8);
    if max_gap > 125 {
        p.push(format!("max_gap: {max_gap} is larger than a whole request"));
    }
    let d = &raw.defaults;
    let default_fc = match d.function.map(FunctionCode::try_from).transpose() {
        Ok(fc) => fc,
        Err(e) => {
            p.push(format!("defaults.function: {e}"));
            None
        }
    };
    if let Some(s) = d.scale
        && !(s.is_finite() && s != 0.0)
    {
        p.push(format!(
            "defaults.scale: {s} must be a finite, non-zero number"
        ));
    }
    (max_gap, default_fc)
}

/// What the entry sections build up together: registers and derived values
/// so far, and which key first claimed each output name, so a duplicate
/// anywhere in the file names both places.
struct Builder<'a> {
    defaults: &'a RawDefaults,
    default_fc: Option<FunctionCode>,
    registers: Vec<Register>,
    derived: Vec<Derived>,
    names: HashMap<String, String>,
    p: Vec<String>,
}

impl Builder<'_> {
    /// Record that `key` defines `name`; a second definition is a problem.
    fn claim(&mut self, name: &str, key: &str) {
        if let Some(prev) = self.names.insert(name.to_string(), key.to_string()) {
            self.p
                .push(format!("{key}.name: \"{name}\" is also defined at {prev}"));
        }
    }

    /// One `[[field]]` entry: a single register, with `[defaults]` filling
    /// in what it leaves out.
    fn field(&mut self, i: usize, f: &RawField) {
        let d = self.defaults;
        let key = format!("field[{i}]");
        let function = resolve_fc(f.function, self.default_fc, &key, &mut self.p);
        let dtype = f.dtype.or(d.dtype);
        if dtype.is_none() {
            self.p
                .push(format!("{key}.type: missing (and no defaults.type)"));
        }
        let scale = f.scale.or(d.scale).unwrap_or(1.0);
        if !(scale.is_finite() && scale != 0.0) {
            self.p.push(format!(
                "{key}.scale: {scale} must be a finite, non-zero number"
            ));
        }
        let unit = match f.unit.parse::<Unit>() {
            Ok(u) => Some(u),
            Err(e) => {
                self.p.push(format!("{key}.unit: {e}"));
                None
            }
        };
        check_name(&f.name, unit, &key, &mut self.p);
        self.claim(&f.name, &key);
        let na_key = format!("{key}.not_available");
        let not_available = parse_patterns(
            f.not_available.as_ref().or(d.not_available.as_ref()),
            dtype,
            &na_key,
            &mut self.p,
        );
        if let (Some(function), Some(dtype), Some(unit)) = (function, dtype, unit) {
            let reg = Register {
                name: f.name.clone(),
                function,
                address: f.address,
                dtype,
                order: f.word_order.or(d.word_order).unwrap_or_default(),
                scale,
                unit,
                emit: true,
                confidence: f.confidence,
                doc: f.doc.clone(),
                not_available,
            };
            if reg.end() > 65536 {
                self.p.push(format!(
                    "{key}.address: {} + {} registers runs past 65535",
                    f.address,
                    dtype.words()
                ));
            }
            self.registers.push(reg);
        }
    }

    /// One `[[harmonics]]` entry: a series of orders at a fixed stride,
    /// expanded into one register per order (plus, for absolute values, the
    /// fundamental and a derived percentage per order).
    fn harmonics(&mut self, i: usize, h: &RawHarmonics) {
        let d = self.defaults;
        let key = format!("harmonics[{i}]");
        let function = resolve_fc(h.function, self.default_fc, &key, &mut self.p);
        let Some(dtype) = h.dtype.or(d.dtype) else {
            self.p
                .push(format!("{key}.type: missing (and no defaults.type)"));
            return;
        };
        let [lo, hi] = h.orders;
        if lo < 2 || hi < lo || hi > 63 {
            self.p.push(format!(
                "{key}.orders: [{lo}, {hi}] must be a range within 2..=63"
            ));
            return;
        }
        if h.stride < dtype.words() {
            self.p.push(format!(
                "{key}.stride: {} is smaller than one {dtype} ({} registers)",
                h.stride,
                dtype.words()
            ));
            return;
        }
        let unit = if h.name.starts_with("harmonic_current") {
            "A"
        } else {
            "V"
        };
        if !h.name.starts_with("harmonic_voltage_") && !h.name.starts_with("harmonic_current_") {
            self.p.push(format!(
                "{key}.name: \"{}\" must start with harmonic_voltage_ or harmonic_current_",
                h.name
            ));
        }
        let Some(function) = function else { return };
        let order = h.word_order.or(d.word_order).unwrap_or_default();
        let addr = |n: u16| -> Option<u16> {
            let a = u32::from(h.base) + u32::from(h.stride) * (u32::from(n) - 1);
            (a + u32::from(dtype.words()) <= 65536).then_some(a as u16)
        };
        let Some(_) = addr(hi) else {
            self.p
                .push(format!("{key}: order {hi} runs past register 65535"));
            return;
        };
        let reg = |name: String, n: u16, emit: bool, unit: Unit| Register {
            name,
            function,
            address: addr(n).expect("checked above"),
            dtype,
            order,
            scale: 1.0,
            unit,
            emit,
            confidence: h.confidence,
            doc: None,
            not_available: Vec::new(),
        };
        match h.value {
            HarmonicValue::Percent => {
                for n in lo..=hi {
                    let name = format!("{}_h{n}", h.name);
                    self.claim(&name, &key);
                    self.registers.push(reg(name, n, true, Unit::PERCENT));
                }
            }
            HarmonicValue::Absolute => {
                // Absolute volts/amps: read the fundamental too and write
                // each order as % of it; ratios cancel, so no PT/CT applies.
                let abs: Unit = unit.parse().expect("V and A are known units");
                let fund = format!("{}_h1", h.name);
                self.claim(&fund, &key);
                let fund_idx = self.registers.len();
                self.registers.push(reg(fund, 1, false, abs));
                for n in lo..=hi {
                    let raw_name = format!("{}_h{n}_abs", h.name);
                    self.claim(&raw_name, &key);
                    let idx = self.registers.len();
                    self.registers.push(reg(raw_name, n, false, abs));
                    let name = format!("{}_h{n}", h.name);
                    self.claim(&name, &key);
                    self.derived.push(Derived {
                        name,
                        op: DerivedOp::RatioPercent,
                        inputs: vec![idx, fund_idx],
                        unit: "%",
                    });
                }
            }
        }
    }

    /// One `[[derived]]` entry: an op over registers defined earlier in the
    /// file (fields and harmonic series, never other derived values).
    fn derived(&mut self, i: usize, dv: &RawDerived) {
        let key = format!("derived[{i}]");
        let op = match dv.op.as_str() {
            "ratio_percent" => DerivedOp::RatioPercent,
            "sum" => DerivedOp::Sum,
            other => {
                self.p.push(format!(
                    "{key}.op: unknown op \"{other}\" (use \"ratio_percent\" or \"sum\")"
                ));
                return;
            }
        };
        let mut inputs = Vec::new();
        for (j, name) in dv.inputs.iter().enumerate() {
            match self.registers.iter().position(|r| &r.name == name) {
                Some(idx) => inputs.push(idx),
                None => {
                    let hint = schema::did_you_mean_hint(
                        name,
                        self.registers.iter().map(|r| r.name.as_str()),
                    );
                    self.p.push(format!(
                        "{key}.inputs[{j}]: \"{name}\" is not a field of this profile{hint}"
                    ));
                }
            }
        }
        if inputs.len() != dv.inputs.len() {
            return;
        }
        let Some(unit) = self.derived_unit(&key, &op, &inputs) else {
            return;
        };
        if let Some(u) = &dv.unit {
            match u.parse::<Unit>() {
                Ok(u) if u.canonical == unit => {}
                Ok(u) => self.p.push(format!(
                    "{key}.unit: \"{u}\" does not match the result's unit \"{unit}\""
                )),
                Err(e) => self.p.push(format!("{key}.unit: {e}")),
            }
        }
        let unit_obj: Option<Unit> = Unit::all().iter().find(|x| x.symbol == unit).copied();
        check_name(&dv.name, unit_obj, &key, &mut self.p);
        self.claim(&dv.name, &key);
        self.derived.push(Derived {
            name: dv.name.clone(),
            op,
            inputs,
            unit,
        });
    }

    /// The canonical unit a derived op yields from its inputs, or None (with
    /// a problem recorded) when the inputs do not fit the op.
    fn derived_unit(
        &mut self,
        key: &str,
        op: &DerivedOp,
        inputs: &[usize],
    ) -> Option<&'static str> {
        match op {
            DerivedOp::RatioPercent => {
                if inputs.len() != 2 {
                    self.p.push(format!(
                        "{key}.inputs: ratio_percent takes exactly 2 inputs"
                    ));
                    return None;
                }
                Some("%")
            }
            DerivedOp::Sum => {
                if inputs.is_empty() {
                    self.p
                        .push(format!("{key}.inputs: sum takes at least 1 input"));
                    return None;
                }
                let first = self.registers[inputs[0]].unit.canonical;
                if inputs
                    .iter()
                    .any(|&k| self.registers[k].unit.canonical != first)
                {
                    self.p.push(format!(
                        "{key}.inputs: a sum needs inputs of one canonical unit"
                    ));
                    return None;
                }
                Some(first)
            }
        }
    }
}

/// One read holds at least one whole value (padded to an even count
/// where the device demands it); a smaller limit would have the planner
/// send reads the device refuses on every poll.
fn check_read_size(raw: &RawProfile, registers: &[Register], p: &mut Vec<String>) {
    if let Some(widest) = registers.iter().max_by_key(|r| r.dtype.words())
        && (1..=125).contains(&raw.max_registers)
    {
        let words = widest.dtype.words();
        let (limit, need) = if raw.even_count {
            (raw.max_registers & !1, words + (words & 1))
        } else {
            (raw.max_registers, words)
        };
        if limit < need {
            p.push(format!(
                "max_registers: {} cannot hold {} ({}, {need} registers{})",
                raw.max_registers,
                widest.name,
                widest.dtype,
                if raw.even_count {
                    " as an even count"
                } else {
                    ""
                }
            ));
        }
    }
}

/// Overlapping registers within one function code are almost always a
/// typo in an address.
fn check_overlaps(registers: &[Register], p: &mut Vec<String>) {
    let mut by_fc: BTreeMap<(FunctionCode, u16), &Register> = BTreeMap::new();
    for r in registers {
        by_fc.insert((r.function, r.address), r);
    }
    let mut prev: Option<&Register> = None;
    for r in by_fc.values() {
        if let Some(q) = prev
            && q.function == r.function
            && q.end() > u32::from(r.address)
        {
            p.push(format!(
                "{} at {} {} overlaps {} at {}..{}",
                r.name,
                r.function,
                r.address,
                q.name,
                q.address,
                q.end() - 1
            ));
        }
        prev = Some(r);
    }
}

/// "Not available" markers, written as hex bit patterns of the full width
/// ("0xFFFF", "0x80000000"), so they match integer and float types alike.
fn parse_patterns(
    raw: Option<&Vec<String>>,
    dtype: Option<DataType>,
    key: &str,
    p: &mut Vec<String>,
) -> Vec<u64> {
    let mut out = Vec::new();
    for (i, s) in raw.into_iter().flatten().enumerate() {
        let hex = s.trim_start_matches("0x").trim_start_matches("0X");
        match u64::from_str_radix(hex, 16) {
            Ok(v) => {
                if let Some(t) = dtype
                    && t.words() < 4
                    && v >> (16 * t.words()) != 0
                {
                    p.push(format!("{key}[{i}]: \"{s}\" is wider than a {t}"));
                }
                out.push(v);
            }
            Err(_) => p.push(format!(
                "{key}[{i}]: \"{s}\" is not a hex bit pattern like \"0xFFFF\""
            )),
        }
    }
    out
}

fn resolve_fc(
    own: Option<u8>,
    default: Option<FunctionCode>,
    key: &str,
    p: &mut Vec<String>,
) -> Option<FunctionCode> {
    match own {
        Some(v) => match FunctionCode::try_from(v) {
            Ok(fc) => Some(fc),
            Err(e) => {
                p.push(format!("{key}.function: {e}"));
                None
            }
        },
        None => {
            if default.is_none() {
                p.push(format!(
                    "{key}.function: missing (and no defaults.function)"
                ));
            }
            default
        }
    }
}

fn check_name(name: &str, unit: Option<Unit>, key: &str, p: &mut Vec<String>) {
    if !schema::valid_field_name(name) {
        p.push(format!(
            "{key}.name: \"{name}\" must be lowercase snake_case (a-z, 0-9, _), starting with a letter"
        ));
        return;
    }
    if let (Some(expected), Some(unit)) = (schema::expected_unit(name), unit)
        && unit.canonical != expected
    {
        p.push(format!(
            "{key}.unit: \"{}\" converts to \"{}\", but {name} is measured in \"{expected}\"",
            unit.symbol, unit.canonical
        ));
    }
}

fn valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

/// A TOML error as one line with its location.
fn toml_error(e: &toml::de::Error) -> String {
    e.to_string().trim().replace('\n', " ").replace("  ", " ")
}
