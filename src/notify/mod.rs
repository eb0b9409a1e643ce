//! Operator e-mail: power-quality event changes → digests → a durable mail
//! queue → SMTP (or `.eml` files).
//!
//! ```text
//! EventChange ─(bounded, CHANNEL)─▶ digest ──▶ render ──▶ mail_queue (state DB) ──▶ SMTP / .eml
//!                                   (pure)     (pure)     stored before sending       retried with backoff
//! ```
//!
//! [`Notifier::run`] is one task that owns its own state-database
//! connection. It gathers changes into digests ([`digest`]: min/max delay
//! per recipient list, a per-meter hourly rate limit, resolved notices),
//! renders each digest in the list's language ([`render`]), stores the
//! finished message in the `mail_queue` table ([`queue`]) and only then
//! sends it. A message leaves the table only after the server accepted it.
//!
//! An unreachable or failing SMTP server delays mail, never loses it, and
//! never stalls the task: sends run concurrently with receiving, under a
//! timeout, and failures are retried with capped, jittered exponential
//! backoff (all sending pauses after a failure that is about the server,
//! such as a refused connection, a timeout, a 4xx reply, or rejected
//! credentials). A message the server rejects outright (5xx) is retried a
//! few times, then kept in the table with `failed_ms` set and counted in
//! `mails_given_up`. Mail still queued at shutdown is sent on the next
//! start; a message recorded as sent is never sent again. (A crash between
//! the server's acceptance and the recording sends it once more, with the
//! same Message-ID.)
//!
//! Shutdown (the token passed to [`Notifier::run`], or the channel
//! closing): the changes already in the channel are taken, every waiting
//! digest is flushed into the queue (so nothing pending is lost), and one
//! last delivery attempt runs for at most `final_attempt` (a few seconds).
//! A crash, unlike a shutdown, loses the digests still gathering in memory
//! (at most `max_delay` of changes); the events themselves are in the
//! event store either way.
//!
//! The queue's SQLite writes run inline on this task: one small write per
//! message stored and per attempt, which is milliseconds at alert rates.
//!
//! The input channel is bounded ([`CHANNEL`]). The task drains it
//! continuously, since it never waits on the network while receiving, so
//! it fills only if the state database stalls. Producers on the polling
//! path should hand changes over with [`offer`], which never waits: when the
//! channel is full the change is not mailed, and that is logged and counted
//! in `mail_changes_dropped` (the event itself is still in the event store).
//!
//! Not here: deciding what is an event (`quality::rules`), storing events
//! (`events`), and the rate limiter's memory across restarts (it starts
//! afresh). With `[alerts] enabled = false` changes are ignored, but mail
//! already queued is still delivered.

pub mod digest;
pub mod queue;
pub mod render;
pub mod transport;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::events::EventChange;
use crate::metrics::Metrics;
use crate::state::StateDb;
use digest::{Digest, Message, Outcome};
use lettre::address::Envelope;
use lettre::message::Mailbox;
use queue::{MailQueue, Queued};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use transport::{SendError, Transport};

/// Capacity of the notifier's input channel (event changes).
pub const CHANNEL: usize = 1024;

/// The notifier's input channel, bounded to [`CHANNEL`].
pub fn channel() -> (mpsc::Sender<EventChange>, mpsc::Receiver<EventChange>) {
    mpsc::channel(CHANNEL)
}

