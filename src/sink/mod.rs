//! The InfluxDB sink: readings in, line-protocol batches out.
//!
//! One task owns the whole path. It receives readings from a bounded
//! channel, appends them to the batch being assembled, seals the batch when
//! it reaches `batch_size` points or `flush_interval` passes, and sends
//! sealed batches oldest first, one request in flight at a time. A failed
//! retryable send is retried with capped, jittered exponential backoff
//! (honouring `Retry-After`); a batch the server rejects as bad (400/422) is
//! dropped, counted and logged with the server's message so it never blocks
//! the queue.
//!
//! Bound: sealed batches are kept in memory up to `max_buffered_points`;
//! beyond that the oldest batch is dropped, counted and logged loudly.
//! (Durable buffering across outages and restarts is the outbox's job.)
//!
//! The receive loop never waits on the network, so the channel drains at
//! CPU speed and pollers are not slowed by a slow or dead database.
//! Shutdown: when every sender is gone the task seals what it has, keeps
//! sending until the queue is empty or `grace` passes, and reports what is
//! left undelivered.

pub mod line;
pub mod outbox;
pub mod writer;

use crate::config::Influx;
use crate::metrics::Metrics;
use crate::reading::Reading;
use bytes::Bytes;
use rand::RngExt as _;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::{error, info, warn};
pub use writer::{WriteError, Writer};

struct Batch {
    body: Bytes,
    points: usize,
}

type Send = Pin<Box<dyn Future<Output = Result<(), WriteError>> + std::marker::Send>>;

/// Backoff after consecutive failures: 1 s doubling to 60 s, ±20 % jitter,
/// or what the server asked for in `Retry-After` (capped at 10 min).
fn backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(Duration::from_secs(600));
    }
    let base = Duration::from_secs(1) * 2u32.saturating_pow(failures.saturating_sub(1).min(6));
    let base = base.min(Duration::from_secs(60));
    let jitter = rand::rng().random_range(0.8..1.2);
    base.mul_f64(jitter)
}

pub struct Sink {
    cfg: Influx,
    writer: Arc<Writer>,
    metrics: Arc<Metrics>,
    /// How long to keep delivering after the input closes.
    pub grace: Duration,
}

impl Sink {
    pub fn new(cfg: Influx, metrics: Arc<Metrics>) -> Result<Self, String> {
        let writer = Arc::new(Writer::new(&cfg)?);
        Ok(Sink {
            cfg,
            writer,
            metrics,
            grace: Duration::from_secs(10),
        })
    }

