//! The watch's counters: power-quality events opened and closed, and the
//! watch task's heartbeat, with the `/metrics` families they make (and
//! the open events per kind, which the handler reads from the state
//! database).

use crate::metrics::exposition::{Family, Type, counter, gauge, secs};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct EventStats {
    pub events_opened: AtomicU64,
    pub events_closed: AtomicU64,
    /// Heartbeat of the watch task: set on its 1 s tick, Unix ms.
    pub watch_heartbeat_ms: AtomicU64,
}

impl EventStats {
    /// The events' families; `open_events` (per kind, from the state
    /// database) is left out when it could not be read, rather than
    /// reported as zero.
    pub(crate) fn families(&self, open_events: Option<&BTreeMap<String, u64>>) -> Vec<Family> {
        use Type::Gauge;
        let mut f = Vec::new();
        if let Some(open) = open_events {
            let mut fam = Family::new(
                "pqwatch_events_open",
                Gauge,
                "Power-quality events open now, by kind (state database).",
            );
            let mut kinds: BTreeMap<&str, u64> = crate::quality::rules::Kind::ALL
                .iter()
                .map(|k| (k.as_str(), 0))
                .collect();
            for (k, n) in open {
                kinds.insert(k.as_str(), *n);
            }
            for (k, n) in kinds {
                fam = fam.with(vec![("kind", k.to_string())], n as f64);
            }
            f.push(fam);
        }
        f.extend([
            counter(
                "pqwatch_events_opened_total",
                "Power-quality events opened.",
                &self.events_opened,
            ),
            counter(
                "pqwatch_events_closed_total",
                "Power-quality events closed.",
                &self.events_closed,
            ),
            gauge(
                "pqwatch_watch_heartbeat_timestamp_seconds",
                "When the watch task (windows, rules) last ticked (once a second), Unix seconds.",
                secs(self.watch_heartbeat_ms.load(Relaxed)),
            ),
        ]);
        f
    }
}
