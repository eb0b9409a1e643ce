//! Customer reports at scale (part 7 of `benches/run.sh`): the time to
//! compute and render the monthly reports of 1,000 customers from 30 days
//! of ledger.
//!
//! Run: `cargo bench --bench reports` (release build; about a minute).
//!
//! 1. A config of `PQWATCH_BENCH_CUSTOMERS` customers (1,000) with one 10 kV
//!    meter each (`PQWATCH_BENCH_PROFILE`, default `janitza-umg96rm`: THD
//!    and harmonics 2–25 per phase, the largest ledger of the built-in
//!    profiles).
//! 2. The ledger of November 2026 (30 days × 1,440 minutes, plus the
//!    10-minute and 15-minute windows) is computed for
//!    `PQWATCH_BENCH_TEMPLATES` (2) meters from the simulator's model, one
//!    window per minute through `ledger::from_short_window` + merge (that
//!    cost per minute is printed too), and stored for every meter as the
//!    daemon leaves it after its hourly compaction: one row per meter and
//!    day (30,000 rows), in a temporary state database. Meters share the
//!    ledgers of the templates (meter i gets template i mod 2): the report
//!    code reads, decodes and merges every row the same way whatever their
//!    values. `PQWATCH_BENCH_EVENTS_PER_CUSTOMER` (3) closed events per
//!    customer lie in the month.
//! 3. `report::assemble` (ledger and events from the state database,
//!    `model::build`) and `render::render` (subject, text, HTML and CSV) for
//!    every customer, `PQWATCH_BENCH_REPS` times (3); the median is
//!    reported, and one extra pass times the parts separately.
//!
//! Results: printed, and written as JSON to `PQWATCH_BENCH_JSON` (default
//! `benches/results/reports.json`).

#[path = "support/mod.rs"]
mod support;

