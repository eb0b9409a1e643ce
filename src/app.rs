//! Wiring: starts the tasks, connects them with bounded channels, applies
//! reloads, owns shutdown order.
//!
//! ```text
//! gateway tasks ──(readings, bounded 8192)──▶ tee ──(bounded 8192)──────────▶ sink ──▶ outbox ──▶ InfluxDB
//!                                              ├─▶ latest reading per meter       ▲
//!                                              └─▶ watch ─(windows, pq_event)─────┘
//!                                                    └─(event changes, bounded)─▶ notifier ──▶ mail queue ──▶ mail sender ──▶ SMTP
//!                                                          report scheduler ──────────────────────┘
//! ```
//!
//! Each stage runs with its own slice of the config (`config::reload`);
//! a reload re-sends every slice and restarts only the gateways whose
//! settings or meters changed (`modbus::supervise`).
//!
//! Shutdown (the token passed to [`run`]): only the sources are cancelled.
//! Gateway tasks stop polling and drop their senders; the tee and the sink
//! see their channels close, the sink seals and delivers what it holds
//! within its grace period, and `run` returns once everything has drained
//! (or a hard deadline passed, logging what was still running). Mail
//! producers stop before the mail sender, so what they flush gets its last
//! delivery attempt.

use crate::config::Config;
use crate::config::reload::{Slice, pin_not_live};
use crate::metrics::{Metrics, log_status};
use crate::modbus::supervise::{Pollers, heartbeat_limits};
use crate::reading::{Latest, Reading, Record};
use crate::sink::{Sink, run_discard};
use crate::systemd::{Beat, SdNotify};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
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
/// (SIGHUP).
pub async fn run_with_reload(
    cfg: Config,
    shutdown: CancellationToken,
    opts: Options,
    handles: Handles,
    mut reloads: mpsc::Receiver<Config>,
) -> anyhow::Result<()> {
    // One daemon per state directory, before anything else: a second one
    // would share the outbox.
    let lock = match opts.lock.clone() {
        Some(l) => l,
        None => Arc::new(crate::state::lock_dir(&cfg.daemon.state_dir)?),
    };
    let metrics = handles.metrics.clone();
    let cfg = shard(cfg);
    let (tx, rx) = mpsc::channel::<Reading>(CHANNEL);
    let (sink_tx, sink_rx) = mpsc::channel::<Record>(CHANNEL);
    let (watch_tx, watch_rx) = mpsc::channel::<Reading>(CHANNEL);

    // The state database first: if it cannot be opened (a foreign or
    // corrupt file, no permission), nothing starts and nothing is polled.
    let state = crate::state::StateDb::open(&cfg.daemon.state_dir)?;
    lock.keep();
    info!(path = %state.path.display(), "state database open");
    crate::metrics::process_start_ms();
    // Bound before any task starts: an address in use stops the start with
    // an error naming http.listen.
    let http_listener = match cfg.http.enabled {
        true => Some(crate::http::bind(cfg.http.listen).await?),
        false => None,
    };
    let slices = Slices::new(&cfg);
    let mut tasks = Tasks {
        sink: Some(start_sink(&cfg, state, sink_rx, &metrics, opts.grace)?),
        ..Tasks::default()
    };

    // Mail: the sender first, then its producers (operator alerts, reports).
    let sender = crate::mail::Sender::new(&slices.mail.current(), metrics.clone())
        .map_err(|e| anyhow::anyhow!("mail: {e}"))?;
    info!(mail = %sender.describe(), "operator alerts and reports");
    let wake_mail = sender.waker();
    tasks.mail = Some(tokio::spawn(
        sender.run(tasks.mail_stop.clone(), slices.mail.subscribe()),
    ));
    let (notify_tx, notify_rx) = crate::notify::channel();
    let notifier =
        crate::notify::Notifier::new(&slices.notify.current(), metrics.clone(), wake_mail.clone())
            .map_err(|e| anyhow::anyhow!("notifier: {e}"))?;
    tasks.notifier = Some(tokio::spawn(notifier.run(
        notify_rx,
        tasks.notify_stop.clone(),
        slices.notify.subscribe(),
    )));
    tasks.reports = start_reports(&cfg, &slices, &metrics, wake_mail, &tasks.reports_stop)?;
    tasks.watch = Some(start_watch(
        &cfg,
        &slices,
        (watch_rx, sink_tx.clone(), notify_tx),
        &metrics,
    )?);
    tasks.tee = Some(tokio::spawn(tee(
        rx,
        handles.latest.clone(),
        watch_tx,
        sink_tx,
    )));

    // The HTTP endpoint; it stops accepting when shutdown begins.
    tasks.http = http_listener.map(|l| {
        if let Ok(a) = l.local_addr() {
            let _ = handles.http_addr.set(a);
        }
        let ctx = crate::http::Ctx::new(
            slices.http.subscribe(),
            cfg.http.token.clone(),
            metrics.clone(),
            handles.latest.clone(),
        );
        crate::http::spawn(l, ctx, shutdown.child_token())
    });

    // One task per gateway address.
    let mut pollers = Pollers::new(shutdown.child_token(), metrics.clone(), tx);
    pollers.sync(&cfg).await;
    info!(
        meters = cfg.meters.len(),
        gateways = pollers.len(),
        "polling started"
    );
    let sd = SdNotify::from_env().map(Arc::new);
    if let Some(sd) = &sd {
        sd.notify(&format!(
            "READY=1\nSTATUS=polling {} meters on {} gateways",
            cfg.meters.len(),
            pollers.len()
        ));
    }
    let limits = Arc::new(Mutex::new(heartbeat_limits(&cfg)));
    start_background(&mut tasks, &sd, &limits, &metrics, &opts, &shutdown);

    let mut cfg = cfg;
    let mut supervise = tokio::time::interval(Duration::from_secs(5));
    supervise.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = supervise.tick() => pollers.revive(&cfg).await,
            Some(new) = reloads.recv() => {
                let reload = Reload { pollers: &mut pollers, slices: &slices, handles: &handles, limits: &limits, sd: sd.as_deref() };
                cfg = reload.apply(&cfg, new).await;
            }
        }
    }
    if let Some(sd) = &sd {
        sd.notify("STOPPING=1\nSTATUS=stopping: delivering buffered data");
    }
    if let Some(w) = tasks.watchdog.take() {
        w.abort();
    }
    info!("shutting down: stopping pollers");
    pollers.stop_all().await;
    tasks.drain(opts.grace).await;
    log_status(&metrics);
    info!("stopped");
    Ok(())
}

