//! The digest: event changes → operator messages. Pure (no I/O, no clock).
//!
//! Changes are gathered per recipient list (an alert group, or the default
//! list). When the first change for a list arrives, its message waits
//! `min_delay`; every further change restarts that wait, but a message is
//! never held longer than `max_delay` after its first change (openXDA's
//! MinDelay/MaxDelay). So a burst of events is one mail, and a steady
//! trickle still goes out every `max_delay`.
//!
//! What is mailed:
//! - `Opened` → a new event; `Closed` → a resolved notice (only with
//!   `[alerts] resolved = true`); `Updated` is never mailed by itself but
//!   refreshes the value and peak of an event still waiting in a message.
//! - An event opened and closed within one message is reported once, as a
//!   short event with its duration and peak (whatever `resolved` says: it
//!   is news to the operator).
//! - At most `max_per_meter_per_hour` events per meter are mailed in any
//!   rolling hour (0: no limit). The excess is counted, and the count goes
//!   into the next message to the same list ("3 more events on meter M1
//!   were suppressed"). If no other message comes, a message with only that
//!   note goes out when the meter's hour frees up, or at [`Digest::flush`]:
//!   a suppressed event is never dropped silently. The closing of an event
//!   whose opening was suppressed is not mailed; the closing of an event
//!   that was mailed always is (it does not count against the limit).
//!
//! Not here: rendering (`render`), storage and sending (`queue`, the
//! notifier task). The rate limiter and the memory of which events were
//! mailed live in memory: after a restart the hour starts afresh, and a
//! `Closed` for an event opened before the restart is treated as news.

use crate::config::Config;
use crate::config::sections::{Alerts, Recipients};
use crate::events::{Change, EventChange};
use crate::quality::rules::Event;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

const HOUR_MS: i64 = 3_600_000;

/// Which recipient list a message goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `[alerts] recipients`.
    Default,
    /// An `[[alerts.groups]]` entry, by name.
    Group(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerInfo {
    pub name: String,
    pub group: Option<String>,
}

/// Who is told about what: customers' names and groups, the recipient
/// lists, and meters' nominal voltages (to show deviations in %).
#[derive(Debug, Clone)]
pub struct Directory {
    pub customers: HashMap<String, CustomerInfo>,
    pub default: Recipients,
    pub groups: BTreeMap<String, Recipients>,
    /// (meter, phase) → the nominal voltage that phase is judged against, V.
    pub nominal: HashMap<(String, String), f64>,
}

impl Directory {
    pub fn from_config(cfg: &Config) -> Self {
        Directory {
            customers: cfg
                .customers
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        CustomerInfo {
                            name: c.name.clone(),
                            group: c.alert_group.clone(),
                        },
                    )
                })
                .collect(),
            default: cfg.alerts.default.clone(),
            groups: cfg.alerts.groups.clone(),
            nominal: cfg
                .meters
                .iter()
                .flat_map(|m| {
                    m.voltage_refs
                        .iter()
                        .map(|(phase, _, v)| ((m.id.clone(), phase.clone()), *v))
                })
                .collect(),
        }
    }

    /// A customer with an alert group goes to that group; everyone else
    /// (and a group config validation let through but that vanished) to
    /// the default list.
    pub fn route(&self, customer: &str) -> Route {
        match self.customers.get(customer).and_then(|c| c.group.as_ref()) {
            Some(g) if self.groups.contains_key(g) => Route::Group(g.clone()),
            _ => Route::Default,
        }
    }

    pub fn recipients(&self, route: &Route) -> &Recipients {
        match route {
            Route::Default => &self.default,
            Route::Group(g) => self.groups.get(g).unwrap_or(&self.default),
        }
    }

    /// The customer's name, or its id when it is not configured.
    pub fn customer_name(&self, customer: &str) -> String {
        self.customers
            .get(customer)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| customer.to_string())
    }
}

/// Timing and policy, from `[alerts]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub min_delay_ms: i64,
    pub max_delay_ms: i64,
    /// 0: no limit.
    pub max_per_meter_per_hour: u32,
    pub resolved: bool,
}

impl Settings {
    pub fn from_alerts(a: &Alerts) -> Self {
        Settings {
            min_delay_ms: a.min_delay.as_millis() as i64,
            max_delay_ms: a.max_delay.as_millis() as i64,
            max_per_meter_per_hour: a.max_per_meter_per_hour,
            resolved: a.resolved,
        }
    }
}

