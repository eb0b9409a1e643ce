//! Validation of the power-quality sections: `[rules]`, `[smtp]`,
//! `[alerts]`, customers' suspensions, languages, the time zone and the
//! voltage basis of a meter. Same rules as `validate`: every problem is
//! collected with its key path.

use super::problems::{Problems, duration, secret, section};
use super::raw;
use crate::modbus::reading::MeterPlan;
use crate::quality::limits::{Overrides, Presets};
use crate::quality::rules::Timing;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Language of a message or report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    ZhCn,
    En,
}

impl Language {
    pub fn tag(self) -> &'static str {
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
pub struct SuspensionPeriod {
    pub from_ms: i64,
    pub to_ms: i64,
    pub kva: f64,
    /// As configured, for reports.
    pub from: String,
    pub to: String,
    pub note: Option<String>,
}

/// A local date or date-time in `tz` → Unix ms. With `end_of_day`, a bare
/// date means the midnight *after* it: a suspension declared "to
/// 2026-11-30" includes its last day (a date-time is always the instant).
pub fn local_ms(s: &str, tz: &jiff::tz::TimeZone, end_of_day: bool) -> Option<i64> {
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
pub fn standard_phase_voltage(line_to_line: f64) -> f64 {
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

/// Validated `[rules]`.
#[derive(Debug, Clone)]
pub struct RulesCfg {
    pub enabled: bool,
    pub presets: Presets,
    /// Preset and limits for meters and customers that set none.
    pub defaults: Overrides,
    pub short_window: Duration,
    pub long_window: Duration,
    pub demand_window: Duration,
    pub min_completeness: f64,
    pub voltage: Timing,
    pub harmonics: Timing,
    pub suspension: Timing,
    pub demand: Timing,
    pub suspension_factor: f64,
    pub noise_floor_kw: f64,
    pub demand_factor: f64,
    /// Demand values end on multiples of this: the slide (1 minute by
    /// default), or the demand window itself in block mode.
    pub demand_slide: Duration,
    /// The load a suspension is judged on is averaged over this.
    pub suspension_window: Duration,
    /// Interruption threshold, % of the voltage reference.
    pub interruption_pct: f64,
    /// kW demand from the energy counter where the meter has one (true,
    /// the default), or always from polled power.
    pub demand_from_energy: bool,
}

pub(super) fn rules(p: &mut Problems) -> RulesCfg {
    let r: raw::Rules = section("rules", p);
    let presets = Presets::builtin();
    if let Some(name) = &r.preset
        && !presets.names().any(|n| n == name)
    {
        let known: Vec<_> = presets.names().collect();
        p.push(
            "rules.preset",
            format!("unknown preset \"{name}\" (known: {})", known.join(", ")),
        );
    }
    let d = |v: &Option<String>, def: u64, key: &str, p: &mut Problems| {
        duration(
            v.as_deref(),
            Duration::from_secs(def),
            &format!("rules.{key}"),
            p,
        )
    };
    let short_window = d(&r.short_window, 60, "short_window", p);
    let long_window = d(&r.long_window, 600, "long_window", p);
    let demand_window = d(&r.demand_window, 900, "demand_window", p);
    if long_window.as_millis() % short_window.as_millis().max(1) != 0 {
        p.push("rules.long_window", "must be a multiple of short_window");
    }
    let completeness = r.min_window_completeness.unwrap_or(0.75);
    if !(0.0..=1.0).contains(&completeness) {
        p.push("rules.min_window_completeness", "must be between 0 and 1");
    }
    let pct = |v: Option<f64>, def: f64, key: &str, p: &mut Problems| {
        let x = v.unwrap_or(def);
        if !(x.is_finite() && x >= 0.0) {
            p.push(&format!("rules.{key}"), "must be a non-negative number");
        }
        x
    };
    let voltage = Timing {
        min_duration: d(&r.voltage_min_duration, 180, "voltage_min_duration", p),
        clear_after: d(&r.voltage_clear_after, 180, "voltage_clear_after", p),
        margin: pct(r.voltage_hysteresis, 0.5, "voltage_hysteresis", p),
    };
    let harmonics = Timing {
        min_duration: d(&r.harmonic_min_duration, 600, "harmonic_min_duration", p),
        clear_after: d(&r.harmonic_clear_after, 600, "harmonic_clear_after", p),
        margin: pct(r.harmonic_hysteresis, 5.0, "harmonic_hysteresis", p),
    };
    let suspension = Timing {
        min_duration: d(
            &r.suspension_min_duration,
            300,
            "suspension_min_duration",
            p,
        ),
        clear_after: d(&r.suspension_clear_after, 300, "suspension_clear_after", p),
        margin: 5.0,
    };
    let demand = Timing {
        min_duration: demand_window,
        clear_after: demand_window,
        margin: 0.0,
    };
    let short_ms = short_window.as_millis().max(1);
    let multiple = |d: Duration, key: &str, p: &mut Problems| {
        if !d.as_millis().is_multiple_of(short_ms) || d.is_zero() {
            p.push(
                &format!("rules.{key}"),
                format!(
                    "must be a whole multiple of short_window ({}s): demand is built from its means",
                    short_window.as_secs_f64()
                ),
            );
        }
    };
    multiple(demand_window, "demand_window", p);
    let demand_slide = match r.demand_mode.as_deref() {
        None | Some("sliding") => {
            let s = d(&r.demand_slide, short_window.as_secs(), "demand_slide", p);
            multiple(s, "demand_slide", p);
            if !s.is_zero() && demand_window.as_millis() % s.as_millis() != 0 {
                p.push("rules.demand_slide", "must divide demand_window");
            }
            s
        }
        Some("block") => {
            if r.demand_slide.is_some() {
                p.push(
                    "rules.demand_slide",
                    "applies to demand_mode = \"sliding\" only",
                );
            }
            demand_window
        }
        Some(other) => {
            p.push(
                "rules.demand_mode",
                format!("\"{other}\" is not \"sliding\" or \"block\""),
            );
            demand_window
        }
    };
    let demand_from_energy = match r.demand_basis.as_deref() {
        None | Some("energy") => true,
        Some("power") => false,
        Some(other) => {
            p.push(
                "rules.demand_basis",
                format!("\"{other}\" is not \"energy\" or \"power\""),
            );
            true
        }
    };
    let suspension_window = match &r.suspension_window {
        None => demand_window,
        Some(_) => {
            let w = d(&r.suspension_window, 900, "suspension_window", p);
            multiple(w, "suspension_window", p);
            w
        }
    };
    let interruption_pct = r.interruption_threshold.unwrap_or(10.0);
    if !(interruption_pct.is_finite() && (0.0..50.0).contains(&interruption_pct)) {
        p.push(
            "rules.interruption_threshold",
            "must be a percentage of the reference voltage below 50 (GB/T 30137: 10)",
        );
    }
    RulesCfg {
        enabled: r.enabled.unwrap_or(true),
        presets,
        defaults: Overrides {
            preset: r.preset.clone(),
            unbalance: r.unbalance_limit,
            ..Default::default()
        },
        short_window,
        long_window,
        demand_window,
        min_completeness: completeness,
        voltage,
        harmonics,
        suspension,
        demand,
        suspension_factor: pct(r.suspension_factor, 1.0, "suspension_factor", p),
        noise_floor_kw: pct(
            r.suspension_noise_floor_kw,
            5.0,
            "suspension_noise_floor_kw",
            p,
        ),
        demand_factor: pct(r.demand_factor, 1.05, "demand_factor", p),
        demand_slide,
        suspension_window,
        interruption_pct,
        demand_from_energy,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on localhost.
    None,
}

/// Validated `[smtp]`. With no `host`, mail is written as .eml files.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: Option<String>,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Secret,
    pub from: String,
    pub timeout: Duration,
    pub eml_dir: PathBuf,
}

pub(super) fn smtp(base: &Path, p: &mut Problems) -> Smtp {
    let r: raw::Smtp = section("smtp", p);
    let security = match r.security.as_deref() {
        None | Some("starttls") => Security::StartTls,
        Some("tls") => Security::Tls,
        Some("none") => Security::None,
        Some(other) => {
            p.push(
                "smtp.security",
                format!("\"{other}\" is not \"starttls\", \"tls\" or \"none\""),
            );
            Security::StartTls
        }
    };
    let port = r.port.unwrap_or(match security {
        Security::Tls => 465,
        Security::StartTls => 587,
        Security::None => 25,
    });
    if security == Security::None
        && let Some(h) = &r.host
        && !matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1")
    {
        p.push("smtp.security", format!("\"none\" sends passwords and mail in clear; allowed only for a relay on localhost, not \"{h}\""));
    }
    let password = secret(r.password, r.password_file, "smtp.password", p);
    if password.is_some() && r.username.is_none() {
        p.push("smtp.username", "missing (a password is set)");
    }
    let from = r
        .from
        .unwrap_or_else(|| "pqwatch <pqwatch@localhost>".into());
    if from.parse::<lettre::message::Mailbox>().is_err() {
        p.push(
            "smtp.from",
            format!("\"{from}\" is not an address like \"Grid PQ <pq@utility.example>\""),
        );
    }
    let eml_dir = match &r.eml_dir {
        Some(d) => {
            let pb = PathBuf::from(d);
            if pb.is_absolute() { pb } else { base.join(pb) }
        }
        None => PathBuf::new(),
    };
    Smtp {
        host: r.host,
        port,
        security,
        username: r.username,
        password: password.unwrap_or_default(),
        from,
        timeout: duration(
            r.timeout.as_deref(),
            Duration::from_secs(30),
            "smtp.timeout",
            p,
        ),
        eml_dir,
    }
}

/// A recipient list and its language.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipients {
    pub addresses: Vec<String>,
    pub language: Language,
}

/// Validated `[alerts]`.
#[derive(Debug, Clone)]
pub struct Alerts {
    pub enabled: bool,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_per_meter_per_hour: u32,
    pub resolved: bool,
    pub default: Recipients,
    pub groups: BTreeMap<String, Recipients>,
}

fn addresses(list: &[String], key: &str, p: &mut Problems) -> Vec<String> {
    for (i, a) in list.iter().enumerate() {
        if a.parse::<lettre::message::Mailbox>().is_err() {
            p.push(
                &format!("{key}[{i}]"),
                format!("\"{a}\" is not an e-mail address"),
            );
        }
    }
    list.to_vec()
}

pub(super) fn alerts(p: &mut Problems) -> Alerts {
    let r: raw::Alerts = section("alerts", p);
    let min_delay = duration(
        r.min_delay.as_deref(),
        Duration::from_secs(60),
        "alerts.min_delay",
        p,
    );
    let max_delay = duration(
        r.max_delay.as_deref(),
        Duration::from_secs(300),
        "alerts.max_delay",
        p,
    );
    if max_delay < min_delay {
        p.push("alerts.max_delay", "must be at least min_delay");
    }
    let mut groups = BTreeMap::new();
    for (i, g) in r.groups.iter().enumerate() {
        let k = format!("alerts.groups[{i}]");
        let rec = Recipients {
            addresses: addresses(&g.recipients, &format!("{k}.recipients"), p),
            language: language(g.language.as_deref(), &format!("{k}.language"), p),
        };
        if groups.insert(g.name.clone(), rec).is_some() {
            p.push(
                &format!("{k}.name"),
                format!("\"{}\" is used twice", g.name),
            );
        }
    }
    Alerts {
        enabled: r.enabled.unwrap_or(true),
        min_delay,
        max_delay,
        max_per_meter_per_hour: r.max_per_meter_per_hour.unwrap_or(6),
        resolved: r.resolved.unwrap_or(true),
        default: Recipients {
            addresses: addresses(&r.recipients, "alerts.recipients", p),
            language: language(r.language.as_deref(), "alerts.language", p),
        },
        groups,
    }
}

/// When a customer's report is sent and what it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSchedule {
    pub period: crate::calendar::PeriodKind,
    pub cron: crate::calendar::Cron,
}

/// Validated `[reports]`.
/// How a three-phase meter's voltage verdict is made from its phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PhaseRule {
    /// The phases' minutes summed: (1 − Σ outside / Σ monitored) — the
    /// "total" row, as DL/T 645 meters keep it.
    #[default]
    Pooled,
    /// The worst phase's own rate.
    WorstPhase,
}

