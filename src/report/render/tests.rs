//! Tests of the rendering: text, HTML, CSV and MIME of sample reports.

use super::super::model::{Report, Verdict, VoltageRow};
use super::chart::{CHART_COLUMNS, band_segments, bar_segments, grid_spans};
use super::csv::CSV_HEADER;
use super::html::{HTML_BUDGET, html_text};
use super::layout::{Align, Cell, Table};
use super::mime::email;
use super::sample::sample;
use super::style::{ALL_PHASES, BAND_BG, BLANK, MEAN_MARK, OUT_OF_BAND};
use super::text::{TEXT_WIDTH, is_wide, text_table, width, wrap};
use super::{Volts, fixed, nominal, pct, rate, render, trim_num};
use crate::config::sections::Language;
use lettre::message::Mailbox;
use std::time::SystemTime;

/// A tiny RFC 4180 reader: rows of fields; quoted fields may hold
/// commas, quotes (doubled) and line breaks. Lines end in CRLF.
fn read_csv(s: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            '\n' => panic!("bare LF line end"),
            c => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quote");
    assert!(field.is_empty() && row.is_empty(), "last line without CRLF");
    rows
}

fn hostile() -> Report {
    let mut r = sample(Language::En);
    r.customer_name =
        "North <script>alert('x')</script> Steel\r\nBcc: attacker@evil.example\r\n\r\nbody".into();
    r
}

#[test]
fn chinese_report_words_subject_and_figures() {
    let r = render(&sample(Language::ZhCn));
    assert_eq!(
        r.subject,
        "[pqwatch] 电压质量月报 2026-10 — 华北钢铁有限公司 (C001): 不合格"
    );
    for want in [
        "电压质量月报 2026-10",
        "统计周期",
        "2026-10-01 至 2026-10-31",
        "Asia/Shanghai",
        "2026-11-01 08:00",
        "8000.0 kVA",
        "总体结论",
        "电压合格率",
        "目标 ≥ 95.00 %",
        "超上限（分钟）",
        "最高电压（kV）",
        "10 分钟平均值（EN 50160）",
        "每日电压",
        "电压总谐波畸变率 THDu",
        "单次谐波电压含有率（2–25 次，3 相）：共评估 72 项，2 项超限",
        "5次谐波电压含有率",
        "持续中",
        "暂停用电",
        "最大需量",
        "计算说明",
        "pqwatch-C001-2026-10.csv",
        "不作判定",
    ] {
        assert!(r.text.contains(want), "text lacks {want:?}:\n{}", r.text);
        assert!(r.html.contains(&html_text(want)), "HTML lacks {want:?}");
    }
    assert!(r.html.contains("<html lang=\"zh-CN\""));
    // Qualification rates keep two decimals.
    assert!(r.text.contains("100.00 %"), "{}", r.text);
    assert!(!r.text.contains("PASS") && !r.text.contains("FAIL"));
}

#[test]
fn english_report_words_subject_and_figures() {
    let r = render(&sample(Language::En));
    assert_eq!(
        r.subject,
        "[pqwatch] Voltage quality report 2026-10 — 华北钢铁有限公司 (C001): FAIL"
    );
    for want in [
        "Period:              2026-10\n                       2026-10-01 – 2026-10-31",
        "Overall verdict: FAIL",
        "Qualification rate",
        "target ≥ 95.00 %",
        "Above band (min)",
        "10-minute means (EN 50160)",
        "Daily voltage (min / mean / max, kV)",
        "72 assessed; 2 above the limit",
        "harmonic voltage H5",
        "– open",
        "Suspensions",
        "Maximum demand",
        "How the figures are computed",
        "not judged",
    ] {
        assert!(r.text.contains(want), "text lacks {want:?}:\n{}", r.text);
    }
    assert!(r.html.contains("<html lang=\"en\""));
    // No Chinese wording outside the customer's name and the hostile note.
    let stripped = r
        .text
        .replace("华北钢铁有限公司", "")
        .replace("减容暂停 1# 主变", "");
    assert!(!stripped.chars().any(is_wide), "{stripped}");
}

