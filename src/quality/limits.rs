//! Limits as data: presets from `config/limits.toml` (embedded), resolved
//! for one meter from its nominal voltage and phases, with overrides.
//!
//! A preset is a standard's table (GB/T 12325 + GB/T 14549, EN 50160,
//! IEEE 519) keyed by nominal voltage; resolution picks the first row whose
//! `max_nominal_kv` covers the meter's nominal voltage. This module only
//! resolves numbers; the rules that use them live in `quality::rules`.

use serde::Deserialize;
use std::collections::BTreeMap;

pub(crate) const PRESETS_TOML: &str = include_str!("../../config/limits.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    voltage_standard: String,
    harmonic_standard: String,
    voltage_window: String,
    harmonic_window: String,
    /// "cp95", "weekly95" or "ieee519" ([`Assessment`]).
    harmonic_assessment: String,
    frequency_standard: Option<String>,
    /// Allowed deviation from the nominal frequency, Hz.
    frequency_deviation: Option<f64>,
    /// Share (%) of the minutes that must lie inside.
    frequency_share: Option<f64>,
    #[serde(default)]
    voltage: Vec<RawBand>,
    #[serde(default)]
    harmonics: Vec<RawHarmonics>,
    /// IEEE 519 current distortion rows, by short-circuit ratio.
    #[serde(default)]
    current: Vec<RawCurrent>,
    /// GB/T 14549 Table 2 rows: harmonic currents in A by voltage class.
    #[serde(default)]
    harmonic_current: Vec<RawHarmonicCurrent>,
    /// Long-term flicker (Plt) limits by voltage class.
    #[serde(default)]
    flicker: Vec<RawFlicker>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlicker {
    max_nominal_kv: f64,
    plt: f64,
    /// % of the values (per week) that must be within: 100 every one.
    share: f64,
    standard: String,
    note: Option<String>,
    note_zh: Option<String>,
}

/// The long-term flicker limit of a meter's voltage class.
#[derive(Debug, Clone, PartialEq)]
pub struct FlickerLimit {
    pub standard: String,
    /// Plt limit (unitless).
    pub plt: f64,
    /// Share of the values that must be within, %: 100 (GB/T 12326, every
    /// value of the week) or 95 (EN 50160, of each week's 10-minute values).
    pub share: f64,
    pub note: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHarmonicCurrent {
    max_nominal_kv: f64,
    nominal_kv: f64,
    /// Reference short-circuit capacity of the row, MVA.
    base_mva: f64,
    /// Allowed current (A) for orders 2..=25.
    amps: Vec<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCurrent {
    /// The row applies while Isc / I_L is below this.
    max_ratio: f64,
    /// TDD limit, % of I_L.
    tdd: f64,
    /// Odd orders 3–11, 11–17, 17–23, 23–35, 35–50, % of I_L.
    odd: [f64; 5],
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBand {
    phases: Option<u8>,
    max_nominal_kv: f64,
    upper: f64,
    lower: f64,
    /// GB/T 12325 at 35 kV and above: the absolute deviations may sum to
    /// at most this (or, of one sign, the larger may reach it).
    sum_limit: Option<f64>,
    /// EN 50160 range 2 (every interval inside), % of the reference.
    range2_upper: Option<f64>,
    range2_lower: Option<f64>,
    /// EN 50160: share (%) of each week's intervals range 1 must hold.
    weekly_share: Option<f64>,
    note: Option<String>,
    note_zh: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHarmonics {
    max_nominal_kv: f64,
    thd: f64,
    odd: f64,
    even: f64,
    #[serde(default)]
    orders: BTreeMap<String, f64>,
    note: Option<String>,
    note_zh: Option<String>,
}

/// Voltage deviation band, % of nominal.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub upper_pct: f64,
    pub lower_pct: f64,
    /// The row's description (English; [`source_zh`] gives the Chinese).
    pub note: String,
    /// The row's bound on the band's width (GB/T 12325, ≥ 35 kV: 10 %).
    pub sum_limit: Option<f64>,
    /// EN 50160 weekly statistics: range 2 (lower %, upper %), and the
    /// share of each week's 10-minute means the band must hold.
    pub weekly: Option<Weekly>,
}

/// EN 50160's per-phase, per-week assessment of 10-minute means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weekly {
    pub range2_lower_pct: f64,
    pub range2_upper_pct: f64,
    /// 95 (LV) or 99 (MV): N1 ≤ (100 − share) % of N.
    pub share: f64,
}

impl Band {
    /// A band is upper > lower; a row with a `sum_limit` (GB/T 12325 at
    /// 35 kV and above) allows deviations of one sign, and bounds the sum
    /// of the absolute deviations (of one sign: the larger one). Other
    /// rows need upper ≥ 0 ≥ lower.
    fn check(&self) -> Result<(), String> {
        let (up, lo) = (self.upper_pct, self.lower_pct);
        let shown = format!("voltage band {} / {} %", signed(up), signed(lo));
        if !(up.is_finite() && lo.is_finite() && up > lo) {
            return Err(format!("{shown} must have upper above lower"));
        }
        match self.sum_limit {
            Some(limit) => {
                let width = if up >= 0.0 && lo <= 0.0 {
                    up - lo
                } else {
                    up.abs().max(lo.abs())
                };
                if width > limit + 1e-9 {
                    return Err(format!(
                        "{shown}: the absolute deviations sum to {width} %, above the {limit} % GB/T 12325 allows at 35 kV and above"
                    ));
                }
            }
            None if !(up >= 0.0 && lo <= 0.0) => {
                return Err(format!(
                    "{shown} must have upper ≥ 0 and lower ≤ 0 (deviations of one sign are allowed at 35 kV and above only)"
                ));
            }
            None => {}
        }
        Ok(())
    }

    /// The band in volts around a nominal reference: (lower, upper).
    pub(crate) fn volts(&self, reference: f64) -> (f64, f64) {
        (
            reference * (1.0 + self.lower_pct / 100.0),
            reference * (1.0 + self.upper_pct / 100.0),
        )
    }
}

/// Harmonic voltage limits, % of fundamental.
#[derive(Debug, Clone, PartialEq)]
pub struct HarmonicLimits {
    pub thd: f64,
    /// Limit per order 2..=50.
    pub orders: BTreeMap<u16, f64>,
    pub note: String,
}

/// Which aggregation window a rule judges: the short one (1 minute by
/// default) or the long one (10 minutes). Tests and demos may shorten both
/// in `[rules]`; the standards' windows are the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Span {
    Short,
    Long,
}

/// How a period's harmonic figures (voltage and current) are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assessment {
    /// GB/T 14549 §6.2: the CP95 of the shortest values over the period.
    Cp95,
    /// EN 50160 §4.2.4: each ISO week, 95 % of the 10-minute means within.
    Weekly95,
    /// IEEE 519-2014 §5.1/5.2: weekly 95th percentile of 10-minute values
    /// ≤ the limit (currents: 99th ≤ 1.5 ×), daily 99th percentile of very
    /// short (3 s) values ≤ 1.5 × (voltages) or 2 × (currents).
    Ieee519,
}

impl Assessment {
    /// Whether the ledger keeps the 10-minute distribution it needs.
    pub(crate) fn weekly(self) -> bool {
        self != Assessment::Cp95
    }
}

fn assessment(s: &str) -> Assessment {
    match s {
        "cp95" => Assessment::Cp95,
        "weekly95" => Assessment::Weekly95,
        "ieee519" => Assessment::Ieee519,
        other => panic!("preset harmonic_assessment \"{other}\" is not cp95, weekly95 or ieee519"),
    }
}

fn span(s: &str) -> Span {
    match s {
        "1m" => Span::Short,
        "10m" => Span::Long,
        other => panic!("preset window \"{other}\" must be \"1m\" or \"10m\""),
    }
}

/// What a meter is judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub preset: String,
    /// Edition the voltage band comes from ("GB/T 12325-2008").
    pub voltage_standard: String,
    /// Edition the harmonic limits come from ("GB/T 14549-1993").
    pub harmonic_standard: String,
    pub voltage: Option<Band>,
    pub voltage_window: Span,
    pub harmonics: Option<HarmonicLimits>,
    pub harmonic_window: Span,
    /// How the report judges the period's harmonic figures.
    pub harmonic_assessment: Assessment,
    /// THDi limit, %, if configured (no preset sets one: it depends on the
    /// customer's short-circuit ratio).
    pub thd_current: Option<f64>,
    /// Voltage unbalance limit, %.
    pub unbalance: f64,
    /// Frequency deviation, where the preset (or an override) sets one.
    pub frequency: Option<FrequencyLimit>,
    /// IEEE 519 current distortion (TDD), where the preset has a current
    /// table and the customer its short-circuit capacity and I_L.
    pub current: Option<CurrentLimits>,
    /// GB/T 14549 harmonic currents (A), where the preset has Table 2 and
    /// the customer its short-circuit capacity.
    pub harmonic_current: Option<HarmonicCurrentLimits>,
    /// Long-term flicker, where the preset has a row for the voltage.
    pub flicker: Option<FlickerLimit>,
}

