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
use crate::reading::{Latest, Reading, Record};
use crate::sink::{Sink, run_discard};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Readings in flight between stages. When full, gateway tasks wait: the
/// downstream stages never block on I/O, so that only happens when the
/// machine is out of CPU, and waiting is better than dropping.
const CHANNEL: usize = 8192;

#[derive(Debug, Clone)]
pub struct Options {
    /// How often to log a one-line status summary.
    pub status_every: Duration,
    /// How long the sink may keep delivering after shutdown.
    pub grace: Duration,
    /// The state directory's lock, when the caller took it already (the
    /// demo, before its simulator binds); otherwise [`run`] takes it.
    pub lock: Option<Arc<crate::state::DirLock>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            status_every: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            lock: None,
        }
    }
}

/// Handles a caller (the demo, tests) may watch while the daemon runs.
#[derive(Clone, Default)]
pub struct Handles {
    pub metrics: Arc<Metrics>,
    pub latest: Latest,
    /// The address the HTTP endpoint listens on, once bound (`[http]
    /// listen` may say port 0).
    pub http_addr: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
}

/// Run the daemon until `shutdown` fires and everything has drained.
pub async fn run(
    cfg: Config,
    shutdown: CancellationToken,
    opts: Options,
    handles: Handles,
) -> anyhow::Result<()> {
    let (_keep, reloads) = mpsc::channel(1);
    run_with_reload(cfg, shutdown, opts, handles, reloads).await
}

