//! Demand (需量): the mean load over a demand period, sliding by a slide
//! step, from consecutive short-window (1-minute) means. Pure.
//!
//! Chinese electronic meters and bills use a 15-minute demand period
//! sliding by 1 minute (滑差, DL/T 614 "需量周期 15 min, 滑差时间 1 min");
//! block mode (fixed periods on wall-clock multiples) is the slide equal
//! to the period. A demand value is the mean of `period / short` consecutive
//! complete short-window means, so it equals the mean power over the
//! period; a period with a missing or incomplete minute yields no value
//! (it is not judged, like any incomplete window). Values are emitted when
//! the period's end lies on a multiple of the slide in Unix time, so
//! sliding values end at every whole minute and block values at :00, :15,
//! :30 and :45.
//!
//! The basis of the kW demand is the meter's active-energy import counter
//! where it has one ([`EnergyBasis`]: a minute's kW is the counter's
//! increment over it, so a period's demand is its increment over the
//! period × 60 / 15, as the meter's own demand register integrates energy,
//! load between polls included). Without a counter, or for a minute whose
//! increment cannot be trusted (a gap, a reset, a jump), it is the polled
//! power: the mean of the minute's polls, which approximates the energy to
//! within the load's variation between polls. The kVA basis (suspensions)
//! is the polled apparent power. docs/rules.md says so.
//!
//! [`CustomerSum`] adds the minutes of a customer's billing meters into
//! the customer's total, which the contract's maximum demand and a
//! suspension's allowed load apply to: a minute counts once every billing
//! meter has delivered it complete.

use std::collections::{BTreeMap, VecDeque};

/// One short window's contribution: mean power over the minute, and the
/// largest polled sample in it (kW / kVA).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minute {
    pub(crate) start_ms: i64,
    pub(crate) kw: f64,
    /// Apparent power, where every meter of the sum has it.
    pub kva: Option<f64>,
    /// Largest polled sample of the load (kVA where known, else kW) and
    /// its time; for a sum, the sum of the meters' maxima (an upper bound
    /// of the instantaneous total, exact for one meter).
    pub max_load: f64,
    pub(crate) max_load_ms: i64,
    /// `kw` is from the energy counter ([`EnergyBasis`]), not polled power.
    pub from_energy: bool,
}

impl Minute {
    /// The load a suspension is judged on: kVA where known, else kW.
    pub fn load(&self) -> (f64, &'static str) {
        match self.kva {
            Some(k) => (k, "kVA"),
            None => (self.kw, "kW"),
        }
    }
}

/// One demand value: the mean over `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub start_ms: i64,
    pub end_ms: i64,
    pub kw: f64,
    pub kva: Option<f64>,
    /// Highest polled load inside the period, for information.
    pub max_load: f64,
    pub max_load_ms: i64,
    /// Every minute's kW came from the energy counter.
    pub from_energy: bool,
}

impl Demand {
    pub(crate) fn load(&self) -> (f64, &'static str) {
        match self.kva {
            Some(k) => (k, "kVA"),
            None => (self.kw, "kW"),
        }
    }
}

/// Sliding (or block) means over consecutive minutes.
#[derive(Debug, Clone)]
pub struct Sliding {
    /// Short window length (ms): the step between consecutive minutes.
    step_ms: i64,
    /// Minutes per demand period.
    len: usize,
    /// Demand values end on multiples of this (ms).
    slide_ms: i64,
    minutes: VecDeque<Minute>,
}

impl Sliding {
    /// `period_ms` and `slide_ms` are multiples of `step_ms` (config
    /// validation guarantees it); block mode is `slide_ms == period_ms`.
    pub fn new(step_ms: i64, period_ms: i64, slide_ms: i64) -> Self {
        let step_ms = step_ms.max(1);
        Sliding {
            step_ms,
            len: (period_ms / step_ms).max(1) as usize,
            slide_ms: slide_ms.max(step_ms),
            minutes: VecDeque::new(),
        }
    }

