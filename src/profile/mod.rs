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
//! fundamental, unbalance, tariff sums). This module does no Modbus I/O;
//! the file format and its validation are in `parse`, and [`Registry`] is
//! the one place that reads profile files from disk.

use crate::modbus::decode::{DataType, WordOrder};
use crate::schema::Unit;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

mod parse;
pub use parse::parse;

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
        u32::from(self.address) + u32::from(self.dtype.words())
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

    pub(crate) fn register(&self, name: &str) -> Option<&Register> {
        self.registers.iter().find(|r| r.name == name)
    }
}

/// Every problem found in one profile file, each naming its key.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileError {
    pub(crate) origin: String,
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
