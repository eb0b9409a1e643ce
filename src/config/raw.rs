//! The config file as written: serde types that mirror the TOML one to one.
//!
//! Everything here is deserialised with `deny_unknown_fields` so a typo is
//! an error, never a silently ignored key. Values are checked and turned
//! into typed settings in `config::validate`; this file holds no rules.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Daemon {
    pub state_dir: Option<String>,
    pub profile_dir: Option<String>,
    pub timezone: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Influx {
    pub url: Option<String>,
    pub api: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub org: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub bucket: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub token: Option<String>,
    pub token_file: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub database: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub retention_policy: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub batch_size: Option<u64>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub flush_interval: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub timeout: Option<String>,
    pub gzip: Option<bool>,
    pub max_buffered_points: Option<u64>,
    pub durability: Option<String>,
    pub max_outbox_bytes: Option<ByteSize>,
    pub max_in_flight: Option<u64>,
    pub enabled: Option<bool>,
}

/// A size: a number of bytes, or a string like "512MiB", "2GiB", "1GB".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ByteSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Polling {
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub interval: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub timeout: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub connect_timeout: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub reconnect_max: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub delay_between_requests: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Gateway {
    pub address: String,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub timeout: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub connect_timeout: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub delay_between_requests: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Customer {
    #[serde(deserialize_with = "string")]
    pub id: String,
    pub name: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Contracted (transformer) capacity, kVA.
    pub contracted_kva: Option<f64>,
    /// Contracted maximum demand, kW (max-demand billing).
    pub max_demand_kw: Option<f64>,
    /// Minimum short-circuit capacity at the PCC, MVA (harmonic current limits).
    pub short_circuit_mva: Option<f64>,
    /// Maximum demand load current I_L at the PCC, A (IEEE 519 TDD).
    pub max_demand_current_a: Option<f64>,
    /// Supply capacity of the PCC, MVA (GB/T 14549 share by contracted capacity).
    pub supply_capacity_mva: Option<f64>,
    #[serde(default)]
    pub suspensions: Vec<Suspension>,
    pub limits: Option<crate::quality::limits::Overrides>,
    /// Language of the customer's reports: "zh-CN" or "en".
    pub language: Option<String>,
    /// Alert group (operators' recipient list) this customer belongs to.
    pub alert_group: Option<String>,
    /// Who receives the customer's voltage-quality reports.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// This customer's report schedule, over `[reports]`.
    pub report: Option<CustomerReport>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerReport {
    pub enabled: Option<bool>,
    pub period: Option<String>,
    pub schedule: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reports {
    pub enabled: Option<bool>,
    /// "month" (default), "week" or "day".
    pub period: Option<String>,
    /// Cron expression (minute hour day-of-month month day-of-week), local time.
    pub schedule: Option<String>,
    /// Qualification rate (%) the voltage verdict requires.
    pub voltage_target: Option<f64>,
    /// Data completeness (%) below which a verdict is "insufficient data".
    pub min_completeness: Option<f64>,
    /// "pooled" (default: the phases' minutes summed) or "worst_phase".
    pub phase_rule: Option<String>,
    /// How far back a missed report is still sent.
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub catch_up: Option<String>,
    /// Days of ledger kept.
    pub keep_days: Option<u32>,
    /// Copies of every report (the utility's own archive), as Bcc.
    #[serde(default)]
    pub bcc: Vec<String>,
}

/// A declared suspension (暂停) or capacity reduction (减容).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Suspension {
    /// Local date ("2026-11-01") or date-time ("2026-11-01T08:00").
    pub from: String,
    /// Last day (a date: inclusive, the suspension ends at the following
    /// midnight) or end instant (a date-time: exclusive).
    pub to: String,
    /// Suspended capacity, kVA.
    pub kva: f64,
    pub note: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rules {
    pub enabled: Option<bool>,
    pub preset: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub short_window: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub long_window: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub demand_window: Option<String>,
    pub min_window_completeness: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub voltage_min_duration: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub voltage_clear_after: Option<String>,
    pub voltage_hysteresis: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub harmonic_min_duration: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub harmonic_clear_after: Option<String>,
    pub harmonic_hysteresis: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub suspension_min_duration: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub suspension_clear_after: Option<String>,
    pub suspension_factor: Option<f64>,
    pub suspension_noise_floor_kw: Option<f64>,
    pub demand_factor: Option<f64>,
    /// "sliding" (default) or "block".
    pub demand_mode: Option<String>,
    pub demand_basis: Option<String>,
    /// Slide of the sliding demand (default "1m").
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub demand_slide: Option<String>,
    /// Averaging window of the load a suspension is judged on (default:
    /// the demand window).
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub suspension_window: Option<String>,
    /// Supply interruption: every judged voltage below this % of its
    /// reference (default 10).
    pub interruption_threshold: Option<f64>,
    pub unbalance_limit: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Smtp {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// "starttls" (default), "tls" (implicit, port 465) or "none" (plain; localhost only).
    pub security: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub from: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub timeout: Option<String>,
    /// With no host: write messages as .eml files here.
    pub eml_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Alerts {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub min_delay: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub max_delay: Option<String>,
    pub max_per_meter_per_hour: Option<u32>,
    pub resolved: Option<bool>,
    #[serde(default)]
    pub recipients: Vec<String>,
    pub language: Option<String>,
    #[serde(default)]
    pub groups: Vec<AlertGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertGroup {
    pub name: String,
    pub recipients: Vec<String>,
    pub language: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Meter {
    #[serde(deserialize_with = "string")]
    pub id: String,
    #[serde(deserialize_with = "string")]
    pub customer: String,
    pub address: String,
    pub unit: i64,
    pub profile: String,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub interval: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::duration_text")]
    pub timeout: Option<String>,
    pub pt_ratio: Option<RatioValue>,
    pub ct_ratio: Option<RatioValue>,
    pub nominal_voltage: f64,
    pub phases: Option<u8>,
    pub fields: Option<Vec<String>>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub enabled: Option<bool>,
    pub limits: Option<crate::quality::limits::Overrides>,
    /// "line_to_line" or "phase_to_neutral" (default: line-to-line at 1 kV
    /// and above, phase-to-neutral below; single-phase: phase voltage).
    pub voltage_basis: Option<String>,
    /// Declared supply voltage Uc (EN 50160), same convention as
    /// `nominal_voltage`: the reference the deviation is judged against
    /// where the supply contract declares one (MV); the voltage class (and
    /// so the limit row) stays the nominal one.
    pub declared_voltage: Option<f64>,
    /// Reference for phase-to-neutral voltages of a three-phase meter
    /// (default: the system's standard phase voltage, 220 V for 220/380 V).
    pub nominal_voltage_ln: Option<f64>,
    /// 50 (default) or 60 Hz: the reference of the frequency deviation.
    pub nominal_frequency: Option<f64>,
    /// Part of the customer's billing metering: its load counts in the
    /// customer's total demand and suspension load (default true).
    pub billing: Option<bool>,
}

/// A transformer ratio: a number (`100`) or primary/secondary (`"10000/100"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RatioValue {
    Number(f64),
    Text(String),
}

/// Accept strings, and numbers/bools written where a string is meant
/// (environment overrides arrive parsed: `PQWATCH__INFLUXDB__ORG=1234`).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(Option::<Any>::deserialize(d)?.map(|a| match a {
        Any::S(s) => s,
        Any::I(i) => i.to_string(),
        Any::F(f) => f.to_string(),
        Any::B(b) => b.to_string(),
    }))
}

/// Ids may be written as numbers (`id = 1001`); they are strings inside.
fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    lenient_string(d)?.ok_or_else(|| serde::de::Error::custom("expected a string"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Http {
    pub enabled: Option<bool>,
    /// host:port; default 127.0.0.1:9108.
    pub listen: Option<String>,
    /// Bearer token required on every endpoint but /healthz.
    #[serde(default, deserialize_with = "lenient_string")]
    pub token: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Cluster {
    /// This instance's shard, 0-based.
    pub shard: Option<u32>,
    /// Number of instances sharing the fleet.
    pub shards: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Plausibility {
    pub enabled: Option<bool>,
    pub voltage_factor: Option<f64>,
    pub current_factor: Option<f64>,
    pub power_factor: Option<f64>,
    /// Absolute bounds per canonical field: `frequency = [45, 65]`.
    #[serde(default)]
    pub limits: BTreeMap<String, Vec<f64>>,
}