/// IEEE 519 current distortion limits of one customer: the Table 2 row its
/// short-circuit ratio selects.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentLimits {
    /// Isc / I_L at the PCC.
    pub ratio: f64,
    /// TDD limit, % of I_L.
    pub tdd: f64,
    /// Odd-order limits for 3–11, 11–17, 17–23, 23–35, 35–50, % of I_L.
    pub odd: [f64; 5],
    pub note: String,
}

impl CurrentLimits {
    /// IEEE 519 Table 2 as individual-order limits in A for a maximum
    /// demand current `il_a`: odd orders by band (3–11 means h < 11, and so
    /// on up to 50), even orders per the edition: 2014 at 25 % of the odd
    /// band's limit, 2022 at 50 % for h ≤ 6 and 100 % above.
    pub(crate) fn order_amps(&self, il_a: f64, edition_2014: bool) -> HarmonicCurrentLimits {
        let band = |h: u16| match h {
            0..11 => self.odd[0],
            11..17 => self.odd[1],
            17..23 => self.odd[2],
            23..35 => self.odd[3],
            _ => self.odd[4],
        };
        let amps = (2..=50u16)
            .map(|h| {
                let pct = if h % 2 == 1 {
                    band(h)
                } else if edition_2014 {
                    band(h) * 0.25
                } else if h <= 6 {
                    band(h) * 0.5
                } else {
                    band(h)
                };
                (h, pct * il_a / 100.0)
            })
            .collect();
        HarmonicCurrentLimits {
            amps,
            note: format!(
                "{}; orders in % of I_L {il_a} A, even orders per IEEE 519-{}",
                self.note,
                if edition_2014 { "2014" } else { "2022" }
            ),
        }
    }
}

