//! Tests of `model`, by topic in the files below; this file holds the
//! fixtures they share (configurations, minute windows, ledgers, reports)
//! and the tests of the small helpers (verdict combination, field names).

mod distortion;
mod month;
mod supply;
mod voltage;

use super::meter::phase_order;
use super::*;
use crate::calendar::{day_key, local_date};
use crate::config::Config;
use crate::quality::aggregate::{Stat, Window};
use crate::report::ledger::VoltageDay;
use crate::report::ledger::{self, LedgerSpec};

#[test]
fn verdicts_combine_fail_first() {
    use Verdict::*;
    assert_eq!(Verdict::combine([Pass, NoData, Fail]), Fail);
    assert_eq!(Verdict::combine([NoData, Pass]), Pass);
    assert_eq!(Verdict::combine([NoData, NoData]), NoData);
    assert_eq!(Verdict::combine([]), NoData);
}

#[test]
fn phases_and_orders_from_field_names() {
    assert_eq!(phase_order("harmonic_voltage_l1_n_h5"), ("l1".into(), 5));
    assert_eq!(phase_order("harmonic_voltage_l3_n_h25"), ("l3".into(), 25));
    assert_eq!(phase_order("thd_voltage_l2_n"), ("l2".into(), 0));
    assert_eq!(phase_order("thd_current_l1"), ("l1".into(), 0));
}

#[test]
fn insufficient_beats_pass_but_not_fail() {
    use Verdict::*;
    assert_eq!(Verdict::combine([Pass, Insufficient]), Insufficient);
    assert_eq!(Verdict::combine([Insufficient, Pass, NoData]), Insufficient);
    assert_eq!(Verdict::combine([Insufficient, Fail]), Fail);
    assert_eq!(truncate2(99.995), 99.99);
    assert_eq!(truncate2(95.0), 95.0);
    assert_eq!(truncate2(100.0 * (1.0 - 69.0 / 1380.0)), 95.0);
}

fn window(start_ms: i64, len_ms: i64, fields: &[(&str, f64)]) -> Window {
    Window {
        start_ms,
        len_ms,
        polls: 12,
        expected: 12,
        complete: true,
        stats: fields
            .iter()
            .map(|(k, v)| {
                (
                    std::sync::Arc::from(*k),
                    Stat {
                        n: 12,
                        mean: *v,
                        min: *v,
                        max: *v,
                        min_ms: start_ms,
                        max_ms: start_ms + 1_000,
                    },
                )
            })
            .collect(),
    }
}

/// A 0.38 kV customer (220/380 V) on an SDM630, one day in Asia/Shanghai.
const LV: &str = r#"
[daemon]
profile_dir = "/nonexistent"
timezone = "Asia/Shanghai"

[[customers]]
id = "C1"

[[meters]]
id = "LV1"
customer = "C1"
address = "127.0.0.1:502"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 380
"#;

/// The LV1 ledger of 2026-10-05 from one L1 value per minute (L2 and
/// L3 follow L1 during an outage, else stay at 220 V).
fn lv_day(cfg: &Config, l1: &dyn Fn(i64) -> f64) -> BTreeMap<String, BTreeMap<String, DayLedger>> {
    let tz = &cfg.timezone;
    let m = &cfg.meters[0];
    let spec = LedgerSpec::from_config(m, cfg.customers.first(), cfg.rules.interruption_pct);
    let start = Period::parse("2026-10-05").unwrap().start_ms(tz);
    let mut day = DayLedger::default();
    for i in 0..1440i64 {
        let v = l1(i);
        let other = if v < 22.0 { v } else { 220.0 };
        let w = window(
            start + i * 60_000,
            60_000,
            &[
                ("voltage_l1_n", v),
                ("voltage_l2_n", other),
                ("voltage_l3_n", other),
            ],
        );
        day.merge(&ledger::from_short_window(&w, &spec));
    }
    let key = day_key(local_date(start, tz));
    [("LV1".to_string(), [(key, day)].into())].into()
}

/// The report of a period that has ended, on `ledger`.
fn ended_report(
    cfg: &Config,
    period: &Period,
    ledger: &BTreeMap<String, BTreeMap<String, DayLedger>>,
    target: f64,
) -> Report {
    build(
        &crate::report::Settings::of(cfg),
        &cfg.customers[0],
        target,
        &Inputs {
            period,
            now_ms: period.end_ms(&cfg.timezone) + 1,
            ledger,
            events: &[],
            unreadable_rows: 0,
        },
    )
}

fn lv_report(cfg: &Config, ledger: &BTreeMap<String, BTreeMap<String, DayLedger>>) -> Report {
    let period = Period::parse("2026-10-05").unwrap();
    build(
        &crate::report::Settings::of(cfg),
        &cfg.customers[0],
        95.0,
        &Inputs {
            period: &period,
            now_ms: period.end_ms(&cfg.timezone) + 3_600_000,
            ledger,
            events: &[],
            unreadable_rows: 0,
        },
    )
}