#[test]
fn verdict_words_and_period_kinds() {
    let mut s = sample(Language::ZhCn);
    s.verdicts.overall = Verdict::Pass;
    s.period = crate::calendar::Period::parse("2026-W44").unwrap();
    assert!(
        render(&s)
            .subject
            .starts_with("[pqwatch] 电压质量周报 2026-W44 — ")
    );
    assert!(render(&s).subject.ends_with(": 合格"));
    s.period = crate::calendar::Period::parse("2026-10-05").unwrap();
    assert!(render(&s).subject.contains("电压质量日报 2026-10-05"));
    s.period = crate::calendar::Period::parse("2026-10-01..2026-10-15").unwrap();
    let r = render(&s);
    assert!(r.subject.contains("电压质量报告 2026-10-01..2026-10-15"));
    assert_eq!(r.csv_name, "pqwatch-C001-2026-10-01_2026-10-15.csv");
    s.language = Language::En;
    s.verdicts.overall = Verdict::NoData;
    assert!(render(&s).subject.ends_with(": NO DATA"));
}

#[test]
fn hostile_strings_are_escaped_and_cannot_break_lines_or_headers() {
    let r = render(&hostile());
    assert!(!r.subject.chars().any(char::is_control), "{:?}", r.subject);
    assert!(
        r.subject
            .contains("North <script>alert('x')</script> Steel Bcc:")
    );
    assert!(
        !r.html.to_lowercase().contains("<script"),
        "raw <script> in HTML"
    );
    assert!(
        r.html
            .contains("North &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Steel")
    );
    // The suspension note of the sample, with CR/LF, stays on one line.
    assert!(
        r.html
            .contains("&lt;script&gt;alert(&quot;pq&quot;)&lt;/script&gt; Bcc:")
    );
    assert!(!r.text.contains("\r"));
    assert!(r.text.lines().all(|l| !l.trim_start().starts_with("Bcc:")));
    assert!(r.text.contains("<script>alert(\"pq\")</script> Bcc:"));
}

#[test]
fn percentages_and_voltages_format_consistently() {
    assert_eq!(pct(Some(95.0)), "95.00 %");
    assert_eq!(pct(Some(99.999)), "100.00 %");
    // Rates are cut, never rounded up: minutes outside the band never
    // read as 100 %.
    assert_eq!(rate(Some(99.999)), "99.99 %");
    assert_eq!(rate(Some(95.0)), "95.00 %");
    assert_eq!(rate(Some(100.0 * (1.0 - 4.0 / 120.0))), "96.66 %");
    assert_eq!(rate(Some(100.0)), "100.00 %");
    assert_eq!(pct(None), "—");
    assert_eq!(pct(Some(f64::NAN)), "—");
    assert_eq!(fixed(-0.001, 2), "0.00");
    assert_eq!(trim_num(100.0), "100");
    assert_eq!(trim_num(0.4), "0.4");
    let mv = Volts { kv: true };
    let lv = Volts { kv: false };
    assert_eq!(mv.with_unit(10_512.4), "10.512 kV");
    assert_eq!(lv.with_unit(230.94), "230.9 V");
    assert_eq!(lv.opt(None), "—");
    assert_eq!(nominal(10_000.0), "10 kV");
    assert_eq!(nominal(400.0), "400 V");
    let r = render(&sample(Language::En));
    assert!(r.text.contains("95.00 %"));
    assert!(r.text.contains("9.300"), "the 10 kV band in kV");
    assert!(
        r.text.contains("253.0"),
        "the 0.4 kV band in V: 230 V + 10 %"
    );
}

#[test]
fn missing_figures_show_a_dash() {
    let mut s = sample(Language::En);
    let m = &mut s.meters[0];
    m.voltage[0].rate = None;
    m.voltage[0].max = None;
    m.voltage[0].mean = Some(f64::NAN);
    m.thd[0].cp95 = None;
    m.active_power_peak = None;
    let r = render(&s);
    assert!(!r.text.contains("NaN") && !r.html.contains("NaN"));
    assert!(r.text.contains("Active power peak: —"), "{}", r.text);
}