/// Hand a change to the notifier without ever waiting. Returns false (and
/// logs and counts it) when the channel is full; false, silently, when the
/// notifier is gone.
pub fn offer(tx: &mpsc::Sender<EventChange>, change: EventChange, metrics: &Metrics) -> bool {
    match tx.try_send(change) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(c)) => {
            Metrics::inc(&metrics.mail_changes_dropped);
            warn!(event = %c.event.id, "notifier channel full: this change will not be mailed");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// A message the server rejected (5xx) is retried this many times in all.
const REJECTED_ATTEMPTS: u32 = 3;

/// How soon to retry a state-database operation that failed.
const DB_RETRY_MS: i64 = 5_000;

type SendFuture = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send>>;

struct Inflight {
    id: i64,
    subject: String,
    attempts: u32,
    fut: SendFuture,
}

/// A rendered message the state database refused to store (held in memory
/// and stored again until it works).
struct Unstored {
    subject: String,
    envelope: Envelope,
    raw: Vec<u8>,
}

/// Wall-clock milliseconds that follow tokio's clock (so tests can pause it).
struct Clock {
    wall0: i64,
    t0: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        let wall0 = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock {
            wall0,
            t0: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.wall0 + self.t0.elapsed().as_millis() as i64
    }

    fn instant(&self, ms: i64) -> tokio::time::Instant {
        self.t0 + Duration::from_millis((ms - self.wall0).max(0) as u64)
    }
}

pub struct Notifier {
    digest: Digest,
    queue: MailQueue,
    transport: Transport,
    from: Mailbox,
    tz: jiff::tz::TimeZone,
    metrics: Arc<Metrics>,
    enabled: bool,
    /// Retry delays after failed sends.
    pub retry: Backoff,
    /// How long the last delivery attempt at shutdown may take.
    pub final_attempt: Duration,
    /// Bound on one whole SMTP exchange. lettre's async transport applies
    /// `[smtp] timeout` to the TCP connect only; a server that accepts and
    /// then says nothing would otherwise hold a send forever.
    pub send_timeout: Duration,
    unstored: Vec<Unstored>,
    /// Sent, but the deletion from the queue failed: never send again.
    done: Vec<i64>,
    /// Consecutive failures that were about the server, and the pause they impose.
    failures: u32,
    paused_until: i64,
    told_no_recipients: HashSet<String>,
    /// Others (the report scheduler, `pqwatch report --send`) put messages
    /// in the queue too: a nudge, and a look at the queue every
    /// [`IDLE_CHECK_MS`] while idle, find them.
    wake: Arc<tokio::sync::Notify>,
}

/// While nothing is due, look at the queue this often anyway: another
/// process (`pqwatch report --send`) may have queued a message.
const IDLE_CHECK_MS: i64 = 30_000;

impl Notifier {
    /// Build the transport and open the state database (so a bad `[smtp]`
    /// or an unusable state directory shows at start-up, not at the first
    /// event). Nothing is sent until [`run`](Self::run).
    pub fn new(cfg: &Config, metrics: Arc<Metrics>) -> Result<Notifier, String> {
        let transport = Transport::from_config(&cfg.smtp, &cfg.daemon.state_dir)?;
        let from: Mailbox = cfg
            .smtp
            .from
            .parse()
            .map_err(|e| format!("smtp.from \"{}\": {e}", cfg.smtp.from))?;
        let db = StateDb::open(&cfg.daemon.state_dir).map_err(|e| e.to_string())?;
        Ok(Notifier {
            digest: Digest::from_config(cfg),
            queue: MailQueue::new(db),
            transport,
            from,
            tz: cfg.timezone.clone(),
            metrics,
            enabled: cfg.alerts.enabled,
            retry: crate::backoff::MAIL,
            final_attempt: cfg.daemon.shutdown_grace.min(Duration::from_secs(5)),
            send_timeout: cfg.smtp.timeout.saturating_mul(2),
            unstored: Vec::new(),
            done: Vec::new(),
            failures: 0,
            paused_until: 0,
            told_no_recipients: HashSet::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The handle that wakes this notifier when someone else queued mail.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Apply a reloaded config: recipients, groups, delays, languages,
    /// `[smtp]`. Mail already queued keeps its envelope.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.digest.reconfigure(cfg);
        self.tz = cfg.timezone.clone();
        self.enabled = cfg.alerts.enabled;
        match Transport::from_config(&cfg.smtp, &cfg.daemon.state_dir) {
            Ok(t) => self.transport = t,
            Err(e) => {
                error!(error = %e, "reloaded [smtp] unusable; keeping the previous transport")
            }
        }
        match cfg.smtp.from.parse::<Mailbox>() {
            Ok(f) => self.from = f,
            Err(e) => error!(error = %e, "reloaded smtp.from unusable; keeping the previous one"),
        }
        self.send_timeout = cfg.smtp.timeout.saturating_mul(2);
        // A new [smtp] deserves an attempt now.
        self.paused_until = 0;
        self.failures = 0;
        let _ = self.queue.wake_all(0);
        info!(transport = %self.transport.describe(), "notifier: config reloaded");
    }

    /// Where mail goes, for logs.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Run until `shutdown` fires or `rx` closes; then flush and make one
    /// last delivery attempt (see the module docs).
    pub async fn run(self, rx: mpsc::Receiver<EventChange>, shutdown: CancellationToken) {
        let (_keep, configs) = tokio::sync::watch::channel(None);
        self.run_with_reload(rx, shutdown, configs).await
    }

    /// [`run`](Self::run), applying every config sent on `configs`.
    pub async fn run_with_reload(
        mut self,
        mut rx: mpsc::Receiver<EventChange>,
        shutdown: CancellationToken,
        mut configs: tokio::sync::watch::Receiver<Option<Arc<Config>>>,
    ) {
        let clock = Clock::new();
        let start = clock.now_ms();
        // A restart is often an operator fixing [smtp]: try everything now.
        if let Err(e) = self.queue.wake_all(start) {
            error!(error = %e, "mail queue: cannot reset retry times");
        }
        let pending = self.update_gauge();
        info!(transport = %self.transport.describe(), pending, enabled = self.enabled, "notifier started");
        if !self.enabled {
            info!("[alerts] enabled = false: event changes are not mailed");
        }
        let mut inflight: Option<Inflight> = None;
        loop {
            let now = clock.now_ms();
            self.retry_db(now);
            for m in self.digest.due(now) {
                self.enqueue(now, m);
            }
            if inflight.is_none() && now >= self.paused_until {
                inflight = self.next_send(now);
            }
            let mut wake = self.digest.next_deadline();
            if inflight.is_none() {
                let queue_at = if now < self.paused_until {
                    Some(self.paused_until)
                } else {
                    // Due but not started (only rows in `done`): not a busy loop.
                    Some(
                        self.queue
                            .next_attempt_ms()
                            .unwrap_or(Some(now + DB_RETRY_MS))
                            .map_or(now + IDLE_CHECK_MS, |t| {
                                t.clamp(now + 1000, now + IDLE_CHECK_MS)
                            }),
                    )
                };
                wake = min_opt(wake, queue_at);
            }
            if !self.unstored.is_empty() || !self.done.is_empty() {
                wake = min_opt(wake, Some(now + DB_RETRY_MS));
            }
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(clock.instant(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                c = rx.recv() => match c {
                    Some(c) => self.take(clock.now_ms(), c),
                    None => break,
                },
                r = poll(&mut inflight) => {
                    let f = inflight.take().expect("polled an in-flight send");
                    self.record(f, r, clock.now_ms());
                }
                _ = sleep => {}
                _ = self.wake.notified() => {}
                Ok(()) = configs.changed() => {
                    let cfg = configs.borrow_and_update().clone();
                    if let Some(cfg) = cfg {
                        self.reconfigure(&cfg);
                    }
                }
            }
        }
        self.finish(rx, inflight, &clock).await;
    }

    async fn finish(
        mut self,
        mut rx: mpsc::Receiver<EventChange>,
        inflight: Option<Inflight>,
        clock: &Clock,
    ) {
        rx.close();
        while let Ok(c) = rx.try_recv() {
            self.take(clock.now_ms(), c);
        }
        let now = clock.now_ms();
        let flushed = self.digest.flush();
        let n = flushed.len();
        for m in flushed {
            self.enqueue(now, m);
        }
        self.retry_db(now);
        debug!(
            messages = n,
            "notifier: digests flushed into the mail queue"
        );

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
            // One attempt each, backoff ignored: this is the last chance.
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
            warn!(after = ?self.final_attempt, "notifier: last delivery attempt cut short at shutdown");
        }
        let pending = self.update_gauge();
        if pending > 0 {
            warn!(
                pending,
                "mail left in the queue: it is sent on the next start"
            );
        }
        if !self.unstored.is_empty() {
            error!(
                lost = self.unstored.len(),
                "mail the state database refused to store is lost at shutdown"
            );
        }
        info!("notifier stopped");
    }

    /// One event change from the channel.
    fn take(&mut self, now: i64, c: EventChange) {
        if !self.enabled {
            return;
        }
        let customer = c.event.customer.clone();
        let event = c.event.id.clone();
        match self.digest.push(now, c) {
            Outcome::Suppressed => {
                Metrics::inc(&self.metrics.mails_suppressed);
                debug!(%event, "rate limit: event not mailed (counted in the next message)");
            }
            Outcome::NoRecipients => {
                if self.told_no_recipients.insert(customer.clone()) {
                    warn!(%customer, "no recipients for this customer's events: set [alerts] recipients or its alert group's; its events are not mailed");
                }
            }
            Outcome::Queued | Outcome::Ignored => {}
        }
    }

    /// Render a digest and store it in the queue.
    fn enqueue(&mut self, now: i64, m: Message) {
        let r = render::render(&m, &self.tz);
        let mail = match render::email(&self.from, &m, &r, SystemTime::now()) {
            Ok(mail) => mail,
            Err(e) => {
                // Addresses are validated with the config, so this is a bug.
                Metrics::inc(&self.metrics.mails_given_up);
                error!(subject = %r.subject, error = %e, "cannot build this mail; it is not sent");
                return;
            }
        };
        self.store(
            now,
            Unstored {
                subject: r.subject,
                envelope: mail.envelope().clone(),
                raw: mail.formatted(),
            },
        );
    }

    fn store(&mut self, now: i64, u: Unstored) {
        match self.queue.push(now, &u.subject, &u.envelope, &u.raw) {
            Ok(id) => {
                Metrics::inc(&self.metrics.mails_queued);
                debug!(id, subject = %u.subject, "mail queued");
                self.update_gauge();
            }
            Err(e) => {
                error!(subject = %u.subject, error = %e, "cannot store mail in the state database; holding it in memory");
                self.unstored.push(u);
            }
        }
    }

    /// Retry the state-database writes that failed earlier.
    fn retry_db(&mut self, now: i64) {
        for u in std::mem::take(&mut self.unstored) {
            self.store(now, u);
        }
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
                Metrics::inc(&self.metrics.mails_sent);
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
                    Metrics::inc(&self.metrics.mails_failed);
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
        Metrics::inc(&self.metrics.mails_failed);
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
        Metrics::inc(&self.metrics.mails_given_up);
        error!(id, %subject, %error, "mail rejected for good; kept in the mail_queue table with failed_ms set");
        if let Err(e) = self.queue.give_up(id, now, error) {
            error!(id, error = %e, "cannot record the rejection");
        }
        self.update_gauge();
    }

    fn update_gauge(&self) -> u64 {
        let n = self.queue.pending().unwrap_or(0);
        Metrics::set(&self.metrics.mails_pending, n);
        n
    }
}

async fn poll(f: &mut Option<Inflight>) -> Result<(), SendError> {
    match f {
        Some(f) => f.fut.as_mut().await,
        None => std::future::pending().await,
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Change;
    use crate::quality::rules::State;

    fn config(dir: &std::path::Path, extra: &str) -> Config {
        let text = format!(
            r#"
[daemon]
state_dir = "{}"
profile_dir = "/nonexistent"
timezone = "Asia/Shanghai"
[alerts]
min_delay = "100ms"
max_delay = "200ms"
recipients = ["duty@grid.example"]
language = "en"
[[customers]]
id = "C1"
name = "华东特钢有限公司"
{extra}
"#,
            dir.display()
        );
        crate::config::from_str(&text, dir).unwrap()
    }

    fn change(n: i64) -> EventChange {
        EventChange {
            change: Change::Opened,
            event: digest::tests::event("M1", "C1", n, State::Open),
        }
    }

    fn emls(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[tokio::test]
    async fn with_no_smtp_host_digests_become_eml_files_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "");
        let metrics = Arc::new(Metrics::default());
        let n = Notifier::new(&cfg, metrics.clone()).unwrap();
        assert!(n.describe().contains(".eml files in"), "{}", n.describe());
        let (tx, rx) = channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(n.run(rx, stop.clone()));
        for k in 0..3 {
            assert!(offer(&tx, change(k), &metrics));
        }
        let mail = dir.path().join("mail");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while emls(&mail).is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no .eml written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        task.await.unwrap();
        let files = emls(&mail);
        assert_eq!(files.len(), 1, "one digest for three events");
        assert!(
            files[0].contains("Subject: [pqwatch] 3 new"),
            "{}",
            files[0]
        );
        assert_eq!(Metrics::get(&metrics.mails_queued), 1);
        assert_eq!(Metrics::get(&metrics.mails_sent), 1);
        assert_eq!(Metrics::get(&metrics.mails_pending), 0);
    }

    #[tokio::test]
    async fn shutdown_flushes_a_waiting_digest_into_the_queue_and_sends_it() {
        let dir = tempfile::tempdir().unwrap();
        // A long min_delay: only the shutdown flush can send this.
        let mut cfg = config(dir.path(), "");
        cfg.alerts.min_delay = Duration::from_secs(3600);
        cfg.alerts.max_delay = Duration::from_secs(3600);
        let metrics = Arc::new(Metrics::default());
        let n = Notifier::new(&cfg, metrics.clone()).unwrap();
        let (tx, rx) = channel();
        let stop = CancellationToken::new();
        tx.send(change(1)).await.unwrap();
        tx.send(change(2)).await.unwrap();
        // Cancelled before the task even starts: the changes in the channel
        // are still taken, flushed and sent.
        stop.cancel();
        n.run(rx, stop).await;
        let files = emls(&dir.path().join("mail"));
        assert_eq!(files.len(), 1);
        assert!(
            files[0].contains("Subject: [pqwatch] 2 new"),
            "{}",
            files[0]
        );
    }

    #[tokio::test]
    async fn a_full_channel_is_counted_not_waited_on() {
        let metrics = Metrics::default();
        let (tx, _rx) = mpsc::channel(1);
        assert!(offer(&tx, change(1), &metrics));
        assert!(!offer(&tx, change(2), &metrics));
        assert_eq!(Metrics::get(&metrics.mail_changes_dropped), 1);
    }
}
