//! The sender task: delivers what the mail queue holds, oldest first, one
//! message at a time, and records every outcome in the queue.
//!
//! An unreachable or failing SMTP server delays mail, never loses it, and
//! never stalls a producer: producers only store messages, and sends run
//! here under a timeout. Failures that are about the server (a refused
//! connection, a timeout, a 4xx reply, rejected credentials) pause all
//! sending with capped, jittered exponential backoff ([`crate::backoff`]).
//! A message the server rejects outright (5xx) is retried a few times,
//! then kept in the table with `failed_ms` set and counted in
//! `mails_given_up`. A message recorded as sent is never sent again. (A
//! crash between the server's acceptance and the recording sends it once
//! more, with the same Message-ID.)
//!
//! Shutdown (the token passed to [`Sender::run`]): one last delivery
//! attempt for at most `final_attempt` (a few seconds); mail still queued
//! is sent on the next start. Stop the producers first, so what they
//! flush at shutdown gets that attempt too.
//!
//! The queue's SQLite writes run inline on this task: one small write per
//! attempt, which is milliseconds at alert rates.

use super::queue::{MailQueue, Queued};
use super::transport::{SendError, Transport};
use super::{DB_RETRY_MS, Settings};
use crate::backoff::Backoff;
use crate::clock::TokioWall;
use crate::metrics::Metrics;
use crate::state::StateDb;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// A message the server rejected (5xx) is retried this many times in all.
const REJECTED_ATTEMPTS: u32 = 3;

/// While nothing is due, look at the queue this often anyway: another
/// process (`pqwatch report --send`) may have queued a message.
const IDLE_CHECK_MS: i64 = 30_000;

type SendFuture = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send>>;

struct Inflight {
    id: i64,
    subject: String,
    attempts: u32,
    fut: SendFuture,
}

/// The one task that talks to the SMTP server (or writes `.eml` files).
pub struct Sender {
    queue: MailQueue,
    transport: Transport,
    metrics: Arc<Metrics>,
    /// Retry delays after failed sends.
    pub retry: Backoff,
    /// How long the last delivery attempt at shutdown may take.
    pub final_attempt: Duration,
    /// Bound on one whole SMTP exchange. lettre's async transport applies
    /// `[smtp] timeout` to the TCP connect only; a server that accepts and
    /// then says nothing would otherwise hold a send forever.
    pub send_timeout: Duration,
    /// Sent, but the deletion from the queue failed: never send again.
    done: Vec<i64>,
    /// Consecutive failures that were about the server, and the pause they impose.
    failures: u32,
    paused_until: i64,
    /// Producers nudge this after storing a message; a look at the queue
    /// every [`IDLE_CHECK_MS`] while idle finds the others'.
    wake: Arc<tokio::sync::Notify>,
}

