//! Device profiles: what to read from a meter model and how to decode it.
//!
//! A profile is data, not code: a TOML file (schema in `docs/profiles.md`)
//! listing, per field, the function code, wire address, number type, word
//! order, scale and unit, plus harmonic series and derived values. The five
//! built-in profiles under `config/profiles/` are embedded in the binary; a
//! user directory may add profiles or replace built-in ones by name.
//!
//! Loading validates a profile once into [`Profile`], whose [`Register`]s
//! carry everything the planner, decoder and simulator need, and whose
//! [`Derived`] values say how to compute the rest (harmonic % of the
//! fundamental, unbalance, tariff sums). This module does no Modbus I/O.

use crate::modbus::decode::{DataType, WordOrder};
use crate::schema::{self, Unit};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The built-in profiles, embedded at compile time.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "eastron-sdm630",
        include_str!("../../config/profiles/eastron-sdm630.toml"),
    ),
    (
        "janitza-umg96rm",
        include_str!("../../config/profiles/janitza-umg96rm.toml"),
    ),
    (
        "siemens-pac3200",
        include_str!("../../config/profiles/siemens-pac3200.toml"),
    ),
    (
        "schneider-pm5100",
        include_str!("../../config/profiles/schneider-pm5100.toml"),
    ),
    (
        "carlo-gavazzi-em24",
        include_str!("../../config/profiles/carlo-gavazzi-em24.toml"),
    ),
];

/// Modbus read function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FunctionCode {
    /// 0x03 Read Holding Registers.
    Holding,
    /// 0x04 Read Input Registers.
    Input,
}

impl FunctionCode {
    pub fn code(self) -> u8 {
        match self {
            FunctionCode::Holding => 3,
            FunctionCode::Input => 4,
        }
    }
}

impl TryFrom<u8> for FunctionCode {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            3 => Ok(FunctionCode::Holding),
            4 => Ok(FunctionCode::Input),
            other => Err(format!(
                "function code {other} is not a register read (use 3 = holding or 4 = input)"
            )),
        }
    }
}

impl fmt::Display for FunctionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FC{}", self.code())
    }
}

/// Confidence in a register's definition, as marked in the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Confidence {
    /// Read in the vendor's own document.
    V,
    /// Three independent implementations agree.
    C3,
    /// Two agree.
    C2,
    /// One implementation only.
    C1,
}

/// One value read from the meter's registers.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    /// Field name; also the output name when `emit` is set.
    pub name: String,
    pub function: FunctionCode,
    pub address: u16,
    pub dtype: DataType,
    pub order: WordOrder,
    /// raw × scale = value in `unit`.
    pub scale: f64,
    pub unit: Unit,
    /// Written to the database. False for values read only as inputs
    /// (the fundamental of an "absolute" harmonic series).
    pub emit: bool,
    pub confidence: Option<Confidence>,
    pub doc: Option<String>,
    /// Raw bit patterns the meter documents as "not available".
    pub not_available: Vec<u64>,
}

impl Register {
    /// One past the last register address (may be 65536).
    pub fn end(&self) -> u32 {
        self.address as u32 + self.dtype.words() as u32
    }
}

/// How a derived value is computed from other values of the same reading.
#[derive(Debug, Clone, PartialEq)]
pub enum DerivedOp {
    /// 100 × a / b, for unbalance and harmonic orders relative to the fundamental.
    RatioPercent,
    /// a + b + …, for tariff registers.
    Sum,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub name: String,
    pub op: DerivedOp,
    /// Indices into [`Profile::registers`] or, for inputs that are derived
    /// themselves, not allowed: derived values take register inputs only.
    pub inputs: Vec<usize>,
    /// Canonical unit of the result.
    pub unit: &'static str,
}

/// A validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub vendor: String,
    pub model: String,
    pub description: String,
    pub source: String,
    pub notes: Vec<String>,
    pub max_registers: u16,
    pub max_gap: u16,
    pub even_count: bool,
    pub registers: Vec<Register>,
    pub derived: Vec<Derived>,
    /// Where it came from: "built-in" or a file path.
    pub origin: String,
}

impl Profile {
    /// Names of every field this profile writes, in profile order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.registers
            .iter()
            .filter(|r| r.emit)
            .map(|r| r.name.as_str())
            .chain(self.derived.iter().map(|d| d.name.as_str()))
    }

    pub fn register(&self, name: &str) -> Option<&Register> {
        self.registers.iter().find(|r| r.name == name)
    }
}

// ---------------------------------------------------------------------------
// Raw file format

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

/// Every problem found in one profile file, each naming its key.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileError {
    pub origin: String,
    pub problems: Vec<String>,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "profile {}:", self.origin)?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileError {}

