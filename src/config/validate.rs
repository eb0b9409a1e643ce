//! Raw config tree → typed, checked [`Config`]. Every rule of the config
//! lives here, and every violation is collected with its key path.

use super::{ConfigError, Tree, raw};
use crate::modbus::reading::{MeterPlan, Ratios};
use crate::profile::{Profile, Registry};
use crate::schema::did_you_mean;
use crate::secret::Secret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Sections pqwatch knows; any other top-level key is an error.
pub const SECTIONS: &[&str] = &[
    "rules",
    "smtp",
    "alerts",
    "reports",
    "http",
    "cluster",
    "plausibility",
    "daemon",
    "influxdb",
    "polling",
    "gateways",
    "customers",
    "meters",
];

#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: Daemon,
    /// `None` when no `[influxdb]` section is configured or it is disabled.
    pub influx: Option<Influx>,
    pub polling: Polling,
    pub customers: Vec<Customer>,
    pub meters: Vec<Arc<Meter>>,
    /// Per gateway address: its settings (defaults from `[polling]`).
    pub gateways: BTreeMap<String, GatewaySettings>,
    pub profiles: Registry,
    pub rules: super::sections::RulesCfg,
    pub smtp: super::sections::Smtp,
    pub alerts: super::sections::Alerts,
    pub reports: super::sections::Reports,
    pub http: super::sections::Http,
    pub cluster: super::sections::Cluster,
    /// `[daemon] timezone`, or the system's.
    pub timezone: jiff::tz::TimeZone,
}

impl Config {
    /// This instance's part of the fleet under `[cluster]`: the customers
    /// its shard owns and their meters (a customer's meters stay together,
    /// so one instance holds everything its reports, suspension and demand
    /// rules need). With one shard, everything.
    pub fn for_shard(&self) -> Config {
        if self.cluster.shards <= 1 {
            return self.clone();
        }
        let mut c = self.clone();
        c.customers.retain(|x| self.cluster.owns(&x.id));
        c.meters.retain(|m| self.cluster.owns(&m.customer));
        let used: BTreeSet<&str> = c.meters.iter().map(|m| m.address.as_str()).collect();
        c.gateways.retain(|a, _| used.contains(a.as_str()));
        c
    }
}

#[derive(Debug, Clone)]
pub struct Daemon {
    pub state_dir: PathBuf,
    pub profile_dir: PathBuf,
    pub timezone: Option<String>,
    /// How long shutdown may spend delivering what is buffered.
    pub shutdown_grace: Duration,
}

