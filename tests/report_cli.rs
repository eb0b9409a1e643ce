//! `pqwatch report`: preview and resend from the state database, with the
//! binary. The ledger is seeded through the library with a scripted hour
//! (3 minutes above the band in 60 → 95.00 %), and the CLI's CSV, text and
//! HTML must show the figures worked out by hand.

mod common;
mod e2e;

use common::TestConfig;
use e2e::{pqwatch_cmd, run_to_end};
use pqwatch::calendar::{day_key, local_date};
use pqwatch::quality::aggregate::{Stat, Window};
use pqwatch::report::ledger::{self, LedgerSpec};
use pqwatch::report::store::{LedgerStore, SendLog};
use pqwatch::state::StateDb;
use std::path::Path;
use std::time::Duration;

fn config(state: &Path) -> String {
    TestConfig::new()
        .state_dir(state)
        .daemon("timezone", "Asia/Shanghai")
        .smtp("from", "pq <pq@localhost>")
        .smtp("eml_dir", state.join("mail"))
        .push(
            r#"
[[customers]]
id = "C1"
name = "华北钢铁"
language = "en"
recipients = ["boss@steel.example"]

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:5020"
unit = 1
profile = "janitza-umg96rm"
nominal_voltage = 10000
"#,
        )
        .to_string()
}

fn window(start_ms: i64, v: f64) -> Window {
    let stat = |x: f64| Stat {
        n: 12,
        mean: x,
        min: x,
        max: x,
        min_ms: start_ms,
        max_ms: start_ms,
    };
    Window {
        start_ms,
        len_ms: 60_000,
        polls: 12,
        expected: 12,
        complete: true,
        stats: [
            ("voltage_l1_l2", v),
            ("voltage_l2_l3", 10_000.0),
            ("voltage_l3_l1", 10_000.0),
        ]
        .into_iter()
        .map(|(k, x)| (std::sync::Arc::from(k), stat(x)))
        .collect(),
    }
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.trim_start_matches('\u{feff}')
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn preview_and_resend_a_seeded_month() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let text = config(&state);
    let path = dir.path().join("pqwatch.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = pqwatch::config::from_str(&text, dir.path()).unwrap();
    let tz = &cfg.timezone;

    // 2026-10-05 09:00–09:59 local: l1_l2 at 10 800 V (above 10 700) in
    // minutes 20, 21 and 22.
    let start = jiff::civil::date(2026, 10, 5)
        .at(9, 0, 0, 0)
        .to_zoned_datetime(tz.clone())
        .unwrap()
        .timestamp()
        .as_millisecond();
    let spec = LedgerSpec::from_config(&cfg.meters[0], cfg.customers.first(), 10.0);
    let parts: Vec<_> = (0..60)
        .map(|i| {
            let t = start + i * 60_000;
            let v = if (20..23).contains(&i) {
                10_800.0
            } else {
                10_000.0
            };
            (
                day_key(local_date(t, tz)),
                ledger::from_short_window(&window(t, v), &spec),
            )
        })
        .collect();
    let mut store = LedgerStore::new(StateDb::open(&state).unwrap());
    store
        .append(parts.iter().map(|(d, l)| ("M1", d.as_str(), l)))
        .unwrap();
    drop(store);

    let cfg_arg = path.to_str().unwrap();
    let report = |args: &[&str]| {
        let mut all = vec!["report", "-c", cfg_arg];
        all.extend_from_slice(args);
        run_to_end(pqwatch_cmd(&all), Duration::from_secs(30))
    };
    let out = report(&["--customer", "C1", "--period", "2026-10", "--format", "csv"]);
    assert_eq!(out.code, Some(0), "{out}");
    let rows = csv_rows(&out.stdout);
    let col = |n: &str| rows[0].iter().position(|h| h == n).unwrap();
    let oct5: Vec<_> = rows
        .iter()
        .filter(|r| r[col("date")] == "2026-10-05" && r[col("phase")] == "l1_l2")
        .collect();
    assert_eq!(oct5.len(), 1, "{}", out.stdout);
    let r = oct5[0];
    assert_eq!(r[col("monitored_min")], "60");
    assert_eq!(r[col("above_min")], "3");
    assert_eq!(r[col("below_min")], "0");
    let rate: f64 = r[col("qualification_rate_pct")].parse().unwrap();
    assert!((rate - 95.0).abs() < 1e-9, "{r:?}");
    let max: f64 = r[col("voltage_max")].parse().unwrap();
    assert_eq!(max, 10_800.0);

    // Text and HTML say the same rate.
    let out = report(&[
        "--customer",
        "C1",
        "--period",
        "2026-10",
        "--format",
        "text",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("95.00"), "{}", out.stdout);
    let html = dir.path().join("r.html");
    let out = report(&[
        "--customer",
        "C1",
        "--from",
        "2026-10-05",
        "--to",
        "2026-10-05",
        "--out",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("95.00"), "one day, same minutes");
    assert!(page.contains("2026-10-05"));

    // Unknown customer and bad period: clear errors.
    let out = report(&["--customer", "C2", "--period", "2026-10"]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("no customer \"C2\""), "{out}");
    let out = report(&["--customer", "C1", "--period", "2026-13"]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("--period"), "{out}");

    // --send queues it (twice: a resend is on purpose), logged once per period.
    for _ in 0..2 {
        let out = report(&["--customer", "C1", "--period", "2026-10", "--send"]);
        assert_eq!(out.code, Some(0), "{out}");
        assert!(out.stderr.contains("queued"), "{out}");
    }
    let db = StateDb::open_readonly(&state).unwrap();
    let queued: i64 = db
        .conn
        .query_row("SELECT count(*) FROM mail_queue", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 2);
    let logged = SendLog::get(&db, "C1", "2026-10").unwrap().unwrap();
    assert_eq!(logged.recipients, ["boss@steel.example"]);
    assert_eq!(SendLog::list(&db, 10).unwrap().len(), 1);
}
