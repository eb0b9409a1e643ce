//! Operator e-mail: power-quality event changes → digests → rendered
//! messages stored in the mail queue, for the mail sender (`crate::mail`).
//!
//! ```text
//! EventChange ─(bounded, CHANNEL)─▶ digest ──▶ render ──▶ mail_queue (state DB) ──▶ mail::Sender
//!                                   (pure)     (pure)     stored before sending
//! ```
//!
//! [`Notifier::run`] is one task that owns its own state-database
//! connection. It gathers changes into digests (`digest`: min/max delay
//! per recipient list, a per-meter hourly rate limit, resolved notices),
//! renders each digest in the list's language (`render`), stores the
//! finished message in the `mail_queue` table and nudges the sender. It
//! never waits on the network. A message the state database refuses to
//! store is held in memory and stored again every few seconds.
//!
//! Shutdown (the token passed to [`Notifier::run`], or the channel
//! closing): the changes already in the channel are taken and every
//! waiting digest is flushed into the queue (so nothing pending is lost);
//! the sender, stopped after this task, makes its last delivery attempt.
//! A crash, unlike a shutdown, loses the digests still gathering in memory
//! (at most `max_delay` of changes); the events themselves are in the
//! event store either way.
//!
//! The input channel is bounded ([`CHANNEL`]). The task drains it
//! continuously, so it fills only if the state database stalls. Producers
//! on the polling path should hand changes over with `offer`, which
//! never waits: when the channel is full the change is not mailed, and
//! that is logged and counted in `mail_changes_dropped` (the event itself
//! is still in the event store).
//!
//! Not here: deciding what is an event (`quality::rules`), storing events
//! (`events`), delivering mail (`mail`), and the rate limiter's memory
//! across restarts (it starts afresh). With `[alerts] enabled = false`
//! changes are ignored.

pub(crate) mod digest;
pub(crate) mod render;

use crate::clock::TokioWall;
use crate::config::mail::Alerts;
use crate::config::{Config, Customer, Meter};
use crate::events::EventChange;
use crate::mail::DB_RETRY_MS;
use crate::mail::queue::MailQueue;
use crate::metrics::Metrics;
use crate::state::StateDb;
use digest::{Digest, Message, Outcome};
use lettre::address::Envelope;
use lettre::message::Mailbox;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Capacity of the notifier's input channel (event changes).
pub const CHANNEL: usize = 1024;

/// The notifier's input channel, bounded to [`CHANNEL`].
pub fn channel() -> (mpsc::Sender<EventChange>, mpsc::Receiver<EventChange>) {
    mpsc::channel(CHANNEL)
}

/// Hand a change to the notifier without ever waiting. Returns false (and
/// logs and counts it) when the channel is full; false, silently, when the
/// notifier is gone.
pub(crate) fn offer(
    tx: &mpsc::Sender<EventChange>,
    change: EventChange,
    metrics: &Metrics,
) -> bool {
    match tx.try_send(change) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(c)) => {
            Metrics::inc(&metrics.mail.mail_changes_dropped);
            warn!(event = %c.event.id, "notifier channel full: this change will not be mailed");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// What the notifier reads of the config: `[alerts]`, the fleet (customer
/// names and alert groups, meters' nominal voltages), the sender address,
/// the time zone and the state directory.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) alerts: Alerts,
    pub(crate) customers: Vec<Customer>,
    pub(crate) meters: Vec<Arc<Meter>>,
    /// `[smtp] from`.
    pub from: String,
    pub(crate) timezone: jiff::tz::TimeZone,
    pub(crate) state_dir: PathBuf,
}

impl Settings {
    /// The notifier's slice of `cfg`.
    pub fn of(cfg: &Config) -> Settings {
        Settings {
            alerts: cfg.alerts.clone(),
            customers: cfg.customers.clone(),
            meters: cfg.meters.clone(),
            from: cfg.smtp.from.clone(),
            timezone: cfg.timezone.clone(),
            state_dir: cfg.daemon.state_dir.clone(),
        }
    }
}

/// A rendered message the state database refused to store (held in memory
/// and stored again until it works).
struct Unstored {
    subject: String,
    envelope: Envelope,
    raw: Vec<u8>,
}

pub struct Notifier {
    digest: Digest,
    queue: MailQueue,
    from: Mailbox,
    tz: jiff::tz::TimeZone,
    metrics: Arc<Metrics>,
    enabled: bool,
    unstored: Vec<Unstored>,
    told_no_recipients: HashSet<String>,
    /// The mail sender's waker: nudged after each message stored.
    wake_mail: Arc<tokio::sync::Notify>,
}