/// When a sealed batch is committed to the state database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before it is sent: a crash loses at most the batch being assembled.
    Always,
    /// Only at shutdown (or when the memory bound is reached): fewer disk
    /// writes for flash-wear-sensitive boxes; a crash loses what is in memory.
    Memory,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Api {
    V2 {
        org: String,
        bucket: String,
        token: Secret,
    },
    V1 {
        database: String,
        retention_policy: Option<String>,
        username: Option<String>,
        password: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct Influx {
    pub url: String,
    pub api: Api,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub timeout: Duration,
    pub gzip: bool,
    /// In-memory bound (points) of batches not yet in the outbox.
    pub max_buffered_points: usize,
    pub durability: Durability,
    /// Bound of the outbox on disk (compressed bytes).
    pub max_outbox_bytes: u64,
    /// Write requests outstanding at once (1 while writes fail).
    pub max_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct Polling {
    pub interval: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_max: Duration,
    pub delay_between_requests: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    pub address: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_max: Duration,
    pub delay_between_requests: Duration,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub contracted_kva: Option<f64>,
    pub max_demand_kw: Option<f64>,
    /// Minimum short-circuit capacity at the PCC, MVA.
    pub short_circuit_mva: Option<f64>,
    /// Maximum demand load current I_L, A.
    pub max_demand_current_a: Option<f64>,
    /// Supply capacity of the PCC, MVA.
    pub supply_capacity_mva: Option<f64>,
    pub suspensions: Vec<super::sections::SuspensionPeriod>,
    pub limits: crate::quality::limits::Overrides,
    pub language: super::sections::Language,
    pub alert_group: Option<String>,
    /// Report recipients (may be empty: then no report is sent).
    pub recipients: Vec<String>,
    /// Report schedule; None when reports are off for this customer.
    pub report: Option<super::sections::ReportSchedule>,
}

#[derive(Debug, Clone)]
pub struct Meter {
    pub id: String,
    pub customer: String,
    /// Gateway (or native meter) address, `host:port`.
    pub address: String,
    pub unit: u8,
    pub profile: Arc<Profile>,
    pub plan: Arc<MeterPlan>,
    pub interval: Duration,
    /// Per-request timeout (from the meter, else its gateway, else `[polling]`).
    pub timeout: Duration,
    pub pt_ratio: f64,
    pub ct_ratio: f64,
    /// IEC convention: line-to-line for three-phase, phase voltage for single-phase.
    pub nominal_voltage: f64,
    pub phases: u8,
    /// Tags written with every point: user tags, then `meter` and `customer`.
    pub tags: BTreeMap<String, String>,
    /// What the meter's supply is judged against (preset + overrides).
    pub limits: crate::quality::limits::Limits,
    /// Counts in the customer's total demand and suspension load.
    pub billing: bool,
    /// 50 or 60 Hz.
    pub nominal_frequency: f64,
    /// (phase, field, nominal reference in V) the voltage rules judge.
    pub voltage_refs: Vec<(String, String, f64)>,
    /// Bounds of plausible values (`[plausibility]`, nominal voltage,
    /// contracted capacity).
    pub plausibility: crate::modbus::plausible::Bounds,
}

impl Meter {
    /// Canonical unit of one of this meter's output fields ("" if unknown).
    pub fn profile_unit(&self, field: &str) -> &'static str {
        if let Some(r) = self.profile.register(field) {
            return r.unit.canonical;
        }
        self.profile
            .derived
            .iter()
            .find(|d| d.name == field)
            .map(|d| d.unit)
            .unwrap_or("")
    }
}

pub(super) struct Problems<'a> {
    pub(super) list: Vec<String>,
    tree: &'a Tree,
    /// Keys filled with a placeholder because they are missing: the user
    /// has been told, so checks of the placeholder stay quiet.
    muted: Vec<String>,
}

impl Problems<'_> {
    pub(super) fn push(&mut self, key: &str, msg: impl std::fmt::Display) {
        if self.is_muted(key) {
            return;
        }
        let line = format!("{key}: {msg}{}", self.origin(key));
        // One mistake inherited by many entries is reported once.
        if !self.list.contains(&line) {
            self.list.push(line);
        }
    }

    /// Whether `key` (or a key it is part of) was missing and filled in.
    pub(super) fn is_muted(&self, key: &str) -> bool {
        self.muted.iter().any(|m| {
            key.strip_prefix(m.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    /// " (in conf.d/x.toml)" for entries that came from a conf.d file.
    fn origin(&self, key: &str) -> String {
        let Some((arr, rest)) = key.split_once('[') else {
            return String::new();
        };
        let Some(idx) = rest.split(']').next().and_then(|i| i.parse::<usize>().ok()) else {
            return String::new();
        };
        self.tree
            .origins
            .get(&(arr.to_string(), idx))
            .map(|p| format!(" (in {})", p.display()))
            .unwrap_or_default()
    }
}

/// One section or entry, deserialised leniently: its every mistake is
/// reported and what is left is checked like a correct entry.
pub(super) fn typed<T: DeserializeOwned>(v: &Value, key: &str, p: &mut Problems) -> Option<T> {
    let r = super::lenient::deserialize::<T>(v, key, homes());
    for (k, msg) in r.problems {
        p.push(&k, msg);
    }
    p.muted.extend(r.filled);
    r.value
}

/// Where each key of the config lives, for "it belongs under …" hints.
fn homes() -> super::lenient::Elsewhere<'static> {
    use super::lenient::fields_of;
    use std::sync::OnceLock;
    static HOMES: OnceLock<Vec<(&'static str, &'static [&'static str])>> = OnceLock::new();
    HOMES.get_or_init(|| {
        vec![
            ("[daemon]", fields_of::<raw::Daemon>()),
            ("[influxdb]", fields_of::<raw::Influx>()),
            ("[polling]", fields_of::<raw::Polling>()),
            ("[[gateways]]", fields_of::<raw::Gateway>()),
            ("[[customers]]", fields_of::<raw::Customer>()),
            ("[[customers.suspensions]]", fields_of::<raw::Suspension>()),
            ("[customers.report]", fields_of::<raw::CustomerReport>()),
            ("[[meters]]", fields_of::<raw::Meter>()),
            (
                "a limits table ([meters.limits], [customers.limits])",
                fields_of::<crate::quality::limits::Overrides>(),
            ),
            ("[rules]", fields_of::<raw::Rules>()),
            ("[smtp]", fields_of::<raw::Smtp>()),
            ("[alerts]", fields_of::<raw::Alerts>()),
            ("[[alerts.groups]]", fields_of::<raw::AlertGroup>()),
            ("[reports]", fields_of::<raw::Reports>()),
            ("[http]", fields_of::<raw::Http>()),
            ("[cluster]", fields_of::<raw::Cluster>()),
            ("[plausibility]", fields_of::<raw::Plausibility>()),
        ]
    })
}

pub(super) fn section<T: DeserializeOwned + Default>(key: &str, p: &mut Problems) -> T {
    match p.tree.root.get(key) {
        None => T::default(),
        Some(v) => typed(v, key, p).unwrap_or_default(),
    }
}

fn entries<T: DeserializeOwned>(key: &str, p: &mut Problems) -> Vec<(String, T)> {
    match p.tree.root.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let k = format!("{key}[{i}]");
                typed(v, &k, p).map(|t| (k, t))
            })
            .collect(),
        Some(_) => {
            p.push(key, format!("must be an array of tables ([[{key}]])"));
            Vec::new()
        }
    }
}

pub(super) fn duration(
    v: Option<&str>,
    default: Duration,
    key: &str,
    p: &mut Problems,
) -> Duration {
    let Some(s) = v else { return default };
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            p.push(key, "must be longer than zero");
            default
        }
        Err(e) => {
            p.push(
                key,
                format!("\"{s}\" is not a duration like \"5s\" or \"500ms\" ({e})"),
            );
            default
        }
    }
}

