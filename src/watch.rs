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
//! suspension).
//!
//! The pure parts (aggregation, limits, rules) are in `quality`; this task
//! only routes their input and output.

use crate::config::Config;
use crate::events::{Change, EventChange, EventStore};
use crate::metrics::Metrics;
use crate::quality::aggregate::{Aggregator, Window};
use crate::quality::rules::{Event, MeterRules, RuleSet, State, Suspension};
use crate::reading::{MeterMeta, Point, Reading, Record};
use std::collections::HashMap;
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
}

pub struct Watch {
    meters: HashMap<String, MeterWatch>,
    store: EventStore,
    sink: mpsc::Sender<Record>,
    notify: Option<mpsc::Sender<EventChange>>,
    metrics: Arc<Metrics>,
    rules_enabled: bool,
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
        let r = &cfg.rules;
        let short = r.short_window.as_millis() as i64;
        let long = r.long_window.as_millis() as i64;
        let demand = r.demand_window.as_millis() as i64;
        let names: [&'static str; 3] = [
            leak(format!("pq_{}", window_name(short))),
            leak(format!("pq_{}", window_name(long))),
            leak(format!("pq_{}", window_name(demand))),
        ];
        let mut open_by_meter: HashMap<String, Vec<Event>> = HashMap::new();
        for e in store.open_events()? {
            open_by_meter.entry(e.meter.clone()).or_default().push(e);
        }
        let mut meters = HashMap::new();
        for m in &cfg.meters {
            let customer = cfg.customers.iter().find(|c| c.id == m.customer);
            let interval = m.interval.as_millis() as i64;
            let set = RuleSet {
                meter: m.id.clone(),
                customer: m.customer.clone(),
                limits: m.limits.clone(),
                voltage_refs: m.voltage_refs.clone(),
                short_ms: short,
                long_ms: long,
                demand_ms: demand,
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
            };
            let mut rules = MeterRules::new(set);
            if let Some(open) = open_by_meter.remove(&m.id) {
                info!(meter = %m.id, open = open.len(), "continuing open events");
                rules.restore(open);
            }
            let c = r.min_completeness;
            meters.insert(
                m.id.clone(),
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
                    rules,
                    suspension_peaks: HashMap::new(),
                },
            );
        }
        Ok(Watch {
            meters,
            store,
            sink,
            notify,
            metrics,
            rules_enabled: r.enabled,
        })
    }

    /// Run until the reading channel closes.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Reading>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(reading) => self.on_reading(reading).await,
                    None => break,
                },
                _ = tick.tick() => {
                    let now = crate::modbus::gateway::now_ms();
                    self.close_due(now - CLOSE_GRACE_MS).await;
                }
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
        let mid = w.start_ms + w.len_ms / 2;
        let (st, unit) = match (w.get("apparent_power_total"), w.get("active_power_total")) {
            (Some(s), _) => (s, "kVA"),
            (None, Some(s)) => (s, "kW"),
            _ => return,
        };
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
