//! Wiring: starts the tasks, connects them with bounded channels, owns
//! shutdown.
//!
//! ```text
//! gateway tasks ──(readings, bounded 8192)──▶ tee ──(bounded 8192)──────────▶ sink ──▶ outbox ──▶ InfluxDB
//!                                              ├─▶ latest reading per meter       ▲
//!                                              └─▶ watch ─(windows, pq_event)─────┘
//!                                                    └─(event changes, bounded)─▶ notifier ──▶ mail queue ──▶ SMTP
//! ```
//!
//! Shutdown (the token passed to [`run`]): only the sources are cancelled.
//! Gateway tasks stop polling and drop their senders; the tee and the sink
//! see their channels close, the sink seals and delivers what it holds
//! within its grace period, and `run` returns once everything has drained
//! (or a hard deadline passed, logging what was still running).

use crate::config::Config;
use crate::metrics::Metrics;
use crate::modbus::gateway::Gateway;
use crate::reading::{Reading, Record};
use crate::sink::{Sink, run_discard};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Readings in flight between stages. When full, gateway tasks wait: the
/// downstream stages never block on I/O, so that only happens when the
/// machine is out of CPU, and waiting is better than dropping.
const CHANNEL: usize = 8192;

/// Latest reading of every meter, for status output (and the HTTP API).
pub type Latest = Arc<Mutex<HashMap<String, Reading>>>;

#[derive(Debug, Clone)]
pub struct Options {
    /// How often to log a one-line status summary.
    pub status_every: Duration,
    /// How long the sink may keep delivering after shutdown.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            status_every: Duration::from_secs(60),
            grace: Duration::from_secs(10),
        }
    }
}

/// Handles a caller (the demo, tests) may watch while the daemon runs.
#[derive(Clone, Default)]
pub struct Handles {
    pub metrics: Arc<Metrics>,
    pub latest: Latest,
}

