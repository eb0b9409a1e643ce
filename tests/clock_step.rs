//! Wall-clock steps, end to end: the `pqwatch` binary runs under
//! libfaketime (Debian `faketime`) with its wall clock read from a file
//! (`FAKETIME_TIMESTAMP_FILE`) and its monotonic clock left real, so
//! writing the file steps the daemon's wall clock the way `date -s` or an
//! NTP step would. It polls pqwatch's simulator and writes to
//! VictoriaMetrics; both run on real time.
//!
//! What must hold: after the wall clock is set back 10 minutes, polls keep
//! arriving at VictoriaMetrics every interval, stamped with the new time's
//! aligned instants (no gap); after it is set forward again nothing is
//! counted as skipped; each step is logged once with its size and counted
//! in `pqwatch_clock_steps_total`; `/api/meters` never shows a negative
//! age.

mod common;
mod e2e;

use common::{TestConfig, VictoriaMetrics, free_port};
use e2e::{Running, Sim, pqwatch_cmd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const INTERVAL_MS: i64 = 500;
const STEP_MS: i64 = 600_000;

fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists())
        .expect("libfaketimeMT.so.1 missing: run ./scripts/test.sh (installs faketime)")
}

fn config(state: &Path, vm: &str, port: u16) -> String {
    TestConfig::fast(vm)
        .state_dir(state)
        .daemon("shutdown_grace", "3s")
        .push(&format!(
            r#"
[[customers]]
id = "C1"

[[meters]]
id = "M1"
customer = "C1"
address = "127.0.0.1:{port}"
unit = 1
profile = "eastron-sdm630"
nominal_voltage = 400
"#
        ))
        .to_string()
}

async fn wait_for(what: &str, limit: Duration, d: &Running, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!(
                "timed out waiting for {what}\n--- daemon log ---\n{}",
                d.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(base: &str, path: &str) -> String {
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    c.get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// M1's poll timestamps in VictoriaMetrics within `[from, to]`.
async fn stamps(vm: &VictoriaMetrics, from: i64, to: i64) -> Vec<i64> {
    let s = vm
        .export(r#"meter_voltage_l1_n{meter="M1"}"#)
        .await
        .unwrap_or_default();
    let mut ts: Vec<i64> = s
        .iter()
        .flat_map(|s| s.timestamps.iter().copied())
        .filter(|t| (from..=to).contains(t))
        .collect();
    ts.sort();
    ts.dedup();
    ts
}

/// No gap: consecutive stamps one interval apart, covering `[from, to]`.
fn check_no_gap(ts: &[i64], from: i64, to: i64) -> Result<(), String> {
    let want = e2e::instants(from, to, INTERVAL_MS);
    let missing: Vec<i64> = want.iter().filter(|t| !ts.contains(t)).copied().collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "no poll at {} of {} instants in [{from}, {to}] (first missing {:?}); have {ts:?}",
            missing.len(),
            want.len(),
            missing.first()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_set_back_ten_minutes_does_not_stop_polling() -> anyhow::Result<()> {
    e2e::init_tracing();
    let vm = VictoriaMetrics::start()?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let port = free_port();
    let http = free_port();
    let path = dir.path().join("pqwatch.toml");
    std::fs::write(&path, config(&state, &vm.url(), port))?;
    let sim = Sim::start(&e2e::config(&config(&state, &vm.url(), port)), "").await;
    let clock = dir.path().join("faketime.rc");
    std::fs::write(&clock, "+0\n")?;

    let mut cmd = pqwatch_cmd(&["run", "-c", path.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info")
        .env("PQWATCH__HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env("LD_PRELOAD", libfaketime())
        .env_remove("FAKETIME")
        .env("FAKETIME_TIMESTAMP_FILE", &clock)
        .env("FAKETIME_CACHE_DURATION", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let mut d = Running::spawn(cmd, dir.path());
    let base = format!("http://127.0.0.1:{http}");

    // Polling on real time first.
    let t0 = e2e::now_ms();
    let mut n = 0;
    for _ in 0..200 {
        n = stamps(&vm, t0 - 5_000, t0 + 60_000).await.len();
        if n >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n >= 4, "polling before the step\n{}", d.stderr());

    // Set back 10 minutes.
    let back_at = e2e::now_ms();
    std::fs::write(&clock, format!("-{}\n", STEP_MS / 1000))?;
    wait_for(
        "the step back in the log",
        Duration::from_secs(10),
        &d,
        || d.stderr().contains("wall clock stepped back by 600"),
    )
    .await;
    // Within the next seconds the daemon polls on the new time, every
    // instant. The step reaches libfaketime within its 1 s cache, the
    // gateway within one interval.
    let (from, to) = (back_at - STEP_MS + 2_500, back_at - STEP_MS + 6_000);
    let mut ok = Err(String::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        ok = check_no_gap(&stamps(&vm, from - 1_000, to).await, from, to);
        if ok.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Err(e) = ok {
        panic!(
            "polls after the wall clock was set back: {e}\n--- daemon log ---\n{}",
            d.stderr()
        );
    }
    let meters: serde_json::Value = serde_json::from_str(&get(&base, "/api/meters").await)?;
    let age = meters[0]["age_s"].as_f64().expect("age_s");
    assert!((0.0..5.0).contains(&age), "age_s {age}: {meters}");
    let m = get(&base, "/metrics").await;
    assert_eq!(metric(&m, "pqwatch_clock_steps_total"), 1.0, "{m}");
    let skipped_before = metric(&m, "pqwatch_cycles_skipped_total");

    // Forward again: polls on real time, nothing skipped.
    let fwd_at = e2e::now_ms();
    std::fs::write(&clock, "+0\n")?;
    wait_for(
        "the step forward in the log",
        Duration::from_secs(10),
        &d,
        || d.stderr().contains("wall clock stepped forward by 600"),
    )
    .await;
    let (from, to) = (fwd_at + 2_500, fwd_at + 5_000);
    let mut ok = Err(String::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        ok = check_no_gap(&stamps(&vm, from - 1_000, to).await, from, to);
        if ok.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Err(e) = ok {
        panic!(
            "polls after the wall clock was set forward: {e}\n--- daemon log ---\n{}",
            d.stderr()
        );
    }
    let m = get(&base, "/metrics").await;
    assert_eq!(metric(&m, "pqwatch_clock_steps_total"), 2.0, "{m}");
    let skipped = metric(&m, "pqwatch_cycles_skipped_total") - skipped_before;
    assert!(
        skipped < 5.0,
        "{skipped} cycles counted as skipped by the step"
    );

    // Each step logged once.
    let log = d.stderr();
    assert_eq!(log.matches("wall clock stepped back").count(), 1, "{log}");
    assert_eq!(
        log.matches("wall clock stepped forward").count(),
        1,
        "{log}"
    );

    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{}", d.stderr());
    sim.stop().await;
    Ok(())
}