#[test]
fn a_meter_without_data_and_a_running_period() {
    let mut s = sample(Language::En);
    s.generated_ms = s.from_ms + 10 * 86_400_000;
    s.suspensions.clear();
    s.demand = None;
    s.events.clear();
    s.verdicts.suspension = None;
    s.verdicts.demand = None;
    let m = &mut s.meters[1];
    m.phases = 1;
    m.band_pct = None;
    m.judged_on_10min = false;
    m.voltage = vec![VoltageRow {
        phase: "l1".into(),
        reference_v: 230.0,
        upper_v: 0.0,
        lower_v: 0.0,
        monitored: 0,
        above: 0,
        below: 0,
        rate: None,
        above_pct: None,
        below_pct: None,
        max: None,
        min: None,
        mean: None,
        completeness: Some(0.0),
    }];
    m.voltage_long.clear();
    m.thd.clear();
    m.harmonics.clear();
    m.thd_current.clear();
    m.active_power_peak = None;
    m.demand_peak = None;
    m.voltage_verdict = Verdict::NoData;
    m.harmonic_verdict = Verdict::NoData;
    for d in &mut m.daily {
        d.phases.truncate(1);
        d.phases[0].phase = "l1".into();
        d.phases[0].min = None;
        d.phases[0].mean = None;
        d.phases[0].max = None;
        d.phases[0].rate = None;
        d.phases[0].thd_cp95 = None;
        d.phases[0].thd_max = None;
        d.active_power_peak = None;
        d.demand_peak = None;
    }
    let r = render(&s);
    for want in [
        "The period has not ended yet",
        "single-phase",
        "Voltage verdict:   NO DATA",
        "No data.",
        "No voltage THD (THDu) data.",
        "No individual harmonic order data.",
        "No events in this period.",
    ] {
        assert!(r.text.contains(want), "text lacks {want:?}:\n{}", r.text);
    }
    assert!(!r.text.contains("Suspensions") && !r.text.contains("Maximum demand"));
    assert!(!r.text.contains("NaN") && !r.html.contains("NaN"));
    let rows = read_csv(r.csv.trim_start_matches('\u{feff}'));
    assert_eq!(rows.len(), 1 + 31 * (3 + 1));
    let empty = rows.iter().find(|r| r[1] == "HB-0.4KV-LV2").unwrap();
    assert_eq!(&empty[7..], ["", "", "", "", "", "", "", "", ""]);
}

#[test]
fn no_events_and_unreadable_rows_are_said() {
    let mut s = sample(Language::ZhCn);
    s.events.clear();
    s.unreadable_rows = 2;
    let r = render(&s);
    assert!(r.text.contains("本周期内没有事件。"));
    assert!(r.text.contains("有 2 条统计记录无法读取"));
    s.language = Language::En;
    let r = render(&s);
    assert!(r.text.contains("No events in this period."));
    assert!(r.text.contains("2 ledger rows could not be read"));
}

#[test]
fn csv_parses_back_with_bom_header_and_a_row_per_meter_day_phase() {
    let s = sample(Language::ZhCn);
    let r = render(&s);
    assert_eq!(r.csv_name, "pqwatch-C001-2026-10.csv");
    let body = r.csv.strip_prefix('\u{feff}').expect("BOM");
    assert!(r.csv.as_bytes().starts_with(&[0xEF, 0xBB, 0xBF]));
    let rows = read_csv(body);
    assert_eq!(rows[0], CSV_HEADER);
    assert_eq!(rows.len(), 1 + 31 * (3 + 3));
    assert!(rows.iter().all(|r| r.len() == CSV_HEADER.len()));
    let first = &rows[1];
    assert_eq!(&first[..4], ["2026-10-01", "HB-10KV-IN1", "l1_l2", "1440"]);
    let d0 = &s.meters[0].daily[0];
    assert_eq!(first[8], format!("{:.2}", d0.phases[0].min.unwrap()));
    assert_eq!(
        first[13],
        format!("{:.2}", d0.active_power_peak.as_ref().unwrap().value)
    );
    let last = rows.last().unwrap();
    assert_eq!(&last[..3], ["2026-10-31", "HB-0.4KV-LV2", "l3"]);
    // The outage day has fewer monitored minutes.
    assert!(rows.iter().any(|r| r[1] == "HB-10KV-IN1" && r[4] == "1343"));
}

#[test]
fn csv_quotes_and_defuses_configured_strings() {
    let mut s = sample(Language::En);
    s.meters[0].id = "=cmd|' /C calc'!A0, \"M1\"\r\nx".into();
    s.meters[0].daily[0].phases[0].rate = None;
    s.customer_id = "C 001/../x".into();
    let r = render(&s);
    assert_eq!(r.csv_name, "pqwatch-C_001_x-2026-10.csv");
    let rows = read_csv(r.csv.trim_start_matches('\u{feff}'));
    assert_eq!(rows[1][1], "'=cmd|' /C calc'!A0, \"M1\" x");
    assert_eq!(rows[1][7], "", "None is an empty cell");
    assert_eq!(rows.len(), 1 + 31 * 6);
}