use pqwatch::calendar::{Period, day_key};
use pqwatch::events::EventStore;
use pqwatch::quality::aggregate::{Stat, Window};
use pqwatch::quality::rules::{Event, Kind, State};
use pqwatch::report::ledger::{self, DayLedger, LedgerSpec};
use pqwatch::report::store::LedgerStore;
use pqwatch::report::{self, model, render};
use pqwatch::state::StateDb;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A window of `len_ms` starting at `start_ms` whose every aggregated field
/// holds the model's value at its start (n = len / 5 s samples, ±0.2 %).
fn window(values: &std::collections::HashMap<String, f64>, start_ms: i64, len_ms: i64) -> Window {
    let n = (len_ms / support::POLL_MS) as u32;
    let stats: BTreeMap<Arc<str>, Stat> = values
        .iter()
        .filter(|(k, _)| pqwatch::quality::aggregate::aggregated(k))
        .map(|(k, &v)| {
            (
                Arc::from(k.as_str()),
                Stat {
                    n,
                    mean: v,
                    min: v * 0.998,
                    max: v * 1.002,
                    min_ms: start_ms,
                    max_ms: start_ms + len_ms / 2,
                },
            )
        })
        .collect();
    Window {
        start_ms,
        len_ms,
        polls: n,
        expected: n,
        complete: true,
        stats,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(()); // built by `cargo test --all-targets`; runs with `cargo bench`
    }
    let customers = env_usize("PQWATCH_BENCH_CUSTOMERS", 1000);
    let templates = env_usize("PQWATCH_BENCH_TEMPLATES", 2).clamp(1, customers);
    let reps = env_usize("PQWATCH_BENCH_REPS", 3).max(1);
    let events_per = env_usize("PQWATCH_BENCH_EVENTS_PER_CUSTOMER", 3);
    let profile =
        std::env::var("PQWATCH_BENCH_PROFILE").unwrap_or_else(|_| "janitza-umg96rm".into());
    let out_path = std::env::var("PQWATCH_BENCH_JSON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/benches/results/reports.json").into()
    });

    let cfg = support::load(&support::config_text(customers, &profile));
    let sims = support::sim_meters(&cfg);
    let period = Period::parse("2026-11").map_err(anyhow::Error::msg)?;
    let tz = cfg.timezone.clone();
    let days: Vec<_> = period.days().collect();
    assert_eq!(days.len(), 30);
    assert_eq!(period.start_ms(&tz), support::NOV_2026_MS);

    // 1. Ledgers of the template meters, minute by minute.
    let t = Instant::now();
    let mut minute_time = Duration::ZERO;
    let mut minutes = 0u64;
    let mut ledgers: Vec<Vec<DayLedger>> = Vec::new();
    for (m, sim) in cfg.meters.iter().zip(&sims).take(templates) {
        let spec = LedgerSpec::from_config(
            m,
            cfg.customers.iter().find(|c| c.id == m.customer),
            cfg.rules.interruption_pct,
        );
        let mut per_day = Vec::new();
        for d in 0..days.len() as i64 {
            let day_start = support::NOV_2026_MS + d * 86_400_000;
            let mut day = DayLedger::default();
            for k in 0..1440 {
                let start = day_start + k * 60_000;
                let values = sim.model.values(start, &[]);
                let w = window(&values, start, 60_000);
                let t0 = Instant::now();
                let minute = ledger::from_short_window(&w, &spec);
                day.merge(&minute);
                minute_time += t0.elapsed();
                minutes += 1;
                if k % 10 == 0 {
                    day.merge(&ledger::from_long_window(
                        &window(&values, start, 600_000),
                        &spec,
                    ));
                }
                // A sliding demand value every minute, as the watch stores.
                day.merge(&ledger::from_demand(&pqwatch::quality::demand::Demand {
                    start_ms: start - 840_000,
                    end_ms: start + 60_000,
                    kw: 300.0,
                    kva: Some(330.0),
                    max_load: 400.0,
                    max_load_ms: start,
                    from_energy: false,
                }));
            }
            per_day.push(day);
        }
        ledgers.push(per_day);
    }
    let ledger_s = t.elapsed().as_secs_f64();
    let per_minute_us = minute_time.as_secs_f64() * 1e6 / minutes as f64;
    println!(
        "ledger: {templates} template meters × {} days × 1,440 minutes in {ledger_s:.1} s; \
         from_short_window + merge: {per_minute_us:.2} µs per minute",
        days.len()
    );

    // 2. The state database: one compacted row per meter and day, events.
    let dir = tempfile::Builder::new()
        .prefix("pqwatch-bench-reports-")
        .tempdir()?;
    let t = Instant::now();
    let mut store = LedgerStore::new(StateDb::open(dir.path())?);
    let keys: Vec<String> = days.iter().map(|d| day_key(*d)).collect();
    let mut rows = 0;
    let mut row_bytes = 0usize;
    for (i, m) in cfg.meters.iter().enumerate() {
        let l = &ledgers[i % templates];
        row_bytes += l.iter().map(|d| d.encode().len()).sum::<usize>();
        rows += store.append(
            keys.iter()
                .zip(l)
                .map(|(k, d)| (m.id.as_str(), k.as_str(), d)),
        )?;
    }
    let events = EventStore::new(StateDb::open(dir.path())?);
    let mut n_events = 0;
    for (i, m) in cfg.meters.iter().enumerate() {
        for e in 0..events_per {
            let start =
                support::NOV_2026_MS + ((i * 7919 + e * 104_729) as i64 % (29 * 86_400)) * 1000;
            let (kind, phase, order, value, limit, unit) = match e % 3 {
                0 => (Kind::VoltageHigh, "l1", 0, 10_800.0, 10_700.0, "V"),
                1 => (Kind::ThdVoltage, "l2", 0, 4.4, 4.0, "%"),
                _ => (Kind::HarmonicVoltage, "l3", 5, 3.6, 3.2, "%"),
            };
            let ev = Event {
                id: format!("{}/{}/{phase}/{order}/{start}", m.id, kind.as_str()),
                meter: m.id.clone(),
                customer: m.customer.clone(),
                kind,
                phase: phase.into(),
                order,
                state: State::Closed,
                start_ms: start,
                end_ms: start + 900_000,
                value,
                peak: value * 1.01,
                peak_ms: start + 60_000,
                limit,
                unit,
                source: "bench".into(),
            };
            events.upsert(&ev, start + 900_000)?;
            n_events += 1;
        }
    }
    drop(store);
    let db_bytes = std::fs::metadata(dir.path().join("pqwatch.db"))?.len();
    let seed_s = t.elapsed().as_secs_f64();
    println!(
        "state db: {rows} ledger rows ({:.1} KiB each), {n_events} events, {:.1} MiB, seeded in {seed_s:.1} s",
        row_bytes as f64 / rows as f64 / 1024.0,
        db_bytes as f64 / 1048576.0
    );

    // 3. Every customer's report, assembled and rendered.
    let db = StateDb::open(dir.path())?;
    let now_ms = period.end_ms(&tz) + 8 * 3_600_000;
    let mut runs = Vec::new();
    let mut html_bytes = 0usize;
    for rep in 0..reps {
        let t = Instant::now();
        let mut bytes = 0usize;
        for c in &cfg.customers {
            let r = report::assemble(&report::Settings::of(&cfg), &db, c, &period, now_ms)?;
            let out = render::render(&r);
            bytes += out.html.len() + out.text.len() + out.csv.len();
        }
        let s = t.elapsed().as_secs_f64();
        html_bytes = bytes;
        println!("run {}: {customers} reports in {s:.2} s", rep + 1);
        runs.push(s);
    }

    // 4. Where the time goes (one pass, each part alone).
    let meters_of = |c: &str| -> Vec<&str> {
        cfg.meters
            .iter()
            .filter(|m| m.customer == c)
            .map(|m| m.id.as_str())
            .collect()
    };
    let (from, to) = (day_key(period.from), day_key(period.to));
    let t = Instant::now();
    for c in &cfg.customers {
        std::hint::black_box(report::store::read(&db, &meters_of(&c.id), &from, &to)?);
    }
    let read_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut ev_rows = 0;
    for c in &cfg.customers {
        ev_rows += pqwatch::events::between_for_customer(
            &db,
            &c.id,
            period.start_ms(&tz),
            period.end_ms(&tz),
        )?
        .len();
    }
    let events_s = t.elapsed().as_secs_f64();
    let mut built = Vec::new();
    let mut build_s = 0.0;
    for c in &cfg.customers {
        let (ledger, unreadable_rows) = report::store::read(&db, &meters_of(&c.id), &from, &to)?;
        let evs = pqwatch::events::between_for_customer(
            &db,
            &c.id,
            period.start_ms(&tz),
            period.end_ms(&tz),
        )?;
        let t = Instant::now();
        built.push(model::build(
            &report::Settings::of(&cfg),
            c,
            cfg.reports.voltage_target,
            &model::Inputs {
                period: &period,
                now_ms,
                ledger: &ledger,
                events: &evs,
                unreadable_rows,
            },
        ));
        build_s += t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    for r in &built {
        std::hint::black_box(render::render(r));
    }
    let render_s = t.elapsed().as_secs_f64();
    let total = median(runs.clone());
    println!(
        "median {total:.2} s for {customers} customers ({:.2} ms each); parts: ledger read+decode+merge {read_s:.2} s, \
         events query {events_s:.2} s ({} rows read in all), model {build_s:.2} s, render {render_s:.2} s",
        total * 1000.0 / customers as f64,
        ev_rows
    );

    let json = serde_json::json!({
        "customers": customers,
        "meters_per_customer": 1,
        "profile": profile,
        "days": days.len(),
        "templates": templates,
        "events": n_events,
        "ledger_rows": rows,
        "ledger_row_kib": row_bytes as f64 / rows as f64 / 1024.0,
        "db_mib": db_bytes as f64 / 1048576.0,
        "ledger_compute_s": ledger_s,
        "ledger_minute_us": per_minute_us,
        "seed_s": seed_s,
        "runs_s": runs,
        "median_s": total,
        "per_customer_ms": total * 1000.0 / customers as f64,
        "output_bytes": html_bytes,
        "parts_s": {
            "ledger_read": read_s,
            "events_query": events_s,
            "events_rows_read": ev_rows,
            "model_build": build_s,
            "render": render_s,
        },
    });
    if let Some(parent) = std::path::Path::new(&out_path).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("wrote {out_path}");
    Ok(())
}
