//! Hot paths of pqwatch, measured with criterion (part 1 of
//! `benches/run.sh`; results in BENCHMARKS.md).
//!
//! Run: `cargo bench --bench hotpaths` (add `-- --quick` for a short run).
//! criterion keeps its estimates in `target/criterion/<id>/new/`;
//! `benches/render.py` reads the medians from there.
//!
//! * `plan/<profile>`: plan a meter's reads for every field of a profile
//!   (`MeterPlan::new`, which runs `modbus::plan`);
//! * `decode/<profile>`: one poll's register words → values
//!   (`MeterPlan::assemble`: `modbus::decode`, scale, units, PT/CT,
//!   plausibility, derived fields), on words the simulator encodes;
//! * `decode/f32_word`: one `decode::decode` of an f32;
//! * `line/<profile>`: one reading → one line of InfluxDB line protocol;
//! * `outbox/commit_and_delete_5040_points`: `Outbox::push` of a gzipped
//!   5,040-point batch (one fsync'd SQLite commit) and `Outbox::delete`
//!   once "acknowledged": what every batch costs the outbox;
//! * `watch/aggregate_sample/<profile>`: one reading into the 1-minute
//!   aggregator (what the watch does per sample, before any rule);
//! * `rules/window/<profile>`: `MeterRules::on_window` on one complete
//!   1-minute window (every rule of the meter; no event open);
//! * `ledger/minute/<profile>`: `report::ledger::from_short_window` of one
//!   window and its merge into the day's ledger.

#[path = "support/mod.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pqwatch::modbus::assemble::MeterPlan;
use pqwatch::modbus::decode::{DataType, WordOrder, decode};
use pqwatch::quality::aggregate::Aggregator;
use pqwatch::quality::rules::MeterRules;
use pqwatch::report::ledger::{self, DayLedger, LedgerSpec};
use pqwatch::sink::line::{self, Dialect};
use pqwatch::sink::outbox::{self, Outbox};
use pqwatch::state::StateDb;
use std::hint::black_box;

const PROFILES: [&str; 5] = [
    "carlo-gavazzi-em24",
    "eastron-sdm630",
    "janitza-umg96rm",
    "schneider-pm5100",
    "siemens-pac3200",
];

struct Fixture {
    name: &'static str,
    cfg: pqwatch::config::Config,
    sim: pqwatch::sim::SimMeter,
}

impl Fixture {
    fn new(name: &'static str) -> Fixture {
        let cfg = support::load(&support::config_text(1, name));
        let sim = support::sim_meters(&cfg).remove(0);
        Fixture { name, cfg, sim }
    }
    fn meter(&self) -> &pqwatch::config::Meter {
        &self.cfg.meters[0]
    }
}

fn fixtures() -> Vec<Fixture> {
    PROFILES.iter().map(|p| Fixture::new(p)).collect()
}

fn bench_plan_decode(c: &mut Criterion) {
    let fx = fixtures();
    let mut g = c.benchmark_group("plan");
    for f in &fx {
        let m = f.meter();
        g.bench_function(f.name, |b| {
            b.iter(|| {
                MeterPlan::new(black_box(m.profile.clone()), None, support::ratios(m)).unwrap()
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decode");
    for f in &fx {
        let m = f.meter();
        let words = support::poll_words(&f.sim, &m.plan, support::NOV_2026_MS);
        let fields = m.plan.assemble(&words).values.len();
        g.throughput(Throughput::Elements(fields as u64));
        g.bench_function(f.name, |b| b.iter(|| m.plan.assemble(black_box(&words))));
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("f32_word", |b| {
        b.iter(|| decode(black_box(&[0x4366, 0x8000]), DataType::F32, WordOrder::ABCD).to_f64());
    });
    g.finish();
}

fn bench_line(c: &mut Criterion) {
    let mut g = c.benchmark_group("line");
    for f in &fixtures() {
        let r = support::reading(f.meter(), &f.sim, support::NOV_2026_MS);
        g.throughput(Throughput::Elements(r.values.len() as u64));
        let mut out = String::with_capacity(8192);
        g.bench_function(f.name, |b| {
            b.iter(|| {
                out.clear();
                line::encode(black_box(&r), Dialect::V2, &mut out)
            });
        });
    }
    g.finish();
}

fn bench_outbox(c: &mut Criterion) {
    // 5,040 points: 72 SDM630 fields × 70 readings, as the sink seals them.
    let f = Fixture::new("eastron-sdm630");
    let mut raw = String::new();
    let mut points = 0;
    let mut k = 0;
    while points < 5000 {
        let r = support::reading(f.meter(), &f.sim, support::NOV_2026_MS + k * 5000);
        points += line::encode(&r, Dialect::V2, &mut raw);
        raw.push('\n');
        k += 1;
    }
    let body = outbox::gzip(raw.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::new(StateDb::open(dir.path()).unwrap()).unwrap();
    let mut g = c.benchmark_group("outbox");
    g.throughput(Throughput::Elements(points as u64));
    g.bench_function(
        BenchmarkId::new("commit_and_delete", format!("{points}_points")),
        |b| {
            b.iter(|| {
                let id = ob
                    .push(support::NOV_2026_MS, points, raw.len(), &body)
                    .unwrap();
                ob.delete(id).unwrap();
            });
        },
    );
    g.finish();
}

fn bench_watch(c: &mut Criterion) {
    let fx = fixtures();
    let mut g = c.benchmark_group("watch");
    for f in &fx {
        let m = f.meter();
        let readings: Vec<_> = (0..12)
            .map(|k| support::reading(m, &f.sim, support::NOV_2026_MS + k * support::POLL_MS))
            .collect();
        g.bench_function(BenchmarkId::new("aggregate_sample", f.name), |b| {
            let mut agg = Aggregator::new(60_000, support::POLL_MS, 0.9);
            let mut i = 0usize;
            b.iter(|| {
                // Twelve samples per minute; each 12th closes a window.
                let r = &readings[i % 12];
                let ts = support::NOV_2026_MS + (i as i64) * support::POLL_MS;
                i += 1;
                agg.push(ts, black_box(&r.values))
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rules");
    for f in &fx {
        let m = f.meter();
        let w = support::minute_window(m, &f.sim, support::NOV_2026_MS);
        let mut rules = MeterRules::new(support::rule_set(&f.cfg, m));
        g.bench_function(BenchmarkId::new("window", f.name), |b| {
            b.iter(|| rules.on_window(black_box(&w)));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ledger");
    for f in &fx {
        let m = f.meter();
        let spec =
            LedgerSpec::from_config(m, f.cfg.customers.first(), f.cfg.rules.interruption_pct);
        // A day's worth of distinct minutes, merged in turn.
        let windows: Vec<_> = (0..60)
            .map(|k| support::minute_window(m, &f.sim, support::NOV_2026_MS + k * 60_000))
            .collect();
        g.bench_function(BenchmarkId::new("minute", f.name), |b| {
            let mut day = DayLedger::default();
            let mut i = 0usize;
            b.iter(|| {
                let minute = ledger::from_short_window(black_box(&windows[i % 60]), &spec);
                i += 1;
                day.merge(&minute);
            });
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_plan_decode,
    bench_line,
    bench_outbox,
    bench_watch
);
criterion_main!(benches);
