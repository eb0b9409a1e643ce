//! Time: the wall clock that stamps readings, the monotonic clock that
//! measures waits, and the steps between them.
//!
//! Poll instants are wall-clock multiples of an interval (`next_aligned`),
//! so series line up across meters; but every wait is measured on the
//! monotonic clock (tokio's `Instant`), which NTP or an operator's `date -s`
//! never moves. A wall-clock step (more than `STEP_MS` between how far the
//! wall clock and the monotonic clock moved) is seen by a `Detector`: the
//! gateway tasks re-anchor their schedules on it (see `modbus::gateway`),
//! and `watch` logs each step once with its size and counts it
//! (`pqwatch_clock_steps_total`).
//!
//! A leaf module: it depends on nothing else of the crate but the counter
//! it bumps.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A difference between the wall clock's and the monotonic clock's
/// progress beyond this is a step, not drift (NTP slews at most 0.5 ms/s).
pub(crate) const STEP_MS: i64 = 1_000;

/// Unix time now in milliseconds (0 before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Wall-clock milliseconds that follow tokio's clock from a start: tests
/// that pause tokio's time move this clock too. For the mail tasks, whose
/// retry times are wall-clock instants stored in the state database.
pub(crate) struct TokioWall {
    wall0: i64,
    t0: tokio::time::Instant,
}

impl TokioWall {
    /// Starting now.
    pub(crate) fn new() -> Self {
        TokioWall {
            wall0: now_ms(),
            t0: tokio::time::Instant::now(),
        }
    }

    /// Unix ms now, as this clock sees it.
    pub(crate) fn now_ms(&self) -> i64 {
        self.wall0 + self.t0.elapsed().as_millis() as i64
    }

    /// The tokio instant of the Unix time `ms` (now, if it is past).
    fn instant(&self, ms: i64) -> tokio::time::Instant {
        self.t0 + Duration::from_millis((ms - self.wall0).max(0) as u64)
    }

    /// Sleep until the Unix time `at`; forever when there is none.
    pub(crate) async fn sleep_until(&self, at: Option<i64>) {
        match at {
            Some(t) => tokio::time::sleep_until(self.instant(t)).await,
            None => std::future::pending().await,
        }
    }
}

impl Default for TokioWall {
    fn default() -> Self {
        Self::new()
    }
}

/// The first multiple of `interval_ms` strictly after `t`.
pub(crate) fn next_aligned(t: i64, interval_ms: i64) -> i64 {
    (t.div_euclid(interval_ms) + 1) * interval_ms
}

/// Skip forward over missed instants: returns (instant to poll, cycles skipped).
pub(crate) fn catch_up(scheduled: i64, now: i64, interval_ms: i64) -> (i64, u64) {
    if now < scheduled + interval_ms {
        return (scheduled, 0);
    }
    let missed = (now - scheduled) / interval_ms;
    (scheduled + missed * interval_ms, missed as u64)
}

/// How long until wall instant `due_ms`, as a monotonic wait (zero when due).
pub(crate) fn until(due_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis((due_ms - now_ms).max(0) as u64)
}

/// Sees wall-clock steps: compares how far the wall clock moved with how
/// far the monotonic clock moved since the last check, then re-anchors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Detector {
    wall_ms: i64,
    mono: Instant,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

impl Detector {
    pub(crate) fn new() -> Detector {
        Detector {
            wall_ms: now_ms(),
            mono: Instant::now(),
        }
    }

    /// The step since the last check, in ms (negative: the wall clock went
    /// back), when it is larger than [`STEP_MS`].
    pub(crate) fn check(&mut self) -> Option<i64> {
        self.check_at(now_ms(), Instant::now())
    }

    /// [`check`](Self::check) with the clocks' readings given.
    pub(crate) fn check_at(&mut self, wall_ms: i64, mono: Instant) -> Option<i64> {
        let mono_ms = mono.saturating_duration_since(self.mono).as_millis() as i64;
        let step = (wall_ms - self.wall_ms) - mono_ms;
        self.wall_ms = wall_ms;
        self.mono = mono;
        (step.abs() > STEP_MS).then_some(step)
    }
}

/// Log every wall-clock step once with its size and call `on_step` (the
/// caller counts it), until `stop` fires. One task per process; the
/// gateways act on steps themselves, this only reports them.
pub(crate) async fn watch(on_step: impl Fn() + Send, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut d = Detector::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(step) = d.check() {
            on_step();
            tracing::warn!(
                step_s = step as f64 / 1000.0,
                now_ms = now_ms(),
                "wall clock stepped {} by {:.1} s; poll schedules re-anchored to the new time (waits run on the monotonic clock)",
                if step < 0 { "back" } else { "forward" },
                step.abs() as f64 / 1000.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_to_wall_clock() {
        assert_eq!(next_aligned(12_345, 5_000), 15_000);
        assert_eq!(next_aligned(15_000, 5_000), 20_000, "strictly after");
        assert_eq!(next_aligned(0, 1_000), 1_000);
    }

    #[test]
    fn overruns_skip_cycles_instead_of_queueing() {
        // On time or late by less than one interval: poll the scheduled instant.
        assert_eq!(catch_up(10_000, 10_000, 1_000), (10_000, 0));
        assert_eq!(catch_up(10_000, 10_999, 1_000), (10_000, 0));
        // 3.5 intervals late: skip 3, poll the latest instant that has passed.
        assert_eq!(catch_up(10_000, 13_500, 1_000), (13_000, 3));
    }

    #[test]
    fn steps_are_seen_either_way_drift_is_not() {
        let t0 = Instant::now();
        let mut d = Detector {
            wall_ms: 1_000_000,
            mono: t0,
        };
        let s = Duration::from_secs(1);
        // Both clocks moved 1 s (and 0.5 ms of slew): no step.
        assert_eq!(d.check_at(1_001_000, t0 + s), None);
        assert_eq!(d.check_at(1_002_001, t0 + 2 * s), None);
        // Set back 10 minutes while 1 s passed.
        assert_eq!(d.check_at(403_001, t0 + 3 * s), Some(-600_000));
        // Re-anchored: the next second is normal again.
        assert_eq!(d.check_at(404_001, t0 + 4 * s), None);
        // Forward by 90 s.
        assert_eq!(d.check_at(495_001, t0 + 5 * s), Some(90_000));
        // 1 s exactly is not a step; 1.5 s is.
        assert_eq!(d.check_at(497_001, t0 + 6 * s), None);
        assert_eq!(d.check_at(499_501, t0 + 7 * s), Some(1_500));
    }

    #[test]
    fn waits_never_go_negative() {
        assert_eq!(until(5_000, 6_000), Duration::ZERO);
        assert_eq!(until(5_000, 4_000), Duration::from_secs(1));
    }
}
