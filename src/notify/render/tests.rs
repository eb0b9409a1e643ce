//! Tests of `render`.

use super::super::digest::tests::event;
use super::super::digest::{Item, Suppressed};
use super::*;
use crate::config::mail::Recipients;
use crate::quality::rules::State;

const MIN: i64 = 60_000;
/// 2026-05-04 10:00:00 +08:00.
const T0: i64 = 1_777_860_000_000;

fn tz() -> TimeZone {
    TimeZone::get("Asia/Shanghai").unwrap()
}

fn item(kind: ItemKind, name: &str) -> Item {
    let mut e = event("M1", "C1", 0, State::Open);
    e.start_ms = T0 + 2 * MIN;
    e.end_ms = T0 + 5 * MIN;
    e.peak_ms = T0 + 5 * MIN + 2000;
    if kind != ItemKind::New {
        e.state = State::Closed;
        e.end_ms = T0 + 7 * MIN;
    }
    Item {
        kind,
        event: e,
        customer_name: name.into(),
        nominal: Some(10_000.0),
    }
}

fn message(lang: Language, items: Vec<Item>) -> Message {
    Message {
        route: Route::Group("east".into()),
        recipients: Recipients {
            addresses: vec!["duty@grid.example".into(), "Ops <ops@grid.example>".into()],
            language: lang,
        },
        items,
        suppressed: Vec::new(),
        limit_per_hour: 6,
    }
}

#[test]
fn english_subject_and_body_carry_what_a_dispatcher_needs() {
    let mut resolved = item(ItemKind::Resolved, "Harbour Cold Store");
    resolved.event.customer = "C2".into();
    let m = message(
        Language::En,
        vec![
            item(ItemKind::New, "华东特钢有限公司"),
            item(ItemKind::New, "华东特钢有限公司"),
            resolved,
        ],
    );
    let r = render(&m, &tz());
    assert_eq!(
        r.subject,
        "[pqwatch] 2 new, 1 resolved — 华东特钢有限公司 voltage high L1-L2 +9.0 % (+2 more)"
    );
    for want in [
        "NEW — voltage high L1-L2",
        "Customer: 华东特钢有限公司 (C1)",
        "Meter:    M1",
        "Quantity: voltage high, phase L1-L2",
        "Value:    10900.0 V (+9.0 %)",
        "Peak:     10951.0 V (+9.5 %) at 2026-05-04 10:05:02 +08:00",
        "Limit:    10700.0 V (+7.0 %), GB/T 12325-2008 (10 kV: ±7 %)",
        "Start:    2026-05-04 10:02:00 +08:00",
        "Duration: 3 min so far, still open",
        "RESOLVED — voltage high L1-L2",
        "Customer: Harbour Cold Store (C2)",
        "End:      2026-05-04 10:07:00 +08:00",
        "Duration: 5 min\n",
        "Recipients: alert group east",
        "Times are local (Asia/Shanghai)",
    ] {
        assert!(r.text.contains(want), "missing {want:?} in\n{}", r.text);
    }
    assert!(
        r.html
            .contains("<th style=\"text-align:left;padding-right:1em\">Peak</th>")
    );
}

#[test]
fn chinese_subject_and_body() {
    let m = message(
        Language::ZhCn,
        vec![
            item(ItemKind::New, "华东特钢有限公司"),
            item(ItemKind::Short, "华东特钢有限公司"),
        ],
    );
    let r = render(&m, &tz());
    assert_eq!(
        r.subject,
        "[pqwatch] 新事件 2 — 华东特钢有限公司 电压偏高 L1-L2 +9.0 %（另有 1 项）"
    );
    for want in [
        "【新事件】电压偏高 L1-L2",
        "客户：华东特钢有限公司（C1）",
        "当前值：10900.0 V（+9.0 %）",
        "峰值：10951.0 V（+9.5 %），出现于 2026-05-04 10:05:02 +08:00",
        "限值：10700.0 V（+7.0 %），依据 GB/T 12325-2008",
        "持续：3分，仍在持续",
        "【短时事件（已开始并已恢复）】",
        "结束：2026-05-04 10:07:00 +08:00",
        "持续：5分\n",
        "时间均为本地时间（Asia/Shanghai）",
    ] {
        assert!(r.text.contains(want), "missing {want:?} in\n{}", r.text);
    }
    let mut m = message(
        Language::ZhCn,
        vec![item(ItemKind::Resolved, "华东特钢有限公司")],
    );
    m.items[0].nominal = None;
    let r = render(&m, &tz());
    assert_eq!(
        r.subject,
        "[pqwatch] 已恢复 1 — 华东特钢有限公司 电压偏高 L1-L2 10951.0 V"
    );
}