#[test]
fn text_columns_align_with_cjk_counted_double() {
    assert_eq!(width("电压ab"), 6);
    assert_eq!(width("（）：，"), 8);
    assert_eq!(width("—–…"), 3);
    let t = Table::data(
        vec!["相别".into(), "Value".into()],
        vec![Align::Left, Align::Right],
        vec![
            vec![Cell::new("合计"), Cell::new("1")],
            vec![Cell::new("L1-L2"), Cell::new("22")],
        ],
    );
    let mut out = String::new();
    text_table(&mut out, &t, true);
    let lines: Vec<&str> = out.lines().collect();
    // Every line ends at the same display column (right-aligned figures).
    let ends: Vec<usize> = lines.iter().map(|l| width(l)).collect();
    assert!(ends.iter().all(|&e| e == ends[0]), "{out}");
    assert_eq!(lines[2], "  合计       1");
    // Wrapping breaks between CJK characters, never before "，".
    let w = wrap("电压合格率，按一分钟平均值统计", 10);
    assert!(w.iter().all(|l| width(l) <= 10), "{w:?}");
    assert!(w.iter().all(|l| !l.starts_with('，')), "{w:?}");
    assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
}

#[test]
fn text_lines_stay_readable_in_a_terminal() {
    for lang in [Language::ZhCn, Language::En] {
        let r = render(&sample(lang));
        for l in r.text.lines() {
            assert!(width(l) <= TEXT_WIDTH, "{} columns: {l}", width(l));
        }
        assert!(r.text.ends_with("-- \npqwatch\n"));
    }
}

#[test]
fn html_is_a_mail_safe_document() {
    let r = render(&sample(Language::ZhCn));
    // Outlook-only markup (conditional comments) aside.
    let mut h = r.html.clone();
    while let Some(i) = h.find("<!--[if mso]>") {
        let end = i + h[i..].find("<![endif]-->").unwrap() + "<![endif]-->".len();
        h.replace_range(i..end, "");
    }
    let h = &h;
    assert!(h.starts_with("<!DOCTYPE html>\n<html lang=\"zh-CN\""));
    assert!(h.contains("<meta charset=\"utf-8\">"));
    assert!(h.contains("max-width:760px"));
    assert!(
        h.contains("'Microsoft YaHei','Noto Sans CJK SC','WenQuanYi Micro Hei',Arial,sans-serif")
    );
    for banned in [
        "<img",
        "<svg",
        "<script",
        "<style",
        "display:flex",
        "display:grid",
        "position:",
        "<canvas",
        "<link",
    ] {
        assert!(!h.contains(banned), "{banned}");
    }
    // Every element in the body carries its own style, but for empty
    // spacer cells (nothing in them to style).
    let body = &h[h.find("<body").unwrap()..];
    let mut rest = body;
    let mut spacers = 0;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with('/') || rest.starts_with('!') {
            continue;
        }
        let tag_end = rest.find('>').unwrap();
        let tag = &rest[..tag_end];
        if tag.starts_with("td") && rest[tag_end + 1..].starts_with("</td>") {
            spacers += 1;
            continue;
        }
        assert!(tag.contains("style=\""), "<{tag}> without style");
    }
    assert!(spacers > 0, "the charts have spacer cells");
}

/// Header lines of a formatted message (unfolded), lower-case names.
fn header_names(raw: &str) -> Vec<String> {
    let head = raw.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
        .collect()
}

#[test]
fn mime_message_has_alternatives_and_the_csv_attachment() {
    let r = render(&hostile());
    let from: Mailbox = "pqwatch <pq@grid.example>".parse().unwrap();
    let to: Vec<Mailbox> = vec![
        "Ops <ops@steel.example>".parse().unwrap(),
        "energy@steel.example".parse().unwrap(),
    ];
    let msg = email(
        &from,
        &to,
        &r,
        "<pqwatch.report.C001.2026-10.1@grid.example>",
        SystemTime::UNIX_EPOCH,
    )
    .unwrap();
    let raw = String::from_utf8(msg.formatted()).unwrap();
    let names = header_names(&raw);
    assert!(!names.iter().any(|n| n == "bcc"), "{names:?}");
    for want in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    assert!(raw.contains("Message-ID: <pqwatch.report.C001.2026-10.1@grid.example>"));
    let mixed = raw.find("multipart/mixed").expect("mixed");
    let alt = raw.find("multipart/alternative").expect("alternative");
    let plain = raw.find("text/plain").expect("text part");
    let html = raw.find("text/html").expect("html part");
    let csv = raw.find("text/csv").expect("csv part");
    assert!(
        mixed < alt && alt < plain && plain < html && html < csv,
        "part order"
    );
    assert!(
        raw.contains("attachment; filename=\"pqwatch-C001-2026-10.csv\""),
        "{raw:.3000}"
    );
    let env: Vec<String> = msg.envelope().to().iter().map(|a| a.to_string()).collect();
    assert_eq!(env, ["ops@steel.example", "energy@steel.example"]);
    // The attachment decodes to the CSV byte for byte.
    let part = &raw[csv..];
    let b64: String = part
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .split("\r\n--")
        .next()
        .unwrap()
        .split("\r\n")
        .collect();
    assert_eq!(decode_base64(&b64), r.csv.as_bytes());
    assert!(email(&from, &[], &r, "<x@y>", SystemTime::UNIX_EPOCH).is_err());
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        let k = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..=k]);
    }
    out
}

