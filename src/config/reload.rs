//! The reload policy: what a reloaded config (SIGHUP) may change in a
//! running daemon, and how each stage receives its own slice of it.
//!
//! A stage is given a [`watch::Receiver`] of its slice (a type the stage
//! defines, built from a [`Config`]), seeded with the start-up value; every
//! accepted reload sends each slice again. No stage sees the whole config.
//!
//! Not here: reading or validating files (the parent module), and what each
//! stage does with its new slice (the stage).

use super::Config;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::warn;

/// One stage's slice of the config, sent again on every reload.
pub(crate) struct Slice<S> {
    tx: watch::Sender<Arc<S>>,
    of: fn(&Config) -> S,
}

impl<S> Slice<S> {
    /// The slice `of(cfg)`; stages take receivers with [`subscribe`](Self::subscribe).
    pub(crate) fn new(cfg: &Config, of: fn(&Config) -> S) -> Slice<S> {
        Slice {
            tx: watch::Sender::new(Arc::new(of(cfg))),
            of,
        }
    }

    /// The slice as it stands (to build a stage with).
    pub(crate) fn current(&self) -> Arc<S> {
        self.tx.borrow().clone()
    }

    /// Another receiver of the same slice.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<S>> {
        self.tx.subscribe()
    }

    /// Send the slice of a reloaded config (a stage that stopped already
    /// is not an error).
    pub(crate) fn send(&self, cfg: &Config) {
        let _ = self.tx.send(Arc::new((self.of)(cfg)));
    }
}

/// A receiver of `value` that never changes (a stage run outside the
/// daemon: tests, the CLI).
pub fn fixed<S>(value: S) -> watch::Receiver<Arc<S>> {
    watch::channel(Arc::new(value)).1
}

/// Settings a reload cannot change in a running daemon keep their running
/// values (and the log says which changed); everything else is the new
/// config's.
pub(crate) fn pin_not_live(old: &Config, mut new: Config) -> Config {
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
