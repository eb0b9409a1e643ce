//! The watch's state built from its slice of the config: a meter's
//! windows and rules, a customer's total, and which open events a new
//! config still judges.
//!
//! Not here: what happens to readings and windows (the parent module).

use super::{CustomerWatch, MeterWatch};
use crate::config::{Config, Customer, Meter, rules::RulesCfg};
use crate::quality::aggregate::Aggregator;
use crate::quality::demand::{CustomerSum, EnergyBasis, Sliding};
use crate::quality::rules::{
    CUSTOMER_TOTAL, Event, Kind, LoadRules, LoadSet, MeterRules, RuleSet, Suspension,
    VOLTAGE_PHASES,
};
use crate::reading::MeterMeta;
use crate::report::ledger::LedgerSpec;
use std::collections::HashMap;
use std::sync::Arc;

/// What the watch reads of the config: the fleet and `[rules]`, nothing
/// else (a stage sees only its own slice, `config::reload`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) customers: Vec<Customer>,
    pub(crate) meters: Vec<Arc<Meter>>,
    pub(crate) rules: RulesCfg,
}

impl Settings {
    /// The watch's slice of `cfg`.
    pub(crate) fn of(cfg: &Config) -> Settings {
        Settings {
            customers: cfg.customers.clone(),
            meters: cfg.meters.clone(),
            rules: cfg.rules.clone(),
        }
    }
}

pub(super) fn demand_fields(f: &str) -> bool {
    f == "active_power_total" || f == "apparent_power_total"
}

/// "1m", "10m", "15m", "2s": the window length as a measurement suffix.
pub fn window_name(len_ms: i64) -> String {
    let s = len_ms / 1000;
    if len_ms % 60_000 == 0 {
        format!("{}m", s / 60)
    } else if len_ms % 1000 == 0 {
        format!("{s}s")
    } else {
        format!("{len_ms}ms")
    }
}

/// A meter's windows and rules, from config (no open events yet).
pub(super) fn meter_watch(cfg: &Settings, m: &Arc<Meter>) -> MeterWatch {
    let r = &cfg.rules;
    let short = r.short_window.as_millis() as i64;
    let long = r.long_window.as_millis() as i64;
    let demand = r.demand_window.as_millis() as i64;
    let names = measurement_names(short, long, demand);
    let customer = cfg.customers.iter().find(|c| c.id == m.customer);
    let interval = m.interval.as_millis() as i64;
    let set = rule_set(&cfg.rules, m);
    let c = r.min_completeness;
    let mut load = load_set(&cfg.rules, customer, &m.id, &m.customer);
    // A meter's own load rules judge demand only: a suspension is the
    // customer's, judged on its total.
    load.suspensions.clear();
    MeterWatch {
        meta: None,
        config: m.clone(),
        aggs: vec![
            (Aggregator::new(short, interval, c), names[0]),
            (Aggregator::new(long, interval, c), names[1]),
            (
                Aggregator::new(demand, interval, c).with_filter(demand_fields),
                names[2],
            ),
        ],
        rules: MeterRules::new(set),
        load: LoadRules::new(load),
        demand: Sliding::new(short, demand, r.demand_slide.as_millis() as i64),
        energy: r.demand_from_energy.then(EnergyBasis::default),
        counter: None,
        ledger_spec: LedgerSpec::from_config(m, customer, r.interruption_pct),
        interval_ms: interval,
        billing: m.billing,
    }
}

/// Everything the rules of one meter need, from config.
pub fn rule_set(r: &RulesCfg, m: &Meter) -> RuleSet {
    RuleSet {
        meter: m.id.clone(),
        customer: m.customer.clone(),
        limits: m.limits.clone(),
        voltage_refs: m.voltage_refs.clone(),
        short_ms: r.short_window.as_millis() as i64,
        long_ms: r.long_window.as_millis() as i64,
        voltage: r.voltage,
        harmonics: r.harmonics,
        interruption_pct: r.interruption_pct,
    }
}