    pub(crate) fn period_ms(&self) -> i64 {
        self.len as i64 * self.step_ms
    }

    /// Add the next complete minute; returns the demand value of the period
    /// it completes, if any. Minutes arrive in time order; an older or
    /// repeated one is ignored.
    pub fn push(&mut self, m: Minute) -> Option<Demand> {
        if let Some(last) = self.minutes.back()
            && m.start_ms <= last.start_ms
        {
            return None;
        }
        self.minutes.push_back(m);
        while self.minutes.len() > self.len {
            self.minutes.pop_front();
        }
        let end_ms = m.start_ms + self.step_ms;
        if self.minutes.len() < self.len || end_ms.rem_euclid(self.slide_ms) != 0 {
            return None;
        }
        let first = self.minutes.front()?;
        // Consecutive minutes only: a gap means the period is incomplete.
        if first.start_ms != end_ms - self.period_ms() {
            return None;
        }
        let n = self.len as f64;
        let kw = self.minutes.iter().map(|m| m.kw).sum::<f64>() / n;
        let kva = self
            .minutes
            .iter()
            .map(|m| m.kva)
            .sum::<Option<f64>>()
            .map(|s| s / n);
        let (max_load, max_load_ms) = self
            .minutes
            .iter()
            .map(|m| (m.max_load, m.max_load_ms))
            .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a });
        Some(Demand {
            start_ms: first.start_ms,
            end_ms,
            kw,
            kva,
            max_load,
            max_load_ms,
            from_energy: self.minutes.iter().all(|m| m.from_energy),
        })
    }
}

/// The active-energy import counter as the kW basis of one meter's
/// minutes: a minute's kW is the counter's increment from the previous
/// minute's last poll to this minute's last poll, per minute (ΔkWh × 60 for
/// 1-minute steps). Summed over a demand period the increments telescope,
/// so the period's demand is the counter's increment over it (shifted by
/// at most one poll interval) × 60 / 15: what the meter's demand register
/// integrates, bursts between polls included, and exact whatever the
/// counter's resolution.
#[derive(Debug, Clone, Default)]
pub struct EnergyBasis {
    /// The last minute seen: its start and the counter at its last poll.
    last: Option<(i64, f64)>,
}

/// An increment implying more than this many times the minute's highest
/// polled power (plus [`JUMP_MARGIN_KW`]) is a counter jump (a meter
/// exchange, a register glitch), not load: bursts between polls raise the
/// mean above the polled samples, but not by this much.
const JUMP_FACTOR: f64 = 3.0;
const JUMP_MARGIN_KW: f64 = 10.0;

impl EnergyBasis {
    /// The kW of the minute starting at `start_ms` (of `step_ms`) whose
    /// last poll read `kwh`, or `None` where the increment cannot be
    /// trusted: no reading of the minute before (start-up, a gap), the
    /// counter went backwards (reset, meter exchange) or jumped beyond
    /// what the polled power allows (`polled_max_kw`). The polled power
    /// is then the basis of that minute.
    pub fn kw(&mut self, start_ms: i64, step_ms: i64, kwh: f64, polled_max_kw: f64) -> Option<f64> {
        if !kwh.is_finite() {
            self.last = None;
            return None;
        }
        let (t, e) = self.last.replace((start_ms, kwh))?;
        if t != start_ms - step_ms || kwh < e {
            return None;
        }
        let kw = (kwh - e) * 3_600_000.0 / step_ms.max(1) as f64;
        if kw > JUMP_FACTOR * polled_max_kw.max(0.0) + JUMP_MARGIN_KW {
            return None;
        }
        Some(kw)
    }
}

/// Sums the minutes of a customer's billing meters.
#[derive(Debug, Clone)]
pub struct CustomerSum {
    /// How many meters a whole minute needs.
    meters: usize,
    /// Partial minutes: start → (meters seen, running sum).
    partial: BTreeMap<i64, (Vec<String>, Minute)>,
    /// Minutes older than this behind the newest are given up (a billing
    /// meter missed them: the customer's minute is incomplete).
    horizon_ms: i64,
    newest_ms: i64,
}

