//! The ledger: per meter, per local day, the minute statistics a voltage
//! quality report is computed from. Pure.
//!
//! Chinese practice (and DL/T 645 meters) keep, per phase and day: monitored
//! minutes, minutes above the upper limit, minutes below the lower one, the
//! maximum and minimum with their times. pqwatch keeps those from the
//! 1-minute means (the rules' short window), plus their sum for the mean;
//! the same counters over the 10-minute means (EN 50160 assesses those);
//! for THDu, THDi and each harmonic order the meter provides the maximum,
//! minimum, minutes over the limit and a histogram at 0.01 resolution,
//! which merges across days so that the 95 % value (CP95) of any period is
//! exact to that resolution without keeping the raw minutes; the day's
//! active-power peak, largest demand-window mean, and the peak load while a
//! suspension was in force.
//!
//! Every figure is a *sum, maximum or minimum*, so ledgers merge: a day is
//! stored as one-minute partial ledgers that are merged (compacted) later,
//! and a report merges days. Merging is exact and order-independent, which
//! is what makes a restart lose nothing but the minute in progress
//! (`report::store` keeps them).
//!
//! What counts as a minute: a *complete* short window (one holding at least
//! `[rules] min_window_completeness` of its scheduled polls), the same
//! windows the rules judge. Maxima and minima are of the minute means (so
//! "maximum above the upper limit" and "minutes above > 0" always agree);
//! load peaks are of the polled samples, like the rules' and the
//! `pq_suspension` points.
//!
//! CP95 follows GB/T 14549: sort the values, drop the top 5 % (⌊0.05·n⌋
//! values), take the largest of the rest.

use crate::quality::aggregate::Window;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resolution of histograms: 0.01 (percentage points for THD).
pub const HIST_RESOLUTION: f64 = 0.01;

/// A sparse fixed-bin histogram; mergeable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    /// bin (value / resolution, rounded) → count.
    bins: BTreeMap<i64, u32>,
}

impl Hist {
    pub(crate) fn add(&mut self, v: f64) {
        let bin = (v / HIST_RESOLUTION).round() as i64;
        *self.bins.entry(bin).or_insert(0) += 1;
    }

    pub(crate) fn merge(&mut self, other: &Hist) {
        for (b, c) in &other.bins {
            *self.bins.entry(*b).or_insert(0) += c;
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.bins.values().map(|&c| u64::from(c)).sum()
    }

    /// The largest value after dropping the top ⌊0.05·n⌋ (GB/T 14549 CP95).
    pub fn cp95(&self) -> Option<f64> {
        self.percentile(95)
    }

    /// The p-th percentile as the standards use it: the largest value
    /// after dropping the top ⌊(100 − p)·n/100⌋, so "the p-th percentile is
    /// within the limit" means at most that many values exceed it.
    pub fn percentile(&self, p: u64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let keep = n - n * (100 - p.min(100)) / 100; // values kept, ≥ 1
        let mut seen = 0u64;
        for (b, c) in &self.bins {
            seen += u64::from(*c);
            if seen >= keep {
                return Some(*b as f64 * HIST_RESOLUTION);
            }
        }
        unreachable!("keep ≤ n")
    }
}

/// CP95 of a list of values, by sorting (the reference method).
#[cfg(test)]
pub(crate) fn cp95_sorted(values: &[f64]) -> Option<f64> {
    percentile_sorted(values, 95)
}

/// [`Hist::percentile`] by sorting (the reference method).
#[cfg(test)]
pub(crate) fn percentile_sorted(values: &[f64], p: usize) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let keep = v.len() - v.len() * (100 - p.min(100)) / 100;
    Some(v[keep - 1])
}

/// The histogram bin of a value (what CP95 sees).
#[cfg(test)]
pub(crate) fn quantize(v: f64) -> f64 {
    (v / HIST_RESOLUTION).round() * HIST_RESOLUTION
}

fn keep_max(slot: &mut Option<(f64, i64)>, v: (f64, i64)) {
    // Ties keep the earlier time, so merge order never changes the result.
    match slot {
        Some((m, t)) if v.0 < *m || (v.0 == *m && v.1 >= *t) => {}
        _ => *slot = Some(v),
    }
}

fn keep_min(slot: &mut Option<(f64, i64)>, v: (f64, i64)) {
    match slot {
        Some((m, t)) if v.0 > *m || (v.0 == *m && v.1 >= *t) => {}
        _ => *slot = Some(v),
    }
}

