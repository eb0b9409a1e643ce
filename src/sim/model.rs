//! The simulated electrical state of one meter. Pure: time in, values out.
//!
//! Values are produced on the primary side in canonical units (what pqwatch
//! should end up writing), then converted back to what the meter would hold
//! in its registers (÷ PT/CT, ÷ unit factor, ÷ scale) by the server. The
//! model is deliberately simple but self-consistent: phase voltages near
//! nominal with noise, a daily load curve, currents from power and voltage,
//! THD as the root-sum-square of the individual harmonics it reports,
//! energies that integrate the load, and negative/positive sequence
//! voltages matching the unbalance.

use super::scenario::Effect;
use std::collections::HashMap;
use std::f64::consts::PI;

/// Static description of a simulated meter.
#[derive(Debug, Clone)]
pub struct MeterModel {
    pub id: String,
    /// IEC nominal: line-to-line for three-phase, phase voltage for single-phase.
    pub nominal_voltage: f64,
    pub phases: u8,
    /// Typical peak load in kW, primary.
    pub rated_kw: f64,
    /// Per-meter seed so meters do not move in lockstep.
    pub seed: u64,
}

/// Every energy counter of the model from the active import counter (kWh):
/// reactive at 0.4 of it, apparent from the two (so each only grows),
/// tariffs 70/30, phases a third each.
fn set_energies(set: &mut impl FnMut(String, f64), e_imp: f64) {
    let e_q = e_imp * 0.4;
    let e_s = (e_imp * e_imp + e_q * e_q).sqrt();
    set("energy_active_import_total".into(), e_imp);
    set("energy_active_export_total".into(), 0.0);
    set("energy_reactive_import_total".into(), e_q);
    set("energy_reactive_export_total".into(), 0.0);
    set("energy_apparent_total".into(), e_s);
    set("energy_active_total".into(), e_imp);
    set("energy_reactive_total".into(), e_q);
    for (name, total) in [
        ("energy_active_import", e_imp),
        ("energy_active_export", 0.0),
        ("energy_reactive_import", e_q),
        ("energy_reactive_export", 0.0),
        ("energy_apparent", e_s),
    ] {
        set(format!("{name}_t1"), total * 0.7);
        set(format!("{name}_t2"), total * 0.3);
        for ph in 1..=3 {
            set(format!("{name}_l{ph}"), total / 3.0);
        }
    }
    for ph in 1..=3 {
        set(format!("energy_active_total_l{ph}"), e_imp / 3.0);
        set(format!("energy_reactive_total_l{ph}"), e_q / 3.0);
        set(format!("energy_active_l{ph}"), e_imp / 3.0);
        set(format!("energy_reactive_l{ph}"), e_q / 3.0);
    }
}

/// Replace a model's energy counters by `e_imp` (kWh), e.g. the served
/// load integrated over time (`sim`'s server does so, so that counters
/// and power agree whatever a scenario sets).
pub(crate) fn with_active_energy(values: &mut HashMap<String, f64>, e_imp: f64) {
    set_energies(
        &mut |k: String, v: f64| {
            values.insert(k, v);
        },
        e_imp,
    );
}

/// Typical harmonic voltage spectrum, % of fundamental (orders 2..=25).
fn voltage_spectrum(n: u32) -> f64 {
    match n {
        3 => 0.9,
        5 => 1.4,
        7 => 0.8,
        9 => 0.25,
        11 => 0.45,
        13 => 0.35,
        n if n % 2 == 0 => 0.08,
        _ => 0.12,
    }
}

fn current_spectrum(n: u32) -> f64 {
    match n {
        3 => 2.5,
        5 => 6.0,
        7 => 3.5,
        9 => 0.8,
        11 => 2.0,
        13 => 1.5,
        n if n % 2 == 0 => 0.3,
        _ => 0.4,
    }
}

fn spectrum_thd(f: fn(u32) -> f64) -> f64 {
    (2..=25).map(|n| f(n).powi(2)).sum::<f64>().sqrt()
}

