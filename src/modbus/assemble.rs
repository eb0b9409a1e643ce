//! From register words to a meter's engineering values. Pure.
//!
//! [`MeterPlan`] is computed once per meter: which profile registers are
//! needed for the fields the meter is configured to write, the reads that
//! fetch them, and the field names. [`MeterPlan::assemble`] turns the words
//! returned by those reads into values in canonical units on the primary side
//! (scale, unit factor, PT/CT ratio), drops what is not a number or is a
//! documented "not available" marker, and computes derived values.
//!
//! A failed read only leaves its fields out; it is counted by the poller,
//! not here. A value dropped for bad data is reported in [`Assembled::dropped`]
//! so the caller can count and log it once.

use crate::modbus::decode::decode;
use crate::modbus::plan::{ReadRequest, plan};
use crate::profile::{DerivedOp, Profile};
use crate::schema::Ratio;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Why a value was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// NaN or ±infinity.
    NotFinite,
    /// A bit pattern the profile documents as "not available".
    NotAvailable,
    /// A derived value whose denominator is zero.
    ZeroDenominator,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotFinite => "not_finite",
            DropReason::NotAvailable => "not_available",
            DropReason::ZeroDenominator => "zero_denominator",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Instrument-transformer ratios of one meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    pub pt: f64,
    pub ct: f64,
}

impl Ratios {
    pub const ONE: Ratios = Ratios { pt: 1.0, ct: 1.0 };

    fn factor(self, r: Ratio) -> f64 {
        match r {
            Ratio::Pt => self.pt,
            Ratio::Ct => self.ct,
            Ratio::PtCt => self.pt * self.ct,
            Ratio::None => 1.0,
        }
    }
}

/// What to read from one meter and how to turn it into fields.
#[derive(Debug, Clone)]
pub struct MeterPlan {
    pub profile: Arc<Profile>,
    pub requests: Vec<ReadRequest>,
    /// Per profile register: write it as a field.
    emit: Vec<bool>,
    /// Indices into `profile.derived` to compute.
    derived: Vec<usize>,
    /// Output name per register / derived value, shared by every reading.
    register_names: Vec<Arc<str>>,
    derived_names: Vec<Arc<str>>,
    pub(crate) ratios: Ratios,
    /// Register indices the requests serve.
    needed: Vec<usize>,
}

/// Values of one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assembled {
    pub values: Vec<(Arc<str>, f64)>,
    pub dropped: Vec<(Arc<str>, DropReason)>,
}

