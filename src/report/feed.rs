//! The ledger feed: each complete window's contribution to the report
//! ledger (`report::ledger`), kept in memory briefly and stored within a
//! second, then compacted and pruned (`[reports] keep_days`). The watch
//! calls it; it never loses minutes silently: what cannot be stored is
//! kept and retried, and what is lost at shutdown is logged.

use super::ledger::{DayLedger, Peak, customer_key, keep_peak};
use super::store::LedgerStore;
use crate::calendar::{day_key, local_date};
use crate::state::StateError;
use std::collections::{BTreeMap, HashMap};
use tracing::{error, info, warn};

/// Rows a meter-day collects before it is compacted into one.
const COMPACT_AFTER_ROWS: u32 = 60;

/// The ledger side of the watch: contributions waiting to be stored.
pub(crate) struct LedgerFeed {
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
    pub(crate) fn new(store: LedgerStore, tz: jiff::tz::TimeZone, keep_days: u32) -> Self {
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

    /// The peaks (basis, instantaneous) a customer's suspension from
    /// `from_ms` to `to_ms` reached so far, as stored in its ledger (`*/C`
    /// key) on the local days it spans; None before any was stored.
    pub(crate) fn suspension_peaks(
        &self,
        customer: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<(Peak, Peak)>, StateError> {
        let from = day_key(local_date(from_ms, &self.tz));
        let last = local_date(to_ms, &self.tz);
        let to = last
            .tomorrow()
            .map(day_key)
            .unwrap_or_else(|_| day_key(last));
        let days = self.store.read_days(&customer_key(customer), &from, &to)?;
        let inside =
            |p: &Option<Peak>| p.clone().filter(|p| from_ms <= p.at_ms && p.at_ms <= to_ms);
        let (mut basis, mut instant) = (None, None);
        for d in days.values() {
            if let Some(p) = inside(&d.suspension) {
                keep_peak(&mut basis, &p);
            }
            if let Some(p) = inside(&d.suspension_instant) {
                keep_peak(&mut instant, &p);
            }
        }
        Ok(basis.zip(instant))
    }

    /// Meter-days not stored yet.
    pub(crate) fn pending_days(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn add(&mut self, meter: &str, start_ms: i64, d: DayLedger) {
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
    pub(crate) fn flush(&mut self, now_ms: i64) {
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
                    warn!(meter = %key.0, day = %key.1, error = %e, "report ledger: compaction failed; retrying later");
                }
            }
        }
        let today = day_key(local_date(now_ms, &self.tz));
        if today != self.today {
            self.housekeeping(&today);
        }
    }

    pub(crate) fn housekeeping(&mut self, today: &str) {
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
            && let Ok(oldest) = t.checked_sub(jiff::Span::new().days(i64::from(self.keep_days)))
        {
            match self.store.prune_before(&day_key(oldest)) {
                Ok(n) if n > 0 => {
                    info!(rows = n, before = %oldest, "report ledger: old days deleted ([reports] keep_days)");
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "report ledger: retention failed; retrying tomorrow"),
            }
        }
        self.today = today.to_string();
    }
}
