//! Aggregation: a meter's polls → means, minima and maxima over wall-clock
//! windows (1 minute, 10 minutes). Pure: readings in, closed windows out.
//!
//! IEC 61000-4-30 aggregates the meter's own 10/12-cycle values; a polling
//! daemon cannot, so it treats each poll as a sample and averages the
//! samples whose timestamps fall in `[start, start + len)`, with windows on
//! multiples of `len` in Unix time (so 10-minute windows start at :00, :10,
//! …). A window closes when a sample of a later window arrives or when
//! `Aggregator::close_due` is called after its end. It is *complete* when
//! it holds at least `min_fraction` of the polls its interval schedules;
//! incomplete windows are reported (and stored) but not judged by rules.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Statistics of one field over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub n: u32,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Timestamps (Unix ms) of the minimum and maximum samples.
    pub min_ms: i64,
    pub max_ms: i64,
}

/// A closed window of one meter.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start_ms: i64,
    pub len_ms: i64,
    /// Polls that contributed at least one value.
    pub polls: u32,
    /// Polls the meter's interval schedules in the window.
    pub expected: u32,
    pub complete: bool,
    pub stats: BTreeMap<Arc<str>, Stat>,
}

impl Window {
    pub(crate) fn end_ms(&self) -> i64 {
        self.start_ms + self.len_ms
    }

    pub(crate) fn get(&self, field: &str) -> Option<&Stat> {
        self.stats.get(field)
    }

    /// The middle of the window: what decides whether it lies in a period
    /// such as a suspension.
    pub(crate) fn mid_ms(&self) -> i64 {
        self.start_ms + self.len_ms / 2
    }

