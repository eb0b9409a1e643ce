//! The ledger: per meter, per local day, the minute statistics a voltage
//! quality report is computed from. Pure.
//!
//! Chinese practice (and DL/T 645 meters) keep, per phase and day: monitored
//! minutes, minutes above the upper limit, minutes below the lower one, the
//! maximum and minimum with their times. pqwatch keeps those from the
//! 1-minute means, plus the mean, and for THDu and each harmonic order the
//! maximum, the minutes over the limit and a histogram at 0.01 % resolution,
//! which merges across days so that the 95 % value (CP95) of any period is
//! exact to that resolution without keeping the raw minutes.
//!
//! CP95 follows GB/T 14549: sort the values, drop the top 5 % (⌊0.05·n⌋
//! values), take the largest of the rest.

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
    pub fn add(&mut self, v: f64) {
        let bin = (v / HIST_RESOLUTION).round() as i64;
        *self.bins.entry(bin).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Hist) {
        for (b, c) in &other.bins {
            *self.bins.entry(*b).or_insert(0) += c;
        }
    }

    pub fn count(&self) -> u64 {
        self.bins.values().map(|&c| c as u64).sum()
    }

    /// The largest value after dropping the top ⌊0.05·n⌋ (GB/T 14549 CP95).
    pub fn cp95(&self) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let keep = n - n * 5 / 100; // values kept, ≥ 1
        let mut seen = 0u64;
        for (b, c) in &self.bins {
            seen += *c as u64;
            if seen >= keep {
                return Some(*b as f64 * HIST_RESOLUTION);
            }
        }
        unreachable!("keep ≤ n")
    }
}

/// CP95 of a list of values, by sorting (the reference method).
pub fn cp95_sorted(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let keep = v.len() - v.len() * 5 / 100;
    Some(v[keep - 1])
}

/// One phase's voltage for one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VoltageDay {
    pub monitored: u32,
    pub above: u32,
    pub below: u32,
    pub sum: f64,
    pub max: Option<(f64, i64)>,
    pub min: Option<(f64, i64)>,
    /// The band the minutes were judged against (V), as of the last minute.
    pub upper_v: f64,
    pub lower_v: f64,
}

impl VoltageDay {
    /// Add one minute's mean (with the window's extreme samples).
    pub fn add(&mut self, mean: f64, max: (f64, i64), min: (f64, i64), upper_v: f64, lower_v: f64) {
        self.monitored += 1;
        self.sum += mean;
        if mean > upper_v {
            self.above += 1;
        } else if mean < lower_v {
            self.below += 1;
        }
        if self.max.is_none_or(|(m, _)| max.0 > m) {
            self.max = Some(max);
        }
        if self.min.is_none_or(|(m, _)| min.0 < m) {
            self.min = Some(min);
        }
        self.upper_v = upper_v;
        self.lower_v = lower_v;
    }

    pub fn merge(&mut self, o: &VoltageDay) {
        self.monitored += o.monitored;
        self.above += o.above;
        self.below += o.below;
        self.sum += o.sum;
        if let Some(m) = o.max
            && self.max.is_none_or(|(x, _)| m.0 > x)
        {
            self.max = Some(m);
        }
        if let Some(m) = o.min
            && self.min.is_none_or(|(x, _)| m.0 < x)
        {
            self.min = Some(m);
        }
        if o.monitored > 0 {
            self.upper_v = o.upper_v;
            self.lower_v = o.lower_v;
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.monitored > 0).then(|| self.sum / self.monitored as f64)
    }

    /// (1 − (above + below) / monitored) × 100 %.
    pub fn qualification_rate(&self) -> Option<f64> {
        (self.monitored > 0)
            .then(|| (1.0 - (self.above + self.below) as f64 / self.monitored as f64) * 100.0)
    }
}

/// THDu or one harmonic order of one phase for one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistortionDay {
    pub minutes: u32,
    pub over: u32,
    pub max: Option<(f64, i64)>,
    pub sum: f64,
    pub hist: Hist,
    pub limit: f64,
}