/// Run the daemon until `shutdown` fires and everything has drained.
pub async fn run(
    cfg: Config,
    shutdown: CancellationToken,
    opts: Options,
    handles: Handles,
) -> anyhow::Result<()> {
    let metrics = handles.metrics.clone();
    let (tx, rx) = mpsc::channel::<Reading>(CHANNEL);
    let (sink_tx, sink_rx) = mpsc::channel::<Record>(CHANNEL);
    let (watch_tx, watch_rx) = mpsc::channel::<Reading>(CHANNEL);

    // The state database first: if it cannot be opened (a foreign or
    // corrupt file, no permission), nothing starts and nothing is polled.
    let state = crate::state::StateDb::open(&cfg.daemon.state_dir)?;
    info!(path = %state.path.display(), "state database open");
    let outbox = crate::sink::outbox::Outbox::new(state)?;

    let sink = match &cfg.influx {
        Some(influx) => {
            let mut sink = Sink::new(influx.clone(), metrics.clone(), Some(outbox))
                .map_err(|e| anyhow::anyhow!("InfluxDB writer: {e}"))?;
            sink.grace = opts.grace;
            info!(url = %influx.url, api = api_name(&influx.api), "writing readings to InfluxDB");
            tokio::spawn(sink.run(sink_rx))
        }
        None => {
            if outbox.depth().batches > 0 {
                warn!(
                    batches = outbox.depth().batches,
                    "the outbox holds batches from an earlier run, but no [influxdb] is configured: they stay until it is"
                );
            }
            warn!("no [influxdb] section configured: readings are polled but NOT stored");
            tokio::spawn(run_discard(sink_rx, metrics.clone()))
        }
    };

    // The watch task: windows, rules, events. Its own state-DB connection.
    let events =
        crate::events::EventStore::new(crate::state::StateDb::open(&cfg.daemon.state_dir)?);
    // The notifier: operator mail, its own state-DB connection and queue.
    let (notify_tx, notify_rx) = crate::notify::channel();
    let notifier = crate::notify::Notifier::new(&cfg, metrics.clone())
        .map_err(|e| anyhow::anyhow!("notifier: {e}"))?;
    info!(mail = %notifier.describe(), "operator alerts");
    let notify_stop = CancellationToken::new();
    let notifier = tokio::spawn(notifier.run(notify_rx, notify_stop.clone()));

    let watch = crate::watch::Watch::new(
        &cfg,
        events,
        sink_tx.clone(),
        Some(notify_tx),
        metrics.clone(),
    )?;
    let watch = tokio::spawn(watch.run(watch_rx));

    let latest = handles.latest.clone();
    let tee = tokio::spawn(async move {
        let mut rx = rx;
        while let Some(r) = rx.recv().await {
            latest
                .lock()
                .expect("latest lock")
                .insert(r.meter.id.clone(), r.clone());
            if watch_tx.send(r.clone()).await.is_err() {
                break;
            }
            if sink_tx.send(Record::Reading(r)).await.is_err() {
                break;
            }
        }
    });

    // One task per gateway address.
    let mut by_gw: BTreeMap<String, Vec<Arc<crate::config::Meter>>> = BTreeMap::new();
    for m in &cfg.meters {
        by_gw
            .entry(m.address.clone())
            .or_default()
            .push(Arc::new(m.clone()));
    }
    info!(
        meters = cfg.meters.len(),
        gateways = by_gw.len(),
        "polling started"
    );
    let pollers_cancel = shutdown.child_token();
    let mut pollers = tokio::task::JoinSet::new();
    for (addr, meters) in by_gw {
        let gw = Gateway {
            settings: cfg.gateways[&addr].clone(),
            meters,
            metrics: metrics.clone(),
        };
        pollers.spawn(gw.run(tx.clone(), pollers_cancel.clone()));
    }
    drop(tx);

    let status = {
        let metrics = metrics.clone();
        let every = opts.status_every;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => log_status(&metrics),
                }
            }
        })
    };

    shutdown.cancelled().await;
    info!("shutting down: stopping pollers");
    while pollers.join_next().await.is_some() {}
    let _ = tee.await;
    let _ = watch.await;
    // The watch dropped the notifier's sender: it flushes its digests into
    // the mail queue and makes a last delivery attempt (bounded).
    notify_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(15), notifier)
        .await
        .is_err()
    {
        error!("notifier did not stop in time; queued mail is sent on the next start");
    }
    // The sink bounds its own drain by `grace`; this is the backstop.
    match tokio::time::timeout(opts.grace + Duration::from_secs(5), sink).await {
        Ok(_) => {}
        Err(_) => error!("sink did not finish within its grace period; exiting anyway"),
    }
    status.abort();
    log_status(&metrics);
    info!("stopped");
    Ok(())
}

fn api_name(api: &crate::config::Api) -> &'static str {
    match api {
        crate::config::Api::V2 { .. } => "v2",
        crate::config::Api::V1 { .. } => "v1",
    }
}

pub fn log_status(m: &Metrics) {
    let g = Metrics::get;
    info!(
        polls_ok = g(&m.polls_ok),
        polls_partial = g(&m.polls_partial),
        polls_failed = g(&m.polls_failed),
        cycles_skipped = g(&m.cycles_skipped),
        read_timeouts = g(&m.read_timeouts),
        read_exceptions = g(&m.read_exceptions),
        fields_dropped = g(&m.fields_dropped),
        points_written = g(&m.points_written),
        points_dropped = g(&m.points_dropped),
        points_rejected = g(&m.points_rejected),
        batches_retried = g(&m.batches_retried),
        outbox_batches = g(&m.outbox_batches),
        outbox_points = g(&m.outbox_points),
        outbox_bytes = g(&m.outbox_bytes),
        outbox_oldest_age_s = match g(&m.outbox_oldest_ms) {
            0 => 0,
            t => (crate::modbus::gateway::now_ms() as u64).saturating_sub(t) / 1000,
        },
        points_not_stored = g(&m.points_discarded),
        events_opened = g(&m.events_opened),
        events_closed = g(&m.events_closed),
        "status"
    );
}
