//! Tests of `rules`.

use super::super::aggregate::Stat;
use super::super::limits::{Overrides, Presets};
use super::*;
use std::sync::Arc;

const MIN: i64 = 60_000;

fn timing(min: i64, clear: i64, margin: f64) -> Timing {
    Timing {
        min_duration: Duration::from_millis(min as u64),
        clear_after: Duration::from_millis(clear as u64),
        margin,
    }
}

/// A 10 kV customer judged line-to-line against GB/T 12325 (±7 %).
fn set() -> RuleSet {
    let limits = Presets::builtin()
        .resolve(10_000.0, 3, &Overrides::default())
        .unwrap();
    RuleSet {
        meter: "M1".into(),
        customer: "C1".into(),
        limits,
        voltage_refs: vec![("l1_l2".into(), "voltage_l1_l2".into(), 10_000.0)],
        short_ms: MIN,
        long_ms: 10 * MIN,
        voltage: timing(3 * MIN, 3 * MIN, 0.5),
        harmonics: timing(10 * MIN, 10 * MIN, 5.0),
        interruption_pct: 10.0,
    }
}

fn load_set() -> LoadSet {
    LoadSet {
        meter: CUSTOMER_TOTAL.into(),
        customer: "C1".into(),
        max_demand_kw: Some(1000.0),
        demand_factor: 1.05,
        demand: timing(15 * MIN, 15 * MIN, 0.0),
        contracted_kva: Some(2000.0),
        suspensions: vec![Suspension {
            from_ms: 100 * MIN,
            to_ms: 200 * MIN,
            suspended_kva: 1250.0,
        }],
        suspension_factor: 1.0,
        noise_floor_kw: 5.0,
        suspension: timing(5 * MIN, 5 * MIN, 5.0),
    }
}

/// The demand value of the 15 minutes ending at minute `end`.
fn demand(end: i64, kw: f64) -> Demand {
    Demand {
        start_ms: (end - 15) * MIN,
        end_ms: end * MIN,
        kw,
        kva: Some(kw * 1.25),
        max_load: kw * 2.0,
        max_load_ms: end * MIN - 1000,
        from_energy: false,
    }
}

fn window(start_ms: i64, len_ms: i64, fields: &[(&str, f64)]) -> Window {
    let stats = fields
        .iter()
        .map(|(k, v)| {
            (
                Arc::from(*k),
                Stat {
                    n: 12,
                    mean: *v,
                    min: *v - 1.0,
                    max: *v + 1.0,
                    min_ms: start_ms + 1000,
                    max_ms: start_ms + 2000,
                },
            )
        })
        .collect();
    Window {
        start_ms,
        len_ms,
        polls: 12,
        expected: 12,
        complete: true,
        stats,
    }
}

fn run(r: &mut MeterRules, values: &[f64]) -> Vec<Event> {
    let mut out = Vec::new();
    for (k, v) in values.iter().enumerate() {
        out.extend(r.on_window(&window(k as i64 * MIN, MIN, &[("voltage_l1_l2", *v)])));
    }
    out
}

#[test]
fn a_step_to_plus_nine_percent_opens_after_the_minimum_duration_and_closes_after_clearing() {
    let mut r = MeterRules::new(set());
    // 10 kV +7 % = 10 700 V. Minutes 0-1 normal, 2-6 at +9 % (10 900 V), then normal.
    let v = [
        10_000.0, 10_050.0, 10_900.0, 10_900.0, 10_900.0, 10_950.0, 10_900.0, 10_000.0, 10_000.0,
        10_000.0, 10_000.0,
    ];
    let ev = run(&mut r, &v);
    let opened: Vec<_> = ev.iter().filter(|e| e.state == State::Open).collect();
    // Opens at the end of minute 4 (3 violating minutes: 2, 3, 4).
    assert_eq!(opened[0].start_ms, 2 * MIN);
    assert_eq!(opened[0].end_ms, 5 * MIN);
    assert_eq!(opened[0].limit, 10_700.0);
    assert_eq!(opened[0].kind, Kind::VoltageHigh);
    let closed: Vec<_> = ev.iter().filter(|e| e.state == State::Closed).collect();
    assert_eq!(closed.len(), 1, "{ev:#?}");
    let c = closed[0];
    // Violating minutes 2..=6: 5 minutes; peak is the largest sample (10 951 V in minute 5).
    assert_eq!(
        (c.start_ms, c.end_ms, c.duration_ms()),
        (2 * MIN, 7 * MIN, 5 * MIN)
    );
    assert_eq!((c.peak, c.peak_ms), (10_951.0, 5 * MIN + 2000));
    assert_eq!(c.id, "M1/voltage_high/l1_l2/0/120000");
    assert!(r.open_events().next().is_none());
}

