//! The canonical schema: units, and which unit each field name must end up in.
//!
//! Every value pqwatch writes is in one of a few canonical units on the
//! primary side of the instrument transformers: V, A, W, var, VA, Hz, kWh,
//! kvarh, kVAh, %, degrees, or dimensionless. A profile states the unit the
//! *meter* reports (kW, Wh, …); [`Unit`] knows the factor to the canonical
//! unit and which transformer ratio applies (voltage × PT, current × CT,
//! power and energy × PT × CT). Field names say what they measure, and
//! `expected_unit` derives the canonical unit from the name so that a
//! profile declaring `voltage_l1_n` in kW is rejected when it is loaded.

use std::fmt;
use std::str::FromStr;

/// The measurement every meter reading is written to (its fields are the
/// profile's field names; docs/operations.md lists the other measurements).
pub(crate) const MEASUREMENT: &str = "meter";

/// Which instrument-transformer ratio scales a quantity to the primary side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ratio {
    /// Voltages: × PT ratio.
    Pt,
    /// Currents: × CT ratio.
    Ct,
    /// Powers and energies: × PT × CT.
    PtCt,
    /// Ratios, percentages, frequency, angles: unscaled.
    None,
}

/// A unit a meter may report a value in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    /// The unit as written in profiles ("kW").
    pub symbol: &'static str,
    /// The canonical unit it converts to ("W").
    pub canonical: &'static str,
    /// Multiply a value in `symbol` by this to get `canonical`.
    pub factor: f64,
    pub(crate) ratio: Ratio,
}

const UNITS: &[Unit] = &[
    u("V", "V", 1.0, Ratio::Pt),
    u("kV", "V", 1e3, Ratio::Pt),
    u("A", "A", 1.0, Ratio::Ct),
    u("kA", "A", 1e3, Ratio::Ct),
    u("W", "W", 1.0, Ratio::PtCt),
    u("kW", "W", 1e3, Ratio::PtCt),
    u("MW", "W", 1e6, Ratio::PtCt),
    u("var", "var", 1.0, Ratio::PtCt),
    u("kvar", "var", 1e3, Ratio::PtCt),
    u("Mvar", "var", 1e6, Ratio::PtCt),
    u("VA", "VA", 1.0, Ratio::PtCt),
    u("kVA", "VA", 1e3, Ratio::PtCt),
    u("MVA", "VA", 1e6, Ratio::PtCt),
    u("Wh", "kWh", 1e-3, Ratio::PtCt),
    u("kWh", "kWh", 1.0, Ratio::PtCt),
    u("MWh", "kWh", 1e3, Ratio::PtCt),
    u("varh", "kvarh", 1e-3, Ratio::PtCt),
    u("kvarh", "kvarh", 1.0, Ratio::PtCt),
    u("Mvarh", "kvarh", 1e3, Ratio::PtCt),
    u("VAh", "kVAh", 1e-3, Ratio::PtCt),
    u("kVAh", "kVAh", 1.0, Ratio::PtCt),
    u("MVAh", "kVAh", 1e3, Ratio::PtCt),
    u("Hz", "Hz", 1.0, Ratio::None),
    u("%", "%", 1.0, Ratio::None),
    u("deg", "deg", 1.0, Ratio::None),
    u("", "", 1.0, Ratio::None),
];

const fn u(symbol: &'static str, canonical: &'static str, factor: f64, ratio: Ratio) -> Unit {
    Unit {
        symbol,
        canonical,
        factor,
        ratio,
    }
}

impl Unit {
    pub(crate) fn all() -> &'static [Unit] {
        UNITS
    }

    pub(crate) const PERCENT: Unit = u("%", "%", 1.0, Ratio::None);
}

impl FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        UNITS
            .iter()
            .find(|x| x.symbol == s)
            .copied()
            .ok_or_else(|| {
                let known: Vec<_> = UNITS.iter().map(|x| format!("\"{}\"", x.symbol)).collect();
                format!("unknown unit \"{s}\" (known: {})", known.join(", "))
            })
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol)
    }
}

/// The canonical unit a field name implies, if the name belongs to one of
/// the canonical families. Unknown families return `None` (allowed as extra
/// fields, in whatever canonical unit their profile unit converts to).
pub(crate) fn expected_unit(name: &str) -> Option<&'static str> {
    // Order matters: the more specific prefixes/suffixes first.
    if name.ends_with("_unbalance") || name.contains("_unbalance_") {
        return Some("%");
    }
    let families: &[(&str, &str)] = &[
        ("thd_", "%"),
        ("tdd_", "%"),
        // Pst / Plt (IEC 61000-4-15) are unitless.
        ("flicker_", ""),
        ("harmonic_", "%"),
        ("voltage_", "V"),
        ("current_", "A"),
        ("active_power_", "W"),
        ("reactive_power_", "var"),
        ("apparent_power_", "VA"),
        ("power_factor_", ""),
        ("cos_phi_", ""),
        ("phase_angle_", "deg"),
        ("energy_active_", "kWh"),
        ("energy_reactive_", "kvarh"),
        ("energy_apparent_", "kVAh"),
    ];
    if name == "frequency" {
        return Some("Hz");
    }
    families
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, unit)| *unit)
}

/// Field names are InfluxDB field keys and Prometheus-friendly identifiers:
/// lowercase ASCII letters, digits and underscores, starting with a letter.
pub(crate) fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 64
}

/// Levenshtein distance, for "did you mean" hints in config and profile errors.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small edit distance, for error hints.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean "x"?)` after an error about `name`, or nothing when no
/// candidate is close.
pub fn did_you_mean_hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(name, candidates)
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_to_canonical() {
        let kw: Unit = "kW".parse().unwrap();
        assert_eq!(
            (kw.canonical, kw.factor, kw.ratio),
            ("W", 1000.0, Ratio::PtCt)
        );
        let wh: Unit = "Wh".parse().unwrap();
        assert_eq!((wh.canonical, wh.factor), ("kWh", 0.001));
        assert!("kw".parse::<Unit>().is_err(), "units are case-sensitive");
    }

    #[test]
    fn field_families_imply_units() {
        assert_eq!(expected_unit("voltage_l1_n"), Some("V"));
        assert_eq!(expected_unit("voltage_unbalance"), Some("%"));
        assert_eq!(expected_unit("current_unbalance"), Some("%"));
        assert_eq!(expected_unit("energy_active_import_total"), Some("kWh"));
        assert_eq!(expected_unit("harmonic_voltage_l1_n_h3"), Some("%"));
        assert_eq!(expected_unit("power_factor_total"), Some(""));
        assert_eq!(expected_unit("frequency"), Some("Hz"));
        assert_eq!(expected_unit("rotation_field"), None);
    }

    #[test]
    fn names_and_hints() {
        assert!(valid_field_name("voltage_l1_n"));
        assert!(!valid_field_name("Voltage"));
        assert!(!valid_field_name("1abc"));
        assert!(!valid_field_name("a b"));
        assert_eq!(
            did_you_mean("janitza-umg96", ["janitza-umg96rm", "eastron-sdm630"]),
            Some("janitza-umg96rm")
        );
        assert_eq!(did_you_mean("xyz", ["janitza-umg96rm"]), None);
    }
}
