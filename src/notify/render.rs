//! Rendering: a digest [`Message`] → subject, plain text and HTML, in
//! Chinese or English (the recipient list's `language`), and the MIME
//! message built with lettre. Pure apart from the Message-ID and date.
//!
//! Each event says what a dispatcher needs to act: customer (name and id),
//! meter, quantity, phase and harmonic order, value and peak with their
//! unit (voltages also as a deviation from nominal), the limit and the
//! standard it comes from, the start in local time (`[daemon] timezone`),
//! the duration and, once over, the end.
//!
//! Every configured or measured string passes through [`clean`] before it
//! reaches a header or a line of text, and headers are only written through
//! lettre's builder (which RFC 2047-encodes what is not plain ASCII), so a
//! customer name with CR/LF cannot inject a header or fake a line.

use super::digest::{Item, ItemKind, Message, Route};
use crate::config::sections::Language;
use crate::mail::automated;
use crate::mail::text::{clean, duration, esc, kind_name};
use crate::quality::rules::Kind;
use jiff::tz::TimeZone;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use std::fmt::Write as _;
use std::time::SystemTime;

/// What a message says, ready to be wrapped into MIME.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// At most `max` characters, with an ellipsis when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// "l1_l2" → "L1-L2", "l3" → "L3".
fn phase_label(phase: &str) -> String {
    clean(&phase.to_uppercase().replace('_', "-"))
}

/// "voltage high L1-L2": what the subject and a section heading name.
fn title(item: &Item, lang: Language) -> String {
    let e = &item.event;
    let k = kind_name(e.kind, e.order, lang);
    if e.phase.is_empty() {
        k
    } else {
        format!("{k} {}", phase_label(&e.phase))
    }
}