/// The load rules of a meter (`meter` = its id) or of a customer's total
/// (`meter` = `*`), from config.
pub(crate) fn load_set(
    r: &RulesCfg,
    customer: Option<&Customer>,
    meter: &str,
    customer_id: &str,
) -> LoadSet {
    LoadSet {
        meter: meter.to_string(),
        customer: customer_id.to_string(),
        max_demand_kw: customer.and_then(|c| c.max_demand_kw),
        demand_factor: r.demand_factor,
        demand: r.demand,
        contracted_kva: customer.and_then(|c| c.contracted_kva),
        suspensions: customer
            .map(|c| {
                c.suspensions
                    .iter()
                    .map(|s| Suspension {
                        from_ms: s.from_ms,
                        to_ms: s.to_ms,
                        suspended_kva: s.kva,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        suspension_factor: r.suspension_factor,
        noise_floor_kw: r.noise_floor_kw,
        suspension: r.suspension,
    }
}

pub(super) fn customer_watch(cfg: &Settings, c: &Customer) -> CustomerWatch {
    let r = &cfg.rules;
    let short = r.short_window.as_millis() as i64;
    let demand = r.demand_window.as_millis() as i64;
    let slide = r.demand_slide.as_millis() as i64;
    let susp = r.suspension_window.as_millis() as i64;
    let billing = cfg
        .meters
        .iter()
        .filter(|m| m.customer == c.id && m.billing)
        .count();
    let mut tags = c.tags.clone();
    tags.insert("meter".into(), CUSTOMER_TOTAL.into());
    tags.insert("customer".into(), c.id.clone());
    CustomerWatch {
        meta: Arc::new(MeterMeta::new(CUSTOMER_TOTAL, &c.id, &tags)),
        sum: CustomerSum::new(billing, short),
        demand: Sliding::new(short, demand, slide),
        suspension: (susp != demand).then(|| Sliding::new(short, susp, slide.min(susp))),
        load: LoadRules::new(load_set(&cfg.rules, Some(c), CUSTOMER_TOTAL, &c.id)),
        peaks: HashMap::new(),
    }
}

/// The meta of a meter's points, from its config entry (as its gateway
/// builds it).
pub(super) fn meta_of(m: &Meter) -> Arc<MeterMeta> {
    Arc::new(MeterMeta::new(&m.id, &m.customer, &m.tags))
}

/// Whether the meter rules of `set` still judge what the open event `e`
/// is about: its kind has limits, its phase is among the judged ones, its
/// harmonic order has a limit.
pub(super) fn still_judged(set: &RuleSet, e: &Event) -> bool {
    let l = &set.limits;
    match e.kind {
        Kind::VoltageHigh | Kind::VoltageLow => {
            l.voltage.is_some() && set.voltage_refs.iter().any(|(p, _, _)| *p == e.phase)
        }
        Kind::ThdVoltage => {
            l.harmonics.is_some() && VOLTAGE_PHASES.iter().any(|(p, _)| *p == e.phase)
        }
        Kind::HarmonicVoltage => l
            .harmonics
            .as_ref()
            .is_some_and(|h| h.orders.contains_key(&e.order)),
        Kind::ThdCurrent => l.thd_current.is_some(),
        Kind::TddCurrent => l.current.is_some(),
        Kind::HarmonicCurrent => l
            .harmonic_current
            .as_ref()
            .is_some_and(|h| h.amps.contains_key(&e.order)),
        Kind::Unbalance => true,
        Kind::DemandExceeded | Kind::SuspensionLoad => true,
    }
}

/// Whether the load rules of `set` still judge the open event `e`: a
/// contracted maximum demand for an exceedance, a declared suspension
/// over the event's time (and a contracted capacity) for a suspension load.
pub(super) fn load_still_judged(set: &LoadSet, e: &Event) -> bool {
    match e.kind {
        Kind::DemandExceeded => set.max_demand_kw.is_some(),
        Kind::SuspensionLoad => {
            set.contracted_kva.is_some()
                && set
                    .suspensions
                    .iter()
                    .any(|s| s.from_ms <= e.end_ms && e.start_ms < s.to_ms)
        }
        _ => true,
    }
}

/// The measurement names of the three windows, leaked once per distinct
/// set of lengths (a handful per process, even across reloads).
pub(super) fn measurement_names(short: i64, long: i64, demand: i64) -> [&'static str; 3] {
    type Names = Vec<((i64, i64, i64), [&'static str; 3])>;
    static NAMES: std::sync::Mutex<Names> = std::sync::Mutex::new(Vec::new());
    let mut known = NAMES.lock().expect("names lock");
    if let Some((_, n)) = known.iter().find(|(k, _)| *k == (short, long, demand)) {
        return *n;
    }
    let n = [
        leak(format!("pq_{}", window_name(short))),
        leak(format!("pq_{}", window_name(long))),
        leak(format!("pq_{}", window_name(demand))),
    ];
    known.push(((short, long, demand), n));
    n
}

pub(super) fn leak(s: String) -> &'static str {
    // Measurement names: a handful per process, built once at start-up.
    Box::leak(s.into_boxed_str())
}
