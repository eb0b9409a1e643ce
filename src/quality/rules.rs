//! Rules: state + closed window → event changes. Pure.
//!
//! Every rule compares a window statistic with a limit and runs the same
//! small state machine per (meter, kind, phase, order):
//!
//! ```text
//! idle ──violating window──▶ pending ──violating for ≥ min_duration──▶ open
//!   ▲                           │                                       │
//!   └──────clear window─────────┘   clear (beyond the hysteresis margin) │
//!   └──────────────── for ≥ clear_after ─────────────────────────────────┘ closed
//! ```
//!
//! So a blip shorter than `min_duration` opens nothing, and a value
//! hovering at the limit opens one event, not fifty: once open, a window
//! only counts as clear when its value is back inside the limit by the
//! hysteresis margin, and the event closes only after `clear_after` of
//! clear windows. Incomplete windows change nothing.
//!
//! An event's `start_ms` is the start of its first violating window and its
//! `end_ms` the end of its last; `peak` is the most extreme sample seen
//! (window max for upper limits, min for lower ones). Ids are derived from
//! meter, kind, phase, order and start, so a restart that restores open
//! events continues them instead of opening duplicates.
//!
//! Which limits a meter's window is compared with (the checks) is decided
//! in `checks`; this file holds the events, the state machine and the
//! load rules.

use super::aggregate::Window;
use super::demand::Demand;
use super::limits::Limits;
use std::collections::BTreeMap;
use std::time::Duration;

mod checks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    VoltageHigh,
    VoltageLow,
    ThdVoltage,
    HarmonicVoltage,
    ThdCurrent,
    /// IEEE 519 total demand distortion of the current, % of I_L.
    TddCurrent,
    /// GB/T 14549 Table 2: one harmonic order's current, A.
    HarmonicCurrent,
    Unbalance,
    SuspensionLoad,
    DemandExceeded,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VoltageHigh => "voltage_high",
            Kind::VoltageLow => "voltage_low",
            Kind::ThdVoltage => "thd_voltage",
            Kind::HarmonicVoltage => "harmonic_voltage",
            Kind::ThdCurrent => "thd_current",
            Kind::TddCurrent => "tdd_current",
            Kind::HarmonicCurrent => "harmonic_current",
            Kind::Unbalance => "voltage_unbalance",
            Kind::SuspensionLoad => "suspension_load",
            Kind::DemandExceeded => "demand_exceeded",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    pub(crate) const ALL: [Kind; 10] = [
        Kind::VoltageHigh,
        Kind::VoltageLow,
        Kind::ThdVoltage,
        Kind::HarmonicVoltage,
        Kind::ThdCurrent,
        Kind::TddCurrent,
        Kind::HarmonicCurrent,
        Kind::Unbalance,
        Kind::SuspensionLoad,
        Kind::DemandExceeded,
    ];

    /// Lower limits are violated from below.
    fn lower(self) -> bool {
        self == Kind::VoltageLow
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub meter: String,
    pub customer: String,
    pub kind: Kind,
    /// "l1", "l2", "l3", "l1_l2", … or empty for whole-meter rules.
    pub phase: String,
    /// Harmonic order, 0 when not a harmonic rule.
    pub order: u16,
    pub state: State,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The latest window's value.
    pub value: f64,
    pub peak: f64,
    pub peak_ms: i64,
    pub limit: f64,
    pub unit: &'static str,
    /// The standard (or contract rule) the limit comes from.
    pub source: String,
}

impl Event {
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}

/// Timing of one rule family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub(crate) min_duration: Duration,
    pub(crate) clear_after: Duration,
    /// Hysteresis margin, in the limit's unit: once open, a value counts as
    /// clear only when it is inside the limit by at least this much.
    pub margin: f64,
}

/// A declared suspension (暂停/减容) of part of a customer's capacity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Suspension {
    pub from_ms: i64,
    pub to_ms: i64,
    pub suspended_kva: f64,
}

/// Everything the rules of one meter need, resolved from config.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(crate) meter: String,
    pub(crate) customer: String,
    pub(crate) limits: Limits,
    /// (phase name, field, nominal reference in V) for voltage rules.
    pub voltage_refs: Vec<(String, String, f64)>,
    pub(crate) short_ms: i64,
    pub(crate) long_ms: i64,
    pub(crate) voltage: Timing,
    pub(crate) harmonics: Timing,
    /// A window whose every judged voltage is below this share (%) of its
    /// reference is a supply interruption (GB/T 30137, IEC 61000-4-30: 10 %):
    /// not a voltage deviation, so voltage rules skip it.
    pub interruption_pct: f64,
}