#[derive(Debug, Clone)]
pub struct Reports {
    pub enabled: bool,
    pub schedule: ReportSchedule,
    pub voltage_target: f64,
    /// Share (%) of the period's minutes with data (monitored or outage)
    /// a verdict needs; below it the verdict is "insufficient data".
    pub min_completeness: f64,
    /// How the phases of a meter make its voltage verdict.
    pub phase_rule: PhaseRule,
    pub catch_up: Duration,
    pub keep_days: u32,
    pub bcc: Vec<String>,
}

/// A period kind and a cron expression; the expression defaults to the
/// kind's (`0 8 1 * *` for a month).
pub(super) fn report_schedule(
    period: Option<&str>,
    cron: Option<&str>,
    base: Option<&ReportSchedule>,
    key: &str,
    p: &mut Problems,
) -> ReportSchedule {
    use crate::calendar::{Cron, PeriodKind};
    let kind = match period {
        None => base.map_or(PeriodKind::Month, |b| b.period),
        Some(s) => s.parse::<PeriodKind>().unwrap_or_else(|e| {
            p.push(&format!("{key}.period"), e);
            PeriodKind::Month
        }),
    };
    let cron = match cron {
        Some(c) => c.parse::<Cron>().unwrap_or_else(|e| {
            p.push(&format!("{key}.schedule"), e);
            kind.default_cron()
                .parse()
                .expect("default schedules parse")
        }),
        // A period set here without a schedule takes the period's default.
        None => match base {
            Some(b) if period.is_none() => b.cron.clone(),
            _ => kind
                .default_cron()
                .parse()
                .expect("default schedules parse"),
        },
    };
    ReportSchedule { period: kind, cron }
}