#[test]
fn html_stays_under_gmails_clipping_size() {
    // Gmail clips a message body over ~102 KB ("[Message clipped]").
    for lang in [Language::ZhCn, Language::En] {
        let r = render(&sample(lang));
        assert!(r.html.len() < 100_000, "{} bytes", r.html.len());
    }
}

#[test]
fn big_reports_give_up_chart_detail_before_gmail_would_clip_them() {
    let mut s = sample(Language::ZhCn);
    let full = render(&s).html;
    assert!(full.len() <= HTML_BUDGET, "{}", full.len());
    // Per chart: the band above, between the 31 days and in the legend;
    // a bar per phase.
    assert_eq!(full.matches(BAND_BG).count(), 2 * (1 + 31 + 1));
    assert!(!full.contains(ALL_PHASES) && !full.contains("图表从略"));
    // Three meters: the charts turn lean, last first (one bar a day,
    // the band above and below); here all three.
    s.meters.push(s.meters[0].clone());
    let lean = render(&s).html;
    assert!(lean.len() <= HTML_BUDGET, "{}", lean.len());
    assert!(lean.contains("各相合并") && !lean.contains("图表从略"));
    assert_eq!(lean.matches(BAND_BG).count(), 3 * 3);
    // Four: the last lean charts are left out with a note.
    s.meters.push(s.meters[1].clone());
    let r = render(&s);
    assert!(r.html.len() <= HTML_BUDGET, "{}", r.html.len());
    assert!(r.html.contains("各相合并") && r.html.contains("图表从略"));
    // Twelve: the tables alone are over; every chart is left out, and
    // the text keeps every figure.
    for _ in 0..8 {
        s.meters.push(s.meters[1].clone());
    }
    let r = render(&s);
    assert_eq!(r.html.matches("图表从略").count(), 12);
    assert_eq!(r.text.matches("* 每日电压").count(), 12);
}

#[test]
fn grid_spans_fill_the_grid_and_keep_thin_marks() {
    let segs = bar_segments(
        90.0,
        110.0,
        Some((95.0, 105.0)),
        Some((97.0, 100.0, 108.0)),
        "#111",
    );
    let spans = grid_spans(&segs, CHART_COLUMNS);
    assert_eq!(spans.iter().map(|s| s.0).sum::<usize>(), CHART_COLUMNS);
    assert_eq!(
        spans.iter().map(|s| s.1).collect::<Vec<_>>(),
        segs.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    // A mark thinner than a column still gets one.
    let thin = [(50.0, BLANK), (0.1, MEAN_MARK), (49.9, BLANK)];
    let spans = grid_spans(&thin, 10);
    assert_eq!(spans, [(5, BLANK), (1, MEAN_MARK), (4, BLANK)]);
}

#[test]
fn bars_cover_the_scale_and_mark_what_is_outside_the_band() {
    let segs = bar_segments(
        90.0,
        110.0,
        Some((95.0, 105.0)),
        Some((97.0, 100.0, 108.0)),
        "#111",
    );
    let total: f64 = segs.iter().map(|s| s.0).sum();
    assert!((total - 100.0).abs() < 0.2, "{segs:?}");
    let colours: Vec<&str> = segs.iter().map(|s| s.1).collect();
    assert_eq!(
        colours,
        [BLANK, "#111", MEAN_MARK, "#111", OUT_OF_BAND, BLANK]
    );
    // 97 V on a 90–110 V scale starts 35 % in; 105 V ends the band at 75 %.
    assert!((segs[0].0 - 35.0).abs() < 0.01, "{segs:?}");
    let to_band_end: f64 = segs[..4].iter().map(|s| s.0).sum();
    assert!((to_band_end - 75.0).abs() < 0.01, "{segs:?}");
    let empty = bar_segments(90.0, 110.0, Some((95.0, 105.0)), None, "#111");
    assert_eq!(empty, [(100.0, BLANK)]);
    let band = band_segments(90.0, 110.0, Some((95.0, 105.0)));
    assert_eq!(
        band.iter().map(|s| s.1).collect::<Vec<_>>(),
        [BLANK, BAND_BG, BLANK]
    );
}