#[test]
fn a_blip_shorter_than_the_minimum_duration_opens_nothing() {
    let mut r = MeterRules::new(set());
    let ev = run(&mut r, &[10_000.0, 10_900.0, 10_900.0, 10_000.0, 10_000.0]);
    assert!(ev.is_empty(), "{ev:#?}");
}

#[test]
fn hovering_at_the_limit_opens_one_event_not_fifty() {
    let mut r = MeterRules::new(set());
    // Above 10 700 for 3 minutes, then alternating just below (inside the
    // 0.5 % = 50 V margin) and just above the limit for 50 minutes.
    let mut v = vec![10_750.0; 3];
    for k in 0..50 {
        v.push(if k % 2 == 0 { 10_690.0 } else { 10_710.0 });
    }
    v.extend([10_500.0; 4]);
    let ev = run(&mut r, &v);
    let opened = ev
        .iter()
        .filter(|e| e.state == State::Open)
        .map(|e| e.id.clone())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(opened.len(), 1, "one event id");
    assert_eq!(ev.iter().filter(|e| e.state == State::Closed).count(), 1);
}

#[test]
fn low_voltage_on_the_lower_band() {
    let mut r = MeterRules::new(set());
    // -8 % = 9 200 V < 9 300 V (−7 %).
    let ev = run(&mut r, &[9_200.0, 9_200.0, 9_200.0]);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].kind, ev[0].limit), (Kind::VoltageLow, 9_300.0));
    assert_eq!(ev[0].peak, 9_199.0, "the lowest sample");
}

#[test]
fn incomplete_windows_change_nothing() {
    let mut r = MeterRules::new(set());
    let mut w = window(0, MIN, &[("voltage_l1_l2", 12_000.0)]);
    w.complete = false;
    for k in 0..5 {
        w.start_ms = k * MIN;
        assert!(r.on_window(&w).is_empty());
    }
}

#[test]
fn thd_and_individual_orders_on_the_long_window() {
    let mut r = MeterRules::new(set());
    // 10 kV GB/T 14549: THDu 4 %, odd orders 3.2 %, even 1.6 %.
    let w = window(
        0,
        10 * MIN,
        &[
            ("thd_voltage_l1_n", 6.0),
            ("harmonic_voltage_l1_n_h5", 3.5),
            ("harmonic_voltage_l1_n_h4", 1.0),
        ],
    );
    let ev = r.on_window(&w);
    let kinds: Vec<_> = ev.iter().map(|e| (e.kind, e.order, e.limit)).collect();
    assert_eq!(
        kinds,
        vec![(Kind::ThdVoltage, 0, 4.0), (Kind::HarmonicVoltage, 5, 3.2)]
    );
    // Not judged on the short window.
    let mut r = MeterRules::new(set());
    assert!(
        r.on_window(&window(0, MIN, &[("thd_voltage_l1_n", 6.0)]))
            .is_empty()
    );
}

#[test]
fn line_voltage_thd_of_a_three_wire_meter_is_judged_with_the_phase_limits() {
    let mut r = MeterRules::new(set());
    let w = window(
        0,
        10 * MIN,
        &[
            ("thd_voltage_l1_l2", 4.5),
            ("harmonic_voltage_l2_l3_h5", 3.4),
        ],
    );
    let ev = r.on_window(&w);
    let got: Vec<_> = ev
        .iter()
        .map(|e| (e.kind, e.phase.as_str(), e.order, e.limit))
        .collect();
    assert_eq!(
        got,
        vec![
            (Kind::ThdVoltage, "l1_l2", 0, 4.0),
            (Kind::HarmonicVoltage, "l2_l3", 5, 3.2)
        ]
    );
    // A meter judged phase-to-neutral (4-wire) is judged on its phase
    // THD only: its line-voltage THD is shown, not judged twice.
    let mut phase = set();
    phase.voltage_refs = vec![("l1".into(), "voltage_l1_n".into(), 5_774.0)];
    let mut r = MeterRules::new(phase);
    assert!(r.on_window(&w).is_empty());
}

