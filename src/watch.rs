//! The watch task: readings → windows → rules → events.
//!
//! One task owns the aggregators and rule state of every meter. For each
//! reading it updates the meter's short (1 min), long (10 min) and demand
//! (15 min) windows; each closed window is written to InfluxDB as its own
//! measurement (`pq_1m`, `pq_10m`, `pq_15m`: named after the window
//! length) and judged by the meter's rules. Event changes are stored in the
//! state database first (so a restart continues them), then written as
//! `pq_event` points and handed to the notifier. A timer closes the windows
//! of meters that went silent, so their gaps show as incomplete windows.
//!
//! It also records the peak load of every declared suspension, violated or
//! not (`pq_suspension` points: the peak and its time, per customer and
//! suspension), and feeds the report ledger: every complete window's
//! contribution (`report::ledger`) is stored within a second of the window
//! closing, all meters in one transaction, so a restart loses at most the
//! minute in progress. Each meter-day is compacted into one row after an
//! hour of rows and when the day is over; days older than `[reports]
//! keep_days` are deleted.
//!
//! The pure parts (aggregation, limits, rules) are in `quality`; this task
//! only routes their input and output.

use crate::config::Config;
use crate::events::{Change, EventChange, EventStore};
use crate::metrics::Metrics;
use crate::quality::aggregate::{Aggregator, Window};
use crate::quality::rules::{Event, MeterRules, RuleSet, State, Suspension};
use crate::reading::{MeterMeta, Point, Reading, Record};
use crate::report::ledger::{self, DayLedger, LedgerSpec};
use crate::report::schedule::{day_key, local_date};
use crate::report::store::LedgerStore;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Windows of silent meters close this long after their end, to let late
/// polls of a slow gateway arrive first.
const CLOSE_GRACE_MS: i64 = 10_000;

fn demand_fields(f: &str) -> bool {
    f == "active_power_total" || f == "apparent_power_total"
}

/// "1m", "10m", "15m", "2s": the window length as a measurement suffix.
pub fn window_name(len_ms: i64) -> String {
    let s = len_ms / 1000;
    if len_ms % 60_000 == 0 {
        format!("{}m", s / 60)
    } else if len_ms % 1000 == 0 {
        format!("{s}s")
    } else {
        format!("{len_ms}ms")
    }
}