/// A pause, which unlike other durations may be zero ("0", "0s", "0ms").
fn pause(v: Option<&str>, default: Duration, key: &str, p: &mut Problems) -> Duration {
    match v.map(str::trim) {
        Some("0" | "0s" | "0ms") => Duration::ZERO,
        other => duration(other, default, key, p),
    }
}

fn resolve(base: &Path, s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.is_absolute() { p } else { base.join(p) }
}

/// A secret from its inline value or from a file; both set is an error.
pub(super) fn secret(
    inline: Option<String>,
    file: Option<String>,
    key: &str,
    p: &mut Problems,
) -> Option<Secret> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            p.push(key, format!("set either {key} or {key}_file, not both"));
            None
        }
        (Some(s), None) => Some(Secret::new(s)),
        (None, Some(f)) => {
            // systemd LoadCredential= puts secrets in $CREDENTIALS_DIRECTORY.
            let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) if Path::new(&f).is_relative() => PathBuf::from(dir).join(&f),
                _ => PathBuf::from(&f),
            };
            match std::fs::read_to_string(&path) {
                Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']))),
                Err(e) => {
                    // The path is not secret; the content never appears.
                    p.push(
                        &format!("{key}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        (None, None) => None,
    }
}

fn ratio(v: Option<&raw::RatioValue>, key: &str, p: &mut Problems) -> f64 {
    let r = match v {
        None => return 1.0,
        Some(raw::RatioValue::Number(n)) => Some(*n),
        Some(raw::RatioValue::Text(s)) => match s.split_once('/') {
            Some((a, b)) => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                (Ok(a), Ok(b)) if b != 0.0 => Some(a / b),
                _ => None,
            },
            None => s.trim().parse::<f64>().ok(),
        },
    };
    match r {
        Some(r) if r.is_finite() && r > 0.0 => r,
        _ => {
            p.push(
                key,
                "must be a positive number or \"primary/secondary\" like \"10000/100\"",
            );
            1.0
        }
    }
}

/// Tag keys and values become InfluxDB tags: keep them to what every
/// backend and query language handles without surprises.
fn check_tags(tags: &BTreeMap<String, String>, key: &str, v1: bool, p: &mut Problems) {
    for (k, v) in tags {
        if matches!(
            k.as_str(),
            "meter" | "customer" | "time" | "_field" | "_measurement"
        ) {
            p.push(&format!("{key}.tags.{k}"), "is reserved");
        } else if matches!(k.as_str(), "kind" | "phase" | "order" | "unit") {
            // A second tag of the same key makes InfluxDB reject the whole
            // batch ("duplicate tags").
            p.push(
                &format!("{key}.tags.{k}"),
                "is reserved: pqwatch tags its pq_event and pq_suspension points with it",
            );
        } else if !crate::schema::valid_field_name(k) {
            p.push(
                &format!("{key}.tags.{k}"),
                "tag keys must be lowercase snake_case",
            );
        }
        if v.is_empty() || v.chars().any(char::is_control) {
            p.push(
                &format!("{key}.tags.{k}"),
                "tag values must be non-empty and contain no control characters",
            );
        }
        if v1 && v.ends_with('\\') {
            p.push(&format!("{key}.tags.{k}"), V1_BACKSLASH);
        }
    }
}

/// InfluxDB 1.x reads a backslash before the separator that follows a tag
/// value as an escape, so such a value cannot be written there.
const V1_BACKSLASH: &str =
    "cannot end with a backslash when writing to InfluxDB 1.x (api = \"v1\")";

fn check_id(id: &str, key: &str, v1: bool, p: &mut Problems) {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        p.push(key, "must be 1–128 characters with no control characters");
    }
    if v1 && id.ends_with('\\') {
        p.push(key, V1_BACKSLASH);
    }
}

/// Check `host:port` without resolving it (resolution happens at connect
/// time, so a DNS outage at start-up does not stop the daemon).
fn check_address(a: &str, key: &str, p: &mut Problems) {
    let ok = match a.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    };
    if !ok {
        p.push(
            key,
            format!("\"{a}\" is not host:port (e.g. \"10.20.1.5:502\")"),
        );
    }
}

