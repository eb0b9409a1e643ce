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
//! Load rules run on demand values (`quality::demand`): every complete
//! 1-minute window of a meter gives a minute of mean power; 15-minute
//! sliding (or block) means of those are the meter's demand, and the sum
//! over a customer's billing meters gives the customer's total, which the
//! contracted maximum demand and a declared suspension's allowed load are
//! judged on (events of the total carry meter `*`). Demand values are
//! written as `pq_demand`. The peak of every declared suspension's basis,
//! violated or not, with the instantaneous maximum beside it, is kept in
//! the customer's ledger (so it survives a restart and never shrinks) and
//! written as `pq_suspension` (per customer and suspension).
//!
//! It also feeds the report ledger: every complete window's
//! contribution (`report::ledger`) is stored within a second of the window
//! closing, all meters in one transaction, so a restart loses at most the
//! minute in progress. Each meter-day is compacted into one row after an
//! hour of rows and when the day is over; days older than `[reports]
//! keep_days` are deleted.
//!
//! The pure parts (aggregation, limits, rules) are in `quality`; this task
//! only routes their input and output.

mod setup;
pub(crate) mod stats;

use crate::events::{Change, CloseReason, EventChange, EventStore};
use crate::metrics::Metrics;
use crate::quality::aggregate::{Aggregator, Window};
use crate::quality::demand::{CustomerSum, Demand, EnergyBasis, Minute, Sliding};
use crate::quality::rules::{CUSTOMER_TOTAL, Event, Kind, LoadRules, MeterRules, State};
use crate::reading::{MeterMeta, Point, Reading, Record};
use crate::report::feed::LedgerFeed;
use crate::report::ledger::{self, DayLedger, LedgerSpec};
pub use setup::{Settings, rule_set, window_name};
use setup::{customer_watch, load_still_judged, meta_of, meter_watch, still_judged};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Windows of silent meters close this long after their end, to let late
/// polls of a slow gateway arrive first.
const CLOSE_GRACE_MS: i64 = 10_000;