impl CustomerSum {
    pub(crate) fn new(meters: usize, step_ms: i64) -> Self {
        CustomerSum {
            meters: meters.max(1),
            partial: BTreeMap::new(),
            horizon_ms: 5 * step_ms.max(1),
            newest_ms: i64::MIN,
        }
    }

    /// Add one meter's complete minute; returns the customer's minute once
    /// every billing meter has delivered it.
    pub fn push(&mut self, meter: &str, m: Minute) -> Option<Minute> {
        self.newest_ms = self.newest_ms.max(m.start_ms);
        let cutoff = self.newest_ms - self.horizon_ms;
        if m.start_ms < cutoff {
            return None;
        }
        let (seen, sum) = self.partial.entry(m.start_ms).or_insert_with(|| {
            (
                Vec::new(),
                Minute {
                    start_ms: m.start_ms,
                    kw: 0.0,
                    kva: Some(0.0),
                    max_load: 0.0,
                    max_load_ms: m.max_load_ms,
                    from_energy: true,
                },
            )
        });
        if seen.iter().any(|s| s == meter) {
            return None;
        }
        seen.push(meter.to_string());
        sum.kw += m.kw;
        sum.kva = sum.kva.zip(m.kva).map(|(a, b)| a + b);
        sum.max_load += m.max_load;
        sum.from_energy &= m.from_energy;
        sum.max_load_ms = sum.max_load_ms.max(m.max_load_ms);
        let done = (seen.len() >= self.meters).then_some(*sum);
        if done.is_some() {
            self.partial.remove(&m.start_ms);
        }
        self.partial.retain(|start, _| *start >= cutoff);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn minute(k: i64, kw: f64) -> Minute {
        Minute {
            start_ms: k * MIN,
            kw,
            kva: Some(kw * 1.25),
            max_load: kw * 1.25,
            max_load_ms: k * MIN + 5_000,
            from_energy: false,
        }
    }

    #[test]
    fn the_energy_counter_gives_each_minute_its_increment_and_refuses_jumps() {
        let mut e = EnergyBasis::default();
        // The first minute has no reading before it.
        assert_eq!(e.kw(0, MIN, 1000.0, 100.0), None);
        // 2.5 kWh in a minute: 150 kW, although the polls saw at most 100.
        assert_eq!(e.kw(MIN, MIN, 1002.5, 100.0), Some(150.0));
        // A gap: minute 3 follows minute 1.
        assert_eq!(e.kw(3 * MIN, MIN, 1007.5, 100.0), None);
        assert_eq!(e.kw(4 * MIN, MIN, 1009.0, 100.0), Some(90.0));
        // A reset (meter exchange): backwards, then from the new count on.
        assert_eq!(e.kw(5 * MIN, MIN, 3.0, 100.0), None);
        assert_eq!(e.kw(6 * MIN, MIN, 4.0, 100.0), Some(60.0));
        // A jump beyond 3 × the polled power + 10 kW: 400 kW at 100 kW polled.
        assert_eq!(e.kw(7 * MIN, MIN, 4.0 + 400.0 / 60.0, 100.0), None);
        // 300 kW (under 3 × 100 + 10) is still load.
        let base = 4.0 + 400.0 / 60.0;
        let kw = e.kw(8 * MIN, MIN, base + 300.0 / 60.0, 100.0).unwrap();
        assert!((kw - 300.0).abs() < 1e-6, "{kw}");
        assert_eq!(e.kw(9 * MIN, MIN, f64::NAN, 100.0), None);
        assert_eq!(
            e.kw(10 * MIN, MIN, 20.0, 100.0),
            None,
            "NaN broke the chain"
        );
    }

    #[test]
    fn sliding_by_one_minute_gives_every_fifteen_minute_mean() {
        // Minutes 0..30 at k kW: the mean of minutes j..j+15 is j + 7.
        let mut s = Sliding::new(MIN, 15 * MIN, MIN);
        let mut out = Vec::new();
        for k in 0..30 {
            out.extend(s.push(minute(k, k as f64)));
        }
        assert_eq!(out.len(), 16, "periods ending at minutes 15..=30");
        for (j, d) in out.iter().enumerate() {
            let j = j as i64;
            assert_eq!((d.start_ms, d.end_ms), (j * MIN, (j + 15) * MIN));
            // Second method: the arithmetic series sum j..=j+14 / 15.
            let by_hand = (j..j + 15).sum::<i64>() as f64 / 15.0;
            assert!((d.kw - by_hand).abs() < 1e-9, "{} vs {by_hand}", d.kw);
            assert!((d.kva.unwrap() - by_hand * 1.25).abs() < 1e-9);
        }
    }

    #[test]
    fn block_mode_ends_on_quarter_hours_only() {
        let mut s = Sliding::new(MIN, 15 * MIN, 15 * MIN);
        let ends: Vec<i64> = (0..46)
            .filter_map(|k| s.push(minute(k, 1.0)))
            .map(|d| d.end_ms / MIN)
            .collect();
        assert_eq!(ends, vec![15, 30, 45]);
    }

    #[test]
    fn a_missing_minute_leaves_the_periods_that_hold_it_unjudged() {
        let mut s = Sliding::new(MIN, 15 * MIN, MIN);
        let ends: Vec<i64> = (0..32)
            .filter(|k| *k != 3)
            .filter_map(|k| s.push(minute(k, 1.0)))
            .map(|d| d.end_ms / MIN)
            .collect();
        // Periods holding minute 3 end at 4..=18: none; then 19..=32.
        assert_eq!(ends, (19..=32).collect::<Vec<_>>());
    }

    #[test]
    fn a_sliding_peak_that_blocks_miss() {
        // 10 minutes at 400 kW straddling a quarter hour (minutes 10..20),
        // 200 kW otherwise: the sliding maximum is (10×400 + 5×200)/15 =
        // 333.3 kW; the block means are (5×400+10×200)/15 = 266.7 kW each.
        let load = |k: i64| if (10..20).contains(&k) { 400.0 } else { 200.0 };
        let peak = |slide: i64| {
            let mut s = Sliding::new(MIN, 15 * MIN, slide);
            (0..45)
                .filter_map(|k| s.push(minute(k, load(k))))
                .map(|d| d.kw)
                .fold(f64::MIN, f64::max)
        };
        assert!((peak(MIN) - 5000.0 / 15.0).abs() < 1e-9);
        assert!((peak(15 * MIN) - 4000.0 / 15.0).abs() < 1e-9);
    }

    #[test]
    fn the_customer_minute_is_the_sum_once_every_meter_delivered() {
        let mut c = CustomerSum::new(2, MIN);
        assert_eq!(c.push("A", minute(0, 100.0)), None);
        assert_eq!(c.push("A", minute(0, 100.0)), None, "a repeat is ignored");
        let m = c.push("B", minute(0, 50.0)).unwrap();
        assert_eq!((m.kw, m.kva, m.max_load), (150.0, Some(187.5), 187.5));
        // A meter without apparent power makes the sum kW-only.
        let mut no_kva = minute(1, 10.0);
        no_kva.kva = None;
        assert_eq!(c.push("A", minute(1, 10.0)), None);
        assert_eq!(c.push("B", no_kva).unwrap().kva, None);
        // Minute 2 only from A; far later minutes give it up.
        assert_eq!(c.push("A", minute(2, 1.0)), None);
        for k in 3..10 {
            c.push("A", minute(k, 1.0));
            c.push("B", minute(k, 1.0));
        }
        assert_eq!(c.push("B", minute(2, 1.0)), None, "too late");
    }
}