impl MeterPlan {
    /// Plan for `fields` (all of the profile's outputs when `None`).
    /// Unknown names are returned as errors with a hint.
    pub fn new(
        profile: Arc<Profile>,
        fields: Option<&[String]>,
        ratios: Ratios,
    ) -> Result<Self, Vec<String>> {
        let nreg = profile.registers.len();
        let mut emit = vec![false; nreg];
        let mut derived = Vec::new();
        let mut errors = Vec::new();
        match fields {
            None => {
                for (i, r) in profile.registers.iter().enumerate() {
                    emit[i] = r.emit;
                }
                derived = (0..profile.derived.len()).collect();
            }
            Some(list) => {
                for name in list {
                    if let Some(i) = profile
                        .registers
                        .iter()
                        .position(|r| r.emit && &r.name == name)
                    {
                        emit[i] = true;
                    } else if let Some(d) = profile.derived.iter().position(|d| &d.name == name) {
                        derived.push(d);
                    } else {
                        let hint = crate::schema::did_you_mean_hint(name, profile.output_names());
                        errors.push(format!(
                            "\"{name}\" is not a field of profile {}{hint}",
                            profile.name
                        ));
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut needed: BTreeSet<usize> = (0..nreg).filter(|&i| emit[i]).collect();
        for &d in &derived {
            needed.extend(profile.derived[d].inputs.iter().copied());
        }
        let needed: Vec<usize> = needed.into_iter().collect();
        let requests = plan(&profile, &needed);
        Ok(MeterPlan {
            needed,
            register_names: profile
                .registers
                .iter()
                .map(|r| Arc::from(r.name.as_str()))
                .collect(),
            derived_names: profile
                .derived
                .iter()
                .map(|d| Arc::from(d.name.as_str()))
                .collect(),
            profile,
            requests,
            emit,
            derived,
            ratios,
        })
    }

    /// Whether any request reads registers no field needs (a bridged gap).
    pub fn bridges_gaps(&self) -> bool {
        self.requests.iter().any(|r| {
            let used: u32 = r
                .items
                .iter()
                .map(|&i| u32::from(self.profile.registers[i].dtype.words()))
                .sum();
            used < u32::from(r.count)
        })
    }

    /// The same plan without bridged gaps, for a device that rejects reads
    /// spanning registers it does not define (exception 0x02).
    pub(crate) fn without_gaps(&self) -> MeterPlan {
        MeterPlan {
            requests: crate::modbus::plan::plan_with(&self.profile, &self.needed, 0),
            ..self.clone()
        }
    }

    /// Number of values a complete poll writes.
    pub fn field_count(&self) -> usize {
        self.emit.iter().filter(|e| **e).count() + self.derived.len()
    }

    /// Turn read results (one per request, `None` where the read failed)
    /// into values.
    pub fn assemble(&self, results: &[Option<Vec<u16>>]) -> Assembled {
        debug_assert_eq!(results.len(), self.requests.len());
        let mut out = Assembled::default();
        // Primary-side canonical value per register, where it decoded.
        let mut value: Vec<Option<f64>> = vec![None; self.profile.registers.len()];
        for (req, words) in self.requests.iter().zip(results) {
            let Some(words) = words else { continue };
            for &i in &req.items {
                let reg = &self.profile.registers[i];
                let off = (reg.address - req.start) as usize;
                let Some(w) = words.get(off..off + reg.dtype.words() as usize) else {
                    // A short reply is a protocol error the poller already
                    // rejects; never index past it.
                    continue;
                };
                let raw = decode(w, reg.dtype, reg.order);
                let reason = if reg.not_available.contains(&raw.bits) {
                    Some(DropReason::NotAvailable)
                } else {
                    None
                };
                let v = tidy(
                    raw.to_f64() * reg.scale * reg.unit.factor * self.ratios.factor(reg.unit.ratio),
                );
                let reason = reason.or((!v.is_finite()).then_some(DropReason::NotFinite));
                match reason {
                    Some(r) => {
                        if self.emit[i] {
                            out.dropped.push((self.register_names[i].clone(), r));
                        }
                    }
                    None => {
                        value[i] = Some(v);
                        if self.emit[i] {
                            out.values.push((self.register_names[i].clone(), v));
                        }
                    }
                }
            }
        }
        for &d in &self.derived {
            let dv = &self.profile.derived[d];
            let inputs: Option<Vec<f64>> = dv.inputs.iter().map(|&i| value[i]).collect();
            let Some(inputs) = inputs else { continue };
            let v = match dv.op {
                DerivedOp::Sum => inputs.iter().sum(),
                DerivedOp::RatioPercent => {
                    if inputs[1] == 0.0 {
                        out.dropped
                            .push((self.derived_names[d].clone(), DropReason::ZeroDenominator));
                        continue;
                    }
                    100.0 * inputs[0] / inputs[1]
                }
            };
            if v.is_finite() {
                out.values.push((self.derived_names[d].clone(), tidy(v)));
            } else {
                out.dropped
                    .push((self.derived_names[d].clone(), DropReason::NotFinite));
            }
        }
        out
    }
}

/// Round to 12 significant digits. Scaling an integer register by 0.1 and
/// a CT ratio leaves binary noise (5368 × 0.1 × 200 = 107360.00000000001);
/// no meter register carries more than ~10 significant digits of
/// information, so 12 keep all of it and store what the meter meant.
pub(crate) fn tidy(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 12 - (v.abs().log10().floor() as i32 + 1);
    if !(-300..=300).contains(&digits) {
        return v;
    }
    let p = 10f64.powi(digits.abs());
    let r = if digits >= 0 {
        (v * p).round() / p
    } else {
        (v / p).round() * p
    };
    if r.is_finite() { r } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::decode::{DataType, WordOrder, encode, encode_bits};
    use crate::profile::parse;

    const P: &str = r#"
        name = "p"
        max_registers = 125
        max_gap = 0
        [defaults]
        function = 3
        type = "f32"
        [[field]]
        name = "voltage_l1_n"
        address = 0
        unit = "V"
        [[field]]
        name = "current_l1"
        address = 2
        unit = "A"
        [[field]]
        name = "active_power_total"
        address = 4
        unit = "kW"
        [[field]]
        name = "energy_active_import_total"
        address = 6
        unit = "Wh"
        type = "i32"
        word_order = "CDAB"
        not_available = ["0x80000000"]
        [[field]]
        name = "frequency"
        address = 8
        unit = "Hz"
        type = "i16"
        scale = 0.01
        [[harmonics]]
        name = "harmonic_voltage_l1_n"
        base = 100
        stride = 2
        orders = [2, 3]
        value = "absolute"
    "#;

    fn words_for(plan: &MeterPlan, vals: &[(u16, Vec<u16>)]) -> Vec<Option<Vec<u16>>> {
        plan.requests
            .iter()
            .map(|r| {
                let mut w = vec![0u16; r.count as usize];
                for (addr, words) in vals {
                    if *addr >= r.start && u32::from(*addr) < r.end() {
                        let o = (*addr - r.start) as usize;
                        w[o..o + words.len()].copy_from_slice(words);
                    }
                }
                Some(w)
            })
            .collect()
    }

    fn get(a: &Assembled, name: &str) -> Option<f64> {
        a.values.iter().find(|(n, _)| &**n == name).map(|(_, v)| *v)
    }

    #[test]
    fn primary_side_values_in_canonical_units() {
        let prof = Arc::new(parse(P, "t").unwrap());
        // 10 kV / 100 V PT, 200 A / 5 A CT.
        let plan = MeterPlan::new(
            prof,
            None,
            Ratios {
                pt: 100.0,
                ct: 40.0,
            },
        )
        .unwrap();
        let vals = vec![
            (0, encode(57.735, DataType::F32, WordOrder::ABCD)),
            (2, encode(2.5, DataType::F32, WordOrder::ABCD)),
            (4, encode(0.75, DataType::F32, WordOrder::ABCD)), // kW secondary
            (6, encode(123_456.0, DataType::I32, WordOrder::CDAB)), // Wh secondary
            (8, encode(5002.0, DataType::I16, WordOrder::ABCD)),
            (100, encode(57.7, DataType::F32, WordOrder::ABCD)),
            (102, encode(1.154, DataType::F32, WordOrder::ABCD)),
            (104, encode(2.885, DataType::F32, WordOrder::ABCD)),
        ];
        let a = plan.assemble(&words_for(&plan, &vals));
        assert!(a.dropped.is_empty(), "{:?}", a.dropped);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-3 * y.abs().max(1.0);
        assert!(close(get(&a, "voltage_l1_n").unwrap(), 5773.5));
        assert!(close(get(&a, "current_l1").unwrap(), 100.0));
        // 0.75 kW × 1000 × 100 × 40 = 3 MW
        assert!(close(get(&a, "active_power_total").unwrap(), 3_000_000.0));
        // 123456 Wh → 123.456 kWh × 4000
        assert!(close(
            get(&a, "energy_active_import_total").unwrap(),
            493_824.0
        ));
        assert!(close(get(&a, "frequency").unwrap(), 50.02));
        // 1.154 / 57.7 = 2 %, 2.885 / 57.7 = 5 %; no ratio applied to a ratio.
        assert!(close(get(&a, "harmonic_voltage_l1_n_h2").unwrap(), 2.0));
        assert!(close(get(&a, "harmonic_voltage_l1_n_h3").unwrap(), 5.0));
        assert_eq!(
            get(&a, "harmonic_voltage_l1_n_h1"),
            None,
            "fundamental is input only"
        );
        assert_eq!(a.values.len(), plan.field_count());
    }

    #[test]
    fn a_plan_without_gaps_reads_only_defined_registers() {
        let t = P.replace("max_gap = 0", "max_gap = 100");
        let prof = Arc::new(parse(&t, "t").unwrap());
        let plan = MeterPlan::new(prof, None, Ratios::ONE).unwrap();
        assert!(plan.bridges_gaps());
        let shape: Vec<_> = plan.requests.iter().map(|r| (r.start, r.count)).collect();
        assert_eq!(shape, vec![(0, 106)], "the 91-register gap is bridged");
        let tight = plan.without_gaps();
        assert!(!tight.bridges_gaps());
        // 0..10 is contiguous (f32,f32,f32,i32,i16); 100,102,104 contiguous.
        let shape: Vec<_> = tight.requests.iter().map(|r| (r.start, r.count)).collect();
        assert_eq!(shape, vec![(0, 9), (100, 6)]);
        assert_eq!(tight.field_count(), plan.field_count());
    }

    #[test]
    fn scaled_integers_store_what_the_meter_meant() {
        assert_eq!(tidy(5368.0 * 0.1 * 200.0), 107_360.0);
        assert_eq!(tidy(2305.0 * 0.1), 230.5);
        assert_eq!(tidy(950.0 * 0.001), 0.95);
        assert_eq!(tidy(-0.1 * 3.0), -0.3);
        // Real information is kept: f32 230.5 stays, a 10-digit counter stays.
        assert_eq!(tidy(1_234_567_890.5), 1_234_567_890.5);
        assert_eq!(tidy(57.735_000_610_351_56), 57.7350006104);
        assert_eq!(tidy(1.5e-9), 1.5e-9);
        assert_eq!(tidy(0.0), 0.0);
    }

    #[test]
    fn bad_values_are_dropped_and_reported_others_kept() {
        let prof = Arc::new(parse(P, "t").unwrap());
        let plan = MeterPlan::new(prof, None, Ratios::ONE).unwrap();
        let vals = vec![
            (0, vec![0x7FC0, 0x0000]), // NaN
            (2, vec![0x7F80, 0x0000]), // +inf
            (4, encode(1.0, DataType::F32, WordOrder::ABCD)),
            (6, encode_bits(0x8000_0000, DataType::I32, WordOrder::CDAB)), // N/A
            (8, encode(5000.0, DataType::I16, WordOrder::ABCD)),
            (100, encode(0.0, DataType::F32, WordOrder::ABCD)), // zero fundamental
        ];
        let a = plan.assemble(&words_for(&plan, &vals));
        let dropped: Vec<_> = a.dropped.iter().map(|(n, r)| (n.to_string(), *r)).collect();
        assert!(dropped.contains(&("voltage_l1_n".into(), DropReason::NotFinite)));
        assert!(dropped.contains(&("current_l1".into(), DropReason::NotFinite)));
        assert!(dropped.contains(&(
            "energy_active_import_total".into(),
            DropReason::NotAvailable
        )));
        assert!(dropped.contains(&(
            "harmonic_voltage_l1_n_h2".into(),
            DropReason::ZeroDenominator
        )));
        assert_eq!(get(&a, "active_power_total"), Some(1000.0));
        assert_eq!(get(&a, "frequency"), Some(50.0));
    }

    #[test]
    fn failed_reads_leave_only_their_fields_out() {
        let prof = Arc::new(parse(P, "t").unwrap());
        let plan = MeterPlan::new(prof, None, Ratios::ONE).unwrap();
        assert_eq!(plan.requests.len(), 2, "{:?}", plan.requests);
        let mut results = words_for(
            &plan,
            &[(8, encode(5000.0, DataType::I16, WordOrder::ABCD))],
        );
        results[1] = None; // the harmonics read failed
        let a = plan.assemble(&results);
        assert_eq!(get(&a, "frequency"), Some(50.0));
        assert!(a.values.iter().all(|(n, _)| !n.starts_with("harmonic")));
        assert!(a.dropped.is_empty());
    }

    #[test]
    fn field_selection_reads_only_what_is_needed() {
        let prof = Arc::new(parse(P, "t").unwrap());
        let sel = vec![
            "frequency".to_string(),
            "harmonic_voltage_l1_n_h3".to_string(),
        ];
        let plan = MeterPlan::new(prof.clone(), Some(&sel), Ratios::ONE).unwrap();
        assert_eq!(plan.field_count(), 2);
        let starts: Vec<_> = plan.requests.iter().map(|r| (r.start, r.count)).collect();
        // frequency at 8 alone; fundamental 100 and h3 at 104 (gap 0 → two reads).
        assert_eq!(starts, vec![(8, 1), (100, 2), (104, 2)]);
        let bad = vec!["frequncy".to_string()];
        let e = MeterPlan::new(prof, Some(&bad), Ratios::ONE).unwrap_err();
        assert!(e[0].contains("did you mean \"frequency\""), "{e:?}");
    }
}