impl RuleSet {
    /// Whether a window shows a supply interruption on every judged voltage.
    pub(crate) fn interrupted(&self, w: &Window) -> bool {
        interrupted(self.voltage_refs.iter().map(|(_, field, reference)| {
            (
                w.get(field).map(|s| s.mean),
                reference * self.interruption_pct / 100.0,
            )
        }))
    }
}

/// A supply interruption: every (value, threshold) pair with a value has
/// it below its threshold, and at least one has a value. The one test the
/// rules and the ledger (windows and polled samples) share.
pub(crate) fn interrupted(pairs: impl IntoIterator<Item = (Option<f64>, f64)>) -> bool {
    let mut seen = false;
    for (value, threshold) in pairs {
        if let Some(v) = value {
            if v >= threshold {
                return false;
            }
            seen = true;
        }
    }
    seen
}

/// The load rules of one meter or of a customer's total: contracted
/// maximum demand and declared suspensions, judged on demand values.
#[derive(Debug, Clone)]
pub(crate) struct LoadSet {
    /// The meter's id, or `*` for the customer's total.
    pub meter: String,
    pub customer: String,
    /// Contracted maximum demand (kW) and the factor above which it is exceeded.
    pub max_demand_kw: Option<f64>,
    pub demand_factor: f64,
    pub demand: Timing,
    pub contracted_kva: Option<f64>,
    pub suspensions: Vec<Suspension>,
    /// Allowed load during a suspension = remaining capacity × factor.
    pub suspension_factor: f64,
    /// With everything suspended, load above this (kW) is a violation.
    pub noise_floor_kw: f64,
    pub suspension: Timing,
}

impl LoadSet {
    /// The suspended capacity in force at `t_ms` (kVA; 0 when none).
    pub(crate) fn suspended_at(&self, t_ms: i64) -> f64 {
        self.suspensions
            .iter()
            .filter(|p| p.from_ms <= t_ms && t_ms < p.to_ms)
            .map(|p| p.suspended_kva)
            .sum()
    }

    /// What the customer may draw while `suspended` kVA are suspended.
    pub(crate) fn allowed(&self, suspended: f64) -> Option<f64> {
        Some(allowed_load(
            self.contracted_kva?,
            suspended,
            self.suspension_factor,
            self.noise_floor_kw,
        ))
    }
}

/// What a customer may draw while `suspended` of `contracted` kVA are
/// suspended: the remaining capacity × `factor`, or the noise floor (kW)
/// when nothing remains.
pub(crate) fn allowed_load(contracted: f64, suspended: f64, factor: f64, noise_floor: f64) -> f64 {
    let remaining = (contracted - suspended).max(0.0);
    if remaining <= 0.0 {
        noise_floor
    } else {
        remaining * factor
    }
}

/// One rule evaluation: the value a window shows against a limit.
struct Check {
    kind: Kind,
    phase: String,
    order: u16,
    value: f64,
    /// Sample extreme in the violating direction.
    extreme: f64,
    extreme_ms: i64,
    limit: f64,
    unit: &'static str,
    source: String,
    timing: Timing,
}

#[derive(Debug, Clone, PartialEq)]
enum Track {
    Pending {
        since_ms: i64,
        peak: f64,
        peak_ms: i64,
    },
    Open {
        event: Event,
        clearing_since: Option<i64>,
    },
}

type Key = (Kind, String, u16);

/// The event state machine of one meter (or a customer's total): one track
/// per (kind, phase, order).
#[derive(Debug, Clone)]
struct Tracker {
    meter: String,
    customer: String,
    tracks: BTreeMap<Key, Track>,
}

fn worse(kind: Kind, a: f64, b: f64) -> bool {
    if kind.lower() { a < b } else { a > b }
}

impl Tracker {
    fn new(meter: &str, customer: &str) -> Self {
        Tracker {
            meter: meter.to_string(),
            customer: customer.to_string(),
            tracks: BTreeMap::new(),
        }
    }

    fn restore(&mut self, open: impl IntoIterator<Item = Event>) {
        for e in open {
            let key = (e.kind, e.phase.clone(), e.order);
            self.tracks.insert(
                key,
                Track::Open {
                    event: e,
                    clearing_since: None,
                },
            );
        }
    }

