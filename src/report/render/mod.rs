//! Rendering of a customer report: a [`Report`] (every figure already
//! computed by `report::model`) → subject, HTML, plain text and a CSV of the
//! daily figures, in zh-CN or en; and the MIME message around them. Pure.
//!
//! The content is laid out once, as a list of `Block`s (`layout`), which two writers
//! turn into plain text and HTML, so both alternatives say the same in the
//! same order:
//! - text: for a monospace client; columns aligned with CJK characters
//!   counted two columns wide, lines kept within 78 columns where the
//!   content allows;
//! - HTML: e-mail HTML that Gmail and Outlook show as a browser does: nested
//!   tables, an inline `style` on every element, no images, SVG, scripts,
//!   flex, grid or positioning. Tables are shaped to fit a 375 px phone
//!   (phases as columns, events in three columns), and the daily voltage
//!   chart is made of table cells whose widths are the bars; the text shows
//!   the chart's figures as a table. Gmail clips a body over ~102 KB, so
//!   the HTML stays under `html::HTML_BUDGET`: charts turn lean (one bar a day
//!   for all phases), then are left out with a note, last meter first.
//!
//! Files, in the order a report is made:
//! - here: [`render`], the `Ctx` (language, units) and number formatting;
//! - `layout`: the blocks, tables and charts (data);
//! - `summary`, `meter`, `distortion`, `sections`: the content, section by
//!   section (the summary; each meter's voltage; harmonics; events,
//!   suspensions, demand and notes);
//! - `text`, `html` (with `style` and `chart`): the two writers;
//! - `csv`: the attachment; `mime`: the message around it ([`email`]);
//! - `sample`: a filled report for tests (`fixtures` feature), not in the
//!   daemon.
//!
//! Every configured or measured string passes through [`clean`] (no control
//! character reaches a header or a line) and is HTML-escaped. Nothing is
//! computed here beyond display sums (the 10-minute totals) and picking
//! what the summary names.

mod chart;
mod csv;
mod distortion;
mod html;
mod layout;
mod meter;
mod mime;
#[cfg(any(test, feature = "fixtures"))]
mod sample;
mod sections;
mod style;
mod summary;
#[cfg(test)]
mod tests;
mod text;

pub use csv::CSV_HEADER;
pub use mime::email;
#[cfg(any(test, feature = "fixtures"))]
pub use sample::sample;

use super::ledger::Peak;
use super::model::{
    DemandSection, DistortionRow, LongVoltageRow, MeterReport, Report, SuspensionRow, Verdict,
    VoltageRow,
};
use crate::calendar::PeriodKind;
use crate::config::sections::Language;
use crate::mail::text::clean;
use csv::{csv, csv_name};
use html::html;
use layout::Block;
use meter::meter;
use sections::{demand, events, notes, suspensions};
use summary::{header, subject};
use text::text;

/// A rendered report, ready to be wrapped into MIME by [`email`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// UTF-8 with a BOM, CRLF line ends.
    pub csv: String,
    pub csv_name: String,
}

/// Shown for a missing figure (None, NaN).
const DASH: &str = "—";

/// Subject, text, HTML and CSV of a report, in the customer's language.
pub fn render(r: &Report) -> Rendered {
    let ctx = Ctx::new(r);
    let subject = subject(&ctx);
    let csv_name = csv_name(r);
    let blocks = blocks(&ctx, &csv_name);
    Rendered {
        text: text(&blocks, ctx.zh),
        html: html(&ctx, &subject, &blocks),
        csv: csv(r),
        subject,
        csv_name,
    }
}

fn blocks(ctx: &Ctx, csv_name: &str) -> Vec<Block> {
    let mut b = Vec::new();
    header(ctx, &mut b);
    for m in &ctx.r.meters {
        meter(ctx, m, &mut b);
    }
    events(ctx, &mut b);
    suspensions(ctx, &mut b);
    demand(ctx, &mut b);
    notes(ctx, csv_name, &mut b);
    b
}

struct Ctx<'a> {
    r: &'a Report,
    zh: bool,
    /// Whole period within one calendar year: tables show "MM-DD HH:MM".
    short_dates: bool,
}