/// Checks of a limits table where it is written (a customer's or a
/// meter's), so a typo is reported under the key that holds it.
fn check_overrides(
    o: &crate::quality::limits::Overrides,
    rules: &super::sections::RulesCfg,
    key: &str,
    p: &mut Problems,
) {
    if let Some(name) = &o.preset
        && !rules.presets.names().any(|n| n == name)
    {
        let hint = did_you_mean(name, rules.presets.names())
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_else(|| {
                format!(
                    " (known: {})",
                    rules.presets.names().collect::<Vec<_>>().join(", ")
                )
            });
        p.push(
            &format!("{key}.preset"),
            format!("unknown limits preset \"{name}\"{hint}"),
        );
    }
    if let Some(e) = &o.ieee519_edition
        && e != "2014"
        && e != "2022"
    {
        p.push(
            &format!("{key}.ieee519_edition"),
            format!("\"{e}\" is not \"2014\" or \"2022\""),
        );
    }
}

pub fn validate_tree(tree: &Tree) -> Result<Config, ConfigError> {
    let mut p = Problems {
        list: Vec::new(),
        tree,
        muted: Vec::new(),
    };
    for k in tree.root.keys() {
        if !SECTIONS.contains(&k.as_str()) {
            let hint = did_you_mean(k, SECTIONS.iter().copied())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            p.push(k, format!("unknown section{hint}"));
        }
    }

    // [daemon]
    let d: raw::Daemon = section("daemon", &mut p);
    let daemon = Daemon {
        state_dir: resolve(
            &tree.base_dir,
            d.state_dir.as_deref().unwrap_or("/var/lib/pqwatch"),
        ),
        profile_dir: resolve(
            &tree.base_dir,
            d.profile_dir.as_deref().unwrap_or("/etc/pqwatch/profiles"),
        ),
        timezone: d.timezone,
        shutdown_grace: Duration::ZERO,
    };
    let shutdown_grace = duration(
        d.shutdown_grace.as_deref(),
        Duration::from_secs(10),
        "daemon.shutdown_grace",
        &mut p,
    );
    let daemon = Daemon {
        shutdown_grace,
        ..daemon
    };
    let profiles = match Registry::load(Some(&daemon.profile_dir)) {
        Ok(r) => r,
        Err(errs) => {
            for e in errs {
                for problem in e.problems {
                    p.list.push(format!("profile {}: {problem}", e.origin));
                }
            }
            Registry::builtin()
        }
    };

    // [polling]
    let pl: raw::Polling = section("polling", &mut p);
    let polling = Polling {
        interval: duration(
            pl.interval.as_deref(),
            Duration::from_secs(5),
            "polling.interval",
            &mut p,
        ),
        timeout: duration(
            pl.timeout.as_deref(),
            Duration::from_secs(1),
            "polling.timeout",
            &mut p,
        ),
        connect_timeout: duration(
            pl.connect_timeout.as_deref(),
            Duration::from_secs(3),
            "polling.connect_timeout",
            &mut p,
        ),
        reconnect_max: duration(
            pl.reconnect_max.as_deref(),
            Duration::from_secs(30),
            "polling.reconnect_max",
            &mut p,
        ),
        delay_between_requests: pause(
            pl.delay_between_requests.as_deref(),
            Duration::ZERO,
            "polling.delay_between_requests",
            &mut p,
        ),
    };
    check_interval(polling.interval, "polling.interval", &mut p);

    let influx = influx(&mut p);
    let tz = super::sections::timezone(daemon.timezone.as_deref(), &mut p);
    let rules = super::sections::rules(&mut p);
    let smtp = super::sections::smtp(&tree.base_dir, &mut p);
    let alerts = super::sections::alerts(&mut p);
    let reports = super::sections::reports(&mut p);
    let http = super::sections::http(&mut p);
    let cluster = super::sections::cluster(&mut p);
    let plausibility = super::sections::plausibility(&mut p);
    let v1 = matches!(
        influx,
        Some(Influx {
            api: Api::V1 { .. },
            ..
        })
    );

    // [[gateways]]
    let mut gateways: BTreeMap<String, GatewaySettings> = BTreeMap::new();
    for (key, g) in entries::<raw::Gateway>("gateways", &mut p) {
        check_address(&g.address, &format!("{key}.address"), &mut p);
        let s = GatewaySettings {
            address: g.address.clone(),
            timeout: duration(
                g.timeout.as_deref(),
                polling.timeout,
                &format!("{key}.timeout"),
                &mut p,
            ),
            connect_timeout: duration(
                g.connect_timeout.as_deref(),
                polling.connect_timeout,
                &format!("{key}.connect_timeout"),
                &mut p,
            ),
            reconnect_max: polling.reconnect_max,
            delay_between_requests: pause(
                g.delay_between_requests.as_deref(),
                polling.delay_between_requests,
                &format!("{key}.delay_between_requests"),
                &mut p,
            ),
        };
        if gateways.insert(g.address.clone(), s).is_some() {
            p.push(
                &format!("{key}.address"),
                format!("\"{}\" is listed twice", g.address),
            );
        }
    }

    // [[customers]]
    let mut customers = Vec::new();
    let mut customer_ids = BTreeSet::new();
    // Each customer's key path ("customers[2]"), for problems found later.
    let mut customer_keys: std::collections::HashMap<String, String> = Default::default();
    for (key, c) in entries::<raw::Customer>("customers", &mut p) {
        check_id(&c.id, &format!("{key}.id"), v1, &mut p);
        check_tags(&c.tags, &key, v1, &mut p);
        customer_keys
            .entry(c.id.clone())
            .or_insert_with(|| key.clone());
        if !customer_ids.insert(c.id.clone()) {
            p.push(
                &format!("{key}.id"),
                format!("\"{}\" is used by another customer", c.id),
            );
        }
        let suspensions = super::sections::suspensions(&c.suspensions, &tz, &key, &mut p);
        let language =
            super::sections::language(c.language.as_deref(), &format!("{key}.language"), &mut p);
        for (k, v) in [
            ("contracted_kva", c.contracted_kva),
            ("max_demand_kw", c.max_demand_kw),
            ("short_circuit_mva", c.short_circuit_mva),
            ("max_demand_current_a", c.max_demand_current_a),
            ("supply_capacity_mva", c.supply_capacity_mva),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                p.push(&format!("{key}.{k}"), "must be positive");
            }
        }
        if !suspensions.is_empty() && c.contracted_kva.is_none() {
            p.push(
                &format!("{key}.contracted_kva"),
                "is needed to judge load during the suspensions",
            );
        }
        if let Some(g) = &c.alert_group
            && !alerts.groups.contains_key(g)
        {
            p.push(
                &format!("{key}.alert_group"),
                format!("no [[alerts.groups]] named \"{g}\""),
            );
        }
        if let Some(o) = &c.limits {
            check_overrides(o, &rules, &format!("{key}.limits"), &mut p);
        }
        let (recipients, report) = super::sections::customer_report(
            &c.recipients,
            c.report.as_ref(),
            &reports,
            &key,
            &mut p,
        );
        customers.push(Customer {
            recipients,
            report,
            name: c.name.unwrap_or_else(|| c.id.clone()),
            id: c.id,
            tags: c.tags,
            contracted_kva: c.contracted_kva,
            short_circuit_mva: c.short_circuit_mva,
            max_demand_current_a: c.max_demand_current_a,
            supply_capacity_mva: c.supply_capacity_mva,
            max_demand_kw: c.max_demand_kw,
            suspensions,
            limits: c.limits.unwrap_or_default(),
            language,
            alert_group: c.alert_group,
        });
    }

    // [[meters]]
    let mut meters = Vec::new();
    // Each meter's customer, found once (validation of 10,000 meters
    // scanned the customer list three times per meter).
    let customer_by_id: std::collections::HashMap<&str, &Customer> =
        customers.iter().map(|c| (c.id.as_str(), c)).collect();
    type PlanKey = (String, Option<Vec<String>>, u64, u64);
    let mut plans: std::collections::HashMap<PlanKey, Arc<MeterPlan>> = Default::default();
    let mut meter_ids = BTreeSet::new();
    let mut units_seen: BTreeMap<(String, u8), String> = BTreeMap::new();
    for (key, m) in entries::<raw::Meter>("meters", &mut p) {
        if m.enabled == Some(false) {
            continue;
        }
        check_id(&m.id, &format!("{key}.id"), v1, &mut p);
        if m.id.starts_with('*') {
            // "*" names a customer's total (demand, suspension events).
            p.push(
                &format!("{key}.id"),
                "must not start with \"*\": pqwatch names a customer's total load \"*\"",
            );
        }
        if !meter_ids.insert(m.id.clone()) {
            p.push(
                &format!("{key}.id"),
                format!("\"{}\" is used by another meter", m.id),
            );
        }
        if !customer_ids.contains(&m.customer) {
            let hint = did_you_mean(&m.customer, customer_ids.iter().map(String::as_str))
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            p.push(
                &format!("{key}.customer"),
                format!(
                    "unknown customer \"{}\"{hint}: add it under [[customers]]",
                    m.customer
                ),
            );
        }
        check_address(&m.address, &format!("{key}.address"), &mut p);
        let unit = match u8::try_from(m.unit) {
            Ok(u) => u,
            Err(_) => {
                p.push(
                    &format!("{key}.unit"),
                    format!("{} is not a Modbus unit id (0–255)", m.unit),
                );
                0
            }
        };
        if let Some(other) = units_seen.insert((m.address.clone(), unit), m.id.clone()) {
            p.push(
                &format!("{key}.unit"),
                format!("unit {unit} at {} is already meter \"{other}\"", m.address),
            );
        }
        let profile = profiles.get(&m.profile).cloned();
        if profile.is_none() {
            let hint = did_you_mean(&m.profile, profiles.names())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_else(|| {
                    format!(
                        " (known: {})",
                        profiles.names().collect::<Vec<_>>().join(", ")
                    )
                });
            p.push(
                &format!("{key}.profile"),
                format!("unknown profile \"{}\"{hint}", m.profile),
            );
        }
        let interval = duration(
            m.interval.as_deref(),
            polling.interval,
            &format!("{key}.interval"),
            &mut p,
        );
        check_interval(interval, &format!("{key}.interval"), &mut p);
        let gw_timeout = gateways
            .get(&m.address)
            .map(|g| g.timeout)
            .unwrap_or(polling.timeout);
        let timeout = duration(
            m.timeout.as_deref(),
            gw_timeout,
            &format!("{key}.timeout"),
            &mut p,
        );
        let pt_ratio = ratio(m.pt_ratio.as_ref(), &format!("{key}.pt_ratio"), &mut p);
        let ct_ratio = ratio(m.ct_ratio.as_ref(), &format!("{key}.ct_ratio"), &mut p);
        let phases = m.phases.unwrap_or(3);
        if phases != 1 && phases != 3 {
            p.push(&format!("{key}.phases"), "must be 1 or 3");
        }
        if !(m.nominal_voltage.is_finite() && m.nominal_voltage > 0.0) {
            p.push(
                &format!("{key}.nominal_voltage"),
                "must be a positive voltage in V",
            );
        } else if m.nominal_voltage < 50.0 {
            // Catches "10" meant as kV: the IEC convention here is volts.
            p.push(
                &format!("{key}.nominal_voltage"),
                format!(
                    "{} V is implausible: give volts, e.g. 10000 for 10 kV",
                    m.nominal_voltage
                ),
            );
        }
        check_tags(&m.tags, &key, v1, &mut p);
        let Some(profile) = profile else { continue };
        // Meters with the same profile, fields and ratios share one plan:
        // at 10,000 meters, a plan each was 40 MB (BENCHMARKS.md).
        let plan_key = (
            profile.name.clone(),
            m.fields.clone(),
            pt_ratio.to_bits(),
            ct_ratio.to_bits(),
        );
        let plan = match plans.entry(plan_key) {
            std::collections::hash_map::Entry::Occupied(o) => Arc::clone(o.get()),
            std::collections::hash_map::Entry::Vacant(v) => match MeterPlan::new(
                profile.clone(),
                m.fields.as_deref(),
                Ratios {
                    pt: pt_ratio,
                    ct: ct_ratio,
                },
            ) {
                Ok(plan) => Arc::clone(v.insert(Arc::new(plan))),
                Err(errs) => {
                    for e in errs {
                        p.push(&format!("{key}.fields"), e);
                    }
                    continue;
                }
            },
        };
        let customer = customer_by_id.get(m.customer.as_str()).copied();
        let mut tags = customer.map(|c| c.tags.clone()).unwrap_or_default();
        tags.extend(m.tags.clone());
        tags.insert("meter".into(), m.id.clone());
        tags.insert("customer".into(), m.customer.clone());
        let customer_limits = customer.map(|c| c.limits.clone()).unwrap_or_default();
        let overrides = m
            .limits
            .clone()
            .unwrap_or_default()
            .over(&customer_limits.over(&rules.defaults));
        if let Some(o) = &m.limits {
            check_overrides(o, &rules, &format!("{key}.limits"), &mut p);
        }
        // A mistake in the customer's or [rules]' limits is reported there
        // (once, by check_overrides), not under each of its meters.
        let limits_key = if m.limits.is_some() {
            format!("{key}.limits")
        } else if let Some(ck) = customer_keys.get(m.customer.as_str())
            && customer.is_some_and(|c| c.limits != Default::default())
        {
            format!("{ck}.limits")
        } else {
            "rules".to_string()
        };
        let limits = match rules.presets.resolve(m.nominal_voltage, phases, &overrides) {
            Ok(l) => l,
            Err(e) => {
                if !e.starts_with("unknown limits preset")
                    && !p.is_muted(&format!("{key}.nominal_voltage"))
                {
                    p.push(&limits_key, e);
                }
                // The meter's other settings are still checked, on the
                // default preset (the config is refused anyway).
                match rules
                    .presets
                    .resolve(m.nominal_voltage, phases, &Default::default())
                {
                    Ok(l) => l,
                    Err(_) => continue,
                }
            }
        };
        for (name, v) in [
            ("declared_voltage", m.declared_voltage),
            ("nominal_voltage_ln", m.nominal_voltage_ln),
        ] {
            match v {
                Some(v) if !(v.is_finite() && v >= 50.0) => p.push(
                    &format!("{key}.{name}"),
                    format!("{v} V is implausible: give volts, e.g. 220 or 10500"),
                ),
                _ => {}
            }
        }
        let nominal_frequency = m.nominal_frequency.unwrap_or(50.0);
        if nominal_frequency != 50.0 && nominal_frequency != 60.0 {
            p.push(
                &format!("{key}.nominal_frequency"),
                format!("{nominal_frequency} is not 50 or 60 (Hz)"),
            );
        }
        if m.nominal_voltage_ln.is_some() && phases == 1 {
            p.push(
                &format!("{key}.nominal_voltage_ln"),
                "applies to three-phase meters; a single-phase meter's nominal_voltage is its phase voltage",
            );
        }
        // IEEE 519: Isc = Sk / (√3 · U), the row by Isc / I_L.
        let mut limits = limits;
        if let (Some(c), Some(sk)) = (customer, customer.and_then(|c| c.short_circuit_mva))
            && let Some(il) = c.max_demand_current_a
        {
            let isc = sk * 1e6 / (3f64.sqrt() * m.nominal_voltage);
            limits.current = rules.presets.current_limits(&limits.preset, isc / il);
            let edition = overrides.ieee519_edition.as_deref();
            // IEEE 519's individual orders, in A of I_L.
            if let Some(cl) = &limits.current {
                limits.harmonic_current = Some(cl.order_amps(il, edition == Some("2014")));
            }
        }
        // GB/T 14549: Table 2 scaled to Sk and shared by Si/St.
        if let Some(c) = customer
            && let Some(sk) = c.short_circuit_mva
        {
            let share = c
                .contracted_kva
                .zip(c.supply_capacity_mva)
                .map(|(si, st)| (si / 1000.0, st));
            // (The IEEE 519 preset has no Table 2: its order limits stay.)
            if let Some(h) =
                rules
                    .presets
                    .harmonic_current_limits(&limits.preset, m.nominal_voltage, sk, share)
            {
                limits.harmonic_current = Some(h);
            }
        }
        let voltage_refs = super::sections::voltage_refs(
            &super::sections::VoltageBasis {
                basis: m.voltage_basis.as_deref(),
                nominal: m.nominal_voltage,
                declared: m.declared_voltage,
                phase_reference: m.nominal_voltage_ln,
                phases,
            },
            &plan,
            &key,
            &mut p,
        );
        let contracted = customer.and_then(|c| c.contracted_kva);
        meters.push(Arc::new(Meter {
            plausibility: crate::modbus::plausible::Bounds::new(
                &plausibility,
                m.nominal_voltage,
                phases,
                contracted,
            ),
            limits,
            voltage_refs,
            billing: m.billing.unwrap_or(true),
            nominal_frequency,
            id: m.id,
            customer: m.customer,
            address: m.address,
            unit,
            profile,
            plan,
            interval,
            timeout,
            pt_ratio,
            ct_ratio,
            nominal_voltage: m.nominal_voltage,
            phases,
            tags,
        }));
    }
    // Gateways without a [[gateways]] entry get the [polling] defaults.
    for m in &meters {
        gateways
            .entry(m.address.clone())
            .or_insert_with(|| GatewaySettings {
                address: m.address.clone(),
                timeout: polling.timeout,
                connect_timeout: polling.connect_timeout,
                reconnect_max: polling.reconnect_max,
                delay_between_requests: polling.delay_between_requests,
            });
    }

    if !p.list.is_empty() {
        // Each entry's problems together (its shape is checked before the
        // rules that span entries), entries in the order they are checked.
        let mut list = p.list;
        let entry = |line: &str| -> Option<(String, usize)> {
            let (arr, rest) = line.split_once('[')?;
            let i = rest.split(']').next()?.parse().ok()?;
            (!arr.contains([' ', ':', '.'])).then(|| (arr.to_string(), i))
        };
        let mut first_seen: Vec<Option<(String, usize)>> = Vec::new();
        for l in &list {
            let e = entry(l);
            if !first_seen.contains(&e) {
                first_seen.push(e);
            }
        }
        list.sort_by_key(|l| {
            let e = entry(l);
            first_seen.iter().position(|f| *f == e)
        });
        return Err(ConfigError { problems: list });
    }
    Ok(Config {
        daemon,
        influx,
        polling,
        customers,
        meters,
        gateways,
        profiles,
        rules,
        smtp,
        alerts,
        reports,
        http,
        cluster,
        timezone: tz,
    })
}