/// What a message says about one event. The order is the order in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKind {
    /// Opened, still open when the message went out.
    New,
    /// Opened and closed within one message.
    Short,
    /// Closed; its opening was in an earlier message (or before a restart).
    Resolved,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    /// The latest snapshot of the event.
    pub event: Event,
    pub customer_name: String,
    /// Nominal voltage of the event's phase, for voltage deviations in %.
    pub nominal: Option<f64>,
}

/// Events of one meter that the rate limit kept out of mail.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppressed {
    pub meter: String,
    pub customer: String,
    pub customer_name: String,
    pub count: u64,
}

/// One e-mail to one recipient list, before rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub route: Route,
    pub recipients: Recipients,
    /// New and short events first, then resolved ones; each by start
    /// time, then kind (so the subject names a voltage event first).
    pub items: Vec<Item>,
    pub suppressed: Vec<Suppressed>,
    /// The rate limit in force, to explain the suppressed counts.
    pub limit_per_hour: u32,
}

impl Message {
    /// Events the operator hears of for the first time (new and short).
    pub fn new_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.kind != ItemKind::Resolved)
            .count()
    }

    pub fn resolved_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.kind == ItemKind::Resolved)
            .count()
    }

    pub fn suppressed_count(&self) -> u64 {
        self.suppressed.iter().map(|s| s.count).sum()
    }
}

/// What [`Digest::push`] did with a change (the caller logs and counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Added to (or changed) a waiting message.
    Queued,
    /// Nothing to mail: an update, a duplicate, or a resolved notice that
    /// `[alerts] resolved = false` turns off.
    Ignored,
    /// Kept out by the rate limit and counted.
    Suppressed,
    /// The customer's recipient list is empty.
    NoRecipients,
}

struct Bucket {
    first_ms: i64,
    last_ms: i64,
    items: BTreeMap<String, Item>,
}

impl Bucket {
    fn deadline(&self, s: &Settings) -> i64 {
        (self.last_ms + s.min_delay_ms).min(self.first_ms + s.max_delay_ms)
    }
}

pub struct Digest {
    settings: Settings,
    dir: Directory,
    buckets: BTreeMap<Route, Bucket>,
    /// Per meter: when its mailed events were admitted, within the last hour.
    admitted: HashMap<String, VecDeque<i64>>,
    /// Events mailed as open whose closing has not come yet.
    announced: HashSet<String>,
    /// Events whose opening the rate limit suppressed.
    muted: HashSet<String>,
    /// Suppressed counts not reported yet, per list and meter.
    suppressed: BTreeMap<Route, BTreeMap<String, Suppressed>>,
    /// When a message with only suppression notes is due, per list.
    suppressed_due: BTreeMap<Route, i64>,
}

impl Digest {
    pub fn new(settings: Settings, dir: Directory) -> Self {
        Digest {
            settings,
            dir,
            buckets: BTreeMap::new(),
            admitted: HashMap::new(),
            announced: HashSet::new(),
            muted: HashSet::new(),
            suppressed: BTreeMap::new(),
            suppressed_due: BTreeMap::new(),
        }
    }

    pub fn from_config(cfg: &Config) -> Self {
        Digest::new(
            Settings::from_alerts(&cfg.alerts),
            Directory::from_config(cfg),
        )
    }