/// Under `[cluster]`, this instance polls, judges and reports only the
/// customers its shard owns.
fn shard(cfg: Config) -> Config {
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
    cfg
}

/// Every stage's slice of the config, sent again on each reload.
struct Slices {
    watch: Slice<crate::watch::Settings>,
    notify: Slice<crate::notify::Settings>,
    mail: Slice<crate::mail::Settings>,
    reports: Slice<crate::report::Settings>,
    http: Slice<crate::http::Settings>,
}

impl Slices {
    fn new(cfg: &Config) -> Slices {
        Slices {
            watch: Slice::new(cfg, crate::watch::Settings::of),
            notify: Slice::new(cfg, crate::notify::Settings::of),
            mail: Slice::new(cfg, crate::mail::Settings::of),
            reports: Slice::new(cfg, crate::report::Settings::of),
            http: Slice::new(cfg, crate::http::Settings::of),
        }
    }

    fn send(&self, cfg: &Config) {
        self.watch.send(cfg);
        self.notify.send(cfg);
        self.mail.send(cfg);
        self.reports.send(cfg);
        self.http.send(cfg);
    }
}

/// The long-lived tasks besides the pollers, and the tokens that stop the
/// ones that do not stop when their input closes.
#[derive(Default)]
struct Tasks {
    sink: Option<JoinHandle<()>>,
    tee: Option<JoinHandle<()>>,
    watch: Option<JoinHandle<()>>,
    reports: Option<JoinHandle<()>>,
    reports_stop: CancellationToken,
    notifier: Option<JoinHandle<()>>,
    notify_stop: CancellationToken,
    mail: Option<JoinHandle<()>>,
    mail_stop: CancellationToken,
    http: Option<JoinHandle<()>>,
    /// Aborted as shutdown begins: the tasks stop beating one by one.
    watchdog: Option<JoinHandle<()>>,
    /// Aborted at the end: the clock-step watch, the status log.
    background: Vec<JoinHandle<()>>,
}