/// One phase's voltage over a day: minutes (or 10-minute intervals).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VoltageDay {
    pub monitored: u32,
    pub(crate) above: u32,
    pub(crate) below: u32,
    pub(crate) sum: f64,
    /// Highest and lowest window mean, with the window's start (Unix ms).
    pub max: Option<(f64, i64)>,
    pub(crate) min: Option<(f64, i64)>,
    /// The band the windows were judged against (V), as of the latest window.
    pub upper_v: f64,
    pub(crate) lower_v: f64,
    pub(crate) band_at: i64,
}

impl VoltageDay {
    /// Add one window's mean, judged against `[lower_v, upper_v]`.
    pub fn add(&mut self, mean: f64, start_ms: i64, upper_v: f64, lower_v: f64) {
        self.monitored += 1;
        self.sum += mean;
        if mean > upper_v {
            self.above += 1;
        } else if mean < lower_v {
            self.below += 1;
        }
        keep_max(&mut self.max, (mean, start_ms));
        keep_min(&mut self.min, (mean, start_ms));
        if start_ms >= self.band_at {
            (self.upper_v, self.lower_v, self.band_at) = (upper_v, lower_v, start_ms);
        }
    }

    pub(crate) fn merge(&mut self, o: &VoltageDay) {
        self.monitored += o.monitored;
        self.above += o.above;
        self.below += o.below;
        self.sum += o.sum;
        if let Some(m) = o.max {
            keep_max(&mut self.max, m);
        }
        if let Some(m) = o.min {
            keep_min(&mut self.min, m);
        }
        if o.monitored > 0 && (self.monitored == o.monitored || o.band_at >= self.band_at) {
            (self.upper_v, self.lower_v, self.band_at) = (o.upper_v, o.lower_v, o.band_at);
        }
    }

    pub(crate) fn mean(&self) -> Option<f64> {
        (self.monitored > 0).then(|| self.sum / f64::from(self.monitored))
    }

    /// (1 − (above + below) / monitored) × 100 %.
    pub fn qualification_rate(&self) -> Option<f64> {
        (self.monitored > 0)
            .then(|| (1.0 - f64::from(self.above + self.below) / f64::from(self.monitored)) * 100.0)
    }
}

/// THDu, THDi or one harmonic order of one phase over a day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistortionDay {
    pub(crate) minutes: u32,
    /// Minutes whose mean was above the limit.
    pub over: u32,
    pub(crate) max: Option<(f64, i64)>,
    pub(crate) min: Option<(f64, i64)>,
    pub(crate) sum: f64,
    pub(crate) hist: Hist,
    /// The limit (%), as of the latest minute; None where none applies.
    pub limit: Option<f64>,
    pub(crate) limit_at: i64,
}

impl DistortionDay {
    pub(crate) fn add(&mut self, mean: f64, start_ms: i64, limit: Option<f64>) {
        self.minutes += 1;
        self.sum += mean;
        if limit.is_some_and(|l| mean > l) {
            self.over += 1;
        }
        keep_max(&mut self.max, (mean, start_ms));
        keep_min(&mut self.min, (mean, start_ms));
        self.hist.add(mean);
        if start_ms >= self.limit_at {
            (self.limit, self.limit_at) = (limit, start_ms);
        }
    }

    pub(crate) fn merge(&mut self, o: &DistortionDay) {
        self.minutes += o.minutes;
        self.over += o.over;
        self.sum += o.sum;
        if let Some(m) = o.max {
            keep_max(&mut self.max, m);
        }
        if let Some(m) = o.min {
            keep_min(&mut self.min, m);
        }
        self.hist.merge(&o.hist);
        if o.minutes > 0 && (self.minutes == o.minutes || o.limit_at >= self.limit_at) {
            (self.limit, self.limit_at) = (o.limit, o.limit_at);
        }
    }

    pub(crate) fn mean(&self) -> Option<f64> {
        (self.minutes > 0).then(|| self.sum / f64::from(self.minutes))
    }

    pub(crate) fn cp95(&self) -> Option<f64> {
        self.hist.cp95()
    }
}

/// A peak with its time and unit ("kW", "kVA").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    pub(crate) value: f64,
    pub(crate) at_ms: i64,
    pub(crate) unit: String,
}

/// Keep the higher peak (the earlier one when equal).
pub fn keep_peak(slot: &mut Option<Peak>, p: &Peak) {
    match slot {
        Some(q) if p.value < q.value || (p.value == q.value && p.at_ms >= q.at_ms) => {}
        _ => *slot = Some(p.clone()),
    }
}