    fn open_events(&self) -> impl Iterator<Item = &Event> {
        self.tracks.values().filter_map(|t| match t {
            Track::Open { event, .. } => Some(event),
            Track::Pending { .. } => None,
        })
    }

    /// One check of the statistic over `[start_ms, end_ms)`.
    fn step(&mut self, c: Check, start_ms: i64, end_ms: i64) -> Option<Event> {
        let key: Key = (c.kind, c.phase.clone(), c.order);
        let violating = if c.kind.lower() {
            c.value < c.limit
        } else {
            c.value > c.limit
        };
        let clear_beyond_margin = if c.kind.lower() {
            c.value >= c.limit + c.timing.margin
        } else {
            c.value <= c.limit - c.timing.margin
        };
        let min_ms = c.timing.min_duration.as_millis() as i64;
        let clear_ms = c.timing.clear_after.as_millis() as i64;
        match self.tracks.remove(&key) {
            None => {
                if !violating {
                    return None;
                }
                let track = Track::Pending {
                    since_ms: start_ms,
                    peak: c.extreme,
                    peak_ms: c.extreme_ms,
                };
                self.tracks.insert(key.clone(), track);
                self.maybe_open(&key, &c, end_ms, min_ms)
            }
            Some(Track::Pending {
                since_ms,
                peak,
                peak_ms,
            }) => {
                if !violating {
                    return None; // back to idle: a blip
                }
                let (peak, peak_ms) = if worse(c.kind, c.extreme, peak) {
                    (c.extreme, c.extreme_ms)
                } else {
                    (peak, peak_ms)
                };
                self.tracks.insert(
                    key.clone(),
                    Track::Pending {
                        since_ms,
                        peak,
                        peak_ms,
                    },
                );
                self.maybe_open(&key, &c, end_ms, min_ms)
            }
            Some(Track::Open {
                mut event,
                clearing_since,
            }) => {
                event.value = c.value;
                if clear_beyond_margin {
                    let since = clearing_since.unwrap_or(start_ms);
                    if end_ms - since >= clear_ms {
                        event.state = State::Closed;
                        return Some(event);
                    }
                    self.tracks.insert(
                        key,
                        Track::Open {
                            event,
                            clearing_since: Some(since),
                        },
                    );
                    None
                } else {
                    // Violating, or hovering inside the margin: still open.
                    if violating {
                        event.end_ms = event.end_ms.max(end_ms);
                    }
                    if worse(c.kind, c.extreme, event.peak) {
                        event.peak = c.extreme;
                        event.peak_ms = c.extreme_ms;
                    }
                    let snapshot = event.clone();
                    self.tracks.insert(
                        key,
                        Track::Open {
                            event,
                            clearing_since: None,
                        },
                    );
                    Some(snapshot)
                }
            }
        }
    }

    fn maybe_open(&mut self, key: &Key, c: &Check, end_ms: i64, min_ms: i64) -> Option<Event> {
        let Some(Track::Pending {
            since_ms,
            peak,
            peak_ms,
        }) = self.tracks.get(key).cloned()
        else {
            return None;
        };
        if end_ms - since_ms < min_ms {
            return None;
        }
        // A customer's total ("*") is named by its customer, so ids stay
        // unique across customers.
        let owner = if self.meter == CUSTOMER_TOTAL {
            format!("{}/{CUSTOMER_TOTAL}", self.customer)
        } else {
            self.meter.clone()
        };
        let event = Event {
            id: format!(
                "{owner}/{}/{}/{}/{}",
                c.kind.as_str(),
                c.phase,
                c.order,
                since_ms
            ),
            meter: self.meter.clone(),
            customer: self.customer.clone(),
            kind: c.kind,
            phase: c.phase.clone(),
            order: c.order,
            state: State::Open,
            start_ms: since_ms,
            end_ms,
            value: c.value,
            peak,
            peak_ms,
            limit: c.limit,
            unit: c.unit,
            source: c.source.clone(),
        };
        self.tracks.insert(
            key.clone(),
            Track::Open {
                event: event.clone(),
                clearing_since: None,
            },
        );
        Some(event)
    }
}

/// (phase, field suffix) of the voltages whose distortion is judged.
pub(crate) const VOLTAGE_PHASES: [(&str, &str); 6] = [
    ("l1", "l1_n"),
    ("l2", "l2_n"),
    ("l3", "l3_n"),
    ("l1_l2", "l1_l2"),
    ("l2_l3", "l2_l3"),
    ("l3_l1", "l3_l1"),
];