/// Parse and validate one profile from TOML text.
pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
    let fail = |problems: Vec<String>| ProfileError {
        origin: origin.to_string(),
        problems,
    };
    let raw: RawProfile = toml::from_str(text).map_err(|e| fail(vec![toml_error(&e)]))?;
    let mut p = Vec::new();

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

    let mut registers: Vec<Register> = Vec::new();
    let mut derived: Vec<Derived> = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut claim = |name: &str, key: &str, p: &mut Vec<String>| {
        if let Some(prev) = names.insert(name.to_string(), key.to_string()) {
            p.push(format!("{key}.name: \"{name}\" is also defined at {prev}"));
        }
    };

    for (i, f) in raw.field.iter().enumerate() {
        let key = format!("field[{i}]");
        let function = resolve_fc(f.function, default_fc, &key, &mut p);
        let dtype = f.dtype.or(d.dtype);
        if dtype.is_none() {
            p.push(format!("{key}.type: missing (and no defaults.type)"));
        }
        let scale = f.scale.or(d.scale).unwrap_or(1.0);
        if !(scale.is_finite() && scale != 0.0) {
            p.push(format!(
                "{key}.scale: {scale} must be a finite, non-zero number"
            ));
        }
        let unit = match f.unit.parse::<Unit>() {
            Ok(u) => Some(u),
            Err(e) => {
                p.push(format!("{key}.unit: {e}"));
                None
            }
        };
        check_name(&f.name, unit, &key, &mut p);
        claim(&f.name, &key, &mut p);
        let na_key = format!("{key}.not_available");
        let not_available = parse_patterns(
            f.not_available.as_ref().or(d.not_available.as_ref()),
            dtype,
            &na_key,
            &mut p,
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
                p.push(format!(
                    "{key}.address: {} + {} registers runs past 65535",
                    f.address,
                    dtype.words()
                ));
            }
            registers.push(reg);
        }
    }

    for (i, h) in raw.harmonics.iter().enumerate() {
        let key = format!("harmonics[{i}]");
        let function = resolve_fc(h.function, default_fc, &key, &mut p);
        let Some(dtype) = h.dtype.or(d.dtype) else {
            p.push(format!("{key}.type: missing (and no defaults.type)"));
            continue;
        };
        let [lo, hi] = h.orders;
        if lo < 2 || hi < lo || hi > 63 {
            p.push(format!(
                "{key}.orders: [{lo}, {hi}] must be a range within 2..=63"
            ));
            continue;
        }
        if h.stride < dtype.words() {
            p.push(format!(
                "{key}.stride: {} is smaller than one {dtype} ({} registers)",
                h.stride,
                dtype.words()
            ));
            continue;
        }
        let unit = if h.name.starts_with("harmonic_current") {
            "A"
        } else {
            "V"
        };
        if !h.name.starts_with("harmonic_voltage_") && !h.name.starts_with("harmonic_current_") {
            p.push(format!(
                "{key}.name: \"{}\" must start with harmonic_voltage_ or harmonic_current_",
                h.name
            ));
        }
        let Some(function) = function else { continue };
        let order = h.word_order.or(d.word_order).unwrap_or_default();
        let addr = |n: u16| -> Option<u16> {
            let a = h.base as u32 + h.stride as u32 * (n as u32 - 1);
            (a + dtype.words() as u32 <= 65536).then_some(a as u16)
        };
        let Some(_) = addr(hi) else {
            p.push(format!("{key}: order {hi} runs past register 65535"));
            continue;
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
                    claim(&name, &key, &mut p);
                    registers.push(reg(name, n, true, Unit::PERCENT));
                }
            }
            HarmonicValue::Absolute => {
                // Absolute volts/amps: read the fundamental too and write
                // each order as % of it; ratios cancel, so no PT/CT applies.
                let abs: Unit = unit.parse().expect("V and A are known units");
                let fund = format!("{}_h1", h.name);
                claim(&fund, &key, &mut p);
                let fund_idx = registers.len();
                registers.push(reg(fund, 1, false, abs));
                for n in lo..=hi {
                    let raw_name = format!("{}_h{n}_abs", h.name);
                    claim(&raw_name, &key, &mut p);
                    let idx = registers.len();
                    registers.push(reg(raw_name, n, false, abs));
                    let name = format!("{}_h{n}", h.name);
                    claim(&name, &key, &mut p);
                    derived.push(Derived {
                        name,
                        op: DerivedOp::RatioPercent,
                        inputs: vec![idx, fund_idx],
                        unit: "%",
                    });
                }
            }
        }
    }

    for (i, dv) in raw.derived.iter().enumerate() {
        let key = format!("derived[{i}]");
        let op = match dv.op.as_str() {
            "ratio_percent" => DerivedOp::RatioPercent,
            "sum" => DerivedOp::Sum,
            other => {
                p.push(format!(
                    "{key}.op: unknown op \"{other}\" (use \"ratio_percent\" or \"sum\")"
                ));
                continue;
            }
        };
        let mut inputs = Vec::new();
        for (j, name) in dv.inputs.iter().enumerate() {
            match registers.iter().position(|r| &r.name == name) {
                Some(idx) => inputs.push(idx),
                None => {
                    let hint =
                        schema::did_you_mean_hint(name, registers.iter().map(|r| r.name.as_str()));
                    p.push(format!(
                        "{key}.inputs[{j}]: \"{name}\" is not a field of this profile{hint}"
                    ));
                }
            }
        }
        if inputs.len() != dv.inputs.len() {
            continue;
        }
        let unit = match op {
            DerivedOp::RatioPercent => {
                if inputs.len() != 2 {
                    p.push(format!(
                        "{key}.inputs: ratio_percent takes exactly 2 inputs"
                    ));
                    continue;
                }
                "%"
            }
            DerivedOp::Sum => {
                if inputs.is_empty() {
                    p.push(format!("{key}.inputs: sum takes at least 1 input"));
                    continue;
                }
                let first = registers[inputs[0]].unit.canonical;
                if inputs.iter().any(|&k| registers[k].unit.canonical != first) {
                    p.push(format!(
                        "{key}.inputs: a sum needs inputs of one canonical unit"
                    ));
                    continue;
                }
                first
            }
        };
        if let Some(u) = &dv.unit {
            match u.parse::<Unit>() {
                Ok(u) if u.canonical == unit => {}
                Ok(u) => p.push(format!(
                    "{key}.unit: \"{u}\" does not match the result's unit \"{unit}\""
                )),
                Err(e) => p.push(format!("{key}.unit: {e}")),
            }
        }
        let unit_obj: Option<Unit> = Unit::all().iter().find(|x| x.symbol == unit).copied();
        check_name(&dv.name, unit_obj, &key, &mut p);
        claim(&dv.name, &key, &mut p);
        derived.push(Derived {
            name: dv.name.clone(),
            op,
            inputs,
            unit,
        });
    }

    // One read holds at least one whole value (padded to an even count
    // where the device demands it); a smaller limit would have the planner
    // send reads the device refuses on every poll.
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

    if registers.iter().all(|r| !r.emit) && derived.is_empty() {
        p.push("field: a profile needs at least one field".into());
    }
    // Overlapping registers within one function code are almost always a
    // typo in an address.
    let mut by_fc: BTreeMap<(FunctionCode, u16), &Register> = BTreeMap::new();
    for r in &registers {
        by_fc.insert((r.function, r.address), r);
    }
    let mut prev: Option<&Register> = None;
    for r in by_fc.values() {
        if let Some(q) = prev
            && q.function == r.function
            && q.end() > r.address as u32
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

/// All profiles available to a config: the built-in ones, overridden or
/// extended by the user directory.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    profiles: BTreeMap<String, Arc<Profile>>,
}