pub(super) fn reports(p: &mut Problems) -> Reports {
    let r: raw::Reports = section("reports", p);
    let schedule = report_schedule(
        r.period.as_deref(),
        r.schedule.as_deref(),
        None,
        "reports",
        p,
    );
    let voltage_target = r.voltage_target.unwrap_or(95.0);
    if !(0.0..=100.0).contains(&voltage_target) {
        p.push(
            "reports.voltage_target",
            "must be a percentage between 0 and 100",
        );
    }
    let min_completeness = r.min_completeness.unwrap_or(90.0);
    if !(0.0..=100.0).contains(&min_completeness) {
        p.push(
            "reports.min_completeness",
            "must be a percentage between 0 and 100",
        );
    }
    let phase_rule = match r.phase_rule.as_deref() {
        None | Some("pooled") => PhaseRule::Pooled,
        Some("worst_phase") => PhaseRule::WorstPhase,
        Some(other) => {
            p.push(
                "reports.phase_rule",
                format!("\"{other}\" is not \"pooled\" or \"worst_phase\""),
            );
            PhaseRule::Pooled
        }
    };
    let catch_up = duration(
        r.catch_up.as_deref(),
        Duration::from_secs(93 * 86_400),
        "reports.catch_up",
        p,
    );
    let keep_days = r.keep_days.unwrap_or(800);
    if keep_days < 62 {
        p.push(
            "reports.keep_days",
            "must be at least 62 (two months of reports)",
        );
    }
    Reports {
        enabled: r.enabled.unwrap_or(true),
        schedule,
        voltage_target,
        min_completeness,
        phase_rule,
        catch_up,
        keep_days,
        bcc: addresses(&r.bcc, "reports.bcc", p),
    }
}