/// Everything the ledger keeps about one meter for one local day (or, after
/// merging, for any set of days).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayLedger {
    /// Length of the short window (60 000 ms unless `[rules] short_window`
    /// says otherwise): what a "minute" is in the counters below.
    pub window_ms: i64,
    /// Phase ("l1", "l1_l2", …) → counters over the short-window means.
    pub voltage: BTreeMap<String, VoltageDay>,
    /// Phase → counters over the long-window (10-minute) means.
    pub voltage_long: BTreeMap<String, VoltageDay>,
    /// Field ("thd_voltage_l1_n", "harmonic_voltage_l1_n_h5",
    /// "thd_current_l1") → distribution over the short-window means.
    pub distortion: BTreeMap<String, DistortionDay>,
    /// Highest polled total active power, kW.
    pub active_power: Option<Peak>,
    /// Largest demand-window (15-minute) mean of active power, kW, at the
    /// window's start.
    pub demand: Option<Peak>,
    /// Highest polled load (apparent power where the meter has it, else
    /// active) while a declared suspension was in force. In a customer's
    /// total ledger ([`customer_key`]): the highest value of the
    /// suspension basis (`[rules] suspension_window` sliding mean), at the
    /// end of its period.
    pub suspension: Option<Peak>,
    /// Minutes of supply interruption (every judged voltage below the
    /// interruption threshold): neither monitored nor "below".
    pub outage: u32,
    /// Customer total only: the highest instantaneous load while suspended
    /// (the sum of the billing meters' largest samples of one minute).
    pub suspension_instant: Option<Peak>,
    /// Phase → 10-minute means outside EN 50160's range 2 (N2), where the
    /// preset has one.
    pub range2: BTreeMap<String, u32>,
    /// Frequency over the 1-minute means, against nominal ± the allowed
    /// deviation (GB/T 15945, EN 50160), where the meter measures it.
    pub frequency: Option<VoltageDay>,
    /// Distortion field → histogram of the polled samples themselves, for
    /// meters polled every 3 s or faster: GB/T 14549 assesses 3-second
    /// values, so their CP95 is taken from these where present.
    pub samples: BTreeMap<String, Hist>,
    /// Distortion field → histogram of its 10-minute means, where the
    /// preset judges weekly percentiles of them (EN 50160, IEEE 519).
    pub distortion_long: BTreeMap<String, Hist>,
}

/// Version byte in front of the stored encoding: 2 added `outage`,
/// `suspension_instant` and `range2`; 3 `distortion_long` (1 and 2 are
/// still read).
const ENCODING: u8 = 3;

/// The stored shape of encoding 1 (a prefix of today's fields).
#[derive(Deserialize)]
struct DayLedgerV1 {
    window_ms: i64,
    voltage: BTreeMap<String, VoltageDay>,
    voltage_long: BTreeMap<String, VoltageDay>,
    distortion: BTreeMap<String, DistortionDay>,
    active_power: Option<Peak>,
    demand: Option<Peak>,
    suspension: Option<Peak>,
}

/// The ledger key of a customer's total load (demand, suspension): not a
/// meter id (config refuses ids that start with `*`).
pub fn customer_key(customer: &str) -> String {
    format!("*/{customer}")
}

impl DayLedger {
    pub(crate) fn is_empty(&self) -> bool {
        self.voltage.is_empty()
            && self.voltage_long.is_empty()
            && self.distortion.is_empty()
            && self.active_power.is_none()
            && self.demand.is_none()
            && self.suspension.is_none()
            && self.outage == 0
            && self.suspension_instant.is_none()
            && self.range2.is_empty()
            && self.frequency.is_none()
            && self.samples.is_empty()
            && self.distortion_long.is_empty()
    }