    pub async fn run(self, mut rx: mpsc::Receiver<Reading>) {
        let mut current = String::with_capacity(64 * 1024);
        let mut current_points = 0usize;
        let mut queue: VecDeque<Batch> = VecDeque::new();
        let mut queued_points = 0usize;
        let mut inflight: Option<Send> = None;
        let mut failures = 0u32;
        let mut retry_at: Option<Instant> = None;
        let mut flush_at = Instant::now() + self.cfg.flush_interval;
        let mut input_open = true;
        let mut deadline: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(86400);
        let dialect = match self.cfg.api {
            crate::config::Api::V1 { .. } => line::Dialect::V1,
            crate::config::Api::V2 { .. } => line::Dialect::V2,
        };

        loop {
            // Seal when full, when the flush timer fires, or at shutdown.
            let seal_now = current_points >= self.cfg.batch_size
                || (current_points > 0 && (Instant::now() >= flush_at || !input_open));
            if seal_now {
                let body = Bytes::from(std::mem::replace(
                    &mut current,
                    String::with_capacity(64 * 1024),
                ));
                queue.push_back(Batch {
                    body,
                    points: current_points,
                });
                queued_points += current_points;
                current_points = 0;
                flush_at = Instant::now() + self.cfg.flush_interval;
                // Never drop the batch being sent: its result pops it.
                let oldest_idle = usize::from(inflight.is_some());
                while queued_points > self.cfg.max_buffered_points && queue.len() > oldest_idle + 1
                {
                    let old = queue.remove(oldest_idle).expect("len checked");
                    queued_points -= old.points;
                    Metrics::add(&self.metrics.points_dropped, old.points as u64);
                    error!(
                        points = old.points,
                        buffered = queued_points,
                        limit = self.cfg.max_buffered_points,
                        "InfluxDB buffer full: dropped the oldest batch"
                    );
                }
            }
            if current_points == 0 {
                flush_at = far().min(flush_at.max(Instant::now() + self.cfg.flush_interval));
            }

            // Start a send when idle, the backoff has passed and work waits.
            if inflight.is_none()
                && retry_at.is_none_or(|t| Instant::now() >= t)
                && let Some(b) = queue.front()
            {
                retry_at = None;
                let w = self.writer.clone();
                let body = b.body.clone();
                inflight = Some(Box::pin(async move { w.write(body).await }));
            }

            if !input_open && queue.is_empty() && current_points == 0 && inflight.is_none() {
                break;
            }
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                let left: usize = queued_points + current_points;
                Metrics::add(&self.metrics.points_dropped, left as u64);
                error!(
                    points = left,
                    "shutdown grace period over: undelivered points are lost"
                );
                break;
            }

            let wake = [Some(flush_at), retry_at, deadline]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(far);

            tokio::select! {
                r = rx.recv(), if input_open => match r {
                    Some(reading) => {
                        current_points += line::encode(&reading, dialect, &mut current);
                    }
                    None => {
                        input_open = false;
                        deadline = Some(Instant::now() + self.grace);
                        // One more attempt now rather than after a long backoff.
                        retry_at = None;
                        if !queue.is_empty() || current_points > 0 {
                            info!(points = queued_points + current_points, "flushing buffered points before exit");
                        }
                    }
                },
                res = async { inflight.as_mut().expect("guarded").await }, if inflight.is_some() => {
                    inflight = None;
                    let b = queue.front().expect("in-flight batch is at the front");
                    match res {
                        Ok(()) => {
                            if failures > 0 {
                                info!(after_failures = failures, "InfluxDB writes succeed again");
                            }
                            failures = 0;
                            Metrics::add(&self.metrics.points_written, b.points as u64);
                            Metrics::inc(&self.metrics.batches_written);
                            queued_points -= b.points;
                            queue.pop_front();
                        }
                        Err(e) if !e.retryable() => {
                            // InfluxDB 1.x answers 400 "partial write" after
                            // storing the valid lines, so these points are
                            // rejected, not necessarily all lost.
                            Metrics::inc(&self.metrics.batches_failed);
                            Metrics::add(&self.metrics.points_rejected, b.points as u64);
                            error!(error = %e, points = b.points, "InfluxDB rejected a batch as invalid (a 1.x server may have stored its valid lines); not retrying it");
                            queued_points -= b.points;
                            queue.pop_front();
                        }
                        Err(e) => {
                            failures += 1;
                            Metrics::inc(&self.metrics.batches_failed);
                            let retry_after = match &e { WriteError::Http { retry_after, .. } => *retry_after, _ => None };
                            let wait = backoff(failures, retry_after);
                            retry_at = Some(Instant::now() + wait);
                            // Log the first failure and then every 10th, so an
                            // outage is visible without flooding the journal.
                            if failures == 1 || failures.is_multiple_of(10) {
                                warn!(
                                    error = %e,
                                    hint = e.hint().unwrap_or(""),
                                    failures,
                                    retry_in_ms = wait.as_millis() as u64,
                                    buffered_points = queued_points + current_points,
                                    "InfluxDB write failed; will retry"
                                );
                            }
                        }
                    }
                },
                _ = sleep_until(wake) => {}
            }
        }
    }
}

/// Sink used when no database is configured: counts what would have been
/// written so the operator can see the poller works.
pub async fn run_discard(mut rx: mpsc::Receiver<Reading>, metrics: Arc<Metrics>) {
    while let Some(r) = rx.recv().await {
        Metrics::add(&metrics.points_discarded, r.values.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let d1 = backoff(1, None);
        assert!(d1 >= Duration::from_millis(800) && d1 <= Duration::from_millis(1200));
        let d10 = backoff(10, None);
        assert!(d10 <= Duration::from_secs(72) && d10 >= Duration::from_secs(48));
        assert_eq!(
            backoff(3, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff(3, Some(Duration::from_secs(99999))),
            Duration::from_secs(600)
        );
    }
}