/// GB/T 14549 harmonic current limits of one customer at its PCC, in A.
#[derive(Debug, Clone, PartialEq)]
pub struct HarmonicCurrentLimits {
    /// Order → allowed current (A), scaled and shared.
    pub amps: BTreeMap<u16, f64>,
    pub note: String,
}

/// GB/T 14549 Appendix C: the exponent of a customer's share by order.
pub(crate) fn share_alpha(order: u16) -> f64 {
    match order {
        3 => 1.1,
        5 => 1.2,
        7 => 1.4,
        11 => 1.8,
        13 => 1.9,
        _ => 2.0,
    }
}

/// Allowed frequency deviation and the share of minutes it must hold for.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyLimit {
    pub standard: String,
    /// ± Hz around the nominal frequency.
    pub deviation_hz: f64,
    /// % of the monitored minutes (100: every one).
    pub share: f64,
}

/// Per-customer or per-meter overrides (config `[meters.limits]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub preset: Option<String>,
    pub voltage_upper: Option<f64>,
    pub voltage_lower: Option<f64>,
    pub thd_voltage: Option<f64>,
    pub harmonic_odd: Option<f64>,
    pub harmonic_even: Option<f64>,
    pub thd_current: Option<f64>,
    pub unbalance: Option<f64>,
    /// Allowed frequency deviation, Hz.
    pub frequency_deviation: Option<f64>,
    /// IEEE 519 edition whose even-order rule applies: "2014" (25 % of
    /// the odd limit) or "2022" (default: h ≤ 6 at 50 %, h > 6 at 100 %).
    pub ieee519_edition: Option<String>,
}