/// A customer's report recipients and schedule (None: no reports).
pub(super) fn customer_report(
    recipients: &[String],
    r: Option<&raw::CustomerReport>,
    base: &Reports,
    key: &str,
    p: &mut Problems,
) -> (Vec<String>, Option<ReportSchedule>) {
    let addrs = addresses(recipients, &format!("{key}.recipients"), p);
    let k = format!("{key}.report");
    let schedule = report_schedule(
        r.and_then(|r| r.period.as_deref()),
        r.and_then(|r| r.schedule.as_deref()),
        Some(&base.schedule),
        &k,
        p,
    );
    let enabled = r.and_then(|r| r.enabled).unwrap_or(true) && base.enabled;
    (addrs, enabled.then_some(schedule))
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct Http {
    pub enabled: bool,
    pub listen: std::net::SocketAddr,
    pub token: Option<Secret>,
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
    pub fn owner(&self, customer: &str) -> u32 {
        (0..self.shards)
            .max_by_key(|i| fnv1a(customer.as_bytes(), *i))
            .unwrap_or(0)
    }

    pub fn owns(&self, customer: &str) -> bool {
        self.shards <= 1 || self.owner(customer) == self.shard
    }
}

/// FNV-1a 64 of the bytes followed by the shard number: stable across
/// versions and platforms (unlike std's hasher).
fn fnv1a(bytes: &[u8], shard: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().chain(shard.to_le_bytes().iter()) {
        h ^= *b as u64;
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
