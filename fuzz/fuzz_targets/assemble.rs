//! Any register words for every built-in profile's full plan, with any
//! PT/CT ratios: only finite values are written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwatch::modbus::assemble::{MeterPlan, Ratios};
use std::sync::Arc;

fuzz_target!(|input: (u8, f64, f64, Vec<u16>, Vec<u8>)| {
    let (which, pt, ct, words, cuts) = input;
    if !(pt.is_finite() && pt > 0.0 && ct.is_finite() && ct > 0.0) {
        return;
    }
    let reg = pqwatch::profile::Registry::builtin();
    let profiles: Vec<_> = reg.iter().collect();
    let profile = profiles[which as usize % profiles.len()];
    let plan = MeterPlan::new(Arc::clone(profile), None, Ratios { pt, ct }).unwrap();
    let mut at = 0usize;
    let results: Vec<Option<Vec<u16>>> = plan
        .requests
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let cut = cuts.get(k).copied().unwrap_or(255);
            if cut == 0 {
                return None;
            }
            let n = (r.count as usize).min(cut as usize * 2);
            let w = (0..n)
                .map(|j| {
                    words
                        .get((at + j) % words.len().max(1))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            at += n;
            Some(w)
        })
        .collect();
    let out = plan.assemble(&results);
    for (name, v) in &out.values {
        assert!(v.is_finite(), "{name} = {v}");
    }
});
