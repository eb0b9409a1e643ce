//! The report scheduler's counters, with the `/metrics` families they make.

use crate::metrics::exposition::{Family, counter};
use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub(crate) struct ReportStats {
    /// Customer reports queued for delivery (`report::scheduler`).
    pub reports_queued: AtomicU64,
    /// Reports that could not be built or queued (retried each minute).
    pub reports_failed: AtomicU64,
}

impl ReportStats {
    /// The report families.
    pub(crate) fn families(&self) -> Vec<Family> {
        vec![
            counter(
                "pqwatch_reports_queued_total",
                "Customer reports queued for delivery.",
                &self.reports_queued,
            ),
            counter(
                "pqwatch_reports_failed_total",
                "Customer reports that could not be built or queued (retried).",
                &self.reports_failed,
            ),
        ]
    }
}