struct MeterWatch {
    meta: Option<Arc<MeterMeta>>,
    /// Its config entry: the tags of its points when it is removed before
    /// a reading came (its events still close as `pq_event`).
    config: Arc<crate::config::Meter>,
    aggs: Vec<(Aggregator, &'static str)>,
    rules: MeterRules,
    /// The meter's own demand (judged against the contract too: one line
    /// above the customer's limit is an exceedance on its own).
    load: LoadRules,
    demand: Sliding,
    /// The kW basis from the energy counter, where the meter has one and
    /// `[rules] demand_basis` is "energy" (else `None`).
    energy: Option<EnergyBasis>,
    /// The energy counter of the latest reading that had it: (ts, kWh).
    /// Windows do not aggregate counters; a closing minute takes its last
    /// poll's value from here.
    counter: Option<(i64, f64)>,
    ledger_spec: LedgerSpec,
    interval_ms: i64,
    billing: bool,
}

/// A customer's total load over its billing meters.
struct CustomerWatch {
    meta: Arc<MeterMeta>,
    sum: CustomerSum,
    demand: Sliding,
    /// The suspension basis, where `[rules] suspension_window` differs
    /// from the demand window.
    suspension: Option<Sliding>,
    load: LoadRules,
    /// Per suspension (by `from_ms`): the highest basis value and
    /// instantaneous load so far (restored from the ledger at start-up).
    peaks: HashMap<i64, (ledger::Peak, ledger::Peak)>,
}

/// The counter demand is computed from where the meter has one (kWh,
/// primary side).
pub(crate) const ENERGY_FIELD: &str = "energy_active_import_total";

/// A complete short window's minute of load, where it has active power:
/// kW from the energy counter's increment where it can be trusted, else
/// the polled mean.
fn minute_of(
    w: &Window,
    energy: Option<&mut EnergyBasis>,
    counter: Option<(i64, f64)>,
) -> Option<Minute> {
    let p = w.get("active_power_total")?;
    let (l, _) = w.load()?;
    // The counter at the minute's last poll that read it.
    let last = counter
        .filter(|(ts, _)| w.start_ms <= *ts && *ts < w.start_ms + w.len_ms)
        .map(|(_, kwh)| kwh);
    let counted = match (energy, last) {
        (Some(e), Some(kwh)) => e.kw(w.start_ms, w.len_ms, kwh, p.max / 1000.0),
        _ => None,
    };
    Some(Minute {
        start_ms: w.start_ms,
        kw: counted.unwrap_or(p.mean / 1000.0),
        kva: w.get("apparent_power_total").map(|s| s.mean / 1000.0),
        max_load: l.max / 1000.0,
        max_load_ms: l.max_ms,
        from_energy: counted.is_some(),
    })
}

fn is_load_kind(k: Kind) -> bool {
    matches!(k, Kind::DemandExceeded | Kind::SuspensionLoad)
}

pub(crate) struct Watch {
    meters: HashMap<String, MeterWatch>,
    customers: HashMap<String, CustomerWatch>,
    store: EventStore,
    sink: mpsc::Sender<Record>,
    notify: Option<mpsc::Sender<EventChange>>,
    metrics: Arc<Metrics>,
    rules_enabled: bool,
    ledger: Option<LedgerFeed>,
}

impl Watch {
    pub(crate) fn new(
        cfg: &Settings,
        store: EventStore,
        sink: mpsc::Sender<Record>,
        notify: Option<mpsc::Sender<EventChange>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::state::StateError> {
        let mut open_by_meter: HashMap<String, Vec<Event>> = HashMap::new();
        for e in store.open_events()? {
            let key = if e.meter == CUSTOMER_TOTAL {
                ledger::customer_key(&e.customer)
            } else {
                e.meter.clone()
            };
            open_by_meter.entry(key).or_default().push(e);
        }
        let mut meters = HashMap::new();
        for m in &cfg.meters {
            let mut mw = meter_watch(cfg, m);
            if let Some(open) = open_by_meter.remove(&m.id) {
                info!(meter = %m.id, open = open.len(), "continuing open events");
                let (load, quality): (Vec<Event>, Vec<Event>) =
                    open.into_iter().partition(|e| is_load_kind(e.kind));
                mw.rules.restore(quality);
                mw.load.restore(load);
            }
            meters.insert(m.id.clone(), mw);
        }
        let mut customers = HashMap::new();
        for c in &cfg.customers {
            let mut cw = customer_watch(cfg, c);
            if let Some(open) = open_by_meter.remove(&ledger::customer_key(&c.id)) {
                info!(customer = %c.id, open = open.len(), "continuing open events of the customer's total");
                cw.load.restore(open);
            }
            customers.insert(c.id.clone(), cw);
        }
        Ok(Watch {
            meters,
            customers,
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
    /// new ones from the next window on. Open events the new config no
    /// longer judges are closed, with why ([`CloseReason`]): those of a
    /// removed meter (`meter_removed`) or customer (its total's,
    /// `customer_removed`), and those whose kind, phase or order the new
    /// limits do not judge, or whose contract or suspension is gone
    /// (`limits_changed`). Each close is stored, written as `pq_event` and
    /// mailed like any other. An added meter continues what the store still
    /// holds open for it (a close that could not be stored), so re-adding a
    /// meter never opens a duplicate. Customers keep their total's open
    /// events, demand minutes and suspension peaks.
    pub(crate) async fn reconfigure(&mut self, cfg: &Settings) {
        let mut closing: Vec<(Arc<MeterMeta>, Event, CloseReason)> = Vec::new();
        let mut meters = HashMap::new();
        for m in &cfg.meters {
            let mut mw = meter_watch(cfg, m);
            if let Some(old) = self.meters.remove(&m.id) {
                let meta = old.meta.clone().unwrap_or_else(|| meta_of(&old.config));
                let (keep, gone): (Vec<Event>, Vec<Event>) = old
                    .rules
                    .open_events()
                    .cloned()
                    .partition(|e| still_judged(&mw.rules.set, e));
                mw.rules.restore(keep);
                let (keep_load, gone_load): (Vec<Event>, Vec<Event>) = old
                    .load
                    .open_events()
                    .cloned()
                    .partition(|e| load_still_judged(&mw.load.set, e));
                mw.load.restore(keep_load);
                for e in gone.into_iter().chain(gone_load) {
                    closing.push((meta.clone(), e, CloseReason::LimitsChanged));
                }
                let same_windows = old.aggs.len() == mw.aggs.len()
                    && old
                        .aggs
                        .iter()
                        .zip(&mw.aggs)
                        .all(|((a, n), (b, k))| a.len_ms() == b.len_ms() && n == k)
                    && old.interval_ms == mw.interval_ms;
                if same_windows {
                    mw.aggs = old.aggs;
                    if old.demand.period_ms() == mw.demand.period_ms() {
                        mw.demand = old.demand;
                    }
                }
                mw.meta = old.meta;
            } else {
                // Added (or back): what the store still holds open for it.
                match self.store.open_events_of(&m.id, &m.customer) {
                    Ok(open) if !open.is_empty() => {
                        info!(meter = %m.id, open = open.len(), "continuing open events");
                        let (load, quality): (Vec<Event>, Vec<Event>) =
                            open.into_iter().partition(|e| is_load_kind(e.kind));
                        mw.rules.restore(quality);
                        mw.load.restore(load);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error!(meter = %m.id, error = %e, "cannot read the meter's open events");
                    }
                }
            }
            meters.insert(m.id.clone(), mw);
        }
        let removed = self.meters.len();
        for (_, old) in self.meters.drain() {
            let meta = old.meta.clone().unwrap_or_else(|| meta_of(&old.config));
            for e in old.rules.open_events().chain(old.load.open_events()) {
                closing.push((meta.clone(), e.clone(), CloseReason::MeterRemoved));
            }
        }
        let mut customers = HashMap::new();
        for c in &cfg.customers {
            let mut cw = customer_watch(cfg, c);
            if let Some(old) = self.customers.remove(&c.id) {
                let (keep, gone): (Vec<Event>, Vec<Event>) = old
                    .load
                    .open_events()
                    .cloned()
                    .partition(|e| load_still_judged(&cw.load.set, e));
                cw.load.restore(keep);
                for e in gone {
                    closing.push((old.meta.clone(), e, CloseReason::LimitsChanged));
                }
                cw.peaks = old.peaks;
                if old.demand.period_ms() == cw.demand.period_ms() {
                    cw.demand = old.demand;
                }
            }
            customers.insert(c.id.clone(), cw);
        }
        for (_, old) in self.customers.drain() {
            for e in old.load.open_events() {
                closing.push((old.meta.clone(), e.clone(), CloseReason::CustomerRemoved));
            }
        }
        self.meters = meters;
        self.customers = customers;
        self.rules_enabled = cfg.rules.enabled;
        info!(
            meters = self.meters.len(),
            removed,
            events_closed = closing.len(),
            "watch: config reloaded"
        );
        for (meta, mut e, reason) in closing {
            e.state = State::Closed;
            self.on_close(&meta, e, reason).await;
        }
    }

    /// Feed the report ledger too; the peaks of the suspensions in force
    /// are restored from it, so a restart never writes a smaller one.
    pub(crate) fn with_ledger(mut self, feed: LedgerFeed) -> Self {
        for (id, cw) in &mut self.customers {
            for s in &cw.load.set.suspensions {
                match feed.suspension_peaks(id, s.from_ms, s.to_ms) {
                    Ok(Some(peaks)) => {
                        cw.peaks.insert(s.from_ms, peaks);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(customer = %id, error = %e, "cannot read the suspension peaks so far; starting from this run's");
                    }
                }
            }
        }
        self.ledger = Some(feed);
        self
    }

    /// Run until the reading channel closes, applying every slice sent on
    /// `settings` after the one it was built with.
    pub(crate) async fn run(
        mut self,
        rx: mpsc::Receiver<Reading>,
        mut settings: tokio::sync::watch::Receiver<Arc<Settings>>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut rx = crate::gather::Gather::new(rx, crate::gather::PERIOD);
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = rx.next(&mut batch, crate::gather::MAX) => {
                    if n == 0 {
                        break;
                    }
                    for reading in batch.drain(..) {
                        self.on_reading(reading).await;
                    }
                },
                Ok(()) = settings.changed() => {
                    let cfg = settings.borrow_and_update().clone();
                    self.reconfigure(&cfg).await;
                }
                _ = tick.tick() => {
                    let now = crate::clock::now_ms();
                    Metrics::set(&self.metrics.events.watch_heartbeat_ms, now as u64);
                    self.close_due(now - CLOSE_GRACE_MS).await;
                    if let Some(l) = &mut self.ledger {
                        l.flush(now);
                    }
                }
            }
        }
        if let Some(l) = &mut self.ledger {
            l.flush(crate::clock::now_ms());
            if l.pending_days() > 0 {
                error!(
                    meter_days = l.pending_days(),
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
        if mw.ledger_spec.samples
            && let Some(l) = &mut self.ledger
        {
            l.add(
                &r.meter.id,
                r.ts_ms,
                ledger::from_samples(&r.values, &mw.ledger_spec),
            );
        }
        let mut closed = Vec::new();
        for (agg, name) in &mut mw.aggs {
            if let Some(w) = agg.push(r.ts_ms, &r.values) {
                closed.push((w, *name));
            }
        }
        let id = r.meter.id.clone();
        for (w, name) in closed {
            self.on_window(&id, w, name).await;
        }
        // After the windows this reading closed: it belongs to the next.
        // Only meters on the energy basis look for the counter.
        if let Some(mw) = self.meters.get_mut(&id)
            && mw.energy.is_some()
            && let Some((_, kwh)) = r.values.iter().find(|(k, _)| &**k == ENERGY_FIELD)
        {
            mw.counter = Some((r.ts_ms, *kwh));
        }
    }

    async fn close_due(&mut self, now_ms: i64) {
        let mut closed = Vec::new();
        for (id, mw) in &mut self.meters {
            for (agg, name) in &mut mw.aggs {
                if let Some(w) = agg.close_due(now_ms) {
                    closed.push((id.clone(), w, *name));
                }
            }
        }
        for (id, w, name) in closed {
            self.on_window(&id, w, name).await;
        }
    }

    async fn on_window(&mut self, meter: &str, mut w: Window, measurement: &'static str) {
        let Some(mw) = self.meters.get_mut(meter) else {
            return;
        };
        crate::quality::aggregate::with_harmonic_amperes(&mut w);
        let Some(meta) = mw.meta.clone() else { return };
        let mut fields: Vec<(String, f64)> = Vec::with_capacity(w.stats.len() * 3 + 3);
        for (k, s) in &w.stats {
            fields.push((format!("{k}_mean"), s.mean));
            fields.push((format!("{k}_min"), s.min));
            fields.push((format!("{k}_max"), s.max));
        }
        fields.push(("polls".into(), f64::from(w.polls)));
        fields.push(("expected".into(), f64::from(w.expected)));
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
        let minute = (w.len_ms == mw.rules.set.short_ms && w.complete)
            .then(|| minute_of(&w, mw.energy.as_mut(), mw.counter))
            .flatten();
        if let Some(l) = &mut self.ledger
            && w.complete
        {
            let set = &mw.rules.set;
            let part = if w.len_ms == set.short_ms {
                ledger::from_short_window(&w, &mw.ledger_spec)
            } else if w.len_ms == set.long_ms {
                ledger::from_long_window(&w, &mw.ledger_spec)
            } else {
                DayLedger::default()
            };
            l.add(meter, w.start_ms, part);
        }
        let mut events = if self.rules_enabled {
            mw.rules.on_window(&w)
        } else {
            Vec::new()
        };
        let billing = mw.billing;
        if let Some(minute) = minute
            && let Some(d) = mw.demand.push(minute)
        {
            if let Some(l) = &mut self.ledger {
                l.add(meter, d.start_ms, ledger::from_demand(&d));
            }
            if self.rules_enabled {
                events.extend(mw.load.on_demand(&d));
            }
            send_demand(&self.sink, &meta, &d).await;
        }
        for e in events {
            self.on_event(&meta, e).await;
        }
        if let Some(minute) = minute
            && billing
        {
            self.on_customer_minute(meter, &meta.customer.clone(), minute)
                .await;
        }
    }

    /// One billing meter's minute: the customer's total, once whole, is
    /// judged on its demand and (while suspended) suspension basis.
    async fn on_customer_minute(&mut self, meter: &str, customer: &str, minute: Minute) {
        let Some(cw) = self.customers.get_mut(customer) else {
            return;
        };
        let Some(total) = cw.sum.push(meter, minute) else {
            return;
        };
        let meta = cw.meta.clone();
        let mut events = Vec::new();
        let mut basis = None;
        if let Some(d) = cw.demand.push(total) {
            if let Some(l) = &mut self.ledger {
                l.add(
                    &ledger::customer_key(customer),
                    d.start_ms,
                    ledger::from_demand(&d),
                );
            }
            if self.rules_enabled {
                events.extend(cw.load.on_demand(&d));
            }
            send_demand(&self.sink, &meta, &d).await;
            if cw.suspension.is_none() {
                basis = Some(d);
            }
        }
        if let Some(s) = cw.suspension.as_mut() {
            basis = s.push(total);
        }
        if let Some(d) = basis {
            if self.rules_enabled {
                events.extend(cw.load.on_suspension_basis(&d));
            }
            let points = Self::track_suspension(cw, &d);
            if !points.is_empty()
                && let Some(l) = &mut self.ledger
            {
                l.add(
                    &ledger::customer_key(customer),
                    d.start_ms,
                    ledger::from_suspension_basis(&d),
                );
            }
            for p in points {
                let _ = self.sink.send(Record::Point(p)).await;
            }
        }
        for e in events {
            self.on_event(&meta, e).await;
        }
    }

    /// Peak of the suspension basis (and the instantaneous maximum beside
    /// it) of every suspension in force, violated or not: the points to
    /// write, one per suspension in force.
    fn track_suspension(cw: &mut CustomerWatch, d: &Demand) -> Vec<Point> {
        let mid = d.start_ms + (d.end_ms - d.start_ms) / 2;
        let (load, unit) = d.load();
        let mut out = Vec::new();
        for s in &cw.load.set.suspensions {
            if !(s.from_ms <= mid && mid < s.to_ms) {
                continue;
            }
            let basis = ledger::Peak {
                value: load,
                at_ms: d.end_ms,
                unit: unit.into(),
            };
            let instant = ledger::Peak {
                value: d.max_load,
                at_ms: d.max_load_ms,
                unit: unit.into(),
            };
            let e = cw
                .peaks
                .entry(s.from_ms)
                .or_insert_with(|| (basis.clone(), instant.clone()));
            let (mut b, mut i) = (Some(e.0.clone()), Some(e.1.clone()));
            ledger::keep_peak(&mut b, &basis);
            ledger::keep_peak(&mut i, &instant);
            *e = (b.unwrap_or(basis), i.unwrap_or(instant));
            let allowed = cw.load.set.allowed(cw.load.set.suspended_at(mid));
            let mut fields = vec![
                ("peak".into(), e.0.value),
                ("peak_time_ms".into(), e.0.at_ms as f64),
                ("instant_peak".into(), e.1.value),
                ("instant_peak_time_ms".into(), e.1.at_ms as f64),
                ("suspended_kva".into(), s.suspended_kva),
                ("end_ms".into(), s.to_ms as f64),
            ];
            if let Some(a) = allowed {
                fields.push(("allowed".into(), a));
            }
            out.push(Point {
                measurement: "pq_suspension",
                meter: cw.meta.clone(),
                tags: vec![("unit", e.0.unit.clone())],
                ts_ms: s.from_ms,
                fields,
            });
        }
        out
    }

    /// Close an open event a reload no longer judges (see
    /// [`reconfigure`](Self::reconfigure)).
    async fn on_close(&mut self, meta: &Arc<MeterMeta>, e: Event, reason: CloseReason) {
        info!(meter = %e.meter, customer = %e.customer, kind = e.kind.as_str(), phase = %e.phase, order = e.order, reason = reason.as_str(), "event closed by the reload");
        self.emit(meta, e, Some(reason)).await;
    }

    async fn on_event(&mut self, meta: &Arc<MeterMeta>, e: Event) {
        self.emit(meta, e, None).await;
    }

    /// Store an event change, write it as `pq_event`, hand it to the
    /// notifier.
    async fn emit(&mut self, meta: &Arc<MeterMeta>, e: Event, reason: Option<CloseReason>) {
        let now = crate::clock::now_ms();
        let stored = match reason {
            Some(r) => self.store.close(&e, r, now),
            None => self.store.upsert(&e, now),
        };
        let change = match stored {
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
                Metrics::inc(&self.metrics.events.events_opened);
                warn!(meter = %e.meter, kind = e.kind.as_str(), phase = %e.phase, order = e.order, value = e.value, limit = e.limit, "event opened");
            }
            Change::Closed => {
                Metrics::inc(&self.metrics.events.events_closed);
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

/// A demand value as a `pq_demand` point at the end of its period.
async fn send_demand(sink: &mpsc::Sender<Record>, meta: &Arc<MeterMeta>, d: &Demand) {
    let mut fields = vec![
        ("kw".into(), d.kw),
        ("max_load".into(), d.max_load),
        ("period_s".into(), ((d.end_ms - d.start_ms) / 1000) as f64),
        // 1: kW from the energy counter's increments; 0: from polled power.
        ("from_energy".into(), if d.from_energy { 1.0 } else { 0.0 }),
    ];
    if let Some(k) = d.kva {
        fields.push(("kva".into(), k));
    }
    let _ = sink
        .send(Record::Point(Point {
            measurement: "pq_demand",
            meter: meta.clone(),
            tags: Vec::new(),
            ts_ms: d.end_ms,
            fields,
        }))
        .await;
}

#[cfg(test)]
mod tests;
