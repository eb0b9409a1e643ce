//! Plausibility: values a meter cannot really be measuring are rejected
//! before they are stored or judged. Pure.
//!
//! A value that decodes cleanly can still be garbage: a firmware update
//! that changes a scale (a 400 V meter reporting 40 kV), a gateway
//! answering for the wrong device, a register map for another model. Each
//! canonical field family has bounds, relative to what the config says
//! about the supply where it can be (nominal voltage, contracted
//! capacity) and absolute where physics sets them (frequency, power
//! factor, percentages); `[plausibility] limits` overrides any field with
//! absolute bounds. A rejected value is dropped from the reading, counted
//! (`fields_implausible`) and logged when the field turns implausible and
//! when it recovers; the reading's other fields go on.
//!
//! Energy counters only grow: one that goes backwards (a meter reset or
//! replaced, a register read from the wrong device) is flagged (counted in
//! `counters_backwards` and logged) and stored as read, because the meter
//! did say it and a replacement is a legitimate reason.
//!
//! What this module does not do: decode (`decode`), judge power quality
//! (`quality::rules`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `[plausibility]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub enabled: bool,
    /// Voltages above this × the nominal voltage are rejected.
    pub voltage_factor: f64,
    /// Currents above this × the contracted capacity's full-load current.
    pub current_factor: f64,
    /// Powers above this × the contracted capacity.
    pub power_factor: f64,
    /// Absolute bounds per field, over everything else.
    pub limits: BTreeMap<String, (f64, f64)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            voltage_factor: 2.0,
            current_factor: 10.0,
            power_factor: 10.0,
            limits: BTreeMap::new(),
        }
    }
}

/// One meter's bounds, from the settings and what the config knows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    enabled: bool,
    /// Highest plausible voltage (V, any voltage field).
    voltage_max: f64,
    /// Highest plausible current (A) and power (W / var / VA), when a
    /// contracted capacity is known.
    current_max: Option<f64>,
    power_max: Option<f64>,
    limits: BTreeMap<String, (f64, f64)>,
}

impl Bounds {
    /// `nominal_voltage`: line-to-line for three-phase meters, the phase
    /// voltage for single-phase ones (the config's convention).
    pub(crate) fn new(
        s: &Settings,
        nominal_voltage: f64,
        phases: u8,
        contracted_kva: Option<f64>,
    ) -> Bounds {
        let current_max = contracted_kva.map(|kva| {
            let full_load = if phases == 1 {
                kva * 1000.0 / nominal_voltage
            } else {
                kva * 1000.0 / (3f64.sqrt() * nominal_voltage)
            };
            full_load * s.current_factor
        });
        Bounds {
            enabled: s.enabled,
            voltage_max: nominal_voltage * s.voltage_factor,
            current_max,
            power_max: contracted_kva.map(|kva| kva * 1000.0 * s.power_factor),
            limits: s.limits.clone(),
        }
    }

    /// Why `value` of `field` is implausible, or None.
    pub(crate) fn check(&self, field: &str, value: f64) -> Option<String> {
        if !self.enabled {
            return None;
        }
        if let Some((lo, hi)) = self.limits.get(field) {
            return (!(*lo..=*hi).contains(&value))
                .then(|| format!("{value} outside the configured [{lo}, {hi}]"));
        }
        let range = |lo: f64, hi: f64, what: &str| {
            (!(lo..=hi).contains(&value)).then(|| format!("{value} outside {lo}…{hi} ({what})"))
        };
        if field.starts_with("voltage_unbalance") || field.starts_with("current_unbalance") {
            range(0.0, 100.0, "a percentage")
        } else if field.starts_with("voltage_") {
            range(0.0, self.voltage_max, "nominal voltage × voltage_factor")
        } else if field.starts_with("thd_voltage_") || field.starts_with("harmonic_voltage_") {
            range(0.0, 100.0, "% of the fundamental")
        } else if field.starts_with("thd_current_") || field.starts_with("harmonic_current_") {
            // Near zero load, current distortion in % can exceed 100.
            range(0.0, 1000.0, "% of the fundamental")
        } else if field == "frequency" {
            range(40.0, 70.0, "a 50/60 Hz supply")
        } else if field.starts_with("power_factor") || field.starts_with("cos_phi") {
            range(-1.02, 1.02, "a power factor")
        } else if field.starts_with("current_") {
            match self.current_max {
                Some(max) => range(-max, max, "contracted capacity × current_factor"),
                None => None,
            }
        } else if field.starts_with("active_power")
            || field.starts_with("reactive_power")
            || field.starts_with("apparent_power")
        {
            match self.power_max {
                Some(max) => range(-max, max, "contracted capacity × power_factor"),
                None => None,
            }
        } else if field.starts_with("energy_") {
            (value < 0.0).then(|| format!("{value} is negative (an energy counter)"))
        } else {
            None
        }
    }
}

/// What one reading's values came to.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    /// (field, why) of the values removed.
    pub rejected: Vec<(Arc<str>, String)>,
    /// (field, previous, now) of counters that went backwards.
    pub backwards: Vec<(Arc<str>, f64, f64)>,
    /// Fields that were implausible in the previous reading and are fine now.
    pub recovered: Vec<Arc<str>>,
    /// Fields that turned implausible with this reading (log these).
    pub turned_bad: Vec<Arc<str>>,
}