impl Registry {
    /// Only the built-in profiles. They are tested to parse, so failure here
    /// is a build defect.
    pub fn builtin() -> Self {
        let mut profiles = BTreeMap::new();
        for (name, text) in BUILTIN {
            let p = parse(text, &format!("built-in {name}"))
                .unwrap_or_else(|e| panic!("built-in profile is invalid: {e}"));
            profiles.insert(p.name.clone(), Arc::new(p));
        }
        Registry { profiles }
    }

    /// Built-ins plus every `*.toml` in `dir` (if it exists). Returns every
    /// problem found; a missing directory is not a problem.
    pub fn load(dir: Option<&Path>) -> Result<Self, Vec<ProfileError>> {
        let mut reg = Self::builtin();
        let Some(dir) = dir else { return Ok(reg) };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(reg),
            Err(e) => {
                return Err(vec![ProfileError {
                    origin: dir.display().to_string(),
                    problems: vec![format!("cannot read profile directory: {e}")],
                }]);
            }
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut errors = Vec::new();
        for path in paths {
            let origin = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(ProfileError {
                        origin,
                        problems: vec![format!("cannot read: {e}")],
                    });
                    continue;
                }
            };
            match parse(&text, &origin) {
                Ok(p) => {
                    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    if stem != p.name {
                        errors.push(ProfileError {
                            origin,
                            problems: vec![format!(
                                "name: \"{}\" differs from the file name \"{stem}.toml\"",
                                p.name
                            )],
                        });
                        continue;
                    }
                    reg.profiles.insert(p.name.clone(), Arc::new(p));
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(reg)
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.profiles.values()
    }

    /// Add or replace a profile (tests and the simulator use this).
    pub fn insert(&mut self, p: Profile) {
        self.profiles.insert(p.name.clone(), Arc::new(p));
    }
}

#[cfg(test)]
mod tests;