    /// The customer's load: total apparent power where the meter has it
    /// (capacity is contracted in kVA), else total active power; with its
    /// unit once divided by 1000.
    pub(crate) fn load(&self) -> Option<(&Stat, &'static str)> {
        match (
            self.get("apparent_power_total"),
            self.get("active_power_total"),
        ) {
            (Some(s), _) => Some((s, "kVA")),
            (None, Some(s)) => Some((s, "kW")),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Acc {
    n: u32,
    sum: f64,
    min: f64,
    max: f64,
    min_ms: i64,
    max_ms: i64,
}

impl Acc {
    fn new(v: f64, ts: i64) -> Self {
        Acc {
            n: 1,
            sum: v,
            min: v,
            max: v,
            min_ms: ts,
            max_ms: ts,
        }
    }

    fn add(&mut self, v: f64, ts: i64) {
        self.n += 1;
        self.sum += v;
        if v < self.min {
            self.min = v;
            self.min_ms = ts;
        }
        if v > self.max {
            self.max = v;
            self.max_ms = ts;
        }
    }
}

/// Which fields are aggregated: the ones rules and reports use.
pub fn aggregated(field: &str) -> bool {
    field.starts_with("voltage_")
        || field.starts_with("thd_")
        || field.starts_with("tdd_")
        || field.starts_with("harmonic_")
        || field == "active_power_total"
        || field == "apparent_power_total"
        || field == "frequency"
        || (field.starts_with("current_l") && field.len() == "current_l1".len())
}

/// Harmonic currents in amperes, from a window's means: meters give each
/// order in % of the fundamental, and GB/T 14549 limits are in A. The
/// fundamental is I1 = I / √(1 + THDi²) of the window's mean r.m.s.
/// current and THDi (exact for the means of a steady window; an
/// approximation where the load moves within it). Adds `current_l1_h5`
/// (A, the `current_*` family) beside `harmonic_current_l1_h5` (%), as a
/// mean-only statistic.
pub(crate) fn with_harmonic_amperes(w: &mut Window) {
    let mut add = Vec::new();
    for ph in ["l1", "l2", "l3"] {
        let (Some(i), Some(thd)) = (
            w.get(&format!("current_{ph}")),
            w.get(&format!("thd_current_{ph}")),
        ) else {
            continue;
        };
        let i1 = i.mean / (1.0 + (thd.mean / 100.0).powi(2)).sqrt();
        let prefix = format!("harmonic_current_{ph}_h");
        for (field, st) in &w.stats {
            if let Some(n) = field.strip_prefix(prefix.as_str())
                && n.parse::<u16>().is_ok()
            {
                let a = st.mean / 100.0 * i1;
                add.push((
                    Arc::from(format!("current_{ph}_h{n}").as_str()),
                    Stat {
                        n: st.n,
                        mean: a,
                        min: a,
                        max: a,
                        min_ms: w.start_ms,
                        max_ms: w.start_ms,
                    },
                ));
            }
        }
    }
    w.stats.extend(add);
}

/// Accumulates one meter's polls into consecutive windows of one length.
#[derive(Debug, Clone)]
pub struct Aggregator {
    filter: fn(&str) -> bool,
    len_ms: i64,
    interval_ms: i64,
    min_fraction: f64,
    start_ms: Option<i64>,
    polls: u32,
    /// In the order fields arrive, which is the same every poll (the
    /// meter's plan): a field is found at the slot after the previous
    /// one's, without a map lookup. A map per window was 6.7 KB per meter
    /// and 3 % of the CPU at 10,000 meters (BENCHMARKS.md).
    acc: Vec<(Arc<str>, Acc)>,
}

impl Aggregator {
    pub fn new(len_ms: i64, interval_ms: i64, min_fraction: f64) -> Self {
        Aggregator {
            filter: aggregated,
            len_ms,
            interval_ms: interval_ms.max(1),
            min_fraction,
            start_ms: None,
            polls: 0,
            acc: Vec::new(),
        }
    }

    /// Aggregate only the fields `filter` accepts (the demand window needs
    /// active and apparent power only).
    pub(crate) fn with_filter(mut self, filter: fn(&str) -> bool) -> Self {
        self.filter = filter;
        self
    }

    pub(crate) fn len_ms(&self) -> i64 {
        self.len_ms
    }

    /// Add one poll. Returns the previous window if this poll starts a new one.
    /// A poll older than the open window (clock step back) is ignored.
    pub fn push(&mut self, ts_ms: i64, values: &[(Arc<str>, f64)]) -> Option<Window> {
        let start = ts_ms.div_euclid(self.len_ms) * self.len_ms;
        let closed = match self.start_ms {
            Some(s) if start > s => self.take(),
            Some(s) if start < s => return None,
            _ => None,
        };
        self.start_ms = Some(start);
        let mut any = false;
        let mut next = 0;
        for (name, v) in values {
            if !(self.filter)(name) {
                continue;
            }
            any = true;
            let at = |(k, _): &(Arc<str>, Acc)| k == name;
            let slot = match self.acc.get(next) {
                Some(e) if at(e) => Some(next),
                _ => self.acc.iter().position(at),
            };
            next = match slot {
                Some(i) => {
                    self.acc[i].1.add(*v, ts_ms);
                    i + 1
                }
                None => {
                    self.acc.push((name.clone(), Acc::new(*v, ts_ms)));
                    self.acc.len()
                }
            };
        }
        if any {
            self.polls += 1;
        }
        closed
    }

    /// Close the open window if `now_ms` is past its end (a silent meter's
    /// window still closes, and shows up incomplete).
    pub(crate) fn close_due(&mut self, now_ms: i64) -> Option<Window> {
        match self.start_ms {
            Some(s) if now_ms >= s + self.len_ms => self.take(),
            _ => None,
        }
    }

    fn take(&mut self) -> Option<Window> {
        let start_ms = self.start_ms.take()?;
        let expected = (self.len_ms / self.interval_ms).max(1) as u32;
        let polls = std::mem::take(&mut self.polls);
        // Drained, not taken: the next window reuses the allocation.
        let stats = self
            .acc
            .drain(..)
            .map(|(k, a)| {
                (
                    k,
                    Stat {
                        n: a.n,
                        mean: a.sum / f64::from(a.n),
                        min: a.min,
                        max: a.max,
                        min_ms: a.min_ms,
                        max_ms: a.max_ms,
                    },
                )
            })
            .collect();
        Some(Window {
            start_ms,
            len_ms: self.len_ms,
            polls,
            expected,
            complete: f64::from(polls) >= self.min_fraction * f64::from(expected),
            stats,
        })
    }
}

#[cfg(test)]
mod harmonic_amperes {
    use super::*;

    #[test]
    fn amperes_from_percent_of_the_fundamental() {
        let stat = |v: f64| Stat {
            n: 12,
            mean: v,
            min: v,
            max: v,
            min_ms: 0,
            max_ms: 0,
        };
        let mut w = Window {
            start_ms: 0,
            len_ms: 600_000,
            polls: 120,
            expected: 120,
            complete: true,
            stats: [
                ("current_l1", 100.0),
                ("thd_current_l1", 30.0),
                ("harmonic_current_l1_h5", 25.0),
                ("harmonic_current_l1_h7", 10.0),
            ]
            .into_iter()
            .map(|(k, v)| (Arc::from(k), stat(v)))
            .collect(),
        };
        with_harmonic_amperes(&mut w);
        // I1 = 100 / √1.09 = 95.783 A; h5 = 25 % of it.
        let i1 = 100.0 / 1.09f64.sqrt();
        assert!((w.get("current_l1_h5").unwrap().mean - 0.25 * i1).abs() < 1e-9);
        assert!((w.get("current_l1_h7").unwrap().mean - 0.10 * i1).abs() < 1e-9);
        assert!(w.get("current_l2_h5").is_none(), "no L2 data");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(&str, f64)]) -> Vec<(Arc<str>, f64)> {
        pairs.iter().map(|(k, x)| (Arc::from(*k), *x)).collect()
    }

    #[test]
    fn one_minute_windows_on_wall_clock_boundaries() {
        let mut a = Aggregator::new(60_000, 5_000, 0.75);
        // Polls at :00, :05, … :55 of minute 1000 with U = 230 + k.
        let base = 1000 * 60_000;
        for k in 0..12 {
            assert!(
                a.push(
                    base + k * 5_000,
                    &v(&[
                        ("voltage_l1_n", 230.0 + k as f64),
                        ("energy_active_import_total", 1.0)
                    ])
                )
                .is_none()
            );
        }
        let w = a
            .push(base + 60_000, &v(&[("voltage_l1_n", 999.0)]))
            .expect("window closed");
        assert_eq!(
            (w.start_ms, w.len_ms, w.polls, w.expected),
            (base, 60_000, 12, 12)
        );
        assert!(w.complete);
        let s = w.get("voltage_l1_n").unwrap();
        // Mean of 230..=241 is 235.5, by hand.
        assert_eq!((s.n, s.mean, s.min, s.max), (12, 235.5, 230.0, 241.0));
        assert_eq!((s.min_ms, s.max_ms), (base, base + 55_000));
        assert!(
            w.get("energy_active_import_total").is_none(),
            "counters are not averaged"
        );
    }

    #[test]
    fn incomplete_windows_are_marked() {
        let mut a = Aggregator::new(60_000, 5_000, 0.75);
        for k in 0..8 {
            a.push(k * 5_000, &v(&[("voltage_l1_n", 230.0)]));
        }
        let w = a.close_due(60_000).unwrap();
        assert_eq!((w.polls, w.expected, w.complete), (8, 12, false));
        // 9 of 12 = 0.75: complete.
        for k in 0..9 {
            a.push(60_000 + k * 5_000, &v(&[("voltage_l1_n", 230.0)]));
        }
        assert!(a.close_due(119_999).is_none(), "not before the end");
        assert!(a.close_due(120_000).unwrap().complete);
    }

    #[test]
    fn a_late_poll_from_an_earlier_window_is_ignored() {
        let mut a = Aggregator::new(60_000, 5_000, 0.75);
        a.push(60_000, &v(&[("voltage_l1_n", 230.0)]));
        assert!(a.push(30_000, &v(&[("voltage_l1_n", 1.0)])).is_none());
        let w = a.close_due(120_000).unwrap();
        assert_eq!(w.get("voltage_l1_n").unwrap().min, 230.0);
    }

    proptest::proptest! {
        /// Fields arriving in any order, some missing from some polls: the
        /// slot search gives what a per-field list of samples gives.
        #[test]
        fn any_order_and_gaps_match_per_field_samples(
            polls in proptest::collection::vec(
                proptest::collection::vec((0usize..6, -1e3f64..1e3), 0..10),
                1..12,
            )
        ) {
            const NAMES: [&str; 6] =
                ["voltage_l1_n", "voltage_l2_n", "thd_u_l1", "harmonic_u3_l1", "frequency", "current_l1"];
            let names: Vec<Arc<str>> = NAMES.iter().map(|n| Arc::from(*n)).collect();
            let mut a = Aggregator::new(60_000, 5_000, 0.75);
            let mut samples: BTreeMap<&str, Vec<(f64, i64)>> = BTreeMap::new();
            for (k, poll) in polls.iter().enumerate() {
                let ts = k as i64 * 5_000;
                // Fresh Arcs every other poll: equal names, different pointers.
                let values: Vec<(Arc<str>, f64)> = poll
                    .iter()
                    .map(|&(i, x)| match k % 2 {
                        0 => (names[i].clone(), x),
                        _ => (Arc::from(NAMES[i]), x),
                    })
                    .collect();
                proptest::prop_assert!(a.push(ts, &values).is_none());
                for &(i, x) in poll {
                    samples.entry(NAMES[i]).or_default().push((x, ts));
                }
            }
            let w = a.close_due(60_000).expect("window closes");
            proptest::prop_assert_eq!(w.stats.len(), samples.len());
            for (name, xs) in &samples {
                let s = w.get(name).expect("field aggregated");
                let sum: f64 = xs.iter().map(|x| x.0).sum();
                // First occurrence of the extreme, as the accumulator keeps it.
                let min = xs.iter().fold(xs[0], |m, x| if x.0 < m.0 { *x } else { m });
                let max = xs.iter().fold(xs[0], |m, x| if x.0 > m.0 { *x } else { m });
                proptest::prop_assert_eq!(s.n as usize, xs.len());
                proptest::prop_assert!((s.mean - sum / xs.len() as f64).abs() < 1e-9);
                proptest::prop_assert_eq!((s.min, s.min_ms), min);
                proptest::prop_assert_eq!((s.max, s.max_ms), max);
            }
        }
    }
}