impl Overrides {
    /// `self` wins over `base` key by key (meter over customer over defaults).
    pub(crate) fn over(&self, base: &Overrides) -> Overrides {
        Overrides {
            preset: self.preset.clone().or(base.preset.clone()),
            voltage_upper: self.voltage_upper.or(base.voltage_upper),
            voltage_lower: self.voltage_lower.or(base.voltage_lower),
            thd_voltage: self.thd_voltage.or(base.thd_voltage),
            harmonic_odd: self.harmonic_odd.or(base.harmonic_odd),
            harmonic_even: self.harmonic_even.or(base.harmonic_even),
            thd_current: self.thd_current.or(base.thd_current),
            unbalance: self.unbalance.or(base.unbalance),
            frequency_deviation: self.frequency_deviation.or(base.frequency_deviation),
            ieee519_edition: self
                .ieee519_edition
                .clone()
                .or(base.ieee519_edition.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Presets {
    presets: BTreeMap<String, RawPreset>,
}

impl Presets {
    pub(crate) fn builtin() -> Self {
        let presets: BTreeMap<String, RawPreset> =
            toml::from_str(PRESETS_TOML).expect("config/limits.toml is tested to parse");
        Presets { presets }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.presets.keys().map(String::as_str)
    }

    /// The IEEE 519 current row for a short-circuit ratio Isc / I_L, where
    /// the preset has a current table.
    pub(crate) fn current_limits(&self, preset: &str, ratio: f64) -> Option<CurrentLimits> {
        let p = self.presets.get(preset)?;
        let row = p.current.iter().find(|r| ratio < r.max_ratio)?;
        let lower = p
            .current
            .iter()
            .rev()
            .find(|r| r.max_ratio <= ratio)
            .map_or(0.0, |r| r.max_ratio);
        Some(CurrentLimits {
            ratio,
            tdd: row.tdd,
            odd: row.odd,
            note: if lower == 0.0 {
                format!("Isc/IL {ratio:.0} < {}: TDD {} %", row.max_ratio, row.tdd)
            } else if row.max_ratio >= 1e9 {
                format!("Isc/IL {ratio:.0} > {lower}: TDD {} %", row.tdd)
            } else {
                format!(
                    "Isc/IL {ratio:.0} in {lower}–{}: TDD {} %",
                    row.max_ratio, row.tdd
                )
            },
        })
    }

    /// GB/T 14549 Table 2 for a meter of `nominal_voltage` (V): each order's
    /// current scaled to the minimum short-circuit capacity `sk_mva` and,
    /// with the customer's capacity `si_mva` of the supply capacity
    /// `st_mva`, shared as Ih · (Si/St)^(1/α).
    pub(crate) fn harmonic_current_limits(
        &self,
        preset: &str,
        nominal_voltage: f64,
        sk_mva: f64,
        share: Option<(f64, f64)>,
    ) -> Option<HarmonicCurrentLimits> {
        let p = self.presets.get(preset)?;
        let kv = nominal_voltage / 1000.0;
        let row = p
            .harmonic_current
            .iter()
            .find(|r| kv <= r.max_nominal_kv + 1e-9)?;
        let scale = sk_mva / row.base_mva;
        let ratio = share.map(|(si, st)| (si / st).clamp(0.0, 1.0));
        let amps = row
            .amps
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let n = i as u16 + 2;
                let shared = ratio.map_or(1.0, |r| r.powf(1.0 / share_alpha(n)));
                (n, a * scale * shared)
            })
            .collect();
        let note = match share {
            Some((si, st)) => format!(
                "{} kV Table 2 at {} MVA, scaled to Sk {sk_mva} MVA, shared by Si/St = {si}/{st} MVA",
                row.nominal_kv, row.base_mva
            ),
            None => format!(
                "{} kV Table 2 at {} MVA, scaled to Sk {sk_mva} MVA (no supply capacity: not shared)",
                row.nominal_kv, row.base_mva
            ),
        };
        Some(HarmonicCurrentLimits { amps, note })
    }

    /// Every (English, Chinese) note of the presets' rows.
    fn notes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.presets.values().flat_map(|p| {
            p.voltage
                .iter()
                .map(|b| (&b.note, &b.note_zh))
                .chain(p.harmonics.iter().map(|h| (&h.note, &h.note_zh)))
                .chain(p.flicker.iter().map(|f| (&f.note, &f.note_zh)))
                .filter_map(|(en, zh)| Some((en.as_deref()?, zh.as_deref()?)))
        })
    }

    /// Resolve the limits of a meter. Errors name what is wrong.
    pub(crate) fn resolve(
        &self,
        nominal_voltage: f64,
        phases: u8,
        o: &Overrides,
    ) -> Result<Limits, String> {
        let name = o.preset.as_deref().unwrap_or("gb");
        let p = self.presets.get(name).ok_or_else(|| {
            let hint = crate::schema::did_you_mean_hint(name, self.names());
            format!("unknown limits preset \"{name}\"{hint}")
        })?;
        let kv = nominal_voltage / 1000.0;
        let mut l = Limits {
            preset: name.to_string(),
            voltage_standard: p.voltage_standard.clone(),
            harmonic_standard: p.harmonic_standard.clone(),
            voltage: p.band_at(kv, phases),
            voltage_window: span(&p.voltage_window),
            harmonics: p.harmonics_at(kv),
            harmonic_window: span(&p.harmonic_window),
            harmonic_assessment: assessment(&p.harmonic_assessment),
            thd_current: o.thd_current,
            unbalance: o.unbalance.unwrap_or(2.0),
            current: None,
            harmonic_current: None,
            flicker: p.flicker_at(kv),
            frequency: p.frequency(o),
        };
        if let Some(f) = &l.frequency
            && !(f.deviation_hz.is_finite() && f.deviation_hz > 0.0 && f.deviation_hz < 10.0)
        {
            return Err(format!(
                "frequency deviation {} Hz must be between 0 and 10 Hz",
                f.deviation_hz
            ));
        }
        override_voltage(&mut l, o);
        if let Some(b) = &l.voltage {
            b.check()?;
        }
        override_harmonics(&mut l, o);
        Ok(l)
    }
}

// One preset's rows picked for a meter: the first row whose
// `max_nominal_kv` covers the meter's nominal voltage.
impl RawPreset {
    /// The voltage band row (for the meter's phase count, where rows say).
    fn band_at(&self, kv: f64, phases: u8) -> Option<Band> {
        self.voltage
            .iter()
            .filter(|b| b.phases.is_none_or(|ph| ph == phases))
            .find(|b| kv <= b.max_nominal_kv + 1e-9)
            .map(|b| Band {
                upper_pct: b.upper,
                lower_pct: b.lower,
                note: b.note.clone().unwrap_or_default(),
                sum_limit: b.sum_limit,
                weekly: match (b.range2_lower, b.range2_upper, b.weekly_share) {
                    (Some(lo), Some(up), Some(share)) => Some(Weekly {
                        range2_lower_pct: lo,
                        range2_upper_pct: up,
                        share,
                    }),
                    _ => None,
                },
            })
    }