/// Deterministic pseudo-noise in [-1, 1] from a seed and a time slot.
fn noise(seed: u64, slot: i64, k: u64) -> f64 {
    let mut x = seed
        ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ k.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x as f64 / u64::MAX as f64) * 2.0 - 1.0
}

/// Daily load shape in 0.3..=1.0: night trough, morning and evening peaks.
fn daily_shape(seconds_of_day: f64) -> f64 {
    let h = seconds_of_day / 3600.0;
    let morning = (-(h - 10.0).powi(2) / 8.0).exp();
    let evening = (-(h - 19.0).powi(2) / 6.0).exp();
    (0.3 + 0.7 * morning.max(0.9 * evening)).min(1.0)
}

/// What a scenario's effects set for one instant; None where the model's
/// own drift applies.
struct Scripted<'a> {
    /// Per-phase voltage factor.
    vf: [f64; 3],
    thd_u: Option<f64>,
    thd_i: Option<f64>,
    load_kw: Option<f64>,
    unbalance: f64,
    /// Output fields forced to a value, set last so they win.
    forced: Vec<(&'a str, f64)>,
}

/// The primary-side load of one instant, which currents and harmonic
/// currents are derived from.
struct Load {
    /// Apparent power, VA.
    s: f64,
    /// Phases the load is shared by.
    n: f64,
}

impl MeterModel {
    /// All canonical values at Unix time `t_ms` (plus internal absolute
    /// harmonic values), after applying `effects`.
    pub fn values(&self, t_ms: i64, effects: &[&Effect]) -> HashMap<String, f64> {
        let slot = t_ms / 1000;
        let sc = self.scripted(slot, effects);
        let mut out = HashMap::with_capacity(256);
        let mut set = |k: String, v: f64| {
            out.insert(k, v);
        };
        let v = self.voltages(slot, &sc, &mut set);
        let load = self.load(t_ms, slot, &v, sc.load_kw, &mut set);

        // Energy: the mean load since the epoch of the model, a plausible
        // monotonic counter that never steps backwards across restarts.
        let hours = t_ms as f64 / 3.6e6;
        let base = 1000.0 + (self.seed % 100_000) as f64;
        let e_imp = base + self.rated_kw * 0.6 * (hours - 490_000.0).max(0.0);
        set_energies(&mut set, e_imp);

        self.harmonics(slot, &v, &load, &sc, &mut set);
        for (f, val) in sc.forced {
            set(f.to_string(), val);
        }
        out
    }

