//! Fixtures shared by `benches/hotpaths.rs` and `benches/reports.rs`:
//! a generated config, register words and readings as the simulator
//! encodes them (so decoding sees real register maps and values), closed
//! one-minute windows built by the real aggregator, and the rule set the
//! watch task builds for a meter.

#![allow(dead_code)]

use pqwatch::config::{self, Config, Meter};
use pqwatch::modbus::assemble::{MeterPlan, Ratios};
use pqwatch::quality::aggregate::{Aggregator, Window};
use pqwatch::quality::rules::RuleSet;
use pqwatch::reading::{MeterMeta, Reading};
use pqwatch::sim::SimMeter;
use std::path::Path;
use std::sync::Arc;

/// 2026-11-01T00:00:00+08:00 (Asia/Shanghai), a Sunday: the first day of
/// the 30-day month the report benchmark covers.
pub(crate) const NOV_2026_MS: i64 = 1_793_462_400_000;
pub(crate) const POLL_MS: i64 = 5_000;

/// A config with `customers` customers of one 10 kV meter each (PT
/// 10000/100, CT 200/5), all of `profile`, on one loopback gateway per 50
/// meters. Customers carry a contracted demand so the demand rule runs.
pub(crate) fn config_text(customers: usize, profile: &str) -> String {
    let mut s = String::from(
        "[daemon]\ntimezone = \"Asia/Shanghai\"\n\n[polling]\ninterval = \"5s\"\n\n[rules]\npreset = \"gb\"\n\n",
    );
    for c in 0..customers {
        s += &format!(
            "[[customers]]\nid = \"C{c:05}\"\nname = \"Customer {c}\"\ncontracted_kva = 2500\nmax_demand_kw = 2000\n\n"
        );
    }
    for c in 0..customers {
        s += &format!(
            "[[meters]]\nid = \"M{c:05}\"\ncustomer = \"C{c:05}\"\naddress = \"127.0.0.1:{}\"\nunit = {}\nprofile = \"{profile}\"\nnominal_voltage = 10000\npt_ratio = \"10000/100\"\nct_ratio = \"200/5\"\n\n",
            15020 + c / 50,
            c % 50 + 1
        );
    }
    s
}

pub(crate) fn load(text: &str) -> Config {
    config::from_str(text, Path::new("/nonexistent")).expect("generated config is valid")
}

/// One simulated meter per config meter (the simulator's own model).
pub(crate) fn sim_meters(cfg: &Config) -> Vec<SimMeter> {
    SimMeter::from_config(cfg)
}

/// The register words of one poll (one entry per planned request), as the
/// simulator answers them at `t_ms`.
pub(crate) fn poll_words(sim: &SimMeter, plan: &MeterPlan, t_ms: i64) -> Vec<Option<Vec<u16>>> {
    let values = sim.model.values(t_ms, &[]);
    plan.requests
        .iter()
        .map(|r| pqwatch::sim::encode_range(sim, &values, r.function, r.start, r.count))
        .collect()
}

/// A decoded reading of `m` at `t_ms`, exactly as the gateway task builds it.
pub(crate) fn reading(m: &Meter, sim: &SimMeter, t_ms: i64) -> Reading {
    let words = poll_words(sim, &m.plan, t_ms);
    let a = m.plan.assemble(&words);
    assert!(a.dropped.is_empty(), "{}: {:?}", m.id, a.dropped);
    Reading {
        meter: Arc::new(MeterMeta::new(&m.id, &m.customer, &m.tags)),
        ts_ms: t_ms,
        values: a.values.into(),
    }
}

/// The closed, complete one-minute window starting at `start_ms` (12 polls
/// at 5 s through the real aggregator).
pub(crate) fn minute_window(m: &Meter, sim: &SimMeter, start_ms: i64) -> Window {
    let mut agg = Aggregator::new(60_000, POLL_MS, 0.9);
    for k in 0..12 {
        let r = reading(m, sim, start_ms + k * POLL_MS);
        assert!(agg.push(r.ts_ms, &r.values).is_none());
    }
    let next = reading(m, sim, start_ms + 60_000);
    let w = agg.push(next.ts_ms, &next.values).expect("window closes");
    assert!(w.complete);
    w
}

/// The meter's rule set, as the watch task builds it.
pub(crate) fn rule_set(cfg: &Config, m: &Meter) -> RuleSet {
    pqwatch::watch::rule_set(&cfg.rules, m)
}

pub(crate) fn ratios(m: &Meter) -> Ratios {
    Ratios {
        pt: m.pt_ratio,
        ct: m.ct_ratio,
    }
}