impl Notifier {
    /// Open the state database and check the sender address (so an
    /// unusable state directory shows at start-up, not at the first
    /// event). `wake_mail` is the mail sender's
    /// ([`crate::mail::Sender::waker`]).
    pub fn new(
        s: &Settings,
        metrics: Arc<Metrics>,
        wake_mail: Arc<tokio::sync::Notify>,
    ) -> Result<Notifier, String> {
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| format!("smtp.from \"{}\": {e}", s.from))?;
        let db = StateDb::open(&s.state_dir).map_err(|e| e.to_string())?;
        Ok(Notifier {
            digest: Digest::from_config(s),
            queue: MailQueue::new(db),
            from,
            tz: s.timezone.clone(),
            metrics,
            enabled: s.alerts.enabled,
            unstored: Vec::new(),
            told_no_recipients: HashSet::new(),
            wake_mail,
        })
    }

    /// Apply a reloaded slice: recipients, groups, delays, languages, the
    /// sender address. Mail already queued keeps its envelope.
    fn reconfigure(&mut self, s: &Settings) {
        self.digest.reconfigure(s);
        self.tz = s.timezone.clone();
        self.enabled = s.alerts.enabled;
        match s.from.parse::<Mailbox>() {
            Ok(f) => self.from = f,
            Err(e) => error!(error = %e, "reloaded smtp.from unusable; keeping the previous one"),
        }
        info!("notifier: config reloaded");
    }

    /// Run until `shutdown` fires or `rx` closes, applying every slice sent
    /// on `settings` after the first; then flush every waiting digest into
    /// the mail queue (see the module docs).
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<EventChange>,
        shutdown: CancellationToken,
        mut settings: tokio::sync::watch::Receiver<Arc<Settings>>,
    ) {
        let clock = TokioWall::new();
        info!(enabled = self.enabled, "notifier started");
        if !self.enabled {
            info!("[alerts] enabled = false: event changes are not mailed");
        }
        loop {
            let now = clock.now_ms();
            self.retry_db(now);
            for m in self.digest.due(now) {
                self.enqueue(now, m);
            }
            let mut wake = self.digest.next_deadline();
            if !self.unstored.is_empty() {
                wake = Some(wake.map_or(now + DB_RETRY_MS, |t| t.min(now + DB_RETRY_MS)));
            }
            let sleep = clock.sleep_until(wake);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                c = rx.recv() => match c {
                    Some(c) => self.take(clock.now_ms(), c),
                    None => break,
                },
                _ = sleep => {}
                Ok(()) = settings.changed() => {
                    let s = settings.borrow_and_update().clone();
                    self.reconfigure(&s);
                }
            }
        }
        self.finish(rx, &clock);
    }

    /// Take what is still in the channel and flush every digest into the
    /// queue, for the sender's last attempt.
    fn finish(mut self, mut rx: mpsc::Receiver<EventChange>, clock: &TokioWall) {
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
                Metrics::inc(&self.metrics.mail.mails_suppressed);
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
                Metrics::inc(&self.metrics.mail.mails_given_up);
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
                Metrics::inc(&self.metrics.mail.mails_queued);
                debug!(id, subject = %u.subject, "mail queued");
                crate::mail::update_gauge(&self.queue, &self.metrics);
                self.wake_mail.notify_one();
            }
            Err(e) => {
                error!(subject = %u.subject, error = %e, "cannot store mail in the state database; holding it in memory");
                self.unstored.push(u);
            }
        }
    }

    /// Store again the messages the state database refused earlier.
    fn retry_db(&mut self, now: i64) {
        for u in std::mem::take(&mut self.unstored) {
            self.store(now, u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reload::fixed;
    use crate::events::Change;
    use crate::quality::rules::State;
    use std::time::Duration;

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

    /// The notifier and its mail sender, as the daemon wires them.
    fn start(cfg: &Config, metrics: &Arc<Metrics>) -> (Notifier, crate::mail::Sender) {
        let sender =
            crate::mail::Sender::new(&crate::mail::Settings::of(cfg), metrics.clone()).unwrap();
        let n = Notifier::new(&Settings::of(cfg), metrics.clone(), sender.waker()).unwrap();
        (n, sender)
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
        let (n, sender) = start(&cfg, &metrics);
        assert!(
            sender.describe().contains(".eml files in"),
            "{}",
            sender.describe()
        );
        let (tx, rx) = channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(n.run(rx, stop.clone(), fixed(Settings::of(&cfg))));
        let stop_mail = CancellationToken::new();
        let mail_task =
            tokio::spawn(sender.run(stop_mail.clone(), fixed(crate::mail::Settings::of(&cfg))));
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
        stop_mail.cancel();
        mail_task.await.unwrap();
        let files = emls(&mail);
        assert_eq!(files.len(), 1, "one digest for three events");
        assert!(
            files[0].contains("Subject: [pqwatch] 3 new"),
            "{}",
            files[0]
        );
        assert_eq!(Metrics::get(&metrics.mail.mails_queued), 1);
        assert_eq!(Metrics::get(&metrics.mail.mails_sent), 1);
        assert_eq!(Metrics::get(&metrics.mail.mails_pending), 0);
    }

    #[tokio::test]
    async fn shutdown_flushes_a_waiting_digest_into_the_queue_and_sends_it() {
        let dir = tempfile::tempdir().unwrap();
        // A long min_delay: only the shutdown flush can send this.
        let mut cfg = config(dir.path(), "");
        cfg.alerts.min_delay = Duration::from_secs(3600);
        cfg.alerts.max_delay = Duration::from_secs(3600);
        let metrics = Arc::new(Metrics::default());
        let (n, sender) = start(&cfg, &metrics);
        let (tx, rx) = channel();
        let stop = CancellationToken::new();
        tx.send(change(1)).await.unwrap();
        tx.send(change(2)).await.unwrap();
        // Cancelled before the tasks even start: the changes in the channel
        // are still taken, flushed and sent.
        stop.cancel();
        n.run(rx, stop.clone(), fixed(Settings::of(&cfg))).await;
        sender
            .run(stop, fixed(crate::mail::Settings::of(&cfg)))
            .await;
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
        assert_eq!(Metrics::get(&metrics.mail.mail_changes_dropped), 1);
    }
}