    /// Gather the effects active at this instant.
    fn scripted<'a>(&self, slot: i64, effects: &[&'a Effect]) -> Scripted<'a> {
        let mut sc = Scripted {
            vf: [1.0f64; 3],
            thd_u: None,
            thd_i: None,
            load_kw: None,
            unbalance: 0.4 + 0.1 * noise(self.seed, slot, 99),
            forced: Vec::new(),
        };
        for e in effects {
            match e {
                Effect::Voltage { factor, phases } => {
                    for &p in phases {
                        if (1..=3).contains(&p) {
                            sc.vf[p as usize - 1] = *factor;
                        }
                    }
                }
                Effect::ThdVoltage(v) => sc.thd_u = Some(*v),
                Effect::ThdCurrent(v) => sc.thd_i = Some(*v),
                Effect::Load(kw) => sc.load_kw = Some(*kw),
                Effect::Unbalance(u) => sc.unbalance = *u,
                Effect::Value { field, value } => sc.forced.push((field, *value)),
                Effect::Silent | Effect::Exception(_) | Effect::StrictAddresses => {}
            }
        }
        sc
    }

    /// Phase, line, average and sequence voltages and the unbalance;
    /// returns the three phase voltages the rest is computed from.
    fn voltages(&self, slot: i64, sc: &Scripted, set: &mut impl FnMut(String, f64)) -> Vec<f64> {
        let u_ph = if self.phases == 3 {
            self.nominal_voltage / 3f64.sqrt()
        } else {
            self.nominal_voltage
        };
        let unbalance = sc.unbalance;
        // Voltages: ±0.3 % noise around nominal × scripted factor.
        let v: Vec<f64> = (0..3)
            .map(|i| u_ph * sc.vf[i] * (1.0 + 0.003 * noise(self.seed, slot, i as u64)))
            .collect();
        for (i, vv) in v.iter().enumerate() {
            set(format!("voltage_l{}_n", i + 1), *vv);
        }
        let s3 = 3f64.sqrt();
        set("voltage_l1_l2".into(), s3 * (v[0] + v[1]) / 2.0);
        set("voltage_l2_l3".into(), s3 * (v[1] + v[2]) / 2.0);
        set("voltage_l3_l1".into(), s3 * (v[2] + v[0]) / 2.0);
        set("voltage_ln_avg".into(), (v[0] + v[1] + v[2]) / 3.0);
        set("voltage_ll_avg".into(), s3 * (v[0] + v[1] + v[2]) / 3.0);
        set("voltage_pos_seq".into(), (v[0] + v[1] + v[2]) / 3.0);
        set(
            "voltage_neg_seq".into(),
            (v[0] + v[1] + v[2]) / 3.0 * unbalance / 100.0,
        );
        set(
            "voltage_zero_seq".into(),
            (v[0] + v[1] + v[2]) / 3.0 * 0.002,
        );
        set("voltage_unbalance".into(), unbalance);
        v
    }

    /// Powers, power factors, currents and frequency from the daily load
    /// curve (or the scripted load).
    fn load(
        &self,
        t_ms: i64,
        slot: i64,
        v: &[f64],
        load_kw: Option<f64>,
        set: &mut impl FnMut(String, f64),
    ) -> Load {
        // Load: daily curve with ±2 % noise, or the scripted value.
        let sod = (t_ms.rem_euclid(86_400_000)) as f64 / 1000.0;
        let p_kw = load_kw.unwrap_or_else(|| {
            self.rated_kw * daily_shape(sod) * (1.0 + 0.02 * noise(self.seed, slot, 7))
        });
        let pf = 0.93 + 0.02 * noise(self.seed, slot / 60, 8);
        let p = p_kw * 1000.0;
        let s = p / pf;
        let q = (s * s - p * p).max(0.0).sqrt();
        let n = if self.phases == 3 { 3.0 } else { 1.0 };
        for (i, vi) in v.iter().enumerate() {
            let ph = i + 1;
            set(format!("active_power_l{ph}"), p / n);
            set(format!("reactive_power_l{ph}"), q / n);
            set(format!("apparent_power_l{ph}"), s / n);
            set(format!("power_factor_l{ph}"), pf);
            set(format!("cos_phi_l{ph}"), pf);
            set(format!("phase_angle_l{ph}"), pf.acos() * 180.0 / PI);
            set(format!("current_l{ph}"), s / n / vi);
        }
        set("active_power_total".into(), p);
        set("reactive_power_total".into(), q);
        set("apparent_power_total".into(), s);
        set("power_factor_total".into(), pf);
        set("cos_phi_total".into(), pf);
        set("phase_angle_total".into(), pf.acos() * 180.0 / PI);
        let i_avg = s / n / (v[0] + v[1] + v[2]) * 3.0;
        set("current_avg".into(), i_avg);
        set("current_sum".into(), i_avg * n);
        set("current_n".into(), i_avg * 0.05);
        set("current_ground".into(), 0.0);
        for k in ["zero", "neg", "pos"] {
            let f = match k {
                "pos" => 1.0,
                "neg" => 0.01,
                _ => 0.005,
            };
            set(format!("current_{k}_seq"), i_avg * f);
        }
        set("current_unbalance".into(), 1.0);
        set("frequency".into(), 50.0 + 0.02 * noise(self.seed, slot, 9));
        Load { s, n }
    }

    /// THD, TDD and the individual harmonic orders (in % and absolute) of
    /// every phase voltage and current.
    fn harmonics(
        &self,
        slot: i64,
        v: &[f64],
        load: &Load,
        sc: &Scripted,
        set: &mut impl FnMut(String, f64),
    ) {
        let Load { s, n } = *load;
        // Harmonics: a fixed spectrum scaled so that THD is what the
        // scenario (or a small drift) says; THD = √Σ hₙ².
        let tu = sc
            .thd_u
            .unwrap_or(1.9 + 0.2 * noise(self.seed, slot / 60, 10));
        let ti = sc
            .thd_i
            .unwrap_or(8.0 + 1.0 * noise(self.seed, slot / 60, 11));
        let ku = tu / spectrum_thd(voltage_spectrum);
        let ki = ti / spectrum_thd(current_spectrum);
        for ph in 1..=3 {
            let u1 = v[ph - 1];
            let i1 = s / n / u1;
            set(format!("thd_voltage_l{ph}_n"), tu);
            set(format!("thd_current_l{ph}"), ti);
            set(format!("tdd_current_l{ph}"), ti * 0.8);
            set(format!("harmonic_voltage_l{ph}_n_h1"), u1);
            set(format!("harmonic_current_l{ph}_h1"), i1);
            for h in 2..=40u32 {
                let pu = voltage_spectrum(h) * ku;
                let pi = current_spectrum(h) * ki;
                set(format!("harmonic_voltage_l{ph}_n_h{h}"), pu);
                set(
                    format!("harmonic_voltage_l{ph}_n_h{h}_abs"),
                    u1 * pu / 100.0,
                );
                set(format!("harmonic_current_l{ph}_h{h}"), pi);
                set(format!("harmonic_current_l{ph}_h{h}_abs"), i1 * pi / 100.0);
            }
        }
        for k in ["l1_l2", "l2_l3", "l3_l1"] {
            set(format!("thd_voltage_{k}"), tu);
        }
        set("thd_voltage_ln_avg".into(), tu);
        set("thd_voltage_ll_avg".into(), tu);
        set("thd_current_avg".into(), ti);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> MeterModel {
        MeterModel {
            id: "M".into(),
            nominal_voltage: 10_000.0,
            phases: 3,
            rated_kw: 2000.0,
            seed: 42,
        }
    }

    #[test]
    fn voltages_near_nominal_and_consistent() {
        let v = m().values(1_700_000_000_000, &[]);
        let un = 10_000.0 / 3f64.sqrt();
        for p in 1..=3 {
            let x = v[&format!("voltage_l{p}_n")];
            assert!((x / un - 1.0).abs() < 0.004, "{x}");
        }
        let ll = v["voltage_l1_l2"];
        assert!((ll / 10_000.0 - 1.0).abs() < 0.004, "{ll}");
    }

    #[test]
    fn scripted_effects_show() {
        let step = Effect::Voltage {
            factor: 1.09,
            phases: vec![1, 2, 3],
        };
        let thd = Effect::ThdVoltage(6.0);
        let v = m().values(1_700_000_000_000, &[&step, &thd]);
        let un = 10_000.0 / 3f64.sqrt();
        assert!((v["voltage_l2_n"] / un - 1.09).abs() < 0.004);
        // THD equals the root-sum-square of the orders reported (2..=25).
        let rss: f64 = (2..=25)
            .map(|h| v[&format!("harmonic_voltage_l1_n_h{h}")].powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((rss - 6.0).abs() < 1e-9, "{rss}");
        assert_eq!(v["thd_voltage_l1_n"], 6.0);
    }

    #[test]
    fn power_triangle_holds() {
        let v = m().values(1_700_000_000_000, &[&Effect::Load(1500.0)]);
        assert!((v["active_power_total"] - 1.5e6).abs() < 1e-6);
        let (p, q, s) = (
            v["active_power_total"],
            v["reactive_power_total"],
            v["apparent_power_total"],
        );
        assert!(((p * p + q * q).sqrt() - s).abs() < 1e-6 * s);
        assert!((v["power_factor_total"] - p / s).abs() < 1e-9);
    }
}