impl<'a> Ctx<'a> {
    fn new(r: &'a Report) -> Ctx<'a> {
        let last = r.period.to.yesterday().unwrap_or(r.period.to);
        Ctx {
            r,
            zh: r.language == Language::ZhCn,
            short_dates: r.period.from.year() == last.year(),
        }
    }

    fn lang(&self) -> Language {
        self.r.language
    }

    fn t(&self, zh: &'static str, en: &'static str) -> &'static str {
        if self.zh { zh } else { en }
    }

    fn strftime(&self, ms: i64, fmt: &str) -> String {
        match jiff::Timestamp::from_millisecond(ms) {
            Ok(t) => t
                .to_zoned_datetime(self.r.tz.clone())
                .strftime(fmt)
                .to_string(),
            Err(_) => DASH.into(),
        }
    }

    /// "2026-10-05 14:32", local.
    fn time(&self, ms: i64) -> String {
        self.strftime(ms, "%Y-%m-%d %H:%M")
    }

    /// "10-05 14:32" in tables (the year is in the header).
    fn when(&self, ms: i64) -> String {
        if self.short_dates {
            self.strftime(ms, "%m-%d %H:%M")
        } else {
            self.time(ms)
        }
    }

    fn verdict(&self, v: Verdict) -> &'static str {
        match v {
            Verdict::Pass => self.t("合格", "PASS"),
            Verdict::Fail => self.t("不合格", "FAIL"),
            Verdict::NoData => self.t("无数据", "NO DATA"),
            Verdict::Insufficient => self.t("数据不足", "INSUFFICIENT DATA"),
        }
    }

    /// A limit's note or an event's source, in the report's language.
    fn source(&self, s: &str) -> String {
        if self.zh {
            clean(&crate::quality::limits::source_zh(s))
        } else {
            clean(s)
        }
    }

    /// "l1_l2" → "L1-L2"; "total" → "合计" / "Total".
    fn phase(&self, p: &str) -> String {
        if p == "total" {
            self.t("合计", "Total").into()
        } else {
            clean(&p.to_uppercase().replace('_', "-"))
        }
    }

    /// "(x)" with full-width parentheses in Chinese.
    fn paren(&self, s: &str) -> String {
        if self.zh {
            format!("（{s}）")
        } else {
            format!(" ({s})")
        }
    }

    /// "Label: " / "标签："
    fn colon(&self) -> &'static str {
        self.t("：", ": ")
    }

    fn list_sep(&self) -> &'static str {
        self.t("，", ", ")
    }

    /// "华北钢铁 (C001)"; the name cut to `max` characters.
    fn customer(&self, max: usize) -> String {
        let name = cut(&clean(&self.r.customer_name), max);
        let id = clean(&self.r.customer_id);
        if name.is_empty() || name == id {
            id
        } else {
            format!("{name}{}", self.paren(&id))
        }
    }

    /// "电压质量月报 2026-10" / "Voltage quality report 2026-10".
    fn title(&self) -> String {
        let label = self.r.period.label();
        if self.zh {
            let kind = match self.r.period.kind {
                Some(PeriodKind::Month) => "月报",
                Some(PeriodKind::Week) => "周报",
                Some(PeriodKind::Day) => "日报",
                None => "报告",
            };
            format!("电压质量{kind} {label}")
        } else {
            format!("Voltage quality report {label}")
        }
    }

    /// A peak with its unit and local time.
    fn peak(&self, p: Option<&Peak>) -> String {
        match p {
            Some(p) if p.value.is_finite() => {
                format!(
                    "{}{}",
                    power(p.value, &p.unit),
                    self.paren(&self.time(p.at_ms))
                )
            }
            _ => DASH.into(),
        }
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Fixed decimals; "—" for NaN; never "-0.00".
fn fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return DASH.into();
    }
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// "95.00 %".
fn pct(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{} %", fixed(v, 2)),
        _ => DASH.into(),
    }
}

/// A rate ("99.99 %"), cut to two decimals, never rounded up: a period
/// with minutes outside the band never reads "100.00 %".
fn rate(v: Option<f64>) -> String {
    pct(v.map(super::model::truncate2))
}

