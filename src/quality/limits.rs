//! Limits as data: presets from `config/limits.toml` (embedded), resolved
//! for one meter from its nominal voltage and phases, with overrides.
//!
//! A preset is a standard's table (GB/T 12325 + GB/T 14549, EN 50160,
//! IEEE 519) keyed by nominal voltage; resolution picks the first row whose
//! `max_nominal_kv` covers the meter's nominal voltage. This module only
//! resolves numbers; the rules that use them live in `quality::rules`.

use serde::Deserialize;
use std::collections::BTreeMap;

pub const PRESETS_TOML: &str = include_str!("../../config/limits.toml");

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
    pub fn volts(&self, reference: f64) -> (f64, f64) {
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
    pub fn weekly(self) -> bool {
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
    pub fn order_amps(&self, il_a: f64, edition_2014: bool) -> HarmonicCurrentLimits {
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
pub fn share_alpha(order: u16) -> f64 {
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
    pub fn over(&self, base: &Overrides) -> Overrides {
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
    pub fn builtin() -> Self {
        let presets: BTreeMap<String, RawPreset> =
            toml::from_str(PRESETS_TOML).expect("config/limits.toml is tested to parse");
        Presets { presets }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.presets.keys().map(String::as_str)
    }

    /// The IEEE 519 current row for a short-circuit ratio Isc / I_L, where
    /// the preset has a current table.
    pub fn current_limits(&self, preset: &str, ratio: f64) -> Option<CurrentLimits> {
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
    pub fn harmonic_current_limits(
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
    pub fn resolve(
        &self,
        nominal_voltage: f64,
        phases: u8,
        o: &Overrides,
    ) -> Result<Limits, String> {
        let name = o.preset.as_deref().unwrap_or("gb");
        let p = self.presets.get(name).ok_or_else(|| {
            let hint = crate::schema::did_you_mean(name, self.names())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            format!("unknown limits preset \"{name}\"{hint}")
        })?;
        let kv = nominal_voltage / 1000.0;
        let band = p
            .voltage
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
            });
        let harm = p
            .harmonics
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
            });
        let mut l = Limits {
            preset: name.to_string(),
            voltage_standard: p.voltage_standard.clone(),
            harmonic_standard: p.harmonic_standard.clone(),
            voltage: band,
            voltage_window: span(&p.voltage_window),
            harmonics: harm,
            harmonic_window: span(&p.harmonic_window),
            harmonic_assessment: assessment(&p.harmonic_assessment),
            thd_current: o.thd_current,
            unbalance: o.unbalance.unwrap_or(2.0),
            current: None,
            harmonic_current: None,
            flicker: p
                .flicker
                .iter()
                .find(|f| kv <= f.max_nominal_kv + 1e-9)
                .map(|f| FlickerLimit {
                    standard: f.standard.clone(),
                    plt: f.plt,
                    share: f.share,
                    note: f.note.clone().unwrap_or_default(),
                }),
            // An override without a preset figure keeps the preset's share.
            frequency: o
                .frequency_deviation
                .or(p.frequency_deviation)
                .map(|d| FrequencyLimit {
                    standard: p
                        .frequency_standard
                        .clone()
                        .unwrap_or_else(|| "configured".into()),
                    deviation_hz: d,
                    share: p.frequency_share.unwrap_or(100.0),
                }),
        };
        if let Some(f) = &l.frequency
            && !(f.deviation_hz.is_finite() && f.deviation_hz > 0.0 && f.deviation_hz < 10.0)
        {
            return Err(format!(
                "frequency deviation {} Hz must be between 0 and 10 Hz",
                f.deviation_hz
            ));
        }
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
        if let Some(b) = &l.voltage {
            b.check()?;
        }
        if let Some(h) = l.harmonics.as_mut() {
            if let Some(t) = o.thd_voltage {
                h.thd = t;
            }
            for (n, v) in h.orders.iter_mut() {
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
        Ok(l)
    }
}

/// An event's source or a limit's note in Chinese: every preset row's
/// English note and the fixed phrases of contract rules become their
/// Chinese text (`limits.toml` carries both); standards' names stay as
/// they are. Idempotent on Chinese text.
pub fn source_zh(s: &str) -> String {
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
mod tests {
    use super::*;

    #[test]
    fn bands_of_one_sign_only_at_35_kv_and_the_sum_checked() {
        let p = Presets::builtin();
        let band = |kv: f64, up: f64, lo: f64| {
            p.resolve(
                kv * 1000.0,
                3,
                &Overrides {
                    voltage_upper: Some(up),
                    voltage_lower: Some(lo),
                    ..Default::default()
                },
            )
        };
        // 35 kV: +7 / -3 (sum 10) and +10 / +3 (one sign, larger 10) pass.
        assert!(band(35.0, 7.0, -3.0).is_ok());
        let b = band(110.0, 10.0, 3.0).unwrap().voltage.unwrap();
        let (lo, up) = b.volts(110_000.0);
        assert!((lo - 113_300.0).abs() < 1e-6 && (up - 121_000.0).abs() < 1e-6);
        // The sum above 10 %, or one sign beyond 10 %.
        let e = band(35.0, 8.0, -3.0).unwrap_err();
        assert!(e.contains("sum to 11 %"), "{e}");
        assert!(band(35.0, 11.0, 2.0).is_err());
        // Below 35 kV a band must straddle the nominal voltage.
        let e = band(10.0, 7.0, 1.0).unwrap_err();
        assert!(
            e.contains("one sign are allowed at 35 kV and above only"),
            "{e}"
        );
        assert!(band(10.0, -1.0, -2.0).is_err());
    }

    #[test]
    fn ansi_range_a_above_600_v_is_plus_five_minus_two_and_a_half() {
        let b = r("ieee519", 13_200.0, 3).voltage.unwrap();
        assert_eq!((b.upper_pct, b.lower_pct), (5.0, -2.5));
        let (lo, up) = b.volts(13_200.0);
        assert!((lo - 12_870.0).abs() < 1e-6 && (up - 13_860.0).abs() < 1e-6);
        let b = r("ieee519", 480.0, 3).voltage.unwrap();
        assert_eq!((b.upper_pct, b.lower_pct), (5.0, -5.0));
    }

    #[test]
    fn every_note_has_chinese_text_and_sources_read_in_chinese() {
        let p = Presets::builtin();
        for (name, preset) in &p.presets {
            for b in &preset.voltage {
                assert!(b.note_zh.is_some(), "{name} voltage row {:?}", b.note);
            }
            for h in &preset.harmonics {
                assert!(h.note_zh.is_some(), "{name} harmonics row {:?}", h.note);
            }
        }
        let zh = source_zh("GB/T 12325-2008 (20 kV and below, three-phase: ±7 %)");
        assert_eq!(zh, "GB/T 12325-2008 (20 kV 及以下三相：±7 %)");
        assert_eq!(
            source_zh("contracted maximum demand 300 kW × 1.05 = 315 kW"),
            "合同最大需量 300 kW × 1.05 = 315 kW"
        );
        assert_eq!(
            source_zh("suspension of 1250 kVA of 2000 kVA contracted: allowed 750 kVA"),
            "暂停 1250 kVA，合同容量 2000 kVA：允许 750 kVA"
        );
        assert!(!source_zh("configured THDi limit").is_ascii());
    }

    #[test]
    fn computed_limit_notes_read_in_chinese() {
        // The notes built for one customer, as the config builds them.
        let p = Presets::builtin();
        let cl = p.current_limits("ieee519", 35.0).unwrap();
        let hc = cl.order_amps(300.0, false);
        let t2 = p
            .harmonic_current_limits("gb", 380.0, 10.0, Some((0.5, 5.0)))
            .unwrap();
        let t2_alone = p.harmonic_current_limits("gb", 380.0, 10.0, None).unwrap();
        assert_eq!(
            source_zh(&format!("IEEE 519-2014/2022 ({})", cl.note)),
            "IEEE 519-2014/2022 (短路比 Isc/IL 35 属于 20–50：TDD 限值 8 %)"
        );
        assert_eq!(
            source_zh(&hc.note),
            "短路比 Isc/IL 35 属于 20–50：TDD 限值 8 %；各次谐波限值按 I_L 的百分数（I_L = 300 A），偶次按 IEEE 519-2022"
        );
        assert_eq!(
            source_zh(&format!("GB/T 14549-1993 ({})", t2.note)),
            "GB/T 14549-1993 (0.38 kV 表 2（基准短路容量 10 MVA）按最小短路容量 10 MVA 换算，分摊比 Si/St = 0.5/5 MVA)"
        );
        assert_eq!(
            source_zh(&t2_alone.note),
            "0.38 kV 表 2（基准短路容量 10 MVA）按最小短路容量 10 MVA 换算（未配置供电设备容量，不分摊）"
        );
        // No English word is left in any of them.
        for note in [&cl.note, &hc.note, &t2.note, &t2_alone.note] {
            let zh = source_zh(note);
            for word in [
                "Table", "scaled", "shared", "orders", "even", " in ", "supply",
            ] {
                assert!(!zh.contains(word), "{word:?} in {zh}");
            }
        }
    }

    fn r(preset: &str, un: f64, phases: u8) -> Limits {
        Presets::builtin()
            .resolve(
                un,
                phases,
                &Overrides {
                    preset: Some(preset.into()),
                    ..Default::default()
                },
            )
            .unwrap()
    }

    #[test]
    fn gb_bands_by_voltage_class() {
        // Values from GB/T 12325-2008 as summarised in power-quality-limits.md.
        let single = r("gb", 220.0, 1).voltage.unwrap();
        assert_eq!((single.upper_pct, single.lower_pct), (7.0, -10.0));
        let lv = r("gb", 380.0, 3).voltage.unwrap();
        assert_eq!((lv.upper_pct, lv.lower_pct), (7.0, -7.0));
        let mv = r("gb", 10_000.0, 3).voltage.unwrap();
        assert_eq!((mv.upper_pct, mv.lower_pct), (7.0, -7.0));
        let hv = r("gb", 35_000.0, 3).voltage.unwrap();
        assert_eq!((hv.upper_pct, hv.lower_pct), (7.0, -3.0));
        assert_eq!(r("gb", 380.0, 3).voltage_window, Span::Short);
    }

    #[test]
    fn gb_harmonics_by_voltage_class() {
        // GB/T 14549-1993 Table 1.
        for (un, thd, odd, even) in [
            (380.0, 5.0, 4.0, 2.0),
            (10_000.0, 4.0, 3.2, 1.6),
            (35_000.0, 3.0, 2.4, 1.2),
            (110_000.0, 2.0, 1.6, 0.8),
        ] {
            let h = r("gb", un, 3).harmonics.unwrap();
            assert_eq!(
                (h.thd, h.orders[&5], h.orders[&4]),
                (thd, odd, even),
                "{un}"
            );
        }
    }

    #[test]
    fn gb14549_table_2_scaled_and_shared_by_hand() {
        let p = Presets::builtin();
        // 0.38 kV at the 10 MVA reference: Table 2 as in our reference.
        let t = p.harmonic_current_limits("gb", 380.0, 10.0, None).unwrap();
        for (n, a) in [
            (2, 78.0),
            (3, 62.0),
            (5, 62.0),
            (7, 44.0),
            (11, 28.0),
            (13, 24.0),
            (25, 12.0),
        ] {
            assert_eq!(t.amps[&n], a, "h{n}");
        }
        // 10 kV, Sk 150 MVA (reference 100): × 1.5; a 2 MVA customer of a
        // 20 MVA supply: h5 = 20 × 1.5 × 0.1^(1/1.2) = 4.4 A (by hand:
        // 0.1^(0.8333) = 0.14678).
        let t = p
            .harmonic_current_limits("gb", 10_000.0, 150.0, Some((2.0, 20.0)))
            .unwrap();
        assert!(
            (t.amps[&5] - 20.0 * 1.5 * 0.146_78).abs() < 1e-4,
            "{}",
            t.amps[&5]
        );
        assert!((t.amps[&2] - 26.0 * 1.5 * 0.1f64.sqrt()).abs() < 1e-9);
        assert!(t.note.contains("Si/St = 2/20"), "{}", t.note);
        assert!(
            p.harmonic_current_limits("ieee519", 380.0, 10.0, None)
                .is_none()
        );
    }

    #[test]
    fn ieee519_order_limits_in_amperes_with_both_even_rules() {
        let c = Presets::builtin().current_limits("ieee519", 35.0).unwrap();
        // Isc/IL 20–50: 7.0, 3.5, 2.5, 1.0, 0.5 % of I_L = 200 A.
        let t = c.order_amps(200.0, false);
        for (h, a) in [
            (3, 14.0),
            (5, 14.0),
            (11, 7.0),
            (13, 7.0),
            (17, 5.0),
            (25, 2.0),
            (35, 1.0),
            (49, 1.0),
        ] {
            assert!((t.amps[&h] - a).abs() < 1e-9, "h{h}: {}", t.amps[&h]);
        }
        // 2022: h ≤ 6 at 50 %, above at 100 %; 2014: every even at 25 %.
        assert!((t.amps[&2] - 7.0).abs() < 1e-9 && (t.amps[&8] - 14.0).abs() < 1e-9);
        let t14 = c.order_amps(200.0, true);
        assert!((t14.amps[&2] - 3.5).abs() < 1e-9 && (t14.amps[&8] - 3.5).abs() < 1e-9);
        assert!((t14.amps[&12] - 1.75).abs() < 1e-9);
        assert!(t14.note.contains("IEEE 519-2014"), "{}", t14.note);
    }

    #[test]
    fn ieee519_current_rows_by_short_circuit_ratio() {
        let p = Presets::builtin();
        // IEEE 519-2014 Table 2, by Isc/IL.
        for (ratio, tdd, h3) in [
            (10.0, 5.0, 4.0),
            (20.0, 8.0, 7.0),
            (35.0, 8.0, 7.0),
            (75.0, 12.0, 10.0),
            (500.0, 15.0, 12.0),
            (2000.0, 20.0, 15.0),
        ] {
            let c = p.current_limits("ieee519", ratio).unwrap();
            assert_eq!((c.tdd, c.odd[0]), (tdd, h3), "{ratio}");
        }
        assert_eq!(
            p.current_limits("ieee519", 35.0).unwrap().note,
            "Isc/IL 35 in 20–50: TDD 8 %"
        );
        assert!(p.current_limits("gb", 35.0).is_none());
    }

    #[test]
    fn en50160_weekly_ranges_for_lv_and_mv() {
        let lv = r("en50160", 400.0, 3).voltage.unwrap().weekly.unwrap();
        assert_eq!(
            (lv.range2_lower_pct, lv.range2_upper_pct, lv.share),
            (-15.0, 10.0, 95.0)
        );
        let mv = r("en50160", 20_000.0, 3).voltage.unwrap().weekly.unwrap();
        assert_eq!(
            (mv.range2_lower_pct, mv.range2_upper_pct, mv.share),
            (-15.0, 15.0, 99.0)
        );
        assert!(r("gb", 400.0, 3).voltage.unwrap().weekly.is_none());
    }

    #[test]
    fn en50160_and_ieee519() {
        let h = r("en50160", 400.0, 3).harmonics.unwrap();
        assert_eq!(
            (
                h.thd,
                h.orders[&5],
                h.orders[&3],
                h.orders[&9],
                h.orders[&6]
            ),
            (8.0, 6.0, 5.0, 1.5, 0.5)
        );
        assert_eq!(r("en50160", 400.0, 3).voltage_window, Span::Long);
        let i = r("ieee519", 13_800.0, 3).harmonics.unwrap();
        assert_eq!((i.thd, i.orders[&5]), (5.0, 3.0));
        let i = r("ieee519", 400.0, 3).harmonics.unwrap();
        assert_eq!((i.thd, i.orders[&7]), (8.0, 5.0));
    }

    #[test]
    fn overrides_win() {
        let p = Presets::builtin();
        let o = Overrides {
            voltage_upper: Some(5.0),
            thd_voltage: Some(3.5),
            thd_current: Some(15.0),
            ..Default::default()
        };
        let l = p.resolve(10_000.0, 3, &o).unwrap();
        assert_eq!(l.preset, "gb", "gb is the default preset");
        let b = l.voltage.unwrap();
        assert_eq!((b.upper_pct, b.lower_pct), (5.0, -7.0));
        assert_eq!(l.harmonics.unwrap().thd, 3.5);
        assert_eq!(l.thd_current, Some(15.0));
        assert_eq!(l.unbalance, 2.0);
        let e = p
            .resolve(
                400.0,
                3,
                &Overrides {
                    preset: Some("en5016".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(e.contains("did you mean \"en50160\""), "{e}");
        let merged = Overrides {
            thd_current: Some(8.0),
            ..Default::default()
        }
        .over(&o);
        assert_eq!(
            (merged.thd_current, merged.voltage_upper),
            (Some(8.0), Some(5.0))
        );
    }
}