impl DistortionDay {
    pub fn add(&mut self, mean: f64, max: (f64, i64), limit: f64) {
        self.minutes += 1;
        self.sum += mean;
        if mean > limit {
            self.over += 1;
        }
        if self.max.is_none_or(|(m, _)| max.0 > m) {
            self.max = Some(max);
        }
        self.hist.add(mean);
        self.limit = limit;
    }

    pub fn merge(&mut self, o: &DistortionDay) {
        self.minutes += o.minutes;
        self.over += o.over;
        self.sum += o.sum;
        if let Some(m) = o.max
            && self.max.is_none_or(|(x, _)| m.0 > x)
        {
            self.max = Some(m);
        }
        self.hist.merge(&o.hist);
        if o.minutes > 0 {
            self.limit = o.limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp95_by_hand() {
        // 20 values 1..=20: drop the top ⌊0.05·20⌋ = 1 → 19.
        let v: Vec<f64> = (1..=20).map(|x| x as f64).collect();
        assert_eq!(cp95_sorted(&v), Some(19.0));
        // 10 values: ⌊0.5⌋ = 0 dropped → the maximum.
        assert_eq!(cp95_sorted(&v[..10]), Some(10.0));
        // 100 values: drop 5 → the 95th smallest.
        let v: Vec<f64> = (1..=100).map(|x| x as f64 / 10.0).collect();
        assert_eq!(cp95_sorted(&v), Some(9.5));
    }

    #[test]
    fn histogram_cp95_equals_the_sorted_method_to_its_resolution() {
        // A month of minutes (43 200) of pseudo-random THD between 1 % and 7 %,
        // spread over 30 daily histograms that are then merged.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut all = Vec::new();
        let mut month = Hist::default();
        for _day in 0..30 {
            let mut day = Hist::default();
            for _ in 0..1440 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = 1.0 + 6.0 * (x % 1_000_000) as f64 / 1_000_000.0;
                // Values as the ledger stores them: at the histogram resolution.
                let q = (v / HIST_RESOLUTION).round() * HIST_RESOLUTION;
                all.push(q);
                day.add(v);
            }
            month.merge(&day);
        }
        let a = month.cp95().unwrap();
        let b = cp95_sorted(&all).unwrap();
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        assert_eq!(month.count(), 43_200);
    }

    #[test]
    fn qualification_rate_three_minutes_above_in_sixty() {
        // The example: 3 minutes above the band in 60 → 95.0 %.
        let mut d = VoltageDay::default();
        for m in 0..60 {
            let v = if (10..13).contains(&m) {
                10_800.0
            } else {
                10_000.0
            };
            d.add(
                v,
                (v + 5.0, m * 60_000),
                (v - 5.0, m * 60_000),
                10_700.0,
                9_300.0,
            );
        }
        assert_eq!((d.monitored, d.above, d.below), (60, 3, 0));
        assert_eq!(d.qualification_rate(), Some(95.0));
        assert_eq!(d.max, Some((10_805.0, 10 * 60_000)));
        assert_eq!(d.min, Some((9_995.0, 0)));
        // Mean: (57 × 10 000 + 3 × 10 800) / 60 = 10 040.
        assert!((d.mean().unwrap() - 10_040.0).abs() < 1e-9);
        // Merging two halves gives the same day.
        let (mut a, mut b) = (VoltageDay::default(), VoltageDay::default());
        for m in 0..60 {
            let v = if (10..13).contains(&m) {
                10_800.0
            } else {
                10_000.0
            };
            let t = if m < 30 { &mut a } else { &mut b };
            t.add(
                v,
                (v + 5.0, m * 60_000),
                (v - 5.0, m * 60_000),
                10_700.0,
                9_300.0,
            );
        }
        a.merge(&b);
        assert_eq!(a, d);
    }
}