/// A percentage figure without the sign (column headers carry "%").
fn pct_num(v: Option<f64>) -> String {
    v.map_or_else(|| DASH.into(), |v| fixed(v, 2))
}

/// Up to three decimals, trailing zeros dropped: 100, 0.4, 1.05.
fn trim_num(v: f64) -> String {
    let s = fixed(v, 3);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// "5876.2 kW".
fn power(v: f64, unit: &str) -> String {
    if v.is_finite() {
        format!("{} {}", fixed(v, 1), clean(unit))
    } else {
        DASH.into()
    }
}

/// How a meter's voltages are shown: V with one decimal at low voltage,
/// kV with three (1 V resolution) from 1 kV nominal up.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Volts {
    kv: bool,
}

impl Volts {
    fn of(m: &MeterReport) -> Volts {
        Volts {
            kv: m.nominal_voltage >= 1000.0,
        }
    }

    fn unit(self) -> &'static str {
        if self.kv { "kV" } else { "V" }
    }

    fn num(self, v: f64) -> String {
        if self.kv {
            fixed(v / 1000.0, 3)
        } else {
            fixed(v, 1)
        }
    }

    fn opt(self, v: Option<f64>) -> String {
        v.map_or_else(|| DASH.into(), |v| self.num(v))
    }

    fn with_unit(self, v: f64) -> String {
        if v.is_finite() {
            format!("{} {}", self.num(v), self.unit())
        } else {
            DASH.into()
        }
    }
}

/// "10 kV" / "400 V".
fn nominal(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} kV", trim_num(v / 1000.0))
    } else {
        format!("{} V", trim_num(v))
    }
}

/// A band in V, or None when it is not a usable band.
fn band_of(row: &VoltageRow) -> Option<(f64, f64)> {
    let (l, u) = (row.lower_v, row.upper_v);
    (l.is_finite() && u.is_finite() && u > l && l > 0.0).then_some((l, u))
}

/// The "total" row, or the only phase's.
fn total_row(m: &MeterReport) -> Option<&VoltageRow> {
    m.voltage
        .iter()
        .find(|r| r.phase == "total")
        .or_else(|| (m.voltage.len() == 1).then(|| &m.voltage[0]))
}

fn long_totals(rows: &[LongVoltageRow]) -> (u32, u32) {
    rows.iter()
        .fold((0, 0), |(n, o), r| (n + r.intervals, o + r.outside))
}

/// What a Plt row is judged on: the worst week's 95 % value (EN 50160) or
/// the maximum (GB/T 12326).
fn flicker_figure(r: &DistortionRow) -> Option<f64> {
    match &r.assessed {
        Some(a) => a.weekly_p95.as_ref().map(|x| x.0),
        None => r.max.map(|x| x.0),
    }
}

fn suspension_unit(s: &SuspensionRow) -> &str {
    s.peak.as_ref().map_or("kVA", |p| p.unit.as_str())
}

/// "126 kW (120 kW × 1.05)": the limit with the contract and its factor.
fn demand_limit(d: &DemandSection) -> String {
    format!(
        "{} ({} × {})",
        power(d.limit_kw, "kW"),
        power(d.contracted_kw, "kW"),
        trim_num(d.factor)
    )
}

/// The completeness cell: the share with data, the outage minutes, and
/// why a verdict is withheld when the data do not suffice.
fn completeness_lines(ctx: &Ctx, m: &MeterReport, voltage: Option<f64>) -> Vec<String> {
    let mut out = vec![rate(m.data_completeness.or(voltage))];
    if m.outage_minutes > 0 {
        out.push(if ctx.zh {
            format!("停电 {} 分钟（不计入监测时间）", m.outage_minutes)
        } else {
            format!("{} outage minutes (not monitored time)", m.outage_minutes)
        });
    }
    if m.voltage_verdict == Verdict::Insufficient {
        let min = pct(Some(ctx.r.min_completeness));
        out.push(if ctx.zh {
            format!("低于 {min}：不作结论")
        } else {
            format!("below {min}: no verdict")
        });
    }
    out
}
