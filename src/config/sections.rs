//! Validation of the smaller sections and shared values: languages, the
//! time zone, customers' suspensions, the voltage basis of a meter,
//! `[http]`, `[cluster]` and `[plausibility]`. Same rules as `validate`:
//! every problem is collected with its key path. `[rules]`, the mail
//! sections and `[reports]` have their own files (`rules`, `mail`,
//! `reports`).

use super::problems::{Problems, secret, section};
use super::raw;
use crate::modbus::assemble::MeterPlan;
use crate::secret::Secret;
use std::collections::BTreeMap;

/// Language of a message or report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    ZhCn,
    En,
}

impl Language {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::En => "en",
        }
    }
}

pub(super) fn language(v: Option<&str>, key: &str, p: &mut Problems) -> Language {
    match v {
        None | Some("zh-CN") | Some("zh") => Language::ZhCn,
        Some("en") => Language::En,
        Some(other) => {
            p.push(key, format!("\"{other}\" is not \"zh-CN\" or \"en\""));
            Language::ZhCn
        }
    }
}

pub(super) fn timezone(v: Option<&str>, p: &mut Problems) -> jiff::tz::TimeZone {
    match v {
        None => jiff::tz::TimeZone::system(),
        Some(name) => jiff::tz::TimeZone::get(name).unwrap_or_else(|e| {
            p.push(
                "daemon.timezone",
                format!("\"{name}\" is not an IANA time zone like \"Asia/Shanghai\" ({e})"),
            );
            jiff::tz::TimeZone::UTC
        }),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SuspensionPeriod {
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    pub(crate) kva: f64,
    /// As configured, for reports.
    pub from: String,
    pub(crate) to: String,
    pub(crate) note: Option<String>,
}

/// A local date or date-time in `tz` → Unix ms. With `end_of_day`, a bare
/// date means the midnight *after* it: a suspension declared "to
/// 2026-11-30" includes its last day (a date-time is always the instant).
pub(crate) fn local_ms(s: &str, tz: &jiff::tz::TimeZone, end_of_day: bool) -> Option<i64> {
    // jiff reads a bare date as a date-time at midnight too: decide by form.
    let dt: jiff::civil::DateTime = if s.contains(['T', ' ']) {
        s.parse::<jiff::civil::DateTime>().ok()?
    } else {
        let d = s.parse::<jiff::civil::Date>().ok()?;
        let d = if end_of_day { d.tomorrow().ok()? } else { d };
        d.to_datetime(jiff::civil::Time::midnight())
    };
    Some(tz.to_timestamp(dt).ok()?.as_millisecond())
}

pub(super) fn suspensions(
    list: &[raw::Suspension],
    tz: &jiff::tz::TimeZone,
    key: &str,
    p: &mut Problems,
) -> Vec<SuspensionPeriod> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let k = format!("{key}.suspensions[{i}]");
        let from = local_ms(&s.from, tz, false);
        let to = local_ms(&s.to, tz, true);
        if from.is_none() {
            p.push(
                &format!("{k}.from"),
                format!(
                    "\"{}\" is not a date like \"2026-11-01\" or \"2026-11-01T08:00\"",
                    s.from
                ),
            );
        }
        if to.is_none() {
            p.push(
                &format!("{k}.to"),
                format!(
                    "\"{}\" is not a date like \"2026-12-01\" or \"2026-12-01T08:00\"",
                    s.to
                ),
            );
        }
        if !(s.kva.is_finite() && s.kva > 0.0) {
            p.push(&format!("{k}.kva"), "must be a positive capacity in kVA");
        }
        if let (Some(f), Some(t)) = (from, to) {
            if t <= f {
                p.push(&format!("{k}.to"), "must not be before from");
                continue;
            }
            out.push(SuspensionPeriod {
                from_ms: f,
                to_ms: t,
                kva: s.kva,
                from: s.from.clone(),
                to: s.to.clone(),
                note: s.note.clone(),
            });
        }
    }
    out
}

/// The standard phase voltage of a three-phase system, from its
/// line-to-line voltage: GB/T 156-2017 (220/380 V, 380/660 V) and IEC 60038
/// (230/400 V, 400/690 V, 120/208 V, 277/480 V, 347/600 V, 240/415 V).
/// Judging phase voltages against 380/√3 = 219.39 V instead of 220 V
/// shifts the band by −0.28 %; the standards name the pair, not the
/// arithmetic. Other voltages: line-to-line / √3 (documented; set
/// `nominal_voltage_ln` to override).
pub(crate) fn standard_phase_voltage(line_to_line: f64) -> f64 {
    const PAIRS: [(f64, f64); 8] = [
        (208.0, 120.0),
        (380.0, 220.0),
        (400.0, 230.0),
        (415.0, 240.0),
        (480.0, 277.0),
        (600.0, 347.0),
        (660.0, 380.0),
        (690.0, 400.0),
    ];
    PAIRS
        .iter()
        .find(|(ll, _)| (ll - line_to_line).abs() < 0.5)
        .map(|(_, ln)| *ln)
        .unwrap_or(line_to_line / 3f64.sqrt())
}

/// What a meter's voltages are judged against.
pub(super) struct VoltageBasis<'a> {
    pub basis: Option<&'a str>,
    /// Voltage class (IEC convention: line-to-line for three-phase).
    pub nominal: f64,
    /// Declared supply voltage Uc, same convention, where agreed.
    pub declared: Option<f64>,
    /// Reference for phase-to-neutral voltages of a three-phase meter.
    pub phase_reference: Option<f64>,
    pub phases: u8,
}