/// [`run`], applying every validated config that arrives on `reloads`
/// (SIGHUP, see `Pollers` and the module docs).
pub async fn run_with_reload(
    cfg: Config,
    shutdown: CancellationToken,
    opts: Options,
    handles: Handles,
    mut reloads: mpsc::Receiver<Config>,
) -> anyhow::Result<()> {
    // One daemon per state directory, before anything else: a second one
    // would share the outbox.
    let _lock = match opts.lock.clone() {
        Some(l) => l,
        None => Arc::new(crate::state::lock_dir(&cfg.daemon.state_dir)?),
    };
    let metrics = handles.metrics.clone();
    // Under [cluster], this instance polls, judges and reports only the
    // customers its shard owns.
    let all = (cfg.customers.len(), cfg.meters.len());
    let cfg = cfg.for_shard();
    if cfg.cluster.shards > 1 {
        info!(
            shard = cfg.cluster.shard,
            shards = cfg.cluster.shards,
            customers = cfg.customers.len(),
            of_customers = all.0,
            meters = cfg.meters.len(),
            of_meters = all.1,
            "cluster: this instance's share of the fleet"
        );
    }
    let (tx, rx) = mpsc::channel::<Reading>(CHANNEL);
    let (sink_tx, sink_rx) = mpsc::channel::<Record>(CHANNEL);
    let (watch_tx, watch_rx) = mpsc::channel::<Reading>(CHANNEL);

    // The state database first: if it cannot be opened (a foreign or
    // corrupt file, no permission), nothing starts and nothing is polled.
    let state = crate::state::StateDb::open(&cfg.daemon.state_dir)?;
    _lock.keep();
    info!(path = %state.path.display(), "state database open");
    crate::metrics::process_start_ms();
    // Bound before any task starts: an address in use stops the start with
    // an error naming http.listen.
    let http_listener = match cfg.http.enabled {
        true => Some(crate::http::bind(cfg.http.listen).await?),
        false => None,
    };
    let outbox = crate::sink::outbox::Outbox::new(state)?;

    let sink = match &cfg.influx {
        Some(influx) => {
            let mut sink = Sink::new(influx.clone(), metrics.clone(), Some(outbox))
                .map_err(|e| anyhow::anyhow!("InfluxDB writer: {e}"))?;
            sink.grace = opts.grace;
            info!(url = %crate::secret::redact_url(&influx.url), api = api_name(&influx.api), "writing readings to InfluxDB");
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
    let wake_mail = notifier.waker();
    // Reloaded configs reach the long-lived tasks through this channel.
    let (configs, configs_rx) = tokio::sync::watch::channel::<Option<Arc<Config>>>(None);
    let notifier =
        tokio::spawn(notifier.run_with_reload(notify_rx, notify_stop.clone(), configs_rx.clone()));

    // Customer reports: queued into the notifier's mail queue, exactly once.
    let reports_stop = CancellationToken::new();
    let reports = if cfg.reports.enabled {
        let s = crate::report::scheduler::Scheduler::new(
            Arc::new(cfg.clone()),
            metrics.clone(),
            wake_mail,
        )?;
        Some(tokio::spawn(
            s.run_with_reload(reports_stop.clone(), configs_rx.clone()),
        ))
    } else {
        info!("[reports] enabled = false: no customer reports are sent");
        None
    };

    let watch = crate::watch::Watch::new(
        &cfg,
        events,
        sink_tx.clone(),
        Some(notify_tx),
        metrics.clone(),
    )?;
    let ledger =
        crate::report::store::LedgerStore::new(crate::state::StateDb::open(&cfg.daemon.state_dir)?);
    let watch = watch.with_ledger(crate::report::feed::LedgerFeed::new(
        ledger,
        cfg.timezone.clone(),
        cfg.reports.keep_days,
    ));
    let watch = tokio::spawn(watch.run_with_reload(watch_rx, configs_rx));

    let latest = handles.latest.clone();
    let tee = tokio::spawn(async move {
        let mut rx = crate::gather::Gather::new(rx, crate::gather::PERIOD);
        let mut batch = Vec::new();
        'tee: while rx.next(&mut batch, crate::gather::MAX).await > 0 {
            {
                let mut latest = latest.lock().expect("latest lock");
                for r in &batch {
                    match latest.get_mut(&r.meter.id) {
                        Some(slot) => *slot = r.clone(),
                        None => {
                            latest.insert(r.meter.id.clone(), r.clone());
                        }
                    }
                }
            }
            for r in batch.drain(..) {
                if watch_tx.send(r.clone()).await.is_err() {
                    break 'tee;
                }
                if sink_tx.send(Record::Reading(r)).await.is_err() {
                    break 'tee;
                }
            }
        }
    });

    // The HTTP endpoint; it stops accepting when shutdown begins.
    let http = http_listener.map(|l| {
        if let Ok(a) = l.local_addr() {
            let _ = handles.http_addr.set(a);
        }
        let ctx = crate::http::Ctx::new(
            Arc::new(cfg.clone()),
            configs.subscribe(),
            metrics.clone(),
            handles.latest.clone(),
        );
        crate::http::spawn(l, ctx, shutdown.child_token())
    });

    // One task per gateway address.
    let mut pollers = Pollers {
        tasks: BTreeMap::new(),
        cancel: shutdown.child_token(),
        metrics: metrics.clone(),
        tx,
    };
    pollers.sync(&cfg).await;
    info!(
        meters = cfg.meters.len(),
        gateways = pollers.tasks.len(),
        "polling started"
    );
    // systemd: ready now; the watchdog is fed while the work progresses.
    let sd = crate::systemd::SdNotify::from_env().map(Arc::new);
    if let Some(sd) = &sd {
        sd.notify(&format!(
            "READY=1\nSTATUS=polling {} meters on {} gateways",
            cfg.meters.len(),
            pollers.tasks.len()
        ));
    }
    let beats = Arc::new(Mutex::new(gateway_max_ages(&cfg)));
    let watchdog = match (&sd, crate::systemd::watchdog_interval()) {
        (Some(sd), Some(every)) => {
            info!(interval = ?every, "systemd watchdog: pinging while polling and writing progress");
            Some(tokio::spawn(run_watchdog(
                sd.clone(),
                every,
                metrics.clone(),
                beats.clone(),
                shutdown.clone(),
            )))
        }
        _ => None,
    };
    // Wall-clock steps: logged once each with their size, and counted.
    let clock = {
        let metrics = metrics.clone();
        let on_step = move || Metrics::inc(&metrics.clock_steps);
        tokio::spawn(crate::clock::watch(on_step, shutdown.clone()))
    };
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

    let mut cfg = cfg;
    let mut supervise = tokio::time::interval(Duration::from_secs(5));
    supervise.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = supervise.tick() => pollers.revive(&cfg).await,
            Some(new) = reloads.recv() => {
                if let Some(sd) = &sd {
                    sd.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
                }
                // The shard comes from the running [cluster].
                let new = pin_not_live(&cfg, new).for_shard();
                pollers.sync(&new).await;
                handles
                    .latest
                    .lock()
                    .expect("latest lock")
                    .retain(|id, _| new.meters.iter().any(|m| &m.id == id));
                *beats.lock().expect("beats lock") = gateway_max_ages(&new);
                let new = Arc::new(new);
                let _ = configs.send(Some(new.clone()));
                info!(
                    customers = new.customers.len(),
                    meters = new.meters.len(),
                    gateways = pollers.tasks.len(),
                    "config reloaded"
                );
                cfg = (*new).clone();
                if let Some(sd) = &sd {
                    sd.notify(&format!(
                        "READY=1\nSTATUS=polling {} meters on {} gateways (reloaded)",
                        cfg.meters.len(),
                        pollers.tasks.len()
                    ));
                }
            }
        }
    }
    if let Some(sd) = &sd {
        sd.notify("STOPPING=1\nSTATUS=stopping: delivering buffered data");
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    info!("shutting down: stopping pollers");
    pollers.stop_all().await;
    let _ = tee.await;
    let _ = watch.await;
    reports_stop.cancel();
    if let Some(r) = reports {
        let _ = r.await;
    }
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
    clock.abort();
    if let Some(mut h) = http
        && tokio::time::timeout(Duration::from_secs(2), &mut h)
            .await
            .is_err()
    {
        warn!("HTTP endpoint: requests still in progress at exit were cut off");
        h.abort();
    }
    log_status(&metrics);
    info!("stopped");
    Ok(())
}