struct MeterWatch {
    meta: Option<Arc<MeterMeta>>,
    aggs: Vec<(Aggregator, &'static str)>,
    rules: MeterRules,
    /// Peak load (kVA or kW) per active suspension: (from_ms, peak, at_ms, unit).
    suspension_peaks: HashMap<i64, (f64, i64, &'static str)>,
    ledger_spec: LedgerSpec,
    interval_ms: i64,
}

/// A meter's windows and rules, from config (no open events yet).
fn meter_watch(cfg: &Config, m: &crate::config::Meter) -> MeterWatch {
    let r = &cfg.rules;
    let short = r.short_window.as_millis() as i64;
    let long = r.long_window.as_millis() as i64;
    let demand = r.demand_window.as_millis() as i64;
    let names = measurement_names(short, long, demand);
    let customer = cfg.customers.iter().find(|c| c.id == m.customer);
    let interval = m.interval.as_millis() as i64;
    let set = rule_set(cfg, m);
    let c = r.min_completeness;
    MeterWatch {
        meta: None,
        aggs: vec![
            (Aggregator::new(short, interval, c), names[0]),
            (Aggregator::new(long, interval, c), names[1]),
            (
                Aggregator::new(demand, interval, c).with_filter(demand_fields),
                names[2],
            ),
        ],
        rules: MeterRules::new(set),
        suspension_peaks: HashMap::new(),
        ledger_spec: LedgerSpec::from_config(m, customer),
        interval_ms: interval,
    }
}

/// Everything the rules of one meter need, from config.
pub fn rule_set(cfg: &Config, m: &crate::config::Meter) -> RuleSet {
    let r = &cfg.rules;
    let customer = cfg.customers.iter().find(|c| c.id == m.customer);
    RuleSet {
        meter: m.id.clone(),
        customer: m.customer.clone(),
        limits: m.limits.clone(),
        voltage_refs: m.voltage_refs.clone(),
        short_ms: r.short_window.as_millis() as i64,
        long_ms: r.long_window.as_millis() as i64,
        demand_ms: r.demand_window.as_millis() as i64,
        voltage: r.voltage,
        harmonics: r.harmonics,
        suspension: r.suspension,
        demand: r.demand,
        contracted_kva: customer.and_then(|c| c.contracted_kva),
        suspensions: customer
            .map(|c| {
                c.suspensions
                    .iter()
                    .map(|s| Suspension {
                        from_ms: s.from_ms,
                        to_ms: s.to_ms,
                        suspended_kva: s.kva,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        suspension_factor: r.suspension_factor,
        noise_floor_kw: r.noise_floor_kw,
        max_demand_kw: customer.and_then(|c| c.max_demand_kw),
        demand_factor: r.demand_factor,
    }
}

/// The measurement names of the three windows, leaked once per distinct
/// set of lengths (a handful per process, even across reloads).
fn measurement_names(short: i64, long: i64, demand: i64) -> [&'static str; 3] {
    type Names = Vec<((i64, i64, i64), [&'static str; 3])>;
    static NAMES: std::sync::Mutex<Names> = std::sync::Mutex::new(Vec::new());
    let mut known = NAMES.lock().expect("names lock");
    if let Some((_, n)) = known.iter().find(|(k, _)| *k == (short, long, demand)) {
        return *n;
    }
    let n = [
        leak(format!("pq_{}", window_name(short))),
        leak(format!("pq_{}", window_name(long))),
        leak(format!("pq_{}", window_name(demand))),
    ];
    known.push(((short, long, demand), n));
    n
}

/// Rows a meter-day collects before it is compacted into one.
const COMPACT_AFTER_ROWS: u32 = 60;

/// The ledger side of the watch: contributions waiting to be stored.
pub struct LedgerFeed {
    store: LedgerStore,
    tz: jiff::tz::TimeZone,
    keep_days: u32,
    /// (meter, day) → contributions not yet stored.
    pending: BTreeMap<(String, String), DayLedger>,
    /// Rows stored per (meter, day) by this process (for compaction).
    rows: HashMap<(String, String), u32>,
    /// The local day of the last housekeeping.
    today: String,
    failing: bool,
}

impl LedgerFeed {
    pub fn new(store: LedgerStore, tz: jiff::tz::TimeZone, keep_days: u32) -> Self {
        LedgerFeed {
            store,
            tz,
            keep_days,
            pending: BTreeMap::new(),
            rows: HashMap::new(),
            today: String::new(),
            failing: false,
        }
    }

    fn add(&mut self, meter: &str, start_ms: i64, d: DayLedger) {
        if d.is_empty() {
            return;
        }
        let day = day_key(local_date(start_ms, &self.tz));
        self.pending
            .entry((meter.to_string(), day))
            .or_default()
            .merge(&d);
    }

    /// Store what is pending; on a new local day compact the finished days
    /// and apply retention. A failure keeps everything pending for the next
    /// call (one entry per meter-day, so memory stays bounded).
    fn flush(&mut self, now_ms: i64) {
        if !self.pending.is_empty() {
            let rows = self
                .pending
                .iter()
                .map(|((m, d), l)| (m.as_str(), d.as_str(), l));
            match self.store.append(rows) {
                Ok(_) => {
                    if self.failing {
                        info!("report ledger: storing again");
                        self.failing = false;
                    }
                    for (key, _) in std::mem::take(&mut self.pending) {
                        *self.rows.entry(key).or_insert(0) += 1;
                    }
                }
                Err(e) => {
                    if !self.failing {
                        error!(error = %e, pending = self.pending.len(), "report ledger: cannot store; keeping the minutes in memory and retrying");
                        self.failing = true;
                    }
                    return;
                }
            }
        }
        let full: Vec<(String, String)> = self
            .rows
            .iter()
            .filter(|(_, n)| **n >= COMPACT_AFTER_ROWS)
            .map(|(k, _)| k.clone())
            .collect();
        for key in full {
            match self.store.compact(&key.0, &key.1) {
                Ok(_) => {
                    self.rows.insert(key, 1);
                }
                Err(e) => {
                    warn!(meter = %key.0, day = %key.1, error = %e, "report ledger: compaction failed; retrying later")
                }
            }
        }
        let today = day_key(local_date(now_ms, &self.tz));
        if today != self.today {
            self.housekeeping(&today);
        }
    }

    fn housekeeping(&mut self, today: &str) {
        match self.store.compact_before(today) {
            Ok(n) if n > 0 => info!(rows = n, "report ledger: finished days compacted"),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "report ledger: compaction failed; retrying later");
                return;
            }
        }
        self.rows.retain(|(_, d), _| d.as_str() >= today);
        if let Ok(t) = today.parse::<jiff::civil::Date>()
            && let Ok(oldest) = t.checked_sub(jiff::Span::new().days(self.keep_days as i64))
        {
            match self.store.prune_before(&day_key(oldest)) {
                Ok(n) if n > 0 => {
                    info!(rows = n, before = %oldest, "report ledger: old days deleted ([reports] keep_days)")
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "report ledger: retention failed; retrying tomorrow"),
            }
        }
        self.today = today.to_string();
    }
}

pub struct Watch {
    meters: HashMap<String, MeterWatch>,
    store: EventStore,
    sink: mpsc::Sender<Record>,
    notify: Option<mpsc::Sender<EventChange>>,
    metrics: Arc<Metrics>,
    rules_enabled: bool,
    ledger: Option<LedgerFeed>,
}

fn leak(s: String) -> &'static str {
    // Measurement names: a handful per process, built once at start-up.
    Box::leak(s.into_boxed_str())
}

impl Watch {
    pub fn new(
        cfg: &Config,
        store: EventStore,
        sink: mpsc::Sender<Record>,
        notify: Option<mpsc::Sender<EventChange>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::state::StateError> {
        let mut open_by_meter: HashMap<String, Vec<Event>> = HashMap::new();
        for e in store.open_events()? {
            open_by_meter.entry(e.meter.clone()).or_default().push(e);
        }
        let mut meters = HashMap::new();
        for m in &cfg.meters {
            let mut mw = meter_watch(cfg, m);
            if let Some(open) = open_by_meter.remove(&m.id) {
                info!(meter = %m.id, open = open.len(), "continuing open events");
                mw.rules.restore(open);
            }
            meters.insert(m.id.clone(), mw);
        }
        Ok(Watch {
            meters,
            store,
            sink,
            notify,
            metrics,
            rules_enabled: cfg.rules.enabled,
            ledger: None,
        })
    }

    /// Apply a reloaded config. Meters keep their open events (and, when
    /// their interval and the windows are unchanged, the windows they are
    /// filling); limits, suspensions, contracts and ledger settings are the
    /// new ones from the next window on. Removed meters are dropped (their
    /// open events stay open in the store and continue if they come back);
    /// added meters start afresh.
    pub fn reconfigure(&mut self, cfg: &Config) {
        let mut meters = HashMap::new();
        for m in &cfg.meters {
            let mut mw = meter_watch(cfg, m);
            if let Some(old) = self.meters.remove(&m.id) {
                mw.rules.restore(old.rules.open_events().cloned());
                let same_windows = old.aggs.len() == mw.aggs.len()
                    && old
                        .aggs
                        .iter()
                        .zip(&mw.aggs)
                        .all(|((a, n), (b, k))| a.len_ms() == b.len_ms() && n == k)
                    && old.interval_ms == mw.interval_ms;
                if same_windows {
                    mw.aggs = old.aggs;
                }
                mw.meta = old.meta;
                mw.suspension_peaks = old.suspension_peaks;
            }
            meters.insert(m.id.clone(), mw);
        }
        let removed = self.meters.len();
        self.meters = meters;
        self.rules_enabled = cfg.rules.enabled;
        info!(
            meters = self.meters.len(),
            removed, "watch: config reloaded"
        );
    }

    /// Feed the report ledger too.
    pub fn with_ledger(mut self, feed: LedgerFeed) -> Self {
        self.ledger = Some(feed);
        self
    }

    /// Run until the reading channel closes.
    pub async fn run(self, rx: mpsc::Receiver<Reading>) {
        let (_keep, configs) = tokio::sync::watch::channel(None);
        self.run_with_reload(rx, configs).await
    }

    /// [`run`](Self::run), applying every config sent on `configs`.
    pub async fn run_with_reload(
        mut self,
        rx: mpsc::Receiver<Reading>,
        mut configs: tokio::sync::watch::Receiver<Option<Arc<Config>>>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut rx = crate::gather::Gather::new(rx, crate::gather::PERIOD);
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = rx.next(&mut batch, crate::app::GATHER_MAX) => {
                    if n == 0 {
                        break;
                    }
                    for reading in batch.drain(..) {
                        self.on_reading(reading).await;
                    }
                },
                Ok(()) = configs.changed() => {
                    let cfg = configs.borrow_and_update().clone();
                    if let Some(cfg) = cfg {
                        self.reconfigure(&cfg);
                    }
                }
                _ = tick.tick() => {
                    let now = crate::modbus::gateway::now_ms();
                    Metrics::set(&self.metrics.watch_heartbeat_ms, now as u64);
                    self.close_due(now - CLOSE_GRACE_MS).await;
                    if let Some(l) = &mut self.ledger {
                        l.flush(now);
                    }
                }
            }
        }
        if let Some(l) = &mut self.ledger {
            l.flush(crate::modbus::gateway::now_ms());
            if !l.pending.is_empty() {
                error!(
                    meter_days = l.pending.len(),
                    "report ledger: minutes not stored at shutdown are lost"
                );
            }
        }
        // Open windows at shutdown are partial: they are neither judged nor
        // written (a restart starts them afresh).
    }

    async fn on_reading(&mut self, r: Reading) {
        let Some(mw) = self.meters.get_mut(&r.meter.id) else {
            return;
        };
        if mw.meta.is_none() {
            mw.meta = Some(r.meter.clone());
        }
        let mut closed = Vec::new();
        for (agg, name) in mw.aggs.iter_mut() {
            if let Some(w) = agg.push(r.ts_ms, &r.values) {
                closed.push((w, *name));
            }
        }
        let id = r.meter.id.clone();
        for (w, name) in closed {
            self.on_window(&id, w, name).await;
        }
    }

    async fn close_due(&mut self, now_ms: i64) {
        let mut closed = Vec::new();
        for (id, mw) in self.meters.iter_mut() {
            for (agg, name) in mw.aggs.iter_mut() {
                if let Some(w) = agg.close_due(now_ms) {
                    closed.push((id.clone(), w, *name));
                }
            }
        }
        for (id, w, name) in closed {
            self.on_window(&id, w, name).await;
        }
    }

    async fn on_window(&mut self, meter: &str, w: Window, measurement: &'static str) {
        let Some(mw) = self.meters.get_mut(meter) else {
            return;
        };
        let Some(meta) = mw.meta.clone() else { return };
        let mut fields: Vec<(String, f64)> = Vec::with_capacity(w.stats.len() * 3 + 3);
        for (k, s) in &w.stats {
            fields.push((format!("{k}_mean"), s.mean));
            fields.push((format!("{k}_min"), s.min));
            fields.push((format!("{k}_max"), s.max));
        }
        fields.push(("polls".into(), w.polls as f64));
        fields.push(("expected".into(), w.expected as f64));
        fields.push(("complete".into(), if w.complete { 1.0 } else { 0.0 }));
        let _ = self
            .sink
            .send(Record::Point(Point {
                measurement,
                meter: meta.clone(),
                tags: Vec::new(),
                ts_ms: w.start_ms,
                fields,
            }))
            .await;
        if w.len_ms == mw.rules.set.short_ms && w.complete {
            Self::track_suspension(mw, &w, &meta, &self.sink).await;
        }
        if let Some(l) = &mut self.ledger
            && w.complete
        {
            let set = &mw.rules.set;
            let part = if w.len_ms == set.short_ms {
                ledger::from_short_window(&w, &mw.ledger_spec)
            } else if w.len_ms == set.long_ms {
                ledger::from_long_window(&w, &mw.ledger_spec)
            } else if w.len_ms == set.demand_ms {
                ledger::from_demand_window(&w)
            } else {
                DayLedger::default()
            };
            l.add(meter, w.start_ms, part);
        }
        if !self.rules_enabled {
            return;
        }
        let events = mw.rules.on_window(&w);
        for e in events {
            self.on_event(&meta, e).await;
        }
    }

    /// Peak load of every active suspension, violated or not.
    async fn track_suspension(
        mw: &mut MeterWatch,
        w: &Window,
        meta: &Arc<MeterMeta>,
        sink: &mpsc::Sender<Record>,
    ) {
        let mid = w.mid_ms();
        let Some((st, unit)) = w.load() else { return };
        for s in mw.rules.set.suspensions.clone() {
            if !(s.from_ms <= mid && mid < s.to_ms) {
                continue;
            }
            let load = st.max / 1000.0;
            let e = mw
                .suspension_peaks
                .entry(s.from_ms)
                .or_insert((load, st.max_ms, unit));
            if load >= e.0 {
                *e = (load, st.max_ms, unit);
            }
            let (peak, at, unit) = *e;
            let _ = sink
                .send(Record::Point(Point {
                    measurement: "pq_suspension",
                    meter: meta.clone(),
                    tags: vec![("unit", unit.to_string())],
                    ts_ms: s.from_ms,
                    fields: vec![
                        ("peak".into(), peak),
                        ("peak_time_ms".into(), at as f64),
                        ("suspended_kva".into(), s.suspended_kva),
                        ("end_ms".into(), s.to_ms as f64),
                    ],
                }))
                .await;
        }
    }

    async fn on_event(&mut self, meta: &Arc<MeterMeta>, e: Event) {
        let now = crate::modbus::gateway::now_ms();
        let change = match self.store.upsert(&e, now) {
            Ok(c) => c,
            Err(err) => {
                // Still alert and write: losing the notification would be worse.
                error!(error = %err, event = %e.id, "cannot store an event");
                match e.state {
                    State::Closed => Change::Closed,
                    State::Open => Change::Updated,
                }
            }
        };
        match change {
            Change::Opened => {
                Metrics::inc(&self.metrics.events_opened);
                warn!(meter = %e.meter, kind = e.kind.as_str(), phase = %e.phase, order = e.order, value = e.value, limit = e.limit, "event opened");
            }
            Change::Closed => {
                Metrics::inc(&self.metrics.events_closed);
                info!(meter = %e.meter, kind = e.kind.as_str(), phase = %e.phase, order = e.order, duration_s = e.duration_ms() / 1000, peak = e.peak, "event closed");
            }
            Change::Updated => {}
        }
        let mut tags = vec![("kind", e.kind.as_str().to_string())];
        if !e.phase.is_empty() {
            tags.push(("phase", e.phase.clone()));
        }
        if e.order > 0 {
            tags.push(("order", e.order.to_string()));
        }
        let _ = self
            .sink
            .send(Record::Point(Point {
                measurement: "pq_event",
                meter: meta.clone(),
                tags,
                ts_ms: e.start_ms,
                fields: vec![
                    ("value".into(), e.value),
                    ("peak".into(), e.peak),
                    ("limit".into(), e.limit),
                    ("duration".into(), e.duration_ms() as f64 / 1000.0),
                    // Unix ms: the end so far (the latest window's end while open).
                    ("end_ms".into(), e.end_ms as f64),
                    (
                        "open".into(),
                        if e.state == State::Open { 1.0 } else { 0.0 },
                    ),
                ],
            }))
            .await;
        // Updates are not mailed; the notifier never makes us wait.
        if let Some(n) = &self.notify
            && change != Change::Updated
        {
            crate::notify::offer(n, EventChange { change, event: e }, &self.metrics);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::window_name;

    #[test]
    fn window_names() {
        assert_eq!(window_name(60_000), "1m");
        assert_eq!(window_name(600_000), "10m");
        assert_eq!(window_name(900_000), "15m");
        assert_eq!(window_name(2_000), "2s");
        assert_eq!(window_name(1_500), "1500ms");
    }
}