    pub fn merge(&mut self, o: &DayLedger) {
        if self.window_ms == 0 {
            self.window_ms = o.window_ms;
        }
        for (k, v) in &o.voltage {
            self.voltage.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.voltage_long {
            self.voltage_long.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.distortion {
            self.distortion.entry(k.clone()).or_default().merge(v);
        }
        self.outage += o.outage;
        if let Some(f) = &o.frequency {
            self.frequency.get_or_insert_with(Default::default).merge(f);
        }
        for (k, h) in &o.samples {
            self.samples.entry(k.clone()).or_default().merge(h);
        }
        for (k, h) in &o.distortion_long {
            self.distortion_long.entry(k.clone()).or_default().merge(h);
        }
        for (k, n) in &o.range2 {
            *self.range2.entry(k.clone()).or_insert(0) += n;
        }
        for (mine, theirs) in [
            (&mut self.active_power, &o.active_power),
            (&mut self.demand, &o.demand),
            (&mut self.suspension, &o.suspension),
            (&mut self.suspension_instant, &o.suspension_instant),
        ] {
            if let Some(p) = theirs {
                keep_peak(mine, p);
            }
        }
    }

    /// Compact binary form for the state database (postcard, versioned).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENCODING];
        out.extend(postcard::to_allocvec(self).expect("a ledger always serializes"));
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Result<DayLedger, String> {
        match b.split_first() {
            Some((&ENCODING, rest)) => {
                postcard::from_bytes(rest).map_err(|e| format!("ledger row: {e}"))
            }
            // Encoding 2 is encoding 3 without its last field; postcard
            // writes fields in order, so an empty map (length 0) appended
            // makes it a complete encoding-3 row.
            Some((2, rest)) => {
                let mut b = rest.to_vec();
                b.push(0);
                postcard::from_bytes(&b).map_err(|e| format!("ledger row: {e}"))
            }
            Some((1, rest)) => postcard::from_bytes::<DayLedgerV1>(rest)
                .map(|v| DayLedger {
                    window_ms: v.window_ms,
                    voltage: v.voltage,
                    voltage_long: v.voltage_long,
                    distortion: v.distortion,
                    active_power: v.active_power,
                    demand: v.demand,
                    suspension: v.suspension,
                    outage: 0,
                    suspension_instant: None,
                    range2: BTreeMap::new(),
                    frequency: None,
                    samples: BTreeMap::new(),
                    distortion_long: BTreeMap::new(),
                })
                .map_err(|e| format!("ledger row: {e}")),
            Some((v, _)) => Err(format!("ledger row: unknown encoding {v}")),
            None => Err("ledger row: empty".into()),
        }
    }
}

/// What one meter's windows are judged against, resolved from config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerSpec {
    /// (phase, field, lower V, upper V); the band is ±∞ when the preset has
    /// none for this voltage.
    pub voltage: Vec<(String, String, f64, f64)>,
    /// Distortion fields the ledger keeps, with their limits (%).
    pub thd_voltage: BTreeMap<String, f64>,
    pub(crate) harmonic_limits: BTreeMap<u16, f64>,
    pub(crate) thd_current: Option<f64>,
    /// IEEE 519 TDD limit (% of I_L), where the customer's short-circuit
    /// ratio selects one.
    pub tdd: Option<f64>,
    /// GB/T 14549 harmonic current limits (A) by order, where the customer
    /// gives its short-circuit capacity; harmonic currents in A are kept
    /// (without a limit: shown, not judged) either way.
    pub harmonic_current: BTreeMap<u16, f64>,
    /// The voltage unbalance limit (%), GB/T 15543's normal limit: the
    /// ledger keeps the unbalance's distribution like a distortion's.
    pub unbalance: Option<f64>,
    /// Suspensions: [from_ms, to_ms).
    pub suspensions: Vec<(i64, i64)>,
    /// (field, interruption threshold in V) of every judged voltage: a
    /// minute with all of them below is an outage minute.
    pub interruption: Vec<(String, f64)>,
    /// Phase → EN 50160 range 2 in V (lower, upper), where the preset has one.
    pub range2: BTreeMap<String, (f64, f64)>,
    /// Frequency band in Hz (lower, upper), where the preset has one.
    pub frequency: Option<(f64, f64)>,
    /// The meter is polled every 3 s or faster: its samples are kept for
    /// the 3-second CP95 of GB/T 14549.
    pub samples: bool,
    /// The preset judges weekly percentiles of 10-minute distortion means
    /// (EN 50160, IEEE 519): the ledger keeps their histograms.
    pub distortion_long: bool,
    /// Long-term flicker (Plt) limit, where the preset has one; Plt and
    /// Pst are kept like distortions wherever the meter provides them.
    pub flicker: Option<f64>,
}

impl LedgerSpec {
    pub fn from_config(
        m: &crate::config::Meter,
        c: Option<&crate::config::Customer>,
        interruption_pct: f64,
    ) -> Self {
        let band = m.limits.voltage.as_ref();
        let voltage = m
            .voltage_refs
            .iter()
            .map(|(phase, field, reference)| {
                let (lo, up) =
                    band.map_or((f64::NEG_INFINITY, f64::INFINITY), |b| b.volts(*reference));
                (phase.clone(), field.clone(), lo, up)
            })
            .collect();
        let h = m.limits.harmonics.as_ref();
        LedgerSpec {
            voltage,
            // Line-voltage THD is judged where the voltages are (3-wire MV
            // metering, judged line-to-line); elsewhere shown, not judged.
            thd_voltage: crate::quality::rules::VOLTAGE_PHASES
                .iter()
                .filter(|(ph, _)| {
                    !ph.contains('_') || m.voltage_refs.iter().any(|(r, _, _)| r.contains('_'))
                })
                .filter_map(|(_, suffix)| h.map(|h| (format!("thd_voltage_{suffix}"), h.thd)))
                .collect(),
            harmonic_limits: h.map(|h| h.orders.clone()).unwrap_or_default(),
            thd_current: m.limits.thd_current,
            unbalance: Some(m.limits.unbalance),
            tdd: m.limits.current.as_ref().map(|c| c.tdd),
            harmonic_current: m
                .limits
                .harmonic_current
                .as_ref()
                .map(|h| h.amps.clone())
                .unwrap_or_default(),
            suspensions: c
                .map(|c| c.suspensions.iter().map(|s| (s.from_ms, s.to_ms)).collect())
                .unwrap_or_default(),
            interruption: m
                .voltage_refs
                .iter()
                .map(|(_, field, reference)| (field.clone(), reference * interruption_pct / 100.0))
                .collect(),
            range2: match band.and_then(|b| b.weekly) {
                Some(w) => m
                    .voltage_refs
                    .iter()
                    .map(|(phase, _, reference)| {
                        (
                            phase.clone(),
                            (
                                reference * (1.0 + w.range2_lower_pct / 100.0),
                                reference * (1.0 + w.range2_upper_pct / 100.0),
                            ),
                        )
                    })
                    .collect(),
                None => BTreeMap::new(),
            },
            samples: m.interval <= std::time::Duration::from_secs(3),
            distortion_long: m.limits.harmonic_assessment.weekly()
                || m.limits.flicker.as_ref().is_some_and(|f| f.share < 100.0),
            flicker: m.limits.flicker.as_ref().map(|f| f.plt),
            frequency: m.limits.frequency.as_ref().map(|f| {
                (
                    m.nominal_frequency - f.deviation_hz,
                    m.nominal_frequency + f.deviation_hz,
                )
            }),
        }
    }