/// A hash of a gateway's settings and meters (their `Debug` form, streamed
/// into the hasher): a reload restarts the gateway when it changes. Never
/// materialised as text: every meter prints its whole profile, ~40 KB, so
/// the strings kept for a 10,000-meter fleet took ~400 MB (BENCHMARKS.md).
fn fingerprint<T: std::fmt::Debug>(
    settings: Option<&T>,
    meters: &[Arc<crate::config::Meter>],
) -> u64 {
    use std::hash::Hasher as _;
    struct H(std::hash::DefaultHasher);
    impl std::fmt::Write for H {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let mut h = H(std::hash::DefaultHasher::new());
    let _ = std::fmt::Write::write_fmt(&mut h, format_args!("{settings:?}{meters:?}"));
    h.0.finish()
}

/// The gateway tasks: one per address, each with its own cancel token so a
/// reload restarts only the gateways whose meters or settings changed.
struct Pollers {
    /// address → (fingerprint of its settings and meters, cancel, task).
    tasks: BTreeMap<String, (u64, CancellationToken, tokio::task::JoinHandle<()>)>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Reading>,
}

impl Pollers {
    /// Make the running gateway tasks match `cfg`: stop the ones removed
    /// or changed (a stopped task finishes its poll in progress), start
    /// the new and changed ones, leave the rest polling undisturbed.
    async fn sync(&mut self, cfg: &Config) {
        let mut want: BTreeMap<String, Vec<Arc<crate::config::Meter>>> = BTreeMap::new();
        for m in &cfg.meters {
            want.entry(m.address.clone()).or_default().push(m.clone());
        }
        let fingerprint = |addr: &str, meters: &[Arc<crate::config::Meter>]| {
            fingerprint(cfg.gateways.get(addr), meters)
        };
        let stale: Vec<String> = self
            .tasks
            .iter()
            .filter(|(addr, (fp, _, _))| {
                want.get(*addr)
                    .is_none_or(|meters| *fp != fingerprint(addr, meters))
            })
            .map(|(a, _)| a.clone())
            .collect();
        for addr in stale {
            if let Some((_, cancel, task)) = self.tasks.remove(&addr) {
                cancel.cancel();
                let _ = task.await;
                info!(gateway = %addr, "gateway stopped (config changed)");
            }
        }
        for (addr, meters) in want {
            if self.tasks.contains_key(&addr) {
                continue;
            }
            let fp = fingerprint(&addr, &meters);
            self.spawn(cfg, addr, meters, fp);
        }
    }

    fn spawn(
        &mut self,
        cfg: &Config,
        addr: String,
        meters: Vec<Arc<crate::config::Meter>>,
        fp: u64,
    ) {
        let gw = Gateway {
            settings: cfg.gateways[&addr].clone(),
            meters,
            metrics: self.metrics.clone(),
        };
        let cancel = self.cancel.child_token();
        let task = tokio::spawn(gw.run(self.tx.clone(), cancel.clone()));
        self.tasks.insert(addr, (fp, cancel, task));
    }

    /// Restart gateway tasks that ended on their own (a panic: a bug, but
    /// one gateway's meters must not stay unpolled until a restart).
    async fn revive(&mut self, cfg: &Config) {
        let dead: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, (_, _, t))| t.is_finished())
            .map(|(a, _)| a.clone())
            .collect();
        for addr in dead {
            if let Some((fp, _, task)) = self.tasks.remove(&addr) {
                let why = match task.await {
                    Err(e) if e.is_panic() => "panicked",
                    _ => "ended",
                };
                error!(gateway = %addr, why, "gateway task stopped unexpectedly; restarting it");
                Metrics::inc(&self.metrics.gateway_restarts);
                // Same config as when it started: its fingerprint stands,
                // and no other gateway needs hashing again.
                let meters = cfg
                    .meters
                    .iter()
                    .filter(|m| m.address == addr)
                    .cloned()
                    .collect();
                self.spawn(cfg, addr, meters, fp);
            }
        }
    }

    async fn stop_all(self) {
        self.cancel.cancel();
        for (_, (_, _, task)) in self.tasks {
            let _ = task.await;
        }
        // Dropping `tx` here closes the readings channel once every
        // gateway task has dropped its sender.
    }
}