    /// The harmonic voltage row: orders 2..=50 from the even/odd figures,
    /// then the row's own per-order figures over them.
    fn harmonics_at(&self, kv: f64) -> Option<HarmonicLimits> {
        self.harmonics
            .iter()
            .find(|h| kv <= h.max_nominal_kv + 1e-9)
            .map(|h| {
                let mut orders = BTreeMap::new();
                for n in 2..=50u16 {
                    let base = if n % 2 == 0 { h.even } else { h.odd };
                    orders.insert(n, base);
                }
                for (k, v) in &h.orders {
                    if let Ok(n) = k.parse::<u16>() {
                        orders.insert(n, *v);
                    }
                }
                HarmonicLimits {
                    thd: h.thd,
                    orders,
                    note: h.note.clone().unwrap_or_default(),
                }
            })
    }

    /// The flicker (Plt) row.
    fn flicker_at(&self, kv: f64) -> Option<FlickerLimit> {
        self.flicker
            .iter()
            .find(|f| kv <= f.max_nominal_kv + 1e-9)
            .map(|f| FlickerLimit {
                standard: f.standard.clone(),
                plt: f.plt,
                share: f.share,
                note: f.note.clone().unwrap_or_default(),
            })
    }

    /// The frequency limit, the configured deviation taking the preset's
    /// place. An override without a preset figure keeps the preset's share.
    fn frequency(&self, o: &Overrides) -> Option<FrequencyLimit> {
        o.frequency_deviation
            .or(self.frequency_deviation)
            .map(|d| FrequencyLimit {
                standard: self
                    .frequency_standard
                    .clone()
                    .unwrap_or_else(|| "configured".into()),
                deviation_hz: d,
                share: self.frequency_share.unwrap_or(100.0),
            })
    }
}

/// The configured voltage band limits over the preset's (or over ±10 %
/// where the preset has no band for this voltage).
fn override_voltage(l: &mut Limits, o: &Overrides) {
    if o.voltage_upper.is_some() || o.voltage_lower.is_some() {
        let b = l.voltage.get_or_insert(Band {
            upper_pct: 10.0,
            lower_pct: -10.0,
            note: String::new(),
            sum_limit: None,
            weekly: None,
        });
        if let Some(u) = o.voltage_upper {
            b.upper_pct = u;
        }
        if let Some(lo) = o.voltage_lower {
            b.lower_pct = lo;
        }
        b.note = "overridden in config".into();
    }
}

/// The configured THD and even/odd order limits over the preset's; a THD
/// limit alone where the preset has no harmonic row.
fn override_harmonics(l: &mut Limits, o: &Overrides) {
    if let Some(h) = l.harmonics.as_mut() {
        if let Some(t) = o.thd_voltage {
            h.thd = t;
        }
        for (n, v) in &mut h.orders {
            if n % 2 == 0 {
                if let Some(e) = o.harmonic_even {
                    *v = e;
                }
            } else if let Some(od) = o.harmonic_odd {
                *v = od;
            }
        }
    } else if let Some(t) = o.thd_voltage {
        l.harmonics = Some(HarmonicLimits {
            thd: t,
            orders: BTreeMap::new(),
            note: "overridden in config".into(),
        });
    }
}

/// An event's source or a limit's note in Chinese: every preset row's
/// English note and the fixed phrases of contract rules become their
/// Chinese text (`limits.toml` carries both); standards' names stay as
/// they are. Idempotent on Chinese text.
pub(crate) fn source_zh(s: &str) -> String {
    static PRESETS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    let notes = PRESETS.get_or_init(|| {
        let p = Presets::builtin();
        let mut v: Vec<(String, String)> = p
            .notes()
            .map(|(en, zh)| (en.to_string(), zh.to_string()))
            .collect();
        // Longest first, so no note is replaced inside a longer one.
        v.sort_by_key(|(en, _)| std::cmp::Reverse(en.len()));
        v
    });
    let mut out = s.to_string();
    for (en, zh) in notes {
        if out.contains(en.as_str()) {
            out = out.replace(en.as_str(), zh);
        }
    }
    // Limits computed for one customer (IEEE 519's row by Isc/I_L, GB/T
    // 14549 Table 2 scaled and shared): their phrases in order, the longer
    // first where one holds another.
    if out.contains("Isc/IL") || out.contains("Table 2") {
        for (en, zh) in [
            (
                "; orders in % of I_L ",
                "；各次谐波限值按 I_L 的百分数（I_L = ",
            ),
            (" A, even orders per IEEE 519-", " A），偶次按 IEEE 519-"),
            ("Isc/IL ", "短路比 Isc/IL "),
            (" in ", " 属于 "),
            (": TDD ", "：TDD 限值 "),
            (" kV Table 2 at ", " kV 表 2（基准短路容量 "),
            (" MVA, scaled to Sk ", " MVA）按最小短路容量 "),
            (" MVA, shared by Si/St = ", " MVA 换算，分摊比 Si/St = "),
            (
                " MVA (no supply capacity: not shared)",
                " MVA 换算（未配置供电设备容量，不分摊）",
            ),
        ] {
            out = out.replace(en, zh);
        }
    }
    for (en, zh) in [
        ("contracted maximum demand ", "合同最大需量 "),
        (" kVA contracted: allowed ", " kVA：允许 "),
        ("suspension of ", "暂停 "),
        (" kVA of ", " kVA，合同容量 "),
        ("configured THDi limit", "配置的 THDi 限值"),
        ("configured unbalance limit", "配置的不平衡度限值"),
        ("overridden in config", "配置中指定"),
    ] {
        out = out.replace(en, zh);
    }
    out
}

fn signed(v: f64) -> String {
    if v >= 0.0 {
        format!("+{v}")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests;