    /// Every judged voltage present in the window below its interruption
    /// threshold (and at least one present).
    fn interrupted(&self, w: &Window) -> bool {
        crate::quality::rules::interrupted(
            self.interruption
                .iter()
                .map(|(field, threshold)| (w.get(field).map(|s| s.mean), *threshold)),
        )
    }

    /// The limit of a distortion field, and whether the ledger keeps it.
    fn distortion_limit(&self, field: &str) -> Option<Option<f64>> {
        if field == "voltage_unbalance" {
            return Some(self.unbalance);
        }
        if field.starts_with("flicker_plt_") {
            return Some(self.flicker);
        }
        if field.starts_with("flicker_pst_") {
            // Shown, not judged: GB/T 12326 and EN 50160 limit Plt.
            return Some(None);
        }
        if let Some(l) = self.thd_voltage.get(field) {
            return Some(Some(*l));
        }
        if field.starts_with("thd_voltage_") {
            return Some(None);
        }
        if field.starts_with("thd_current_l") {
            return Some(self.thd_current);
        }
        if field.starts_with("tdd_current_l") {
            return Some(self.tdd);
        }
        // "current_l1_h5": a harmonic current in A.
        if let Some(n) = field
            .strip_prefix("current_l")
            .and_then(|r| r.split_once("_h"))
            .and_then(|(_, n)| n.parse::<u16>().ok())
        {
            return Some(self.harmonic_current.get(&n).copied());
        }
        let order = field
            .strip_prefix("harmonic_voltage_")
            .and_then(|r| r.rsplit_once("_h"))
            .and_then(|(_, n)| n.parse::<u16>().ok())?;
        Some(self.harmonic_limits.get(&order).copied())
    }
}

/// The ledger contribution of one complete short window.
pub fn from_short_window(w: &Window, spec: &LedgerSpec) -> DayLedger {
    let mut d = DayLedger {
        window_ms: w.len_ms,
        ..Default::default()
    };
    // 停电时间不计入: an outage minute is not monitored time, and its
    // distortion figures (of a voltage near zero) mean nothing.
    let outage = spec.interrupted(w);
    if outage {
        d.outage = 1;
    }
    for (phase, field, lo, up) in spec.voltage.iter().filter(|_| !outage) {
        if let Some(s) = w.get(field) {
            d.voltage
                .entry(phase.clone())
                .or_default()
                .add(s.mean, w.start_ms, *up, *lo);
        }
    }
    if let (Some((lo, up)), Some(s), false) = (spec.frequency, w.get("frequency"), outage) {
        let mut f = VoltageDay::default();
        f.add(s.mean, w.start_ms, up, lo);
        d.frequency = Some(f);
    }
    for (field, s) in w.stats.iter().filter(|_| !outage) {
        if let Some(limit) = spec.distortion_limit(field) {
            d.distortion
                .entry(field.to_string())
                .or_default()
                .add(s.mean, w.start_ms, limit);
        }
    }
    if let Some(s) = w.get("active_power_total") {
        d.active_power = Some(Peak {
            value: s.max / 1000.0,
            at_ms: s.max_ms,
            unit: "kW".into(),
        });
    }
    let mid = w.mid_ms();
    if spec.suspensions.iter().any(|(f, t)| *f <= mid && mid < *t)
        && let Some((s, unit)) = w.load()
    {
        d.suspension = Some(Peak {
            value: s.max / 1000.0,
            at_ms: s.max_ms,
            unit: unit.into(),
        });
    }
    d
}

/// The ledger contribution of one poll of a meter polled every 3 s or
/// faster: its distortion values into the sample histograms (none while
/// the supply is interrupted).
pub fn from_samples(values: &[(std::sync::Arc<str>, f64)], spec: &LedgerSpec) -> DayLedger {
    let mut d = DayLedger::default();
    if !spec.samples {
        return d;
    }
    let value = |field: &str| values.iter().find(|(k, _)| &**k == field).map(|(_, v)| *v);
    if crate::quality::rules::interrupted(
        spec.interruption
            .iter()
            .map(|(field, threshold)| (value(field), *threshold)),
    ) {
        return d;
    }
    for (field, v) in values {
        if spec.distortion_limit(field).is_some() {
            d.samples.entry(field.to_string()).or_default().add(*v);
        }
    }
    d
}

/// The ledger contribution of one complete long (10-minute) window.
pub fn from_long_window(w: &Window, spec: &LedgerSpec) -> DayLedger {
    let mut d = DayLedger::default();
    // Interruptions are flagged intervals: EN 50160 leaves them out.
    if spec.interrupted(w) {
        return d;
    }
    if spec.distortion_long {
        for (field, s) in &w.stats {
            if spec.distortion_limit(field).is_some() && &**field != "voltage_unbalance" {
                d.distortion_long
                    .entry(field.to_string())
                    .or_default()
                    .add(s.mean);
            }
        }
    }
    for (phase, field, lo, up) in &spec.voltage {
        if let Some(s) = w.get(field) {
            d.voltage_long
                .entry(phase.clone())
                .or_default()
                .add(s.mean, w.start_ms, *up, *lo);
            if let Some((lo2, up2)) = spec.range2.get(phase) {
                let n = d.range2.entry(phase.clone()).or_insert(0);
                if s.mean > *up2 || s.mean < *lo2 {
                    *n += 1;
                }
            }
        }
    }
    d
}

/// The ledger contribution of one demand value (a meter's or a
/// customer's total), at the end of its period (as meters record maximum
/// demand).
pub fn from_demand(d: &crate::quality::demand::Demand) -> DayLedger {
    DayLedger {
        demand: Some(Peak {
            value: d.kw,
            at_ms: d.end_ms,
            unit: "kW".into(),
        }),
        ..Default::default()
    }
}

/// The customer-total ledger contribution of one value of the suspension
/// basis while a suspension is in force: the basis and the highest
/// instantaneous load of its period.
pub fn from_suspension_basis(d: &crate::quality::demand::Demand) -> DayLedger {
    let (load, unit) = d.load();
    DayLedger {
        suspension: Some(Peak {
            value: load,
            at_ms: d.end_ms,
            unit: unit.into(),
        }),
        suspension_instant: Some(Peak {
            value: d.max_load,
            at_ms: d.max_load_ms,
            unit: unit.into(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