/// The meter name of events about a customer's total load.
pub(crate) const CUSTOMER_TOTAL: &str = "*";

/// The rule state of one meter: voltage, harmonics, unbalance.
#[derive(Debug, Clone)]
pub struct MeterRules {
    pub(crate) set: RuleSet,
    tracker: Tracker,
}

impl MeterRules {
    pub fn new(set: RuleSet) -> Self {
        let tracker = Tracker::new(&set.meter, &set.customer);
        MeterRules { set, tracker }
    }

    /// Continue events that were open when the daemon stopped.
    pub(crate) fn restore(&mut self, open: impl IntoIterator<Item = Event>) {
        self.tracker.restore(open);
    }

    pub(crate) fn open_events(&self) -> impl Iterator<Item = &Event> {
        self.tracker.open_events()
    }

    /// Judge a closed window. Returns the events that opened, changed or closed.
    pub fn on_window(&mut self, w: &Window) -> Vec<Event> {
        if !w.complete {
            return Vec::new();
        }
        let checks = self.checks(w);
        let mut out = Vec::new();
        for c in checks {
            if let Some(e) = self.tracker.step(c, w.start_ms, w.end_ms()) {
                out.push(e);
            }
        }
        out
    }
}

/// The load rules of one meter or of a customer's total.
#[derive(Debug, Clone)]
pub(crate) struct LoadRules {
    pub set: LoadSet,
    tracker: Tracker,
}

impl LoadRules {
    pub(crate) fn new(set: LoadSet) -> Self {
        let tracker = Tracker::new(&set.meter, &set.customer);
        LoadRules { set, tracker }
    }

    pub(crate) fn restore(&mut self, open: impl IntoIterator<Item = Event>) {
        self.tracker.restore(open);
    }

    pub(crate) fn open_events(&self) -> impl Iterator<Item = &Event> {
        self.tracker.open_events()
    }

    /// Judge one demand value against the contracted maximum demand ×
    /// `demand_factor` (max-demand billing charges above 105 %).
    pub(crate) fn on_demand(&mut self, d: &Demand) -> Vec<Event> {
        let s = &self.set;
        let Some(md) = s.max_demand_kw else {
            return Vec::new();
        };
        let limit = md * s.demand_factor;
        let c = Check {
            kind: Kind::DemandExceeded,
            phase: String::new(),
            order: 0,
            value: d.kw,
            // The peak of a demand rule is the largest demand value, at the
            // end of its period (as meters record maximum demand).
            extreme: d.kw,
            extreme_ms: d.end_ms,
            limit,
            unit: "kW",
            source: demand_source(md, s.demand_factor),
            timing: Timing {
                margin: s.demand.margin * limit / 100.0,
                ..s.demand
            },
        };
        self.tracker
            .step(c, d.start_ms, d.end_ms)
            .into_iter()
            .collect()
    }

    /// Judge one value of the suspension basis (the customer's total load
    /// averaged over `[rules] suspension_window`) against what the customer
    /// may still draw while a suspension is in force.
    pub(crate) fn on_suspension_basis(&mut self, d: &Demand) -> Vec<Event> {
        let s = &self.set;
        let mid = d.start_ms + (d.end_ms - d.start_ms) / 2;
        let suspended = s.suspended_at(mid);
        if suspended <= 0.0 {
            return Vec::new();
        }
        let Some(limit) = s.allowed(suspended) else {
            return Vec::new();
        };
        let contracted = s.contracted_kva.unwrap_or_default();
        let (load, unit) = d.load();
        let c = Check {
            kind: Kind::SuspensionLoad,
            phase: String::new(),
            order: 0,
            value: load,
            extreme: load,
            extreme_ms: d.end_ms,
            limit,
            unit,
            source: format!(
                "suspension of {suspended} kVA of {contracted} kVA contracted: allowed {limit:.0} {unit}"
            ),
            timing: Timing {
                margin: s.suspension.margin * limit.max(1.0) / 100.0,
                ..s.suspension
            },
        };
        self.tracker
            .step(c, d.start_ms, d.end_ms)
            .into_iter()
            .collect()
    }
}

/// How a demand limit is stated: the contract's figure and its factor.
pub(crate) fn demand_source(max_demand_kw: f64, factor: f64) -> String {
    format!(
        "contracted maximum demand {max_demand_kw} kW × {factor} = {} kW",
        max_demand_kw * factor
    )
}

#[cfg(test)]
mod tests;
