//! What a meter's closed window is judged against: one [`Check`] per rule,
//! phase and order that applies to it (voltage band, THD and harmonic
//! orders, harmonic currents, TDD, THDi, unbalance). Pure; turning checks
//! into events is the tracker's job in `rules`.

use super::{Check, Kind, MeterRules, Timing, VOLTAGE_PHASES};
use crate::quality::aggregate::Window;
use crate::quality::limits::Span;

/// A limit with what an event says about it: its unit, where it comes from
/// (quoted in events and reports), and the timing of its rule family.
struct Limit {
    value: f64,
    unit: &'static str,
    source: String,
    timing: Timing,
}

/// The check of one field's window statistic against `limit`, if the
/// window has the field: the mean is judged, and the sample extreme in the
/// violating direction is kept as the event's peak.
fn stat_check(
    w: &Window,
    kind: Kind,
    phase: &str,
    order: u16,
    field: &str,
    limit: Limit,
) -> Option<Check> {
    w.get(field).map(|st| {
        let (extreme, extreme_ms) = if kind.lower() {
            (st.min, st.min_ms)
        } else {
            (st.max, st.max_ms)
        };
        Check {
            kind,
            phase: phase.to_string(),
            order,
            value: st.mean,
            extreme,
            extreme_ms,
            limit: limit.value,
            unit: limit.unit,
            source: limit.source,
            timing: limit.timing,
        }
    })
}

impl MeterRules {
    fn span_ms(&self, s: Span) -> i64 {
        match s {
            Span::Short => self.set.short_ms,
            Span::Long => self.set.long_ms,
        }
    }

    /// Every check that applies to `w`: the voltage band on windows of the
    /// voltage span, distortion on windows of the harmonic span (one
    /// window may be both).
    pub(super) fn checks(&self, w: &Window) -> Vec<Check> {
        let mut v = Vec::new();
        // An interruption is neither a deviation nor a distortion to judge.
        if self.set.interrupted(w) {
            return v;
        }
        let l = &self.set.limits;
        if w.len_ms == self.span_ms(l.voltage_window) {
            self.voltage_checks(w, &mut v);
        }
        if w.len_ms == self.span_ms(l.harmonic_window) {
            self.distortion_checks(w, &mut v);
        }
        v
    }

    /// Upper and lower band limits of each judged voltage, in volts of
    /// its own reference.
    fn voltage_checks(&self, w: &Window, v: &mut Vec<Check>) {
        let s = &self.set;
        let l = &s.limits;
        let Some(b) = &l.voltage else { return };
        for (phase, field, reference) in &s.voltage_refs {
            let src = format!("{} ({})", l.voltage_standard, b.note);
            let (lo, up) = b.volts(*reference);
            let margin = s.voltage.margin * reference / 100.0;
            let t = Timing {
                margin,
                ..s.voltage
            };
            let limit = |value, source| Limit {
                value,
                unit: "V",
                source,
                timing: t,
            };
            v.extend(stat_check(
                w,
                Kind::VoltageHigh,
                phase,
                0,
                field,
                limit(up, src.clone()),
            ));
            v.extend(stat_check(
                w,
                Kind::VoltageLow,
                phase,
                0,
                field,
                limit(lo, src),
            ));
        }
    }

    /// The harmonic rules' timing, with the hysteresis margin as a share
    /// of each limit.
    fn harmonic_timing(&self, limit: f64) -> Timing {
        let s = &self.set;
        Timing {
            margin: s.harmonics.margin * limit / 100.0,
            ..s.harmonics
        }
    }

    /// A `%` limit of the harmonic family.
    fn percent(&self, value: f64, source: String) -> Limit {
        Limit {
            value,
            unit: "%",
            source,
            timing: self.harmonic_timing(value),
        }
    }

    /// Distortion per phase (voltage, then current), then unbalance.
    fn distortion_checks(&self, w: &Window, v: &mut Vec<Check>) {
        let s = &self.set;
        let l = &s.limits;
        // Phase voltages, and line voltages where the meter is judged
        // line-to-line (3-wire MV metering): with the class's limits.
        let line_basis = s.voltage_refs.iter().any(|(ph, _, _)| ph.contains('_'));
        for (ph, suffix) in VOLTAGE_PHASES
            .into_iter()
            .filter(|(ph, _)| line_basis || !ph.contains('_'))
        {
            self.voltage_distortion(w, ph, suffix, v);
            // Current rules judge phases (l1..l3), never line pairs.
            if !ph.contains('_') {
                self.current_distortion(w, ph, v);
            }
        }
        v.extend(stat_check(
            w,
            Kind::Unbalance,
            "",
            0,
            "voltage_unbalance",
            self.percent(l.unbalance, "configured unbalance limit".into()),
        ));
    }

    /// One voltage's THD and individual orders.
    fn voltage_distortion(&self, w: &Window, ph: &str, suffix: &str, v: &mut Vec<Check>) {
        let l = &self.set.limits;
        let Some(h) = &l.harmonics else { return };
        let src = format!("{} ({})", l.harmonic_standard, h.note);
        v.extend(stat_check(
            w,
            Kind::ThdVoltage,
            ph,
            0,
            &format!("thd_voltage_{suffix}"),
            self.percent(h.thd, src.clone()),
        ));
        for (&n, &lim) in &h.orders {
            let field = format!("harmonic_voltage_{suffix}_h{n}");
            v.extend(stat_check(
                w,
                Kind::HarmonicVoltage,
                ph,
                n,
                &field,
                self.percent(lim, src.clone()),
            ));
        }
    }

    /// One phase current's harmonic orders (in A), TDD and THDi, each
    /// where a limit applies.
    fn current_distortion(&self, w: &Window, ph: &str, v: &mut Vec<Check>) {
        let l = &self.set.limits;
        if let Some(hc) = &l.harmonic_current {
            let src = format!("{} ({})", l.harmonic_standard, hc.note);
            for (&n, &lim) in &hc.amps {
                v.extend(stat_check(
                    w,
                    Kind::HarmonicCurrent,
                    ph,
                    n,
                    &format!("current_{ph}_h{n}"),
                    Limit {
                        value: lim,
                        unit: "A",
                        source: src.clone(),
                        timing: self.harmonic_timing(lim),
                    },
                ));
            }
        }
        if let Some(c) = &l.current {
            v.extend(stat_check(
                w,
                Kind::TddCurrent,
                ph,
                0,
                &format!("tdd_current_{ph}"),
                self.percent(c.tdd, format!("{} ({})", l.harmonic_standard, c.note)),
            ));
        }
        if let Some(ti) = l.thd_current {
            v.extend(stat_check(
                w,
                Kind::ThdCurrent,
                ph,
                0,
                &format!("thd_current_{ph}"),
                self.percent(ti, "configured THDi limit".into()),
            ));
        }
    }
}