fn check_interval(d: Duration, key: &str, p: &mut Problems) {
    if d < Duration::from_millis(100) {
        p.push(key, "must be at least 100ms");
    } else if d > Duration::from_secs(3600) {
        p.push(key, "must be at most 1h");
    }
}

fn influx(p: &mut Problems) -> Option<Influx> {
    p.tree.root.get("influxdb")?;
    let r: raw::Influx = section("influxdb", p);
    if r.enabled == Some(false) {
        return None;
    }
    let url = match r.url {
        None => {
            p.push("influxdb.url", "missing (e.g. \"http://127.0.0.1:8086\")");
            String::new()
        }
        Some(u) => {
            let u = u.trim_end_matches('/').to_string();
            // Never echo credentials written into the URL.
            let shown = crate::secret::redact_url(&u);
            match reqwest::Url::parse(&u) {
                Ok(url)
                    if (u.starts_with("http://") || u.starts_with("https://"))
                        && (!url.username().is_empty() || url.password().is_some()) =>
                {
                    p.push(
                        "influxdb.url",
                        format!(
                            "\"{shown}\" carries credentials: they would be printed with the URL; remove them and set influxdb.token / token_file (api = \"v2\") or influxdb.username with password / password_file (api = \"v1\")"
                        ),
                    );
                }
                Ok(_) if u.starts_with("http://") || u.starts_with("https://") => {}
                _ => p.push(
                    "influxdb.url",
                    format!("\"{shown}\" is not an http:// or https:// URL"),
                ),
            }
            u
        }
    };
    let api = match r.api.as_deref().unwrap_or("v2") {
        "v2" => {
            for (k, set) in [
                ("database", r.database.is_some()),
                ("retention_policy", r.retention_policy.is_some()),
                ("username", r.username.is_some()),
                (
                    "password",
                    r.password.is_some() || r.password_file.is_some(),
                ),
            ] {
                if set {
                    p.push(
                        &format!("influxdb.{k}"),
                        "is a v1 setting; with api = \"v2\" use org, bucket and token",
                    );
                }
            }
            let token = secret(r.token, r.token_file, "influxdb.token", p);
            if token.is_none() {
                p.push(
                    "influxdb.token",
                    "missing: set token, token_file or PQWATCH__INFLUXDB__TOKEN",
                );
            }
            if r.org.is_none() {
                p.push("influxdb.org", "missing");
            }
            if r.bucket.is_none() {
                p.push("influxdb.bucket", "missing");
            }
            Api::V2 {
                org: r.org.unwrap_or_default(),
                bucket: r.bucket.unwrap_or_default(),
                token: token.unwrap_or_default(),
            }
        }
        "v1" => {
            for (k, set) in [
                ("org", r.org.is_some()),
                ("bucket", r.bucket.is_some()),
                ("token", r.token.is_some() || r.token_file.is_some()),
            ] {
                if set {
                    p.push(
                        &format!("influxdb.{k}"),
                        "is a v2 setting; with api = \"v1\" use database, username and password",
                    );
                }
            }
            if r.database.is_none() {
                p.push("influxdb.database", "missing");
            }
            let password = secret(r.password, r.password_file, "influxdb.password", p);
            if password.is_some() && r.username.is_none() {
                p.push("influxdb.username", "missing (a password is set)");
            }
            Api::V1 {
                database: r.database.unwrap_or_default(),
                retention_policy: r.retention_policy.filter(|s| !s.is_empty()),
                username: r.username,
                password: password.unwrap_or_default(),
            }
        }
        other => {
            p.push(
                "influxdb.api",
                format!("\"{other}\" is not \"v2\" or \"v1\""),
            );
            return None;
        }
    };
    let batch_size = r.batch_size.unwrap_or(5000);
    if !(1..=1_000_000).contains(&batch_size) {
        p.push(
            "influxdb.batch_size",
            "must be between 1 and 1000000 points",
        );
    }
    let max_buffered_points = r.max_buffered_points.unwrap_or(2_000_000);
    if max_buffered_points < batch_size {
        p.push(
            "influxdb.max_buffered_points",
            "must be at least batch_size",
        );
    }
    let durability = match r.durability.as_deref() {
        None | Some("always") => Durability::Always,
        Some("memory") => Durability::Memory,
        Some(other) => {
            p.push(
                "influxdb.durability",
                format!("\"{other}\" is not \"always\" or \"memory\""),
            );
            Durability::Always
        }
    };
    let max_outbox_bytes = match &r.max_outbox_bytes {
        None => DEFAULT_OUTBOX_BYTES,
        Some(raw::ByteSize::Bytes(b)) => *b,
        Some(raw::ByteSize::Text(t)) => parse_size(t).unwrap_or_else(|| {
            p.push(
                "influxdb.max_outbox_bytes",
                format!("\"{t}\" is not a size like \"512MiB\" or \"4GiB\""),
            );
            DEFAULT_OUTBOX_BYTES
        }),
    };
    if max_outbox_bytes < 1 << 20 {
        p.push("influxdb.max_outbox_bytes", "must be at least 1MiB");
    }
    let max_in_flight = r.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT as u64);
    if !(1..=16).contains(&max_in_flight) {
        p.push(
            "influxdb.max_in_flight",
            format!("{max_in_flight} is not between 1 and 16 requests"),
        );
    }
    Some(Influx {
        max_in_flight: max_in_flight.clamp(1, 16) as usize,
        url,
        api,
        batch_size: batch_size as usize,
        flush_interval: duration(
            r.flush_interval.as_deref(),
            Duration::from_secs(1),
            "influxdb.flush_interval",
            p,
        ),
        timeout: duration(
            r.timeout.as_deref(),
            Duration::from_secs(10),
            "influxdb.timeout",
            p,
        ),
        gzip: r.gzip.unwrap_or(true),
        max_buffered_points: max_buffered_points as usize,
        durability,
        max_outbox_bytes,
    })
}

/// Requests outstanding at once while a backlog drains: enough to hide a
/// WAN round trip behind the server's own work (BENCHMARKS.md, "drain
/// through a 30 ms link"), few enough not to crowd a small InfluxDB.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// 16 GiB: at the measured ~11.5 compressed bytes per point, about 1.5 G
/// points (29 hours of 1,000 meters × 72 fields every 5 s; BENCHMARKS.md).
pub const DEFAULT_OUTBOX_BYTES: u64 = 16 << 30;

/// "512MiB", "4GiB", "1GB", "1000000" → bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024f64.powi(4),
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}