/// Per-meter memory: the last value of each counter, and which fields are
/// implausible now (so a persistent problem is logged once, not per poll).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// A handful of energy counters per meter: a list searched by pointer
    /// first (the names are the plan's shared `Arc`s), not a hash map
    /// hashing every name on every poll.
    counters: Vec<(Arc<str>, f64)>,
    bad: HashMap<Arc<str>, ()>,
}

impl Tracker {
    /// Remove implausible values from `values` and report what happened.
    pub(crate) fn filter(&mut self, b: &Bounds, values: &mut Vec<(Arc<str>, f64)>) -> Verdict {
        let mut v = Verdict::default();
        let mut now_bad: Vec<Arc<str>> = Vec::new();
        values.retain(|(field, value)| match b.check(field, *value) {
            Some(why) => {
                now_bad.push(field.clone());
                v.rejected.push((field.clone(), why));
                false
            }
            None => true,
        });
        for f in &now_bad {
            if self.bad.insert(f.clone(), ()).is_none() {
                v.turned_bad.push(f.clone());
            }
        }
        if !self.bad.is_empty() {
            self.bad.retain(|f, _| {
                let recovered = values.iter().any(|(p, _)| p == f);
                if recovered {
                    v.recovered.push(f.clone());
                }
                !recovered
            });
        }
        if b.enabled {
            for (field, value) in values.iter() {
                if !field.starts_with("energy_") {
                    continue;
                }
                // Counters read as f32 move by rounding: allow a hair.
                // `Arc<str> ==` compares pointers before bytes.
                let slot = self.counters.iter().position(|(f, _)| f == field);
                let prev = match slot {
                    Some(i) => Some(std::mem::replace(&mut self.counters[i].1, *value)),
                    None => {
                        self.counters.push((field.clone(), *value));
                        None
                    }
                };
                if let Some(prev) = prev
                    && *value < prev - prev.abs() * 1e-6 - 1e-6
                {
                    v.backwards.push((field.clone(), prev, *value));
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&str, f64)]) -> Vec<(Arc<str>, f64)> {
        pairs.iter().map(|(k, v)| (Arc::from(*k), *v)).collect()
    }

    #[test]
    fn a_400_volt_meter_reporting_40_kilovolts_is_rejected() {
        let b = Bounds::new(&Settings::default(), 400.0, 3, Some(630.0));
        assert_eq!(b.check("voltage_l1_n", 231.0), None);
        assert_eq!(b.check("voltage_l1_l2", 799.0), None);
        let why = b.check("voltage_l1_n", 40_000.0).unwrap();
        assert!(why.contains("40000 outside 0…800"), "{why}");
        assert!(b.check("voltage_l1_n", -1.0).is_some());
        // 630 kVA at 400 V: 909 A full load, ×10.
        assert_eq!(b.check("current_l1", 900.0), None);
        assert!(b.check("current_l1", 9_200.0).is_some());
        assert!(b.check("active_power_total", 6_400_000.0).is_some());
        assert_eq!(b.check("active_power_total", -500_000.0), None, "export");
        assert!(b.check("frequency", 5.0).is_some());
        assert!(b.check("power_factor_total", 1.5).is_some());
        assert!(b.check("thd_voltage_l1_n", 250.0).is_some());
        assert_eq!(b.check("thd_current_l1", 250.0), None);
        assert!(b.check("energy_active_import_total", -3.0).is_some());
        // Without a contracted capacity, currents and powers are not bounded.
        let b = Bounds::new(&Settings::default(), 10_000.0, 3, None);
        assert_eq!(b.check("current_l1", 1e7), None);
        assert!(b.check("voltage_l1_l2", 20_001.0).is_some());
    }

    #[test]
    fn configured_limits_win_and_disabled_checks_nothing() {
        let mut s = Settings::default();
        s.limits.insert("frequency".into(), (49.0, 51.0));
        let b = Bounds::new(&s, 400.0, 3, None);
        assert!(
            b.check("frequency", 52.0)
                .unwrap()
                .contains("configured [49, 51]")
        );
        s.enabled = false;
        let b = Bounds::new(&s, 400.0, 3, None);
        assert_eq!(b.check("voltage_l1_n", 1e9), None);
    }

    #[test]
    fn the_tracker_logs_transitions_once_and_flags_backward_counters() {
        let b = Bounds::new(&Settings::default(), 400.0, 3, None);
        let mut t = Tracker::default();
        let mut r1 = vals(&[
            ("voltage_l1_n", 40_000.0),
            ("energy_active_import_total", 100.0),
        ]);
        let v = t.filter(&b, &mut r1);
        assert_eq!(r1.len(), 1, "the bad voltage is removed, the counter kept");
        assert_eq!(v.turned_bad.len(), 1);
        // Still bad: counted, not announced again.
        let mut r2 = vals(&[
            ("voltage_l1_n", 40_000.0),
            ("energy_active_import_total", 101.0),
        ]);
        let v = t.filter(&b, &mut r2);
        assert_eq!((v.rejected.len(), v.turned_bad.len()), (1, 0));
        assert!(v.backwards.is_empty());
        // Recovered; the counter went back from 101 to 7 (a reset).
        let mut r3 = vals(&[("voltage_l1_n", 231.0), ("energy_active_import_total", 7.0)]);
        let v = t.filter(&b, &mut r3);
        assert_eq!(r3.len(), 2, "a backward counter is stored as read");
        assert_eq!(v.recovered, vec![Arc::<str>::from("voltage_l1_n")]);
        assert_eq!(v.backwards.len(), 1);
        assert_eq!((v.backwards[0].1, v.backwards[0].2), (101.0, 7.0));
    }
}