/// Which voltages a meter's voltage rules judge, against what reference.
pub(super) fn voltage_refs(
    b: &VoltageBasis,
    plan: &MeterPlan,
    key: &str,
    p: &mut Problems,
) -> Vec<(String, String, f64)> {
    let ll = match (b.basis, b.phases) {
        (_, 1) => false,
        (None, _) => b.nominal >= 1000.0,
        (Some("line_to_line"), _) => true,
        (Some("phase_to_neutral"), _) => false,
        (Some(other), _) => {
            p.push(
                &format!("{key}.voltage_basis"),
                format!("\"{other}\" is not \"line_to_line\" or \"phase_to_neutral\""),
            );
            return Vec::new();
        }
    };
    let reference = b.declared.unwrap_or(b.nominal);
    let has = |f: &str| plan.profile.output_names().any(|n| n == f);
    let candidates: Vec<(String, String, f64)> = if b.phases == 1 {
        vec![("l1".into(), "voltage_l1_n".into(), reference)]
    } else if ll {
        ["l1_l2", "l2_l3", "l3_l1"]
            .iter()
            .map(|ph| (ph.to_string(), format!("voltage_{ph}"), reference))
            .collect()
    } else {
        let phase_ref = b
            .phase_reference
            .unwrap_or_else(|| standard_phase_voltage(reference));
        ["l1", "l2", "l3"]
            .iter()
            .map(|ph| (ph.to_string(), format!("voltage_{ph}_n"), phase_ref))
            .collect()
    };
    candidates.into_iter().filter(|(_, f, _)| has(f)).collect()
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct Http {
    pub(crate) enabled: bool,
    pub listen: std::net::SocketAddr,
    pub(crate) token: Option<Secret>,
}

pub(super) fn http(p: &mut Problems) -> Http {
    let r: raw::Http = section("http", p);
    let listen_s = r.listen.as_deref().unwrap_or("127.0.0.1:9108");
    let listen = listen_s.parse().unwrap_or_else(|_| {
        p.push(
            "http.listen",
            format!("\"{listen_s}\" is not an address:port like \"127.0.0.1:9108\""),
        );
        std::net::SocketAddr::from(([127, 0, 0, 1], 9108))
    });
    let token = secret(r.token, r.token_file, "http.token", p);
    if token.as_ref().is_some_and(|t| t.expose().is_empty()) {
        p.push("http.token", "is empty");
    }
    Http {
        enabled: r.enabled.unwrap_or(true),
        listen,
        token,
    }
}

/// Validated `[cluster]`: this instance is shard `shard` of `shards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cluster {
    pub shard: u32,
    pub shards: u32,
}

impl Cluster {
    /// The shard that owns a customer (and so all its meters, its alerts
    /// and its reports): rendezvous hashing of the customer id, so adding
    /// customers moves none, and going from n to n + 1 shards moves only
    /// the customers the new shard wins (about 1/(n + 1) of them).
    pub(crate) fn owner(&self, customer: &str) -> u32 {
        (0..self.shards)
            .max_by_key(|i| fnv1a(customer.as_bytes(), *i))
            .unwrap_or(0)
    }

    pub(crate) fn owns(&self, customer: &str) -> bool {
        self.shards <= 1 || self.owner(customer) == self.shard
    }
}

/// FNV-1a 64 of the bytes followed by the shard number: stable across
/// versions and platforms (unlike std's hasher).
fn fnv1a(bytes: &[u8], shard: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().chain(shard.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs: finish with a
    // SplitMix64-style avalanche.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

pub(super) fn cluster(p: &mut Problems) -> Cluster {
    let r: raw::Cluster = section("cluster", p);
    let shards = r.shards.unwrap_or(1);
    let shard = r.shard.unwrap_or(0);
    if shards == 0 {
        p.push("cluster.shards", "must be at least 1");
    } else if shard >= shards {
        p.push(
            "cluster.shard",
            format!("{shard} is not below cluster.shards ({shards}); shards are numbered from 0"),
        );
    }
    Cluster {
        shard,
        shards: shards.max(1),
    }
}

pub(super) fn plausibility(p: &mut Problems) -> crate::modbus::plausible::Settings {
    let r: raw::Plausibility = section("plausibility", p);
    let d = crate::modbus::plausible::Settings::default();
    let mut factor = |v: Option<f64>, default: f64, key: &str| match v {
        Some(x) if x.is_finite() && x > 1.0 => x,
        Some(_) => {
            p.push(&format!("plausibility.{key}"), "must be a number above 1");
            default
        }
        None => default,
    };
    let voltage_factor = factor(r.voltage_factor, d.voltage_factor, "voltage_factor");
    let current_factor = factor(r.current_factor, d.current_factor, "current_factor");
    let power_factor = factor(r.power_factor, d.power_factor, "power_factor");
    let mut limits = BTreeMap::new();
    for (field, v) in &r.limits {
        let key = format!("plausibility.limits.{field}");
        match v.as_slice() {
            [lo, hi] if lo.is_finite() && hi.is_finite() && lo < hi => {
                limits.insert(field.clone(), (*lo, *hi));
            }
            _ => p.push(&key, "must be [min, max] with min < max"),
        }
    }
    crate::modbus::plausible::Settings {
        enabled: r.enabled.unwrap_or(true),
        voltage_factor,
        current_factor,
        power_factor,
        limits,
    }
}
