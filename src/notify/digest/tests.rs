//! Tests of `digest`.

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