#[test]
fn harmonics_name_their_order_and_percentages_keep_two_decimals() {
    let mut it = item(ItemKind::New, "Cold Store");
    it.event.kind = Kind::HarmonicVoltage;
    it.event.order = 5;
    it.event.phase = "l1".into();
    it.event.value = 3.5;
    it.event.limit = 3.2;
    it.event.unit = "%";
    let r = render(&message(Language::En, vec![it.clone()]), &tz());
    assert_eq!(
        r.subject,
        "[pqwatch] 1 new — Cold Store harmonic voltage H5 L1 3.50 %"
    );
    assert!(
        r.text
            .contains("harmonic voltage H5 (harmonic order 5), phase L1")
    );
    assert!(r.text.contains("Limit:    3.20 %,"), "{}", r.text);
    let r = render(&message(Language::ZhCn, vec![it]), &tz());
    assert!(
        r.subject.contains("5次谐波电压含有率 L1 3.50 %"),
        "{}",
        r.subject
    );
}

#[test]
fn suppression_notes_in_both_languages() {
    let mut m = message(Language::En, vec![]);
    m.suppressed.push(Suppressed {
        meter: "M1".into(),
        customer: "C1".into(),
        customer_name: "华东特钢有限公司".into(),
        count: 3,
    });
    let r = render(&m, &tz());
    assert_eq!(
        r.subject,
        "[pqwatch] 3 events suppressed — 华东特钢有限公司 meter M1"
    );
    assert!(r.text.contains("3 more events on meter M1 were suppressed"));
    assert!(r.text.contains("at most 6 events per meter per hour"));
    m.recipients.language = Language::ZhCn;
    let r = render(&m, &tz());
    assert!(
        r.text
            .contains("电表 M1（华东特钢有限公司，C1）另有 3 个事件未发送")
    );
    assert!(r.subject.starts_with("[pqwatch] 限流未发送事件 3 — "));
}

#[test]
fn durations() {
    assert_eq!(duration(0, Language::En), "0 s");
    assert_eq!(duration(45_000, Language::En), "45 s");
    assert_eq!(duration(270_000, Language::En), "4 min 30 s");
    assert_eq!(duration(7_500_000, Language::En), "2 h 5 min");
    assert_eq!(duration(7_200_000, Language::En), "2 h");
    assert_eq!(duration(90_061_000, Language::ZhCn), "1天1小时");
    assert_eq!(duration(270_000, Language::ZhCn), "4分30秒");
}

/// Header lines of a formatted message (unfolded).
fn header_names(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
        .collect()
}

#[test]
fn a_customer_name_with_crlf_cannot_inject_headers() {
    let evil = "Evil Corp\r\nBcc: attacker@evil.example\r\n\r\nfake body\u{0}\u{7}";
    let mut it = item(ItemKind::New, evil);
    it.event.source = "GB/T\nX-Injected: 1".into();
    let m = message(Language::En, vec![it]);
    let r = render(&m, &tz());
    assert!(!r.subject.chars().any(char::is_control), "{:?}", r.subject);
    assert!(
        r.subject
            .contains("Evil Corp Bcc: attacker@evil.example fake body")
    );
    assert!(!r.text.contains("\nBcc:") && !r.text.contains("\nX-Injected"));
    let mail = email(
        &"pqwatch <pq@grid.example>".parse().unwrap(),
        &m,
        &r,
        SystemTime::UNIX_EPOCH,
    )
    .unwrap();
    let raw = mail.formatted();
    let names = header_names(&raw);
    assert!(
        !names.iter().any(|n| n == "bcc" || n == "x-injected"),
        "{names:?}"
    );
    let env: Vec<String> = mail.envelope().to().iter().map(|a| a.to_string()).collect();
    assert_eq!(env, ["duty@grid.example", "ops@grid.example"]);
    for want in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "content-language",
        "mime-version",
        "content-type",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
}

#[test]
fn clean_strips_control_characters() {
    assert_eq!(clean(" a\r\nb\tc\u{0}d\u{1b}[31m "), "a b c d [31m");
    assert_eq!(cut("abcdef", 4), "abc…");
}