impl Sender {
    /// Build the transport and open the state database (so a bad `[smtp]`
    /// or an unusable state directory shows at start-up, not at the first
    /// message). Nothing is sent until [`run`](Self::run).
    pub fn new(s: &Settings, metrics: Arc<Metrics>) -> Result<Sender, String> {
        let transport = Transport::from_config(&s.smtp, &s.state_dir)?;
        let db = StateDb::open(&s.state_dir).map_err(|e| e.to_string())?;
        Ok(Sender {
            queue: MailQueue::new(db),
            transport,
            metrics,
            retry: crate::backoff::MAIL,
            final_attempt: s.shutdown_grace.min(Duration::from_secs(5)),
            send_timeout: s.smtp.timeout.saturating_mul(2),
            done: Vec::new(),
            failures: 0,
            paused_until: 0,
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The handle producers nudge after storing a message.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Where mail goes, for logs.
    pub(crate) fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Apply a reloaded `[smtp]`. Mail already queued keeps its envelope.
    fn reconfigure(&mut self, s: &Settings) {
        match Transport::from_config(&s.smtp, &s.state_dir) {
            Ok(t) => self.transport = t,
            Err(e) => {
                error!(error = %e, "reloaded [smtp] unusable; keeping the previous transport");
            }
        }
        self.send_timeout = s.smtp.timeout.saturating_mul(2);
        // A new [smtp] deserves an attempt now.
        self.paused_until = 0;
        self.failures = 0;
        let _ = self.queue.wake_all(0);
        info!(transport = %self.transport.describe(), "mail sender: config reloaded");
    }

    /// Deliver until `shutdown` fires, applying every slice sent on
    /// `settings` after the first; then make one last attempt (module docs).
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut settings: tokio::sync::watch::Receiver<Arc<Settings>>,
    ) {
        let clock = TokioWall::new();
        // A restart is often an operator fixing [smtp]: try everything now.
        if let Err(e) = self.queue.wake_all(clock.now_ms()) {
            error!(error = %e, "mail queue: cannot reset retry times");
        }
        let pending = self.update_gauge();
        info!(transport = %self.transport.describe(), pending, "mail sender started");
        let mut inflight: Option<Inflight> = None;
        loop {
            let now = clock.now_ms();
            self.retry_db();
            if inflight.is_none() && now >= self.paused_until {
                inflight = self.next_send(now);
            }
            let wake = match (&inflight, self.done.is_empty()) {
                (Some(_), true) => None,
                (Some(_), false) => Some(now + DB_RETRY_MS),
                (None, _) => Some(self.next_look(now)),
            };
            let sleep = clock.sleep_until(wake);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = poll(&mut inflight) => {
                    let f = inflight.take().expect("polled an in-flight send");
                    self.record(f, r, clock.now_ms());
                }
                _ = sleep => {}
                _ = self.wake.notified() => {}
                Ok(()) = settings.changed() => {
                    let s = settings.borrow_and_update().clone();
                    self.reconfigure(&s);
                }
            }
        }
        self.finish(inflight, &clock).await;
    }

    /// When to look at the queue next with nothing in flight: at the end
    /// of a pause, else at the next retry time (at least a second ahead,
    /// at most [`IDLE_CHECK_MS`]).
    fn next_look(&self, now: i64) -> i64 {
        let at = if now < self.paused_until {
            self.paused_until
        } else {
            // Due but not started (only rows in `done`): not a busy loop.
            self.queue
                .next_attempt_ms()
                .unwrap_or(Some(now + DB_RETRY_MS))
                .map_or(now + IDLE_CHECK_MS, |t| {
                    t.clamp(now + 1000, now + IDLE_CHECK_MS)
                })
        };
        if self.done.is_empty() {
            at
        } else {
            at.min(now + DB_RETRY_MS)
        }
    }

    /// The last delivery attempt at shutdown: the send in flight, then one
    /// attempt each for the rest, backoff ignored, within `final_attempt`.
    async fn finish(mut self, inflight: Option<Inflight>, clock: &TokioWall) {
        self.retry_db();
        let deadline = tokio::time::Instant::now() + self.final_attempt;
        let last = async {
            let mut tried = self.done.clone();
            if let Some(mut f) = inflight {
                tried.push(f.id);
                let r = f.fut.as_mut().await;
                if self.record(f, r, clock.now_ms()) {
                    return;
                }
            }
            loop {
                let q = match self.queue.next_due(i64::MAX, &tried) {
                    Ok(Some(q)) => q,
                    Ok(None) => return,
                    Err(e) => {
                        error!(error = %e, "mail queue unreadable at shutdown");
                        return;
                    }
                };
                tried.push(q.id);
                if let Some(mut f) = self.start(q, clock.now_ms()) {
                    let r = f.fut.as_mut().await;
                    if self.record(f, r, clock.now_ms()) {
                        return; // the server is away; the rest waits too
                    }
                }
            }
        };
        if tokio::time::timeout_at(deadline, last).await.is_err() {
            warn!(after = ?self.final_attempt, "mail sender: last delivery attempt cut short at shutdown");
        }
        let pending = self.update_gauge();
        if pending > 0 {
            warn!(
                pending,
                "mail left in the queue: it is sent on the next start"
            );
        }
        info!("mail sender stopped");
    }

    /// Retry the removals from the queue that failed earlier.
    fn retry_db(&mut self) {
        let done = std::mem::take(&mut self.done);
        for id in done {
            if self.queue.sent(id).is_err() {
                self.done.push(id);
            }
        }
    }

    /// Start sending the oldest due message, if any.
    fn next_send(&mut self, now: i64) -> Option<Inflight> {
        loop {
            match self.queue.next_due(now, &self.done) {
                Ok(Some(q)) => {
                    if let Some(f) = self.start(q, now) {
                        return Some(f);
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    error!(error = %e, "mail queue unreadable; retrying");
                    self.paused_until = now + DB_RETRY_MS;
                    return None;
                }
            }
        }
    }

    fn start(&mut self, q: Queued, now: i64) -> Option<Inflight> {
        let envelope = match q.envelope() {
            Ok(e) => e,
            Err(e) => {
                self.given_up(q.id, &q.subject, now, &e);
                return None;
            }
        };
        let transport = self.transport.clone();
        let limit = self.send_timeout;
        let body = q.body;
        let fut = Box::pin(async move {
            match tokio::time::timeout(limit, transport.send(&envelope, &body)).await {
                Ok(r) => r,
                Err(_) => Err(SendError::Retry(format!("no answer within {limit:?}"))),
            }
        });
        Some(Inflight {
            id: q.id,
            subject: q.subject,
            attempts: q.attempts,
            fut,
        })
    }

    /// Record a send's outcome. Returns true when the failure was about the
    /// server (so other messages should wait too).
    fn record(&mut self, f: Inflight, r: Result<(), SendError>, now: i64) -> bool {
        match r {
            Ok(()) => {
                Metrics::inc(&self.metrics.mail.mails_sent);
                self.failures = 0;
                info!(id = f.id, subject = %f.subject, to = %self.transport.describe(), "mail sent");
                if let Err(e) = self.queue.sent(f.id) {
                    error!(id = f.id, error = %e, "mail sent but not removed from the queue; retrying the removal");
                    self.done.push(f.id);
                }
                self.update_gauge();
                false
            }
            Err(SendError::Retry(e)) => {
                self.failures += 1;
                let delay = self.retry.delay(self.failures);
                self.paused_until = now + delay.as_millis() as i64;
                self.attempt_failed(&f, &e, now, delay);
                true
            }
            Err(SendError::Rejected(e)) => {
                self.failures = 0;
                let attempts = f.attempts + 1;
                if attempts >= REJECTED_ATTEMPTS {
                    Metrics::inc(&self.metrics.mail.mails_failed);
                    self.given_up(f.id, &f.subject, now, &e);
                } else {
                    self.attempt_failed(&f, &e, now, self.retry.delay(attempts));
                }
                false
            }
        }
    }

    /// The one place a failed attempt is logged and counted.
    fn attempt_failed(&mut self, f: &Inflight, error: &str, now: i64, retry_in: Duration) {
        Metrics::inc(&self.metrics.mail.mails_failed);
        warn!(
            id = f.id,
            subject = %f.subject,
            attempt = f.attempts + 1,
            retry_in = ?retry_in,
            %error,
            "mail not delivered; it stays queued"
        );
        let at = now + retry_in.as_millis() as i64;
        if let Err(e) = self.queue.retry_at(f.id, at, error) {
            error!(id = f.id, error = %e, "cannot record the failed attempt");
        }
    }

    fn given_up(&mut self, id: i64, subject: &str, now: i64, error: &str) {
        Metrics::inc(&self.metrics.mail.mails_given_up);
        error!(id, %subject, %error, "mail rejected for good; kept in the mail_queue table with failed_ms set");
        if let Err(e) = self.queue.give_up(id, now, error) {
            error!(id, error = %e, "cannot record the rejection");
        }
        self.update_gauge();
    }

    fn update_gauge(&self) -> u64 {
        super::update_gauge(&self.queue, &self.metrics)
    }
}

async fn poll(f: &mut Option<Inflight>) -> Result<(), SendError> {
    match f {
        Some(f) => f.fut.as_mut().await,
        None => std::future::pending().await,
    }
}