    /// A reloaded config: new settings and directory (recipients, groups,
    /// languages, names), keeping what is gathering, the rate limiter and
    /// which events were announced.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.settings = Settings::from_alerts(&cfg.alerts);
        self.dir = Directory::from_config(cfg);
    }

    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// Take one change that happened at `now_ms`.
    pub fn push(&mut self, now_ms: i64, change: EventChange) -> Outcome {
        let ev = change.event;
        let route = self.dir.route(&ev.customer);
        if self.dir.recipients(&route).addresses.is_empty() {
            return Outcome::NoRecipients;
        }
        let waiting = self
            .buckets
            .get_mut(&route)
            .and_then(|b| b.items.get_mut(&ev.id));
        match change.change {
            Change::Updated => {
                if let Some(item) = waiting {
                    item.event = ev;
                }
                Outcome::Ignored
            }
            Change::Opened => {
                if let Some(item) = waiting {
                    // A repeated opening (a replay): refresh, not news.
                    item.event = ev;
                    return Outcome::Ignored;
                }
                if self.announced.contains(&ev.id) || self.muted.contains(&ev.id) {
                    return Outcome::Ignored;
                }
                if !self.admit(&ev.meter, now_ms) {
                    self.muted.insert(ev.id.clone());
                    self.suppress(route, &ev, now_ms);
                    return Outcome::Suppressed;
                }
                self.announced.insert(ev.id.clone());
                self.add(route, now_ms, ItemKind::New, ev);
                Outcome::Queued
            }
            Change::Closed => {
                if let Some(item) = waiting {
                    if item.kind == ItemKind::New {
                        item.kind = ItemKind::Short;
                    }
                    item.event = ev;
                    self.announced.remove(&item.event.id);
                    if let Some(b) = self.buckets.get_mut(&route) {
                        b.last_ms = now_ms;
                    }
                    return Outcome::Queued;
                }
                if self.muted.remove(&ev.id) {
                    return Outcome::Ignored; // counted when it opened
                }
                let was_announced = self.announced.remove(&ev.id);
                if !self.settings.resolved {
                    return Outcome::Ignored;
                }
                // A closing of an event never seen open (it opened before a
                // restart) is news, and counts against the limit.
                if !was_announced && !self.admit(&ev.meter, now_ms) {
                    self.suppress(route, &ev, now_ms);
                    return Outcome::Suppressed;
                }
                self.add(route, now_ms, ItemKind::Resolved, ev);
                Outcome::Queued
            }
        }
    }

    /// When [`due`](Self::due) next has something to return.
    pub fn next_deadline(&self) -> Option<i64> {
        let buckets = self.buckets.values().map(|b| b.deadline(&self.settings));
        let notes = self
            .suppressed_due
            .iter()
            .filter(|(r, _)| !self.buckets.contains_key(*r))
            .map(|(_, t)| *t);
        buckets.chain(notes).min()
    }

    /// The messages whose time has come at `now_ms`.
    pub fn due(&mut self, now_ms: i64) -> Vec<Message> {
        let s = self.settings;
        let ready: Vec<Route> = self
            .buckets
            .iter()
            .filter(|(_, b)| b.deadline(&s) <= now_ms)
            .map(|(r, _)| r.clone())
            .collect();
        let mut out: Vec<Message> = ready.into_iter().map(|r| self.emit(r)).collect();
        let notes: Vec<Route> = self
            .suppressed_due
            .iter()
            .filter(|(r, t)| **t <= now_ms && !self.buckets.contains_key(*r))
            .map(|(r, _)| r.clone())
            .collect();
        out.extend(notes.into_iter().map(|r| self.emit(r)));
        out
    }

    /// Everything still waiting, now (at shutdown, so nothing is lost).
    pub fn flush(&mut self) -> Vec<Message> {
        let mut routes: Vec<Route> = self.buckets.keys().cloned().collect();
        routes.extend(
            self.suppressed
                .keys()
                .filter(|r| !self.buckets.contains_key(*r))
                .cloned(),
        );
        routes.into_iter().map(|r| self.emit(r)).collect()
    }

    /// Is anything waiting?
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.suppressed.is_empty()
    }

    fn admit(&mut self, meter: &str, now_ms: i64) -> bool {
        let max = self.settings.max_per_meter_per_hour as usize;
        if max == 0 {
            return true;
        }
        let q = self.admitted.entry(meter.to_string()).or_default();
        while q.front().is_some_and(|t| *t <= now_ms - HOUR_MS) {
            q.pop_front();
        }
        if q.len() < max {
            q.push_back(now_ms);
            true
        } else {
            false
        }
    }

    fn suppress(&mut self, route: Route, ev: &Event, now_ms: i64) {
        let name = self.dir.customer_name(&ev.customer);
        let entry = self
            .suppressed
            .entry(route.clone())
            .or_default()
            .entry(ev.meter.clone())
            .or_insert_with(|| Suppressed {
                meter: ev.meter.clone(),
                customer: ev.customer.clone(),
                customer_name: name,
                count: 0,
            });
        entry.count += 1;
        // Without another message to carry the note, it goes out alone
        // when the meter may mail again: at most one such note per meter-hour.
        let free_at = self
            .admitted
            .get(&ev.meter)
            .and_then(|q| q.front())
            .map_or(now_ms, |t| t + HOUR_MS);
        let due = self.suppressed_due.entry(route).or_insert(free_at);
        *due = (*due).min(free_at);
    }

    fn add(&mut self, route: Route, now_ms: i64, kind: ItemKind, ev: Event) {
        let item = Item {
            kind,
            customer_name: self.dir.customer_name(&ev.customer),
            nominal: self
                .dir
                .nominal
                .get(&(ev.meter.clone(), ev.phase.clone()))
                .copied(),
            event: ev,
        };
        let b = self.buckets.entry(route).or_insert(Bucket {
            first_ms: now_ms,
            last_ms: now_ms,
            items: BTreeMap::new(),
        });
        b.last_ms = now_ms;
        b.items.insert(item.event.id.clone(), item);
    }

    fn emit(&mut self, route: Route) -> Message {
        let mut items: Vec<Item> = self
            .buckets
            .remove(&route)
            .map(|b| b.items.into_values().collect())
            .unwrap_or_default();
        items.sort_by(|a, b| {
            // Ties by kind: voltage first, as `Kind` is ordered.
            let key = |i: &Item| (i.kind == ItemKind::Resolved, i.event.start_ms, i.event.kind);
            key(a)
                .cmp(&key(b))
                .then_with(|| a.event.id.cmp(&b.event.id))
        });
        let suppressed = self
            .suppressed
            .remove(&route)
            .map(|m| m.into_values().collect())
            .unwrap_or_default();
        self.suppressed_due.remove(&route);
        Message {
            recipients: self.dir.recipients(&route).clone(),
            route,
            items,
            suppressed,
            limit_per_hour: self.settings.max_per_meter_per_hour,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::sections::Language;
    use crate::quality::rules::{Kind, State};

    const S: i64 = 1000;
    const MIN: i64 = 60 * S;

    pub(crate) fn event(meter: &str, customer: &str, n: i64, state: State) -> Event {
        Event {
            id: format!("{meter}/voltage_high/l1_l2/0/{n}"),
            meter: meter.into(),
            customer: customer.into(),
            kind: Kind::VoltageHigh,
            phase: "l1_l2".into(),
            order: 0,
            state,
            start_ms: n * MIN,
            end_ms: n * MIN + 3 * MIN,
            value: 10_900.0,
            peak: 10_951.0,
            peak_ms: n * MIN + 2 * MIN,
            limit: 10_700.0,
            unit: "V",
            source: "GB/T 12325-2008 (10 kV: ±7 %)".into(),
        }
    }

    fn opened(meter: &str, customer: &str, n: i64) -> EventChange {
        EventChange {
            change: Change::Opened,
            event: event(meter, customer, n, State::Open),
        }
    }

    fn closed(meter: &str, customer: &str, n: i64) -> EventChange {
        let mut e = event(meter, customer, n, State::Closed);
        e.end_ms += 2 * MIN;
        EventChange {
            change: Change::Closed,
            event: e,
        }
    }

    fn updated(meter: &str, customer: &str, n: i64, peak: f64) -> EventChange {
        let mut e = event(meter, customer, n, State::Open);
        e.peak = peak;
        EventChange {
            change: Change::Updated,
            event: e,
        }
    }

    fn recipients(a: &str, language: Language) -> Recipients {
        Recipients {
            addresses: vec![a.into()],
            language,
        }
    }

    pub(crate) fn directory() -> Directory {
        let mut customers = HashMap::new();
        customers.insert(
            "C1".to_string(),
            CustomerInfo {
                name: "华东特钢有限公司".into(),
                group: Some("east".into()),
            },
        );
        customers.insert(
            "C2".to_string(),
            CustomerInfo {
                name: "Harbour Cold Store".into(),
                group: None,
            },
        );
        let mut groups = BTreeMap::new();
        groups.insert(
            "east".to_string(),
            recipients("east@grid.example", Language::ZhCn),
        );
        let mut nominal = HashMap::new();
        nominal.insert(("M1".to_string(), "l1_l2".to_string()), 10_000.0);
        Directory {
            customers,
            default: recipients("duty@grid.example", Language::En),
            groups,
            nominal,
        }
    }

    fn settings() -> Settings {
        Settings {
            min_delay_ms: 60 * S,
            max_delay_ms: 300 * S,
            max_per_meter_per_hour: 6,
            resolved: true,
        }
    }

    fn digest() -> Digest {
        Digest::new(settings(), directory())
    }

    /// Step through time a second at a time, pushing each change at its
    /// time and collecting what falls due; returns (time, message).
    fn simulate(
        d: &mut Digest,
        mut changes: Vec<(i64, EventChange)>,
        until: i64,
    ) -> Vec<(i64, Message)> {
        changes.reverse();
        let mut out = Vec::new();
        let mut t = 0;
        while t <= until {
            while changes.last().is_some_and(|(at, _)| *at <= t) {
                let (at, c) = changes.pop().unwrap();
                d.push(at, c);
            }
            out.extend(d.due(t).into_iter().map(|m| (t, m)));
            t += S;
        }
        out
    }

    #[test]
    fn a_burst_within_min_delay_is_one_message_sent_min_delay_after_the_last() {
        let mut d = digest();
        assert_eq!(d.push(0, opened("M1", "C1", 1)), Outcome::Queued);
        assert_eq!(d.next_deadline(), Some(60 * S));
        assert_eq!(d.push(20 * S, opened("M1", "C1", 2)), Outcome::Queued);
        assert_eq!(d.push(50 * S, opened("M1", "C1", 3)), Outcome::Queued);
        assert_eq!(d.next_deadline(), Some(110 * S));
        let mut d2 = digest();
        let changes = [0, 20, 50]
            .into_iter()
            .map(|t| (t * S, opened("M1", "C1", t)))
            .collect();
        let out = simulate(&mut d2, changes, 400 * S);
        assert_eq!(out.len(), 1);
        let (t, m) = &out[0];
        assert_eq!(*t, 110 * S, "min_delay after the last change");
        assert_eq!(m.items.len(), 3);
        assert_eq!(m.new_count(), 3);
        assert_eq!(m.route, Route::Group("east".into()));
        assert!(d2.is_empty());
        assert_eq!(d2.next_deadline(), None);
    }

    #[test]
    fn a_steady_trickle_is_held_at_most_max_delay_from_the_first_change() {
        let mut d = digest();
        // A change every 40 s (on ten meters) keeps restarting min_delay (60 s)…
        let changes = (0..10)
            .map(|k| (k * 40 * S, opened(&format!("X{k}"), "C2", k)))
            .collect();
        let out = simulate(&mut d, changes, 1000 * S);
        // …but the first message leaves max_delay (300 s) after the first
        // change, with the eight changes of 0…280 s.
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[0].1.items.len()), (300 * S, 8));
        // The ninth (320 s) and tenth (360 s) start a new one: 360 + 60.
        assert_eq!((out[1].0, out[1].1.items.len()), (420 * S, 2));
    }

    #[test]
    fn a_trickle_from_one_meter_hits_the_rate_limit() {
        let mut d = digest();
        let changes = (0..10)
            .map(|k| (k * 40 * S, opened("M1", "C2", k)))
            .collect();
        let out = simulate(&mut d, changes, 4000 * S);
        // 0…200 s: six mailed. 240 s is suppressed and does not keep the
        // message waiting: it leaves min_delay after 200 s, with its note.
        assert_eq!(out[0].0, 260 * S);
        assert_eq!(out[0].1.items.len(), 6, "rate limit: 6 per meter-hour");
        assert_eq!(out[0].1.suppressed_count(), 1);
        // 280, 320 and 360 s: suppressed too; with no other message, their
        // note goes out alone an hour after M1's first mailed event.
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].0, 3600 * S);
        assert!(out[1].1.items.is_empty());
        assert_eq!(out[1].1.suppressed_count(), 3);
    }

    #[test]
    fn groups_and_the_default_list_get_separate_messages_in_their_language() {
        let mut d = digest();
        d.push(0, opened("M1", "C1", 1));
        d.push(S, opened("M2", "C2", 1));
        d.push(2 * S, opened("M3", "unknown-customer", 1));
        let out = d.due(120 * S);
        assert_eq!(out.len(), 2);
        let east = out
            .iter()
            .find(|m| m.route == Route::Group("east".into()))
            .unwrap();
        assert_eq!(east.recipients.addresses, vec!["east@grid.example"]);
        assert_eq!(east.recipients.language, Language::ZhCn);
        assert_eq!(east.items.len(), 1);
        assert_eq!(east.items[0].customer_name, "华东特钢有限公司");
        assert_eq!(east.items[0].nominal, Some(10_000.0));
        let dflt = out.iter().find(|m| m.route == Route::Default).unwrap();
        assert_eq!(dflt.recipients.language, Language::En);
        let names: Vec<_> = dflt
            .items
            .iter()
            .map(|i| i.customer_name.as_str())
            .collect();
        assert_eq!(names, ["Harbour Cold Store", "unknown-customer"]);
    }

    #[test]
    fn opened_and_closed_in_one_message_is_one_short_event() {
        let mut d = digest();
        d.push(0, opened("M1", "C1", 1));
        d.push(10 * S, updated("M1", "C1", 1, 11_111.0));
        d.push(30 * S, closed("M1", "C1", 1));
        let out = d.due(90 * S);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(m.items.len(), 1);
        assert_eq!(m.items[0].kind, ItemKind::Short);
        assert_eq!(m.items[0].event.state, State::Closed);
        assert_eq!(m.items[0].event.duration_ms(), 5 * MIN);
        assert_eq!((m.new_count(), m.resolved_count()), (1, 0));
        // Even with resolved notices off, a short event is news.
        let mut d = Digest::new(
            Settings {
                resolved: false,
                ..settings()
            },
            directory(),
        );
        d.push(0, opened("M1", "C1", 1));
        d.push(30 * S, closed("M1", "C1", 1));
        assert_eq!(d.due(90 * S)[0].items[0].kind, ItemKind::Short);
    }

    #[test]
    fn updates_refresh_a_waiting_event_but_are_never_mailed_alone() {
        let mut d = digest();
        assert_eq!(
            d.push(0, updated("M1", "C1", 9, 1.0)),
            Outcome::Ignored,
            "an update of an event not waiting"
        );
        assert_eq!(d.next_deadline(), None);
        d.push(0, opened("M1", "C1", 1));
        d.push(50 * S, updated("M1", "C1", 1, 11_200.0));
        assert_eq!(d.next_deadline(), Some(60 * S), "updates do not delay");
        let m = d.due(60 * S).remove(0);
        assert_eq!(m.items[0].event.peak, 11_200.0);
        assert_eq!(
            d.push(70 * S, updated("M1", "C1", 1, 11_300.0)),
            Outcome::Ignored
        );
        assert!(d.due(1000 * S).is_empty());
    }

    #[test]
    fn resolved_notice_in_a_later_message_and_only_when_enabled() {
        let mut d = digest();
        d.push(0, opened("M1", "C1", 1));
        assert_eq!(d.due(60 * S)[0].items[0].kind, ItemKind::New);
        assert_eq!(d.push(600 * S, closed("M1", "C1", 1)), Outcome::Queued);
        let m = d.due(660 * S).remove(0);
        assert_eq!((m.new_count(), m.resolved_count()), (0, 1));
        assert_eq!(m.items[0].event.end_ms, 6 * MIN);

        let mut d = Digest::new(
            Settings {
                resolved: false,
                ..settings()
            },
            directory(),
        );
        d.push(0, opened("M1", "C1", 1));
        assert_eq!(d.due(60 * S).len(), 1);
        assert_eq!(d.push(600 * S, closed("M1", "C1", 1)), Outcome::Ignored);
        assert!(d.due(10_000 * S).is_empty());
        assert_eq!(d.push(700 * S, closed("M1", "C1", 7)), Outcome::Ignored);
    }

    #[test]
    fn rate_limit_counts_the_excess_and_reports_it_in_the_next_message() {
        let mut d = Digest::new(
            Settings {
                max_per_meter_per_hour: 2,
                ..settings()
            },
            directory(),
        );
        let outcomes: Vec<_> = (0..5)
            .map(|k| d.push(k * S, opened("M1", "C1", k)))
            .collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Queued,
                Outcome::Queued,
                Outcome::Suppressed,
                Outcome::Suppressed,
                Outcome::Suppressed
            ]
        );
        // Another meter is not limited by M1.
        assert_eq!(d.push(5 * S, opened("M9", "C1", 0)), Outcome::Queued);
        let m = d.due(65 * S).remove(0);
        assert_eq!(m.items.len(), 3);
        assert_eq!(m.suppressed.len(), 1);
        assert_eq!(
            (m.suppressed[0].meter.as_str(), m.suppressed[0].count),
            ("M1", 3)
        );
        assert_eq!(m.limit_per_hour, 2);
        // The closing of a suppressed event is not mailed, nor counted again.
        assert_eq!(d.push(100 * S, closed("M1", "C1", 3)), Outcome::Ignored);
        // The closing of a mailed one is, and does not count.
        assert_eq!(d.push(100 * S, closed("M1", "C1", 0)), Outcome::Queued);
        let m = d.due(160 * S).remove(0);
        assert_eq!((m.resolved_count(), m.suppressed_count()), (1, 0));
        // Still limited within the hour…
        assert_eq!(
            d.push(1800 * S, opened("M1", "C1", 10)),
            Outcome::Suppressed
        );
        // …and the note goes out alone when M1's hour frees up (the first
        // admission was at 0 s), since no other message comes.
        assert_eq!(d.next_deadline(), Some(3600 * S));
        assert!(d.due(3599 * S).is_empty());
        let m = d.due(3600 * S).remove(0);
        assert!(m.items.is_empty());
        assert_eq!(m.suppressed_count(), 1);
        // The rolling hour: M1 may mail again.
        assert_eq!(d.push(3601 * S, opened("M1", "C1", 11)), Outcome::Queued);
    }

    #[test]
    fn a_suppression_note_rides_on_a_message_that_comes_first() {
        let mut d = Digest::new(
            Settings {
                max_per_meter_per_hour: 1,
                ..settings()
            },
            directory(),
        );
        d.push(0, opened("M1", "C1", 0));
        assert_eq!(d.due(60 * S)[0].suppressed_count(), 0);
        d.push(100 * S, opened("M1", "C1", 1));
        assert_eq!(d.next_deadline(), Some(3600 * S));
        d.push(200 * S, opened("M2", "C1", 1));
        assert_eq!(d.next_deadline(), Some(260 * S));
        let out = d.due(260 * S);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].items.len(), out[0].suppressed_count()), (1, 1));
        assert_eq!(d.next_deadline(), None, "the note went out");
    }

    #[test]
    fn flush_hands_over_everything_waiting_including_suppression_notes() {
        let mut d = Digest::new(
            Settings {
                max_per_meter_per_hour: 1,
                ..settings()
            },
            directory(),
        );
        d.push(0, opened("M1", "C1", 0));
        d.push(0, opened("M1", "C1", 1)); // suppressed
        d.push(0, opened("M2", "C2", 0));
        let out = d.flush();
        assert_eq!(out.len(), 2);
        assert_eq!(out.iter().map(|m| m.suppressed_count()).sum::<u64>(), 1);
        assert!(d.is_empty());
        d.push(10 * S, opened("M1", "C1", 2));
        let out = d.flush();
        assert_eq!(
            (out.len(), out[0].items.len(), out[0].suppressed_count()),
            (1, 0, 1)
        );
    }

    #[test]
    fn a_closing_seen_without_its_opening_is_news_and_a_replayed_opening_is_not() {
        let mut d = digest();
        assert_eq!(d.push(0, closed("M1", "C2", 1)), Outcome::Queued);
        let m = d.due(60 * S).remove(0);
        assert_eq!(m.items[0].kind, ItemKind::Resolved);
        d.push(100 * S, opened("M1", "C2", 2));
        d.due(160 * S);
        assert_eq!(d.push(170 * S, opened("M1", "C2", 2)), Outcome::Ignored);
    }

    #[test]
    fn an_empty_recipient_list_mails_nothing() {
        let mut dir = directory();
        dir.default.addresses.clear();
        let mut d = Digest::new(settings(), dir);
        assert_eq!(d.push(0, opened("M1", "C2", 1)), Outcome::NoRecipients);
        assert_eq!(d.push(0, opened("M1", "C1", 1)), Outcome::Queued);
    }

    #[test]
    fn items_are_ordered_new_before_resolved_then_by_start() {
        let mut d = digest();
        d.push(0, opened("M1", "C2", 1));
        d.due(60 * S);
        d.push(100 * S, opened("M1", "C2", 9));
        d.push(101 * S, closed("M1", "C2", 1));
        d.push(102 * S, opened("M1", "C2", 5));
        let m = d.due(200 * S).remove(0);
        let order: Vec<_> = m
            .items
            .iter()
            .map(|i| (i.kind, i.event.start_ms / MIN))
            .collect();
        assert_eq!(
            order,
            [
                (ItemKind::New, 5),
                (ItemKind::New, 9),
                (ItemKind::Resolved, 1)
            ]
        );
    }
}