impl Tasks {
    /// Wait for everything downstream of the (stopped) pollers, in the
    /// order the data flows, each bounded.
    async fn drain(self, grace: Duration) {
        let _ = join(self.tee).await;
        let _ = join(self.watch).await;
        self.reports_stop.cancel();
        let _ = join(self.reports).await;
        // The watch dropped the notifier's sender: it flushes its digests
        // into the mail queue, then the sender makes a last delivery
        // attempt (bounded).
        self.notify_stop.cancel();
        let _ = join(self.notifier).await;
        self.mail_stop.cancel();
        if tokio::time::timeout(Duration::from_secs(15), join(self.mail))
            .await
            .is_err()
        {
            error!("mail sender did not stop in time; queued mail is sent on the next start");
        }
        // The sink bounds its own drain by `grace`; this is the backstop.
        if tokio::time::timeout(grace + Duration::from_secs(5), join(self.sink))
            .await
            .is_err()
        {
            error!("sink did not finish within its grace period; exiting anyway");
        }
        for t in self.background {
            t.abort();
        }
        if let Some(mut h) = self.http
            && tokio::time::timeout(Duration::from_secs(2), &mut h)
                .await
                .is_err()
        {
            warn!("HTTP endpoint: requests still in progress at exit were cut off");
            h.abort();
        }
    }
}

async fn join(t: Option<JoinHandle<()>>) {
    if let Some(t) = t {
        let _ = t.await;
    }
}

/// The sink: to InfluxDB through the outbox, or, with no `[influxdb]`,
/// counted and discarded.
fn start_sink(
    cfg: &Config,
    state: crate::state::StateDb,
    rx: mpsc::Receiver<Record>,
    metrics: &Arc<Metrics>,
    grace: Duration,
) -> anyhow::Result<JoinHandle<()>> {
    let outbox = crate::sink::outbox::Outbox::new(state)?;
    let Some(influx) = &cfg.influx else {
        if outbox.depth().batches > 0 {
            warn!(
                batches = outbox.depth().batches,
                "the outbox holds batches from an earlier run, but no [influxdb] is configured: they stay until it is"
            );
        }
        warn!("no [influxdb] section configured: readings are polled but NOT stored");
        return Ok(tokio::spawn(run_discard(rx, metrics.clone())));
    };
    let mut sink = Sink::new(influx.clone(), metrics.clone(), Some(outbox))
        .map_err(|e| anyhow::anyhow!("InfluxDB writer: {e}"))?;
    sink.grace = grace;
    let api = match &influx.api {
        crate::config::Api::V2 { .. } => "v2",
        crate::config::Api::V1 { .. } => "v1",
    };
    info!(url = %crate::secret::redact_url(&influx.url), api, "writing readings to InfluxDB");
    Ok(tokio::spawn(sink.run(rx)))
}

/// Customer reports, queued into the mail queue exactly once.
fn start_reports(
    cfg: &Config,
    slices: &Slices,
    metrics: &Arc<Metrics>,
    wake_mail: Arc<tokio::sync::Notify>,
    stop: &CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if !cfg.reports.enabled {
        info!("[reports] enabled = false: no customer reports are sent");
        return Ok(None);
    }
    let s = crate::report::scheduler::Scheduler::new(
        slices.reports.current(),
        metrics.clone(),
        wake_mail,
    )?;
    Ok(Some(tokio::spawn(
        s.run(stop.clone(), slices.reports.subscribe()),
    )))
}

/// The watch task (windows, rules, events, the report ledger), each store
/// on its own state-database connection.
fn start_watch(
    cfg: &Config,
    slices: &Slices,
    (rx, sink, notify): (
        mpsc::Receiver<Reading>,
        mpsc::Sender<Record>,
        mpsc::Sender<crate::events::EventChange>,
    ),
    metrics: &Arc<Metrics>,
) -> anyhow::Result<JoinHandle<()>> {
    let open = || crate::state::StateDb::open(&cfg.daemon.state_dir);
    let events = crate::events::EventStore::new(open()?);
    let settings = slices.watch.subscribe();
    let watch = crate::watch::Watch::new(
        &settings.borrow(),
        events,
        sink,
        Some(notify),
        metrics.clone(),
    )?;
    let ledger = crate::report::store::LedgerStore::new(open()?);
    let watch = watch.with_ledger(crate::report::feed::LedgerFeed::new(
        ledger,
        cfg.timezone.clone(),
        cfg.reports.keep_days,
    ));
    Ok(tokio::spawn(watch.run(rx, settings)))
}