#[test]
fn tdd_is_judged_against_the_ieee519_row_of_the_short_circuit_ratio() {
    let mut set = set();
    set.limits.current = Presets::builtin().current_limits("ieee519", 35.0);
    let mut r = MeterRules::new(set);
    let ev = r.on_window(&window(
        0,
        10 * MIN,
        &[("tdd_current_l1", 9.0), ("tdd_current_l2", 7.0)],
    ));
    let got: Vec<_> = ev
        .iter()
        .map(|e| (e.kind, e.phase.as_str(), e.limit))
        .collect();
    assert_eq!(got, vec![(Kind::TddCurrent, "l1", 8.0)]);
    assert!(
        ev[0].source.contains("Isc/IL 35 in 20–50"),
        "{}",
        ev[0].source
    );
}

#[test]
fn load_during_a_suspension_on_the_demand_basis() {
    // 2000 kVA contracted, 1250 kVA suspended from minute 100 to 200:
    // 750 kVA allowed. Sliding 15-minute values ending at minutes
    // 110..=140: 900 kVA (720 kW × 1.25) for those ending at 118..=125.
    let mut r = LoadRules::new(load_set());
    let mut ev = Vec::new();
    for end in 110..=140 {
        let kw = if (118..=125).contains(&end) {
            720.0
        } else {
            400.0
        };
        ev.extend(r.on_suspension_basis(&demand(end, kw)));
    }
    let open = ev.iter().find(|e| e.state == State::Open).unwrap();
    assert_eq!(
        (open.kind, open.limit, open.unit),
        (Kind::SuspensionLoad, 750.0, "kVA")
    );
    assert_eq!(open.meter, "*");
    assert_eq!(open.id, format!("C1/*/suspension_load//0/{}", 103 * MIN));
    assert_eq!(
        open.start_ms,
        103 * MIN,
        "start of the first violating period"
    );
    let closed = ev.iter().find(|e| e.state == State::Closed).unwrap();
    assert_eq!((closed.start_ms, closed.end_ms), (103 * MIN, 125 * MIN));
    assert_eq!(
        (closed.peak, closed.peak_ms),
        (900.0, 118 * MIN),
        "the basis, not a sample"
    );
    // The same load before the suspension is fine.
    let mut r = LoadRules::new(load_set());
    for end in 20..=60 {
        assert!(r.on_suspension_basis(&demand(end, 720.0)).is_empty());
    }
}

#[test]
fn demand_above_105_percent_of_contract() {
    let mut r = LoadRules::new(load_set());
    // 1000 kW × 1.05 = 1050 kW.
    assert!(r.on_demand(&demand(15, 1_040.0)).is_empty());
    let ev = r.on_demand(&demand(16, 1_100.0));
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].kind, ev[0].limit, ev[0].value),
        (Kind::DemandExceeded, 1050.0, 1100.0)
    );
    assert_eq!(
        ev[0].source,
        "contracted maximum demand 1000 kW × 1.05 = 1050 kW"
    );
}

#[test]
fn an_interruption_is_not_a_low_voltage_event() {
    let mut r = MeterRules::new(set());
    // 10 kV at 0 V (an outage while the meter still answers), then 500 V
    // (5 %: still interrupted), then 9 200 V: only the last is low.
    let ev = run(&mut r, &[0.0, 0.0, 0.0, 0.0, 500.0, 500.0, 500.0]);
    assert!(ev.is_empty(), "{ev:#?}");
    let ev = run(&mut r, &[9_200.0, 9_200.0, 9_200.0]);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, Kind::VoltageLow);
}

#[test]
fn restored_open_events_continue_without_a_duplicate() {
    let mut r = MeterRules::new(set());
    let ev = run(&mut r, &[10_900.0, 10_900.0, 10_900.0]);
    let open = ev[0].clone();
    // "Restart": a fresh engine restored from the stored open event.
    let mut r2 = MeterRules::new(set());
    r2.restore([open.clone()]);
    let more = r2.on_window(&window(3 * MIN, MIN, &[("voltage_l1_l2", 10_900.0)]));
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].id, open.id, "same event continues");
    assert_eq!(more[0].end_ms, 4 * MIN);
}