/// Settings a reload cannot change in a running daemon keep their running
/// values (and the log says which changed); everything else is the new
/// config's.
fn pin_not_live(old: &Config, mut new: Config) -> Config {
    let mut changed = Vec::new();
    if format!("{:?}", old.influx) != format!("{:?}", new.influx) {
        changed.push("[influxdb]");
    }
    new.influx = old.influx.clone();
    if old.daemon.state_dir != new.daemon.state_dir {
        changed.push("daemon.state_dir");
    }
    if old.timezone != new.timezone {
        changed.push("daemon.timezone");
    }
    new.daemon.state_dir = old.daemon.state_dir.clone();
    new.timezone = old.timezone.clone();
    if format!("{:?}", old.http) != format!("{:?}", new.http) {
        changed.push("[http]");
    }
    new.http = old.http.clone();
    if old.cluster != new.cluster {
        changed.push("[cluster]");
    }
    new.cluster = old.cluster;
    if old.reports.enabled != new.reports.enabled {
        changed.push("reports.enabled");
    }
    new.reports.enabled = old.reports.enabled;
    if old.rules.short_window != new.rules.short_window
        || old.rules.long_window != new.rules.long_window
        || old.rules.demand_window != new.rules.demand_window
    {
        warn!("rules windows changed: the windows in progress start afresh");
    }
    if !changed.is_empty() {
        warn!(settings = ?changed, "these settings changed but need a restart; the running values stay until then");
    }
    new
}

/// How old each gateway's heartbeat may get before the daemon counts as
/// hung: two cycles of its fastest meter plus one slow poll of its slowest
/// (every read timing out after a reconnect), plus a margin.
fn gateway_max_ages(cfg: &Config) -> BTreeMap<String, Duration> {
    let mut out: BTreeMap<String, Duration> = BTreeMap::new();
    for m in &cfg.meters {
        let gw = &cfg.gateways[&m.address];
        let slow_poll = (gw.timeout + gw.delay_between_requests)
            * m.plan.requests.len().max(1) as u32
            + gw.connect_timeout;
        let age = m.interval * 2 + slow_poll + Duration::from_secs(10);
        let e = out.entry(m.address.clone()).or_insert(age);
        *e = (*e).max(age);
    }
    out
}

/// Ping systemd's watchdog at half its interval while every heartbeat is
/// fresh (see `systemd`); otherwise say what is stuck, once per episode.
async fn run_watchdog(
    sd: Arc<crate::systemd::SdNotify>,
    every: Duration,
    metrics: Arc<Metrics>,
    gateways: Arc<Mutex<BTreeMap<String, Duration>>>,
    stop: CancellationToken,
) {
    use crate::systemd::{Beat, stalled};
    // The sink and the watch turn their loops at least once a second.
    const TASK_MAX_AGE: Duration = Duration::from_secs(15);
    let started = crate::metrics::process_start_ms();
    let mut tick = tokio::time::interval(every / 2);
    let mut was_stalled = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let limits = gateways.lock().expect("beats lock").clone();
        let mut beats: Vec<Beat> = metrics
            .gateway_heartbeats()
            .into_iter()
            .filter_map(|(addr, last_ms)| {
                limits.get(&addr).map(|max_age| Beat {
                    what: format!("gateway {addr}"),
                    last_ms,
                    max_age: *max_age,
                })
            })
            .collect();
        beats.push(Beat {
            what: "InfluxDB writer (sink)".into(),
            last_ms: Metrics::get(&metrics.sink_heartbeat_ms),
            max_age: TASK_MAX_AGE,
        });
        beats.push(Beat {
            what: "rules (watch)".into(),
            last_ms: Metrics::get(&metrics.watch_heartbeat_ms),
            max_age: TASK_MAX_AGE,
        });
        let now = crate::clock::now_ms().max(0) as u64;
        let stuck = stalled(&beats, now, started);
        if stuck.is_empty() {
            sd.notify("WATCHDOG=1");
            was_stalled = false;
        } else if !was_stalled {
            error!(stalled = ?stuck, "no progress: not pinging the systemd watchdog (systemd restarts the service when it expires)");
            was_stalled = true;
        }
    }
}

/// CLOCK_MONOTONIC in µs, as systemd wants with RELOADING=1 (Rust's
/// `Instant` does not expose its value).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the buffer given.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
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
        fields_implausible = g(&m.fields_implausible),
        points_written = g(&m.points_written),
        points_dropped = g(&m.points_dropped),
        points_rejected = g(&m.points_rejected),
        batches_retried = g(&m.batches_retried),
        outbox_batches = g(&m.outbox_batches),
        outbox_points = g(&m.outbox_points),
        outbox_bytes = g(&m.outbox_bytes),
        outbox_oldest_age_s = match g(&m.outbox_oldest_ms) {
            0 => 0,
            t => (crate::clock::now_ms() as u64).saturating_sub(t) / 1000,
        },
        points_not_stored = g(&m.points_discarded),
        events_opened = g(&m.events_opened),
        events_closed = g(&m.events_closed),
        "status"
    );
}