/// The tee: each batch of readings updates the latest reading per meter,
/// then goes to the watch and the sink. It ends when the pollers are gone
/// or a downstream stage is.
async fn tee(
    rx: mpsc::Receiver<Reading>,
    latest: Latest,
    watch: mpsc::Sender<Reading>,
    sink: mpsc::Sender<Record>,
) {
    let mut rx = crate::gather::Gather::new(rx, crate::gather::PERIOD);
    let mut batch = Vec::new();
    while rx.next(&mut batch, crate::gather::MAX).await > 0 {
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
            if watch.send(r.clone()).await.is_err() {
                return;
            }
            if sink.send(Record::Reading(r)).await.is_err() {
                return;
            }
        }
    }
}

/// The systemd watchdog (when systemd asks for one), the clock-step watch
/// and the periodic status line.
fn start_background(
    tasks: &mut Tasks,
    sd: &Option<Arc<SdNotify>>,
    limits: &Arc<Mutex<BTreeMap<String, Duration>>>,
    metrics: &Arc<Metrics>,
    opts: &Options,
    shutdown: &CancellationToken,
) {
    if let (Some(sd), Some(every)) = (sd, crate::systemd::watchdog_interval()) {
        info!(interval = ?every, "systemd watchdog: pinging while polling and writing progress");
        let (metrics, limits) = (metrics.clone(), limits.clone());
        tasks.watchdog = Some(tokio::spawn(crate::systemd::watchdog(
            sd.clone(),
            every,
            crate::metrics::process_start_ms(),
            move || beats(&metrics, &limits.lock().expect("beats lock")),
            shutdown.clone(),
        )));
    }
    // Wall-clock steps: logged once each with their size, and counted.
    let m = metrics.clone();
    let on_step = move || Metrics::inc(&m.clock_steps);
    tasks
        .background
        .push(tokio::spawn(crate::clock::watch(on_step, shutdown.clone())));
    let (metrics, every, stop) = (metrics.clone(), opts.status_every, shutdown.clone());
    tasks.background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => log_status(&metrics),
            }
        }
    }));
}

/// What must keep moving for the watchdog to be fed: every gateway task
/// (within its limit), the sink and the watch (they turn their loops at
/// least once a second).
fn beats(metrics: &Metrics, limits: &BTreeMap<String, Duration>) -> Vec<Beat> {
    const TASK_MAX_AGE: Duration = Duration::from_secs(15);
    let mut beats: Vec<Beat> = metrics
        .polling
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
        last_ms: Metrics::get(&metrics.sink.sink_heartbeat_ms),
        max_age: TASK_MAX_AGE,
    });
    beats.push(Beat {
        what: "rules (watch)".into(),
        last_ms: Metrics::get(&metrics.events.watch_heartbeat_ms),
        max_age: TASK_MAX_AGE,
    });
    beats
}

/// What a reload touches besides the config.
struct Reload<'a> {
    pollers: &'a mut Pollers,
    slices: &'a Slices,
    handles: &'a Handles,
    limits: &'a Mutex<BTreeMap<String, Duration>>,
    sd: Option<&'a SdNotify>,
}

impl Reload<'_> {
    /// Apply a validated new config to the running daemon; returns the
    /// config now running (the new one, with what needs a restart pinned).
    async fn apply(self, running: &Config, new: Config) -> Config {
        if let Some(sd) = self.sd {
            sd.notify(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}",
                crate::systemd::monotonic_usec()
            ));
        }
        // The shard comes from the running [cluster].
        let new = pin_not_live(running, new).for_shard();
        self.pollers.sync(&new).await;
        self.handles
            .latest
            .lock()
            .expect("latest lock")
            .retain(|id, _| new.meters.iter().any(|m| &m.id == id));
        *self.limits.lock().expect("beats lock") = heartbeat_limits(&new);
        self.slices.send(&new);
        info!(
            customers = new.customers.len(),
            meters = new.meters.len(),
            gateways = self.pollers.len(),
            "config reloaded"
        );
        if let Some(sd) = self.sd {
            sd.notify(&format!(
                "READY=1\nSTATUS=polling {} meters on {} gateways (reloaded)",
                new.meters.len(),
                self.pollers.len()
            ));
        }
        new
    }
}