fn number(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    match unit {
        "%" => format!("{v:.2}"),
        _ => format!("{v:.1}"),
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    let u = clean(unit);
    if u.is_empty() {
        number(v, unit)
    } else {
        format!("{} {u}", number(v, unit))
    }
}

/// Deviation from nominal, "+9.0 %".
fn deviation(v: f64, nominal: f64) -> String {
    format!("{:+.1} %", (v / nominal - 1.0) * 100.0)
}

/// A value as shown in the body: voltages with their deviation.
fn value_text(v: f64, item: &Item, lang: Language) -> String {
    let base = with_unit(v, item.event.unit);
    match voltage_nominal(item) {
        Some(n) if lang == Language::ZhCn => format!("{base}（{}）", deviation(v, n)),
        Some(n) => format!("{base} ({})", deviation(v, n)),
        None => base,
    }
}

fn voltage_nominal(item: &Item) -> Option<f64> {
    match item.event.kind {
        Kind::VoltageHigh | Kind::VoltageLow => item.nominal.filter(|n| *n > 0.0),
        _ => None,
    }
}

/// The one value a subject shows: the current value of an open event, the
/// peak of one that is over.
fn headline_value(item: &Item) -> String {
    let v = match item.kind {
        ItemKind::New => item.event.value,
        ItemKind::Short | ItemKind::Resolved => item.event.peak,
    };
    match voltage_nominal(item) {
        Some(n) => deviation(v, n),
        None => with_unit(v, item.event.unit),
    }
}

/// Local time in the configured zone: "2026-05-04 10:02:00 +08:00".
pub(crate) fn local_time(ms: i64, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

struct Section {
    heading: String,
    rows: Vec<(&'static str, String)>,
}

struct Words {
    new: &'static str,
    short: &'static str,
    resolved: &'static str,
    customer: &'static str,
    meter: &'static str,
    quantity: &'static str,
    value: &'static str,
    peak: &'static str,
    limit: &'static str,
    start: &'static str,
    end: &'static str,
    duration: &'static str,
}

const EN: Words = Words {
    new: "NEW",
    short: "SHORT EVENT (opened and closed)",
    resolved: "RESOLVED",
    customer: "Customer",
    meter: "Meter",
    quantity: "Quantity",
    value: "Value",
    peak: "Peak",
    limit: "Limit",
    start: "Start",
    end: "End",
    duration: "Duration",
};

const ZH: Words = Words {
    new: "新事件",
    short: "短时事件（已开始并已恢复）",
    resolved: "已恢复",
    customer: "客户",
    meter: "电表",
    quantity: "指标",
    value: "当前值",
    peak: "峰值",
    limit: "限值",
    start: "开始",
    end: "结束",
    duration: "持续",
};

fn words(lang: Language) -> &'static Words {
    match lang {
        Language::ZhCn => &ZH,
        Language::En => &EN,
    }
}

fn section(item: &Item, tz: &TimeZone, lang: Language) -> Section {
    let w = words(lang);
    let zh = lang == Language::ZhCn;
    let e = &item.event;
    let label = match item.kind {
        ItemKind::New => w.new,
        ItemKind::Short => w.short,
        ItemKind::Resolved => w.resolved,
    };
    let heading = if zh {
        format!("【{label}】{}", title(item, lang))
    } else {
        format!("{label} — {}", title(item, lang))
    };
    let name = cut(&clean(&item.customer_name), 120);
    let id = clean(&e.customer);
    let customer = match (name == id, zh) {
        (true, _) => id,
        (false, true) => format!("{name}（{id}）"),
        (false, false) => format!("{name} ({id})"),
    };
    let mut quantity = kind_name(e.kind, e.order, lang);
    if e.kind == Kind::HarmonicVoltage {
        quantity = match lang {
            Language::ZhCn => format!("{quantity}（第 {} 次）", e.order),
            Language::En => format!("{quantity} (harmonic order {})", e.order),
        };
    }
    if !e.phase.is_empty() {
        let p = phase_label(&e.phase);
        quantity = match lang {
            Language::ZhCn => format!("{quantity}，相别 {p}"),
            Language::En => format!("{quantity}, phase {p}"),
        };
    }
    let mut rows = vec![
        (w.customer, customer),
        (
            w.meter,
            match (e.meter == crate::quality::rules::CUSTOMER_TOTAL, lang) {
                (true, Language::ZhCn) => "全部计量点合计".to_string(),
                (true, Language::En) => "all billing meters (customer total)".to_string(),
                (false, _) => clean(&e.meter),
            },
        ),
        (w.quantity, quantity),
    ];
    if item.kind == ItemKind::New {
        rows.push((w.value, value_text(e.value, item, lang)));
    }
    let at = local_time(e.peak_ms, tz);
    let peak = match lang {
        Language::ZhCn => format!("{}，出现于 {at}", value_text(e.peak, item, lang)),
        Language::En => format!("{} at {at}", value_text(e.peak, item, lang)),
    };
    rows.push((w.peak, peak));
    let source = match lang {
        Language::ZhCn => clean(&crate::quality::limits::source_zh(&e.source)),
        Language::En => clean(&e.source),
    };
    let limit = match lang {
        Language::ZhCn => format!("{}，依据 {source}", value_text(e.limit, item, lang)),
        Language::En => format!("{}, {source}", value_text(e.limit, item, lang)),
    };
    rows.push((w.limit, limit));
    rows.push((w.start, local_time(e.start_ms, tz)));
    let d = duration(e.duration_ms(), lang);
    if item.kind == ItemKind::New {
        let d = match lang {
            Language::ZhCn => format!("{d}，仍在持续"),
            Language::En => format!("{d} so far, still open"),
        };
        rows.push((w.duration, d));
    } else {
        rows.push((w.end, local_time(e.end_ms, tz)));
        rows.push((w.duration, d));
    }
    Section { heading, rows }
}

fn counts(m: &Message, lang: Language) -> String {
    let (n, r, s) = (m.new_count(), m.resolved_count(), m.suppressed_count());
    let mut parts = Vec::new();
    match lang {
        Language::ZhCn => {
            if n > 0 {
                parts.push(format!("新事件 {n}"));
            }
            if r > 0 {
                parts.push(format!("已恢复 {r}"));
            }
            if parts.is_empty() {
                parts.push(format!("限流未发送事件 {s}"));
            }
            parts.join("，")
        }
        Language::En => {
            if n > 0 {
                parts.push(format!("{n} new"));
            }
            if r > 0 {
                parts.push(format!("{r} resolved"));
            }
            if parts.is_empty() {
                parts.push(format!(
                    "{s} event{} suppressed",
                    if s == 1 { "" } else { "s" }
                ));
            }
            parts.join(", ")
        }
    }
}

fn subject(m: &Message, lang: Language) -> String {
    let what = match m.items.first() {
        Some(first) => {
            let name = cut(&clean(&first.customer_name), 60);
            let more = match (m.items.len() - 1, lang) {
                (0, _) => String::new(),
                (k, Language::ZhCn) => format!("（另有 {k} 项）"),
                (k, Language::En) => format!(" (+{k} more)"),
            };
            format!(
                "{name} {} {}{more}",
                title(first, lang),
                headline_value(first)
            )
        }
        None => match m.suppressed.first() {
            Some(s) => {
                let name = cut(&clean(&s.customer_name), 60);
                match lang {
                    Language::ZhCn => format!("{name} 电表 {}", clean(&s.meter)),
                    Language::En => format!("{name} meter {}", clean(&s.meter)),
                }
            }
            None => String::new(),
        },
    };
    clean(&format!("[pqwatch] {} — {what}", counts(m, lang)))
}

fn suppression_notes(m: &Message, lang: Language) -> (Option<String>, Vec<String>) {
    if m.suppressed.is_empty() {
        return (None, Vec::new());
    }
    let limit = m.limit_per_hour;
    let head = match lang {
        Language::ZhCn => format!("因限流未发送（每个电表每小时最多发送 {limit} 个事件）："),
        Language::En => {
            format!("Rate limit: at most {limit} events per meter per hour are mailed.")
        }
    };
    let lines = m
        .suppressed
        .iter()
        .map(|s| {
            let (meter, name, id) = (clean(&s.meter), clean(&s.customer_name), clean(&s.customer));
            match lang {
                Language::ZhCn => format!(
                    "电表 {meter}（{name}，{id}）另有 {} 个事件未发送。",
                    s.count
                ),
                Language::En => format!(
                    "{} more event{} on meter {meter} {} suppressed ({name}, {id}).",
                    s.count,
                    if s.count == 1 { "" } else { "s" },
                    if s.count == 1 { "was" } else { "were" },
                ),
            }
        })
        .collect();
    (Some(head), lines)
}

fn recipients_line(m: &Message, lang: Language) -> String {
    match (&m.route, lang) {
        (Route::Default, Language::ZhCn) => "收件人：默认值班名单".into(),
        (Route::Default, Language::En) => "Recipients: the default duty list".into(),
        (Route::Group(g), Language::ZhCn) => format!("收件人：告警组 {}", clean(g)),
        (Route::Group(g), Language::En) => format!("Recipients: alert group {}", clean(g)),
    }
}

fn footer(tz: &TimeZone, lang: Language) -> String {
    let zone = tz.iana_name().unwrap_or("UTC offset shown").to_string();
    match lang {
        Language::ZhCn => format!("时间均为本地时间（{zone}）。本邮件由 pqwatch 自动发送。"),
        Language::En => format!("Times are local ({zone}). Sent automatically by pqwatch."),
    }
}

/// Subject, text and HTML of a message, in its recipients' language.
pub(crate) fn render(m: &Message, tz: &TimeZone) -> Rendered {
    let lang = m.recipients.language;
    let zh = lang == Language::ZhCn;
    let subject = subject(m, lang);
    let intro = match lang {
        Language::ZhCn => format!("pqwatch 电能质量告警：{}。", counts(m, lang)),
        Language::En => format!("pqwatch power-quality alert: {}.", counts(m, lang)),
    };
    // A flood (every meter of a substation at once) is one readable mail:
    // the first MAX_DETAILED events in full, the rest counted by kind.
    let sections: Vec<Section> = m
        .items
        .iter()
        .take(MAX_DETAILED)
        .map(|i| section(i, tz, lang))
        .collect();
    let more = more_line(m, lang);
    let (note_head, notes) = suppression_notes(m, lang);
    let recipients = recipients_line(m, lang);
    let footer = footer(tz, lang);

    let mut text = String::new();
    let _ = writeln!(text, "{intro}\n");
    for s in &sections {
        let _ = writeln!(text, "{}", s.heading);
        for (k, v) in &s.rows {
            if zh {
                let _ = writeln!(text, "  {k}：{v}");
            } else {
                let _ = writeln!(text, "  {:<10}{v}", format!("{k}:"));
            }
        }
        text.push('\n');
    }
    if let Some(more) = &more {
        let _ = writeln!(text, "{more}\n");
    }
    if let Some(h) = &note_head {
        let _ = writeln!(text, "{h}");
        for n in &notes {
            let _ = writeln!(text, "  {n}");
        }
        text.push('\n');
    }
    let _ = writeln!(text, "{recipients}\n{footer}\n-- \npqwatch");

    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"font-family:sans-serif\">\n<p>{}</p>\n",
        lang.tag(),
        esc(&subject),
        esc(&intro)
    );
    for s in &sections {
        let _ = write!(html, "<h3>{}</h3>\n<table>\n", esc(&s.heading));
        for (k, v) in &s.rows {
            let _ = writeln!(
                html,
                "<tr><th style=\"text-align:left;padding-right:1em\">{}</th><td>{}</td></tr>",
                esc(k),
                esc(v)
            );
        }
        html.push_str("</table>\n");
    }
    if let Some(more) = &more {
        let _ = writeln!(html, "<p><b>{}</b></p>", esc(more));
    }
    if let Some(h) = &note_head {
        let _ = write!(html, "<p>{}</p>\n<ul>\n", esc(h));
        for n in &notes {
            let _ = writeln!(html, "<li>{}</li>", esc(n));
        }
        html.push_str("</ul>\n");
    }
    let _ = write!(
        html,
        "<p style=\"color:#666\">{}<br>{}</p>\n</body></html>\n",
        esc(&recipients),
        esc(&footer)
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// Events shown in full in one message; the rest are counted by kind.
pub(crate) const MAX_DETAILED: usize = 50;

/// "… and 1,234 more events: voltage high ×800, THDu ×434" when a message
/// has more than [`MAX_DETAILED`] items.
fn more_line(m: &Message, lang: Language) -> Option<String> {
    let rest = m.items.get(MAX_DETAILED..).filter(|r| !r.is_empty())?;
    let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
    for i in rest {
        *by_kind.entry(kind_name(i.event.kind, 0, lang)).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    Some(match lang {
        Language::ZhCn => format!(
            "另有 {} 个事件未逐条列出（{}）；完整列表：pqwatch events --open",
            rest.len(),
            kinds.join("，")
        ),
        Language::En => format!(
            "… and {} more events not listed one by one ({}); the full list: pqwatch events --open",
            rest.len(),
            kinds.join(", ")
        ),
    })
}

/// The MIME message: plain text with an HTML alternative, To the list,
/// a fresh Message-ID (kept across retries, since the queue stores the
/// formatted bytes), and `Auto-Submitted` so auto-responders stay quiet.
pub(crate) fn email(
    from: &Mailbox,
    m: &Message,
    r: &Rendered,
    date: SystemTime,
) -> Result<lettre::Message, String> {
    let mut b = automated(from, &r.subject, date)
        .message_id(None)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Content-Language"),
            m.recipients.language.tag().into(),
        ));
    for a in &m.recipients.addresses {
        let mb: Mailbox = a
            .parse()
            .map_err(|e| format!("recipient \"{}\": {e}", clean(a)))?;
        b = b.to(mb);
    }
    b.multipart(MultiPart::alternative_plain_html(
        r.text.clone(),
        r.html.clone(),
    ))
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
