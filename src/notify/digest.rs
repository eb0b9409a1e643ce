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

use super::Settings as Slice;
use crate::config::mail::{Alerts, Recipients};
use crate::events::{Change, EventChange};
use crate::quality::rules::Event;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

const HOUR_MS: i64 = 3_600_000;

/// Which recipient list a message goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Route {
    /// `[alerts] recipients`.
    Default,
    /// An `[[alerts.groups]]` entry, by name.
    Group(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CustomerInfo {
    pub name: String,
    pub group: Option<String>,
}

/// Who is told about what: customers' names and groups, the recipient
/// lists, and meters' nominal voltages (to show deviations in %).
#[derive(Debug, Clone)]
pub(crate) struct Directory {
    pub customers: HashMap<String, CustomerInfo>,
    pub default: Recipients,
    pub groups: BTreeMap<String, Recipients>,
    /// (meter, phase) → the nominal voltage that phase is judged against, V.
    pub nominal: HashMap<(String, String), f64>,
}

impl Directory {
    pub(crate) fn from_config(cfg: &Slice) -> Self {
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
    pub(crate) fn route(&self, customer: &str) -> Route {
        match self.customers.get(customer).and_then(|c| c.group.as_ref()) {
            Some(g) if self.groups.contains_key(g) => Route::Group(g.clone()),
            _ => Route::Default,
        }
    }

    pub(crate) fn recipients(&self, route: &Route) -> &Recipients {
        match route {
            Route::Default => &self.default,
            Route::Group(g) => self.groups.get(g).unwrap_or(&self.default),
        }
    }

    /// The customer's name, or its id when it is not configured.
    pub(crate) fn customer_name(&self, customer: &str) -> String {
        self.customers
            .get(customer)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| customer.to_string())
    }
}

/// Timing and policy, from `[alerts]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    pub min_delay_ms: i64,
    pub max_delay_ms: i64,
    /// 0: no limit.
    pub max_per_meter_per_hour: u32,
    pub resolved: bool,
}

impl Settings {
    pub(crate) fn from_alerts(a: &Alerts) -> Self {
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
pub(crate) enum ItemKind {
    /// Opened, still open when the message went out.
    New,
    /// Opened and closed within one message.
    Short,
    /// Closed; its opening was in an earlier message (or before a restart).
    Resolved,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub kind: ItemKind,
    /// The latest snapshot of the event.
    pub event: Event,
    pub customer_name: String,
    /// Nominal voltage of the event's phase, for voltage deviations in %.
    pub nominal: Option<f64>,
}

/// Events of one meter that the rate limit kept out of mail.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Suppressed {
    pub meter: String,
    pub customer: String,
    pub customer_name: String,
    pub count: u64,
}

/// One e-mail to one recipient list, before rendering.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
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
    pub(crate) fn new_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.kind != ItemKind::Resolved)
            .count()
    }

    pub(crate) fn resolved_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.kind == ItemKind::Resolved)
            .count()
    }

    pub(crate) fn suppressed_count(&self) -> u64 {
        self.suppressed.iter().map(|s| s.count).sum()
    }
}

/// What [`Digest::push`] did with a change (the caller logs and counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
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

pub(crate) struct Digest {
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
    pub(crate) fn new(settings: Settings, dir: Directory) -> Self {
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

    pub(crate) fn from_config(cfg: &Slice) -> Self {
        Digest::new(
            Settings::from_alerts(&cfg.alerts),
            Directory::from_config(cfg),
        )
    }

    /// A reloaded config: new settings and directory (recipients, groups,
    /// languages, names), keeping what is gathering, the rate limiter and
    /// which events were announced.
    pub(crate) fn reconfigure(&mut self, cfg: &Slice) {
        self.settings = Settings::from_alerts(&cfg.alerts);
        self.dir = Directory::from_config(cfg);
    }

    /// Take one change that happened at `now_ms`.
    pub(crate) fn push(&mut self, now_ms: i64, change: EventChange) -> Outcome {
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
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        let buckets = self.buckets.values().map(|b| b.deadline(&self.settings));
        let notes = self
            .suppressed_due
            .iter()
            .filter(|(r, _)| !self.buckets.contains_key(*r))
            .map(|(_, t)| *t);
        buckets.chain(notes).min()
    }

    /// The messages whose time has come at `now_ms`.
    pub(crate) fn due(&mut self, now_ms: i64) -> Vec<Message> {
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
    pub(crate) fn flush(&mut self) -> Vec<Message> {
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
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
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
pub(crate) mod tests;
