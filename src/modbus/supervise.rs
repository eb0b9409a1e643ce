//! Gateway supervision: one task per gateway address, started, restarted
//! after a panic, and on a reload stopped and started again only where
//! that gateway's settings or meters changed. Also the heartbeat limits
//! the systemd watchdog holds each gateway task to.
//!
//! Not here: polling itself ([`super::gateway`]) and deciding what a
//! reload may change (`config::reload`).

use super::gateway::Gateway;
use crate::config::{Config, Meter};
use crate::metrics::Metrics;
use crate::reading::Reading;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A hash of a gateway's settings and meters (their `Debug` form, streamed
/// into the hasher): a reload restarts the gateway when it changes. Never
/// materialised as text: every meter prints its whole profile, ~40 KB, so
/// the strings kept for a 10,000-meter fleet took ~400 MB (BENCHMARKS.md).
fn fingerprint<T: std::fmt::Debug>(settings: Option<&T>, meters: &[Arc<Meter>]) -> u64 {
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
pub(crate) struct Pollers {
    /// address → (fingerprint of its settings and meters, cancel, task).
    tasks: BTreeMap<String, (u64, CancellationToken, tokio::task::JoinHandle<()>)>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Reading>,
}

impl Pollers {
    /// No gateway tasks yet: [`sync`](Self::sync) starts them. Each task
    /// is cancelled by a child of `cancel` and sends its readings to `tx`.
    pub(crate) fn new(
        cancel: CancellationToken,
        metrics: Arc<Metrics>,
        tx: mpsc::Sender<Reading>,
    ) -> Pollers {
        Pollers {
            tasks: BTreeMap::new(),
            cancel,
            metrics,
            tx,
        }
    }

    /// How many gateway tasks there are.
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Make the running gateway tasks match `cfg`: stop the ones removed
    /// or changed (a stopped task finishes its poll in progress), start
    /// the new and changed ones, leave the rest polling undisturbed.
    pub(crate) async fn sync(&mut self, cfg: &Config) {
        let mut want: BTreeMap<String, Vec<Arc<Meter>>> = BTreeMap::new();
        for m in &cfg.meters {
            want.entry(m.address.clone()).or_default().push(m.clone());
        }
        let fingerprint =
            |addr: &str, meters: &[Arc<Meter>]| fingerprint(cfg.gateways.get(addr), meters);
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

    fn spawn(&mut self, cfg: &Config, addr: String, meters: Vec<Arc<Meter>>, fp: u64) {
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
    pub(crate) async fn revive(&mut self, cfg: &Config) {
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
                Metrics::inc(&self.metrics.polling.gateway_restarts);
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

    pub(crate) async fn stop_all(self) {
        self.cancel.cancel();
        for (_, (_, _, task)) in self.tasks {
            let _ = task.await;
        }
        // Dropping `tx` here closes the readings channel once every
        // gateway task has dropped its sender.
    }
}

/// How old each gateway's heartbeat may get before the daemon counts as
/// hung: two cycles of its fastest meter plus one slow poll of its slowest
/// (every read timing out after a reconnect), plus a margin.
pub(crate) fn heartbeat_limits(cfg: &Config) -> BTreeMap<String, Duration> {
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
