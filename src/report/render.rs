//! Rendering of a customer report: a [`Report`] (every figure already
//! computed by `report::model`) → subject, HTML, plain text and a CSV of the
//! daily figures, in zh-CN or en; and the MIME message around them. Pure.
//!
//! The content is laid out once, as a list of [`Block`]s, which two writers
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
//!   the HTML stays under [`HTML_BUDGET`]: charts turn lean (one bar a day
//!   for all phases), then are left out with a note, last meter first.
//!
//! Every configured or measured string passes through [`clean`] (no control
//! character reaches a header or a line) and is HTML-escaped. Nothing is
//! computed here beyond display sums (the 10-minute totals) and picking
//! what the summary names.

use super::ledger::Peak;
use super::model::{
    DistortionRow, LongVoltageRow, MeterReport, Report, SuspensionRow, Verdict, VoltageRow,
};
use super::schedule::{PeriodKind, day_key};
use crate::config::sections::Language;
use crate::notify::render::{automated, clean, duration, esc, kind_name};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart};
use std::fmt::Write as _;
use std::time::SystemTime;

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

/// The CSV's columns; stable, English, whatever the report's language.
pub const CSV_HEADER: [&str; 16] = [
    "date",
    "meter",
    "phase",
    "expected_min",
    "monitored_min",
    "above_min",
    "below_min",
    "qualification_rate_pct",
    "voltage_min",
    "voltage_mean",
    "voltage_max",
    "thd_cp95_pct",
    "thd_max_pct",
    "active_power_peak_kw",
    "demand_peak_kw",
    "outage_min",
];

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

/// multipart/mixed: [ multipart/alternative [text/plain, text/html],
/// text/csv attachment (`csv_name`) ], To every recipient, with the given
/// Message-ID (kept across retries) and `Auto-Submitted` so auto-responders
/// stay quiet. Headers go through lettre's builder only (RFC 2047 for
/// non-ASCII), after [`clean`].
pub fn email(
    from: &Mailbox,
    to: &[Mailbox],
    rendered: &Rendered,
    message_id: &str,
    date: SystemTime,
) -> Result<lettre::Message, String> {
    if to.is_empty() {
        return Err("a report needs at least one recipient".into());
    }
    let id = clean(message_id).replace(' ', "");
    let id = match id.as_str() {
        "" => None,
        s if s.starts_with('<') => Some(id),
        s => Some(format!("<{s}>")),
    };
    let mut b = automated(from, &clean(&rendered.subject), date).message_id(id);
    for t in to {
        b = b.to(t.clone());
    }
    // Base64 keeps the BOM and the CRLFs byte for byte.
    let body = Body::new_with_encoding(
        rendered.csv.clone().into_bytes(),
        ContentTransferEncoding::Base64,
    )
    .map_err(|_| "CSV attachment cannot be encoded".to_string())?;
    let csv_type =
        ContentType::parse("text/csv; charset=utf-8").map_err(|e| format!("text/csv: {e}"))?;
    let attachment =
        Attachment::new(safe_name(&rendered.csv_name, "report.csv")).body(body, csv_type);
    b.multipart(
        MultiPart::mixed()
            .multipart(MultiPart::alternative_plain_html(
                rendered.text.clone(),
                rendered.html.clone(),
            ))
            .singlepart(attachment),
    )
    .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- wording

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

// ---------------------------------------------------------------- numbers

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

// ---------------------------------------------------------------- layout model

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tone {
    Plain,
    Pass,
    Fail,
    NoData,
}

impl From<Verdict> for Tone {
    fn from(v: Verdict) -> Tone {
        match v {
            Verdict::Pass => Tone::Pass,
            Verdict::Fail => Tone::Fail,
            Verdict::NoData | Verdict::Insufficient => Tone::NoData,
        }
    }
}

/// A table cell: one or more lines (the first is the figure, the others
/// qualify it: a time, a share, a source).
#[derive(Debug, Clone)]
struct Cell {
    lines: Vec<String>,
    tone: Tone,
    strong: bool,
    /// Keep each line on one line in HTML (times, verdict words).
    nowrap: bool,
}

impl Cell {
    fn new(s: impl Into<String>) -> Cell {
        Cell {
            lines: vec![s.into()],
            tone: Tone::Plain,
            strong: false,
            nowrap: false,
        }
    }

    fn lines(lines: Vec<String>) -> Cell {
        Cell {
            lines,
            tone: Tone::Plain,
            strong: false,
            nowrap: false,
        }
    }

    fn verdict(ctx: &Ctx, v: Verdict) -> Cell {
        Cell {
            lines: vec![ctx.verdict(v).into()],
            tone: v.into(),
            strong: true,
            nowrap: true,
        }
    }

    fn tone(mut self, t: Tone) -> Cell {
        self.tone = t;
        self
    }

    fn strong(mut self) -> Cell {
        self.strong = true;
        self
    }

    fn nowrap(mut self) -> Cell {
        self.nowrap = true;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Header row, then rows.
    Data,
    /// Two columns, label → value, no header.
    Fields,
}

#[derive(Debug, Clone)]
struct Table {
    shape: Shape,
    head: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<Cell>>,
    /// A blank line between rows in text (rows of several lines).
    spaced: bool,
    /// Columns holding configured strings (ids, notes, sources), which may
    /// be broken anywhere in HTML rather than widen the table. Other
    /// columns break only between words, so figures and labels stay whole.
    breakable: Vec<bool>,
}

impl Table {
    fn data(head: Vec<String>, align: Vec<Align>, rows: Vec<Vec<Cell>>) -> Table {
        let n = head.len();
        Table {
            shape: Shape::Data,
            head,
            align,
            rows,
            spaced: false,
            breakable: vec![false; n],
        }
    }

    fn fields(rows: Vec<(String, Cell)>) -> Table {
        Table {
            shape: Shape::Fields,
            head: Vec::new(),
            align: vec![Align::Left, Align::Left],
            rows: rows
                .into_iter()
                .map(|(k, v)| vec![Cell::new(k), v])
                .collect(),
            spaced: false,
            breakable: vec![false, true],
        }
    }

    /// A label column, then figures.
    fn transposed(head: Vec<String>, rows: Vec<(String, Vec<Cell>)>) -> Table {
        let n = head.len();
        let mut align = vec![Align::Left];
        align.extend(std::iter::repeat_n(Align::Right, n.saturating_sub(1)));
        let rows = rows
            .into_iter()
            .map(|(label, cells)| {
                let mut row = vec![Cell::new(label)];
                row.extend(cells);
                row
            })
            .collect();
        Table::data(head, align, rows)
    }
}

/// One day of the chart: its label, and per phase (min, mean, max) in V.
type ChartDay = (String, Vec<Option<(f64, f64, f64)>>);

/// Daily min / mean / max per phase, as bars on a common scale.
#[derive(Debug, Clone)]
struct Chart {
    volts: Volts,
    phases: Vec<String>,
    /// Per phase, the band (V).
    bands: Vec<Option<(f64, f64)>>,
    lo: f64,
    hi: f64,
    days: Vec<ChartDay>,
    date_head: String,
    legend_mean: String,
    legend_out: String,
    legend_band: String,
    /// Said instead of the chart when the mail would be too big for it.
    omitted: String,
    /// The legend of a bar for all phases together.
    all_phases: String,
}

impl Chart {
    /// All phases as one: per day the lowest minimum, the highest maximum
    /// and the mean of the means; the first phase's band.
    fn combined(&self) -> Chart {
        let days = self
            .days
            .iter()
            .map(|(label, vals)| {
                let have: Vec<&(f64, f64, f64)> = vals.iter().flatten().collect();
                let v = (!have.is_empty()).then(|| {
                    let lo = have.iter().map(|v| v.0).fold(f64::INFINITY, f64::min);
                    let hi = have.iter().map(|v| v.2).fold(f64::NEG_INFINITY, f64::max);
                    let mean = have.iter().map(|v| v.1).sum::<f64>() / have.len() as f64;
                    (lo, mean, hi)
                });
                (label.clone(), vec![v])
            })
            .collect();
        Chart {
            phases: vec![self.all_phases.clone()],
            bands: vec![self.bands.iter().flatten().next().copied()],
            days,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone)]
enum Block {
    Title(String),
    Subtitle(String),
    /// The overall verdict, prominently: its line, and the verdict for
    /// the colour.
    Overall(String, Verdict),
    H2(String),
    H3(String),
    P(String),
    /// Small print; a tone marks a warning.
    Note(String, Tone),
    /// A table's caption (bold).
    Caption(String),
    Table(Table),
    Chart(Chart),
}

// ---------------------------------------------------------------- content

/// `[pqwatch] 电压质量月报 2026-10 — 华北钢铁 (C001): 不合格`; ASCII
/// parentheses in both languages, as `docs/reports.md` shows.
fn subject(ctx: &Ctx) -> String {
    let r = ctx.r;
    let name = cut(&clean(&r.customer_name), 60);
    let id = clean(&r.customer_id);
    let customer = if name.is_empty() || name == id {
        id
    } else {
        format!("{name} ({id})")
    };
    clean(&format!(
        "[pqwatch] {} — {customer}: {}",
        ctx.title(),
        ctx.verdict(r.verdicts.overall)
    ))
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

fn header(ctx: &Ctx, b: &mut Vec<Block>) {
    let r = ctx.r;
    b.push(Block::Title(ctx.title()));
    b.push(Block::Subtitle(ctx.customer(120)));
    let last = r.period.to.yesterday().unwrap_or(r.period.to);
    let dates = if ctx.zh {
        format!("{} 至 {}", day_key(r.period.from), day_key(last))
    } else {
        format!("{} – {}", day_key(r.period.from), day_key(last))
    };
    let open = r.events.iter().filter(|e| e.open).count();
    let events = match (open, ctx.zh) {
        (0, _) => r.events.len().to_string(),
        (o, true) => format!("{}（{o} 个持续中）", r.events.len()),
        (o, false) => format!("{} ({o} open)", r.events.len()),
    };
    let meters: Vec<String> = r.meters.iter().map(|m| clean(&m.id)).collect();
    let rows = vec![
        (
            ctx.t("客户", "Customer").into(),
            Cell::new(ctx.customer(120)),
        ),
        (
            ctx.t("统计周期", "Period").into(),
            Cell::lines(vec![r.period.label(), dates]),
        ),
        (
            ctx.t("时区", "Time zone").into(),
            Cell::new(clean(&r.tz_name)),
        ),
        (
            ctx.t("生成时间", "Generated").into(),
            Cell::new(ctx.time(r.generated_ms)),
        ),
        (
            ctx.t("合同容量", "Contracted capacity").into(),
            Cell::new(
                r.contracted_kva
                    .map_or_else(|| DASH.into(), |k| power(k, "kVA")),
            ),
        ),
        (
            ctx.t("监测点", "Meters").into(),
            Cell::new(if meters.is_empty() {
                DASH.into()
            } else {
                meters.join(ctx.list_sep())
            }),
        ),
        (ctx.t("事件", "Events").into(), Cell::new(events)),
    ];
    b.push(Block::Table(Table::fields(rows)));
    if r.generated_ms < r.to_ms {
        b.push(Block::Note(
            ctx.t(
                "统计周期尚未结束：数据截至生成时间。",
                "The period has not ended yet: figures are up to the time this report was generated.",
            )
            .into(),
            Tone::Plain,
        ));
    }
    b.push(Block::Overall(
        format!(
            "{}{}{}",
            ctx.t("总体结论", "Overall verdict"),
            ctx.colon(),
            ctx.verdict(r.verdicts.overall)
        ),
        r.verdicts.overall,
    ));
    let mut rows = vec![vec![
        Cell::new(ctx.t("电压偏差", "Voltage")).strong().nowrap(),
        Cell::verdict(ctx, r.verdicts.voltage),
        Cell::new(voltage_summary(ctx)),
    ]];
    rows.push(vec![
        Cell::new(ctx.t("谐波", "Harmonics")).strong().nowrap(),
        Cell::verdict(ctx, r.verdicts.harmonics),
        Cell::new(harmonic_summary(ctx)),
    ]);
    if let Some(v) = r.verdicts.unbalance {
        rows.push(vec![
            Cell::new(ctx.t("三相不平衡", "Unbalance"))
                .strong()
                .nowrap(),
            Cell::verdict(ctx, v),
            Cell::new(unbalance_summary(ctx)),
        ]);
    }
    if let Some(v) = r.verdicts.frequency {
        rows.push(vec![
            Cell::new(ctx.t("频率偏差", "Frequency")).strong().nowrap(),
            Cell::verdict(ctx, v),
            Cell::new(frequency_summary(ctx)),
        ]);
    }
    if let Some(v) = r.verdicts.flicker {
        rows.push(vec![
            Cell::new(ctx.t("闪变", "Flicker")).strong().nowrap(),
            Cell::verdict(ctx, v),
            Cell::new(flicker_summary(ctx)),
        ]);
    }
    if let Some(v) = r.verdicts.suspension {
        rows.push(vec![
            Cell::new(ctx.t("暂停用电", "Suspension")).strong().nowrap(),
            Cell::verdict(ctx, v),
            Cell::new(suspension_summary(ctx)),
        ]);
    }
    if let (Some(v), Some(d)) = (r.verdicts.demand, &r.demand) {
        let text = if ctx.zh {
            format!(
                "最大需量 {}，限值 {}；超限 {} 次",
                d.peak
                    .as_ref()
                    .map_or_else(|| DASH.into(), |p| power(p.value, &p.unit)),
                demand_limit(d),
                d.exceedances
            )
        } else {
            format!(
                "peak {}, limit {}; {} exceedance{}",
                d.peak
                    .as_ref()
                    .map_or_else(|| DASH.into(), |p| power(p.value, &p.unit)),
                demand_limit(d),
                d.exceedances,
                if d.exceedances == 1 { "" } else { "s" }
            )
        };
        rows.push(vec![
            Cell::new(ctx.t("最大需量", "Demand")).strong().nowrap(),
            Cell::verdict(ctx, v),
            Cell::new(text),
        ]);
    }
    let mut summary = Table::data(
        vec![
            ctx.t("项目", "Section").into(),
            ctx.t("结论", "Verdict").into(),
            ctx.t("说明", "Summary").into(),
        ],
        vec![Align::Left; 3],
        rows,
    );
    summary.breakable = vec![false, false, true];
    b.push(Block::Table(summary));
}

/// The share the voltage verdict is on: the total qualification rate (or
/// the worst phase's, `[reports] phase_rule`), or for meters judged on
/// 10-minute means the share of those in the band.
fn voltage_share(m: &MeterReport) -> Option<f64> {
    m.voltage_share
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

fn voltage_summary(ctx: &Ctx) -> String {
    let r = ctx.r;
    if r.meters.is_empty() {
        return ctx.t("没有监测点", "no meters").into();
    }
    let parts: Vec<String> = r
        .meters
        .iter()
        .map(|m| {
            let share = rate(voltage_share(m));
            let id = clean(&m.id);
            match (m.judged_on_10min, ctx.zh) {
                (false, _) => format!("{id} {share}"),
                (true, true) => format!("{id} {share}（10 分钟值）"),
                (true, false) => format!("{id} {share} (10-min means)"),
            }
        })
        .collect();
    let target = pct(Some(r.voltage_target));
    if ctx.zh {
        format!("合格率 {}；目标 ≥ {target}", parts.join("，"))
    } else {
        format!("qualification rate {}; target ≥ {target}", parts.join(", "))
    }
}

/// "95 % value 1.34 % (limit 2 %), maximum 2.71 % (short-time 4 %)" of
/// the meter closest to its limit.
/// The worst judged Plt of any meter against its limit, and the basis.
fn flicker_summary(ctx: &Ctx) -> String {
    let worst = ctx
        .r
        .meters
        .iter()
        .flat_map(|m| m.flicker.iter().map(move |r| (m, r)))
        .filter(|(_, r)| r.limit.is_some())
        .filter_map(|(m, r)| Some((flicker_figure(r)?, m, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((x, m, r)) = worst else {
        return String::new();
    };
    let limit = r.limit.unwrap_or_default();
    let weekly = r.assessed.is_some();
    let std = m
        .flicker_limit
        .as_ref()
        .map(|f| f.standard.clone())
        .unwrap_or_default();
    match (ctx.zh, weekly) {
        (true, false) => format!(
            "长时间闪变 Plt 最大 {x:.2}（{}，限值 {limit}，{std} 所有值）",
            ctx.phase(&r.phase)
        ),
        (true, true) => format!(
            "长时间闪变 Plt 周 95 % 值最大 {x:.2}（{}，限值 {limit}，{std}）",
            ctx.phase(&r.phase)
        ),
        (false, false) => format!(
            "long-term flicker Plt max {x:.2} ({}, limit {limit}, {std}: every value)",
            ctx.phase(&r.phase)
        ),
        (false, true) => format!(
            "long-term flicker Plt, worst weekly 95th percentile {x:.2} ({}, limit {limit}, {std})",
            ctx.phase(&r.phase)
        ),
    }
}

/// What a Plt row is judged on: the worst week's 95 % value (EN 50160) or
/// the maximum (GB/T 12326).
fn flicker_figure(r: &DistortionRow) -> Option<f64> {
    match &r.assessed {
        Some(a) => a.weekly_p95.as_ref().map(|x| x.0),
        None => r.max.map(|x| x.0),
    }
}

fn unbalance_summary(ctx: &Ctx) -> String {
    let worst = ctx
        .r
        .meters
        .iter()
        .filter_map(|m| Some((m, m.unbalance.as_ref()?)))
        .filter_map(|(m, u)| Some((u.cp95? / u.limit.max(1e-9), m, u)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((_, m, u)) = worst else {
        return ctx.t("无数据", "no data").into();
    };
    let max = pct(u.max.map(|x| x.0));
    if ctx.zh {
        format!(
            "{} 95% 概率值 {}（限值 {}），最大值 {max}（短时限值 {}）",
            clean(&m.id),
            pct(u.cp95),
            pct(Some(u.limit)),
            pct(Some(u.short_limit))
        )
    } else {
        format!(
            "{} 95 % value {} (limit {}), maximum {max} (short-time {})",
            clean(&m.id),
            pct(u.cp95),
            pct(Some(u.limit)),
            pct(Some(u.short_limit))
        )
    }
}

/// "49.93–50.07 Hz, 100.00 % of minutes within ±0.2 Hz" of the meter with
/// the lowest share.
fn frequency_summary(ctx: &Ctx) -> String {
    let worst = ctx
        .r
        .meters
        .iter()
        .filter_map(|m| m.frequency.as_ref())
        .min_by(|a, b| {
            a.within_pct
                .unwrap_or(0.0)
                .total_cmp(&b.within_pct.unwrap_or(0.0))
        });
    let Some(f) = worst else {
        return ctx.t("无数据", "no data").into();
    };
    let range = match (f.min, f.max) {
        (Some(lo), Some(hi)) => format!("{}–{} Hz", fixed(lo.0, 2), fixed(hi.0, 2)),
        _ => DASH.into(),
    };
    let dev = trim_num(f.deviation_hz);
    if ctx.zh {
        format!(
            "{range}；±{dev} Hz 内 {}（要求 ≥ {}，{}）",
            rate(f.within_pct),
            pct(Some(f.required_pct)),
            clean(&f.standard)
        )
    } else {
        format!(
            "{range}; {} within ±{dev} Hz (≥ {} required, {})",
            rate(f.within_pct),
            pct(Some(f.required_pct)),
            clean(&f.standard)
        )
    }
}

fn harmonic_summary(ctx: &Ctx) -> String {
    let r = ctx.r;
    // The THDu CP95 closest to (or furthest over) its limit.
    let worst = r
        .meters
        .iter()
        .flat_map(|m| m.thd.iter().map(move |t| (m, t)))
        .filter_map(|(m, t)| {
            let c = t.cp95?;
            let ratio = t.limit.filter(|l| *l > 0.0).map_or(0.0, |l| c / l);
            Some((ratio, c, m, t))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let orders: Vec<&DistortionRow> = r.meters.iter().flat_map(|m| &m.harmonics).collect();
    let judged = orders
        .iter()
        .filter(|o| o.cp95.is_some() && o.limit.is_some())
        .count();
    let over = orders.iter().filter(|o| o.verdict == Verdict::Fail).count();
    let mut parts = Vec::new();
    if let Some((_, c, m, t)) = worst {
        let limit = t.limit.map_or_else(|| DASH.into(), |l| pct(Some(l)));
        let at = format!("{} {}", clean(&m.id), ctx.phase(&t.phase));
        parts.push(if ctx.zh {
            format!("THDu CP95 最高 {}（限值 {limit}，{at}）", pct(Some(c)))
        } else {
            format!("THDu CP95 up to {} (limit {limit}, {at})", pct(Some(c)))
        });
    }
    if judged > 0 {
        parts.push(if ctx.zh {
            format!("单次谐波 {judged} 项中 {over} 项超限")
        } else {
            format!("{over} of {judged} individual orders above limit")
        });
    }
    if parts.is_empty() {
        ctx.t("无谐波数据", "no harmonic data").into()
    } else {
        parts.join(ctx.t("；", "; "))
    }
}

fn suspension_summary(ctx: &Ctx) -> String {
    let parts: Vec<String> = ctx
        .r
        .suspensions
        .iter()
        .map(|s| {
            let span = format!("{} – {}", clean(&s.from), clean(&s.to));
            let unit = suspension_unit(s);
            let peak = s
                .peak
                .as_ref()
                .map_or_else(|| DASH.into(), |p| power(p.value, &p.unit));
            let allowed = s.allowed.map_or_else(|| DASH.into(), |a| power(a, unit));
            if ctx.zh {
                format!(
                    "{span}：峰值 {peak}，允许 {allowed}，违规 {} 次",
                    s.violations
                )
            } else {
                format!(
                    "{span}: peak {peak}, allowed {allowed}, {} violation{}",
                    s.violations,
                    if s.violations == 1 { "" } else { "s" }
                )
            }
        })
        .collect();
    parts.join(ctx.t("；", "; "))
}

fn suspension_unit(s: &SuspensionRow) -> &str {
    s.peak.as_ref().map_or("kVA", |p| p.unit.as_str())
}

fn meter(ctx: &Ctx, m: &MeterReport, b: &mut Vec<Block>) {
    let v = Volts::of(m);
    let id = clean(&m.id);
    b.push(Block::H2(if ctx.zh {
        format!("监测点 {id}")
    } else {
        format!("Meter {id}")
    }));

    let first = m.voltage.iter().find(|r| r.phase != "total");
    let band = match (m.band_pct, first.and_then(band_of)) {
        (Some((lo, up)), Some((l, u))) => format!(
            "{} % / {} %{}",
            signed(up),
            signed(lo),
            ctx.paren(&format!("{}–{} {}", v.num(l), v.num(u), v.unit()))
        ),
        (Some((lo, up)), None) => format!("{} % / {} %", signed(up), signed(lo)),
        (None, Some((l, u))) => format!("{}–{} {}", v.num(l), v.num(u), v.unit()),
        (None, None) => DASH.into(),
    };
    let mut band_cell = vec![band];
    if !clean(&m.band_note).is_empty() {
        band_cell.push(ctx.source(&m.band_note));
    }
    let target = pct(Some(ctx.r.voltage_target));
    let mut basis = match (m.judged_on_10min, ctx.zh) {
        (false, true) => format!("1 分钟平均值；合格率 ≥ {target}"),
        (false, false) => format!("1-minute means; qualification rate ≥ {target}"),
        (true, true) => format!("10 分钟平均值；在允许范围内的比例 ≥ {target}"),
        (true, false) => format!("10-minute means; share within the band ≥ {target}"),
    };
    if ctx.r.worst_phase && m.voltage.len() > 1 {
        basis.push_str(ctx.t("（按最差相）", " (worst phase)"));
    }
    let completeness = total_row(m).and_then(|r| r.completeness);
    let phases = if ctx.zh {
        match m.phases {
            1 => "单相".to_string(),
            3 => "三相".to_string(),
            n => n.to_string(),
        }
    } else {
        match m.phases {
            1 => "single-phase".to_string(),
            3 => "three-phase".to_string(),
            n => n.to_string(),
        }
    };
    let mut rows: Vec<(String, Cell)> = Vec::new();
    if !clean(&m.profile).is_empty() {
        rows.push((
            ctx.t("仪表型号", "Profile").into(),
            Cell::new(clean(&m.profile)),
        ));
    }
    rows.extend([
        (
            ctx.t("标称电压", "Nominal voltage").into(),
            Cell::new(format!(
                "{}{}",
                nominal(m.nominal_voltage),
                ctx.paren(&phases)
            )),
        ),
        (
            ctx.t("PT 变比", "PT ratio").into(),
            Cell::new(trim_num(m.pt_ratio)),
        ),
        (
            ctx.t("CT 变比", "CT ratio").into(),
            Cell::new(trim_num(m.ct_ratio)),
        ),
        (
            ctx.t("电压标准", "Voltage standard").into(),
            Cell::new(clean(&m.voltage_standard)),
        ),
        (
            ctx.t("允许偏差", "Voltage band").into(),
            Cell::lines(band_cell),
        ),
        (ctx.t("考核依据", "Judged on").into(), Cell::new(basis)),
        (
            ctx.t("谐波标准", "Harmonic standard").into(),
            Cell::new(clean(&m.harmonic_standard)),
        ),
        (
            ctx.t("数据完整率", "Completeness").into(),
            Cell::lines(completeness_lines(ctx, m, completeness)),
        ),
        (
            ctx.t("电压结论", "Voltage verdict").into(),
            Cell::verdict(ctx, m.voltage_verdict),
        ),
        (
            ctx.t("谐波结论", "Harmonic verdict").into(),
            Cell::verdict(ctx, m.harmonic_verdict),
        ),
    ]);
    if let Some(u) = &m.unbalance {
        // One row: the 95 % value and maximum, the limits (GB/T 15543) and
        // the verdict's tone (the summary names the verdict).
        let cell = Cell::lines(vec![
            format!("{} / {}", pct(u.cp95), pct(u.max.map(|x| x.0))),
            format!(
                "{} ≤ {} · {} ≤ {}",
                ctx.t("95% 值", "95 %"),
                pct(Some(u.limit)),
                ctx.t("最大", "max"),
                pct(Some(u.short_limit))
            ),
        ]);
        rows.push((
            ctx.t("不平衡度 95%/最大", "Unbalance 95%/max").into(),
            if u.verdict == Verdict::Fail {
                cell.tone(Tone::Fail)
            } else {
                cell
            },
        ));
    }
    let plt: Vec<&DistortionRow> = m
        .flicker
        .iter()
        .filter(|r| r.field.starts_with("flicker_plt_"))
        .collect();
    if !plt.is_empty() {
        // One row: each phase's judged Plt figure; the limit and basis.
        let figures: Vec<String> = plt
            .iter()
            .map(|r| format!("{} {}", ctx.phase(&r.phase), pct_num(flicker_figure(r))))
            .collect();
        let basis = match (
            m.flicker_limit.as_ref(),
            plt.iter().any(|r| r.assessed.is_some()),
        ) {
            (Some(f), false) => format!("{} ≤ {} ({})", ctx.t("最大", "max"), f.plt, f.standard),
            (Some(f), true) => format!(
                "{} ≤ {} ({})",
                ctx.t("周 95% 值", "weekly 95 %"),
                f.plt,
                f.standard
            ),
            (None, _) => ctx
                .t("无适用限值，不判定", "no limit applies: not judged")
                .into(),
        };
        let cell = Cell::lines(vec![figures.join(" · "), basis]);
        let fail = plt.iter().any(|r| r.verdict == Verdict::Fail);
        rows.push((
            ctx.t("长时间闪变 Plt", "Flicker Plt").into(),
            if fail { cell.tone(Tone::Fail) } else { cell },
        ));
    }
    b.push(Block::Table(Table::fields(rows)));

    b.push(Block::H3(ctx.t("电压偏差", "Voltage").into()));
    if m.voltage.is_empty() {
        b.push(Block::P(
            ctx.t("该监测点没有电压数据。", "This meter has no voltage data.")
                .into(),
        ));
    } else {
        b.push(Block::Table(voltage_table(ctx, m, v)));
    }
    // EN 50160 judges each phase per week; where the preset does, that
    // table replaces the pooled counters of the period.
    if !m.weekly.is_empty() {
        b.push(Block::H3(
            ctx.t("10 分钟平均值（EN 50160）", "10-minute means (EN 50160)")
                .into(),
        ));
        b.push(Block::Table(weekly_table(ctx, m)));
    } else if m.judged_on_10min {
        b.push(Block::H3(
            ctx.t("10 分钟平均值（EN 50160）", "10-minute means (EN 50160)")
                .into(),
        ));
        b.push(Block::Table(long_table(ctx, m)));
    }
    b.push(Block::H3(format!(
        "{}{}",
        ctx.t("每日电压", "Daily voltage"),
        ctx.paren(&format!(
            "{}{}{}",
            ctx.t("最低 / 平均 / 最高", "min / mean / max"),
            ctx.list_sep(),
            v.unit()
        ))
    )));
    match chart(ctx, m, v) {
        Some(c) => b.push(Block::Chart(c)),
        None => b.push(Block::P(ctx.t("无数据。", "No data.").into())),
    }

    harmonics(ctx, m, b);

    b.push(Block::H3(ctx.t("负荷", "Load").into()));
    b.push(Block::Table(Table::fields(vec![
        (
            ctx.t("有功功率峰值", "Active power peak").into(),
            Cell::new(ctx.peak(m.active_power_peak.as_ref())),
        ),
        (
            ctx.t("最大需量", "Demand peak").into(),
            Cell::new(ctx.peak(m.demand_peak.as_ref())),
        ),
    ])));
}

/// "+7", "-10", "+5.5".
fn signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", trim_num(v))
    } else {
        trim_num(v)
    }
}

fn voltage_table(ctx: &Ctx, m: &MeterReport, v: Volts) -> Table {
    let rows = &m.voltage;
    let mut head = vec![String::new()];
    head.extend(rows.iter().map(|r| ctx.phase(&r.phase)));
    let judged = !m.judged_on_10min;
    let unit = v.unit();
    let with_unit = |zh: &str, en: &str| {
        if ctx.zh {
            format!("{zh}（{unit}）")
        } else {
            format!("{en} ({unit})")
        }
    };
    let cells = |f: &dyn Fn(&VoltageRow) -> Cell| rows.iter().map(f).collect::<Vec<Cell>>();
    let minutes = |n: u32, share: Option<f64>| Cell::lines(vec![n.to_string(), pct(share)]);
    let at = |x: Option<(f64, i64)>| match x {
        Some((val, t)) => Cell::lines(vec![v.num(val), ctx.when(t)]),
        None => Cell::new(DASH),
    };
    let lines = vec![
        (
            ctx.t("监测时间（分钟）", "Monitored (min)").to_string(),
            cells(&|r| Cell::new(r.monitored.to_string())),
        ),
        (
            ctx.t("数据完整率", "Completeness").to_string(),
            cells(&|r| Cell::new(rate(r.completeness))),
        ),
        (
            ctx.t("电压合格率", "Qualification rate").to_string(),
            cells(&|r| {
                let c = Cell::new(rate(r.rate)).strong();
                match r.rate {
                    Some(rate) if judged && rate + 1e-9 < ctx.r.voltage_target => {
                        c.tone(Tone::Fail)
                    }
                    _ => c,
                }
            }),
        ),
        (
            ctx.t("超上限（分钟）", "Above band (min)").to_string(),
            cells(&|r| minutes(r.above, r.above_pct)),
        ),
        (
            ctx.t("超下限（分钟）", "Below band (min)").to_string(),
            cells(&|r| minutes(r.below, r.below_pct)),
        ),
        (with_unit("最高电压", "Maximum"), cells(&|r| at(r.max))),
        (with_unit("最低电压", "Minimum"), cells(&|r| at(r.min))),
        (
            with_unit("平均电压", "Mean"),
            cells(&|r| Cell::new(v.opt(r.mean))),
        ),
        (
            with_unit("上限 / 下限", "Upper / lower"),
            cells(&|r| match band_of(r) {
                Some((l, u)) => Cell::lines(vec![v.num(u), v.num(l)]),
                None => Cell::new(DASH),
            }),
        ),
    ];
    Table::transposed(head, lines)
}

fn long_table(ctx: &Ctx, m: &MeterReport) -> Table {
    let rows = &m.voltage_long;
    let mut head = vec![String::new()];
    head.extend(rows.iter().map(|r| ctx.phase(&r.phase)));
    let (n, out) = long_totals(rows);
    let total_within = (n > 0).then(|| (1.0 - out as f64 / n as f64) * 100.0);
    let show_total = rows.len() > 1;
    if show_total {
        head.push(ctx.phase("total"));
    }
    let target = ctx.r.voltage_target;
    let within = |w: Option<f64>| {
        let c = Cell::new(rate(w)).strong();
        match w {
            Some(w) if w + 1e-9 < target => c.tone(Tone::Fail),
            _ => c,
        }
    };
    let mut intervals: Vec<Cell> = rows
        .iter()
        .map(|r| Cell::new(r.intervals.to_string()))
        .collect();
    let mut outside: Vec<Cell> = rows
        .iter()
        .map(|r| Cell::new(r.outside.to_string()))
        .collect();
    let mut share: Vec<Cell> = rows.iter().map(|r| within(r.within_pct)).collect();
    if show_total {
        intervals.push(Cell::new(n.to_string()));
        outside.push(Cell::new(out.to_string()));
        share.push(within(total_within));
    }
    Table::transposed(
        head,
        vec![
            (
                ctx.t("10 分钟区间数", "10-minute intervals").into(),
                intervals,
            ),
            (ctx.t("超出允许范围", "Outside the band").into(), outside),
            (ctx.t("在允许范围内", "Within the band").into(), share),
        ],
    )
}

/// One row per ISO week: N, N1 (outside range 1) and N2 (outside range 2)
/// per phase ("L1 / L2 / L3"), the lowest share inside range 1 and the
/// week's verdict (every phase must pass).
fn weekly_table(ctx: &Ctx, m: &MeterReport) -> Table {
    let mut weeks: Vec<Vec<&super::model::WeekRow>> = Vec::new();
    for w in &m.weekly {
        match weeks.last_mut() {
            Some(g) if g[0].week == w.week => g.push(w),
            _ => weeks.push(vec![w]),
        }
    }
    let per_phase = |g: &[&super::model::WeekRow], f: &dyn Fn(&super::model::WeekRow) -> u32| {
        g.iter()
            .map(|w| f(w).to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let rows = weeks
        .iter()
        .map(|g| {
            let w = g[0];
            let span = format!(
                "{:02}-{:02}–{:02}-{:02}{}",
                w.from.month(),
                w.from.day(),
                w.to.month(),
                w.to.day(),
                if w.partial {
                    ctx.t("（不足一周）", " (part)")
                } else {
                    ""
                }
            );
            let verdict = Verdict::combine(g.iter().map(|w| w.verdict));
            let lowest = g.iter().filter_map(|w| w.within_pct).reduce(f64::min);
            let share = Cell::new(rate(lowest)).strong();
            vec![
                Cell::lines(vec![w.week.clone(), span]),
                Cell::new(per_phase(g, &|w| w.intervals)),
                Cell::new(per_phase(g, &|w| w.outside)),
                Cell::new(per_phase(g, &|w| w.outside_range2)),
                if verdict == Verdict::Fail {
                    share.tone(Tone::Fail)
                } else {
                    share
                },
                Cell::verdict(ctx, verdict),
            ]
        })
        .collect();
    let phases = weeks
        .first()
        .map(|g| {
            g.iter()
                .map(|w| ctx.phase(&w.phase))
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default();
    let mut t = Table::data(
        vec![
            ctx.t("周", "Week").into(),
            format!("N ({phases})"),
            "N1".into(),
            "N2".into(),
            format!(
                "{} ≥ {}",
                ctx.t("范围 1 内", "In range 1"),
                pct(m.weekly.first().map(|w| w.required_pct))
            ),
            ctx.t("结论", "Verdict").into(),
        ],
        vec![
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
        ],
        rows,
    );
    t.breakable = vec![true, true, true, true, true, false];
    t
}

fn chart(ctx: &Ctx, m: &MeterReport, v: Volts) -> Option<Chart> {
    let phase_rows: Vec<&VoltageRow> = m.voltage.iter().filter(|r| r.phase != "total").collect();
    if phase_rows.is_empty() || m.daily.is_empty() {
        return None;
    }
    let bands: Vec<Option<(f64, f64)>> = phase_rows.iter().map(|r| band_of(r)).collect();
    let days: Vec<ChartDay> = m
        .daily
        .iter()
        .map(|d| {
            let label = format!("{:02}-{:02}", d.date.month(), d.date.day());
            let values = phase_rows
                .iter()
                .map(|r| {
                    let p = d.phases.iter().find(|p| p.phase == r.phase)?;
                    match (p.min, p.mean, p.max) {
                        (Some(lo), Some(mean), Some(hi))
                            if lo.is_finite() && mean.is_finite() && hi.is_finite() =>
                        {
                            Some((lo, mean, hi))
                        }
                        _ => None,
                    }
                })
                .collect();
            (label, values)
        })
        .collect();
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (l, u) in bands.iter().flatten() {
        lo = lo.min(*l);
        hi = hi.max(*u);
    }
    for (_, vals) in &days {
        for (mn, _, mx) in vals.iter().flatten() {
            lo = lo.min(*mn);
            hi = hi.max(*mx);
        }
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    let reference = phase_rows[0].reference_v.abs().max(1.0);
    let pad = ((hi - lo) * 0.04).max(reference * 0.005);
    let (lo, hi) = (lo - pad, hi + pad);
    let dates_head = ctx.t("日期", "Date").to_string();
    Some(Chart {
        volts: v,
        phases: phase_rows.iter().map(|r| ctx.phase(&r.phase)).collect(),
        bands,
        lo,
        hi,
        days,
        date_head: dates_head,
        legend_mean: ctx.t("平均值", "mean").into(),
        legend_out: ctx.t("超出允许范围", "outside the band").into(),
        legend_band: ctx.t("允许范围", "allowed band").into(),
        all_phases: ctx.t("各相合并", "all phases").into(),
        omitted: ctx
            .t(
                "图表从略，以免邮件过大被邮箱截断；每日数据见纯文本部分和 CSV 附件。",
                "Chart left out to keep this e-mail small enough not to be clipped; the daily figures are in the plain-text part and the CSV attachment.",
            )
            .into(),
    })
}

fn harmonics(ctx: &Ctx, m: &MeterReport, b: &mut Vec<Block>) {
    b.push(Block::H3(ctx.t("谐波", "Harmonics").into()));
    let std = clean(&m.harmonic_standard);
    if !std.is_empty() {
        b.push(Block::P(format!(
            "{}{}{std}",
            ctx.t("依据", "Standard"),
            ctx.colon()
        )));
    }
    if m.thd.is_empty() {
        b.push(Block::P(
            ctx.t(
                "无电压总谐波畸变率（THDu）数据。",
                "No voltage THD (THDu) data.",
            )
            .into(),
        ));
    } else {
        b.push(Block::Caption(
            ctx.t("电压总谐波畸变率 THDu", "Voltage THD (THDu)").into(),
        ));
        b.push(Block::Table(distortion_table(ctx, &m.thd, true)));
        // Fast-polled meters: the CP95 is GB/T 14549's own (3-s values).
        if let Some(n) = m.thd.iter().map(|r| r.samples).max().filter(|n| *n > 0) {
            b.push(Block::Note(
                if ctx.zh {
                    format!("CP95 按 {n} 个 3 秒及更短的采样值计算（GB/T 14549 的 3 秒值）。")
                } else {
                    format!(
                        "CP95 of {n} polled values of 3 s or less (GB/T 14549's 3-second values)."
                    )
                },
                Tone::Plain,
            ));
        }
    }

    let orders = &m.harmonics;
    if orders.is_empty() {
        b.push(Block::P(
            ctx.t(
                "无单次谐波电压含有率数据。",
                "No individual harmonic order data.",
            )
            .into(),
        ));
    } else {
        let judged = orders
            .iter()
            .filter(|o| o.cp95.is_some() && o.limit.is_some())
            .count();
        let unjudged = orders
            .iter()
            .filter(|o| o.cp95.is_some() && o.limit.is_none())
            .count();
        let failing: Vec<&DistortionRow> = orders
            .iter()
            .filter(|o| o.verdict == Verdict::Fail)
            .collect();
        let lo = orders.iter().map(|o| o.order).min().unwrap_or(0);
        let hi = orders.iter().map(|o| o.order).max().unwrap_or(0);
        let mut phases: Vec<&str> = orders.iter().map(|o| o.phase.as_str()).collect();
        phases.sort_unstable();
        phases.dedup();
        let np = phases.len();
        let k = failing.len();
        let mut line = match (k, ctx.zh) {
            (0, true) => format!(
                "单次谐波电压含有率（{lo}–{hi} 次，{np} 相）：共评估 {judged} 项，均在限值内。"
            ),
            (_, true) => format!(
                "单次谐波电压含有率（{lo}–{hi} 次，{np} 相）：共评估 {judged} 项，{k} 项超限（见下表），其余均在限值内。"
            ),
            (0, false) => format!(
                "Individual harmonic orders H{lo}–H{hi} ({np} phase{}): {judged} assessed, all within limits.",
                if np == 1 { "" } else { "s" }
            ),
            (_, false) => format!(
                "Individual harmonic orders H{lo}–H{hi} ({np} phase{}): {judged} assessed; {k} above the limit (below), all others within limits.",
                if np == 1 { "" } else { "s" }
            ),
        };
        if unjudged > 0 {
            line.push_str(&if ctx.zh {
                format!("另有 {unjudged} 项无适用限值，不作判定。")
            } else {
                format!(" {unjudged} without a limit are not judged.")
            });
        }
        b.push(Block::P(line));
        if !failing.is_empty() {
            b.push(Block::Table(failing_orders(ctx, &failing, "%")));
        }
    }

    if !m.thd_current.is_empty() {
        b.push(Block::Caption(
            ctx.t("电流总谐波畸变率 THDi", "Current THD (THDi)").into(),
        ));
        b.push(Block::Table(distortion_table(ctx, &m.thd_current, false)));
        if m.thd_current.iter().all(|r| r.limit.is_none()) {
            b.push(Block::Note(
                ctx.t(
                    "THDi 无适用限值，仅供参考，不作判定。",
                    "No limit applies to THDi: shown for information, not judged.",
                )
                .into(),
                Tone::Plain,
            ));
        }
    }
    let judged: Vec<&DistortionRow> = m
        .harmonic_currents
        .iter()
        .filter(|r| r.limit.is_some() && r.cp95.is_some())
        .collect();
    if !judged.is_empty() {
        let failing: Vec<&&DistortionRow> = judged
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .collect();
        let (n, k) = (judged.len(), failing.len());
        let ieee = judged.iter().any(|r| r.assessed.is_some());
        b.push(Block::P(match (ieee, ctx.zh) {
            (false, true) => format!("谐波电流（GB/T 14549 表 2，按公共连接点短路容量换算并按协议容量分摊）：共评估 {n} 项，{k} 项 CP95 超限。"),
            (false, false) => format!("Harmonic currents (GB/T 14549 Table 2, scaled to the PCC's short-circuit capacity and shared by contracted capacity): {n} assessed, {k} with CP95 above the limit."),
            (true, true) => format!("谐波电流（IEEE 519 表 2，按 Isc/I_L 所在档的各次限值，以 I_L 的百分数换算为安培）：共评估 {n} 项，{k} 项超限（周 95 % 值、周 99 % 值或日 99 % 值）。"),
            (true, false) => format!("Harmonic currents (IEEE 519 Table 2 individual orders of the Isc/I_L row, in A of I_L): {n} assessed, {k} above a limit (weekly 95th or 99th, or daily 99th percentile)."),
        }));
        if !failing.is_empty() {
            let failing: Vec<&DistortionRow> = failing.into_iter().copied().collect();
            b.push(Block::Table(failing_orders(ctx, &failing, "A")));
        }
    }
    if !m.tdd_current.is_empty() {
        b.push(Block::Caption(
            ctx.t(
                "电流总需量畸变率 TDD（IEEE 519，% I_L）",
                "Current TDD (IEEE 519, % of I_L)",
            )
            .into(),
        ));
        b.push(Block::Table(distortion_table(ctx, &m.tdd_current, false)));
    }
}

/// The harmonic orders above their limit: phase, order, CP95, limit and
/// maximum in `unit` ("%" of the fundamental for voltages, with the minutes
/// over the limit; "A" for currents, whose minute means carry no count).
fn failing_orders(ctx: &Ctx, failing: &[&DistortionRow], unit: &str) -> Table {
    let minutes = unit == "%";
    // EN 50160 / IEEE 519: the percentiles the verdict is on, after the CP95.
    let weekly = failing.iter().any(|o| o.assessed.is_some());
    let daily = failing
        .iter()
        .any(|o| o.assessed.as_ref().is_some_and(|a| a.daily_p99.is_some()));
    let rows = failing
        .iter()
        .map(|o| {
            let a = o.assessed.as_ref();
            let over = |v: Option<f64>, factor: f64| over_limit(v, o.limit, factor);
            let mut row = vec![
                Cell::new(ctx.phase(&o.phase)),
                Cell::new(if ctx.zh {
                    format!("{} 次", o.order)
                } else {
                    format!("H{}", o.order)
                }),
                if weekly {
                    Cell::new(pct_num(o.cp95))
                } else {
                    Cell::new(pct_num(o.cp95)).strong().tone(Tone::Fail)
                },
            ];
            if weekly {
                row.push(over(
                    a.and_then(|a| a.weekly_p95.as_ref().map(|x| x.0)),
                    1.0,
                ));
            }
            if daily {
                row.push(over(
                    a.and_then(|a| a.daily_p99.map(|x| x.0)),
                    a.map_or(1.0, |a| a.daily_factor),
                ));
            }
            row.extend([
                Cell::new(pct_num(o.limit)),
                Cell::new(pct_num(o.max.map(|x| x.0))),
            ]);
            if minutes {
                row.push(Cell::new(o.over.to_string()));
            }
            row
        })
        .collect();
    let mut head: Vec<String> = vec![
        ctx.t("相别", "Phase").into(),
        ctx.t("次数", "Order").into(),
        if ctx.zh {
            format!("CP95（{unit}）")
        } else {
            format!("CP95 ({unit})")
        },
    ];
    if weekly {
        head.push(if ctx.zh {
            format!("周 95 % 值（{unit}）")
        } else {
            format!("Weekly P95 ({unit})")
        });
    }
    if daily {
        head.push(if ctx.zh {
            format!("日 99 % 值（{unit}）")
        } else {
            format!("Daily P99 ({unit})")
        });
    }
    head.extend([
        if ctx.zh {
            format!("限值（{unit}）")
        } else {
            format!("Limit ({unit})")
        },
        if ctx.zh {
            format!("最大值（{unit}）")
        } else {
            format!("Max ({unit})")
        },
    ]);
    if minutes {
        head.push(ctx.t("超限分钟", "Over (min)").into());
    }
    let mut align = vec![Align::Left, Align::Left];
    align.extend(std::iter::repeat_n(Align::Right, head.len() - 2));
    Table::data(head, align, rows)
}

/// A percentile figure, in red when above `factor` × its limit.
fn over_limit(v: Option<f64>, limit: Option<f64>, factor: f64) -> Cell {
    let c = Cell::new(pct_num(v)).strong();
    match (v, limit) {
        (Some(v), Some(l)) if v > factor * l => c.tone(Tone::Fail),
        _ => c,
    }
}

/// The weekly and daily percentiles of rows under EN 50160's or IEEE 519's
/// assessment, one table line each, a figure above its limit in red.
fn assessed_lines(ctx: &Ctx, rows: &[DistortionRow]) -> Vec<(String, Vec<Cell>)> {
    // One figure of every row, against its limit × the factor.
    let line = |figure: &dyn Fn(&super::model::Assessed) -> Option<f64>,
                factor: &dyn Fn(&super::model::Assessed) -> f64| {
        rows.iter()
            .map(|r| {
                let a = r.assessed.as_ref();
                over_limit(a.and_then(figure), r.limit, a.map_or(1.0, factor))
            })
            .collect::<Vec<Cell>>()
    };
    let mut out = vec![(
        ctx.t(
            "周 95 % 值（10 分钟值，最差周）",
            "Weekly 95th percentile (10-min, worst week)",
        )
        .to_string(),
        line(&|a| a.weekly_p95.as_ref().map(|x| x.0), &|_| 1.0),
    )];
    if rows
        .iter()
        .any(|r| r.assessed.as_ref().is_some_and(|a| a.weekly_p99.is_some()))
    {
        out.push((
            {
                let f = super::model::WEEKLY_P99_FACTOR;
                if ctx.zh {
                    format!("周 99 % 值（限值 × {f}）")
                } else {
                    format!("Weekly 99th percentile (limit × {f})")
                }
            },
            line(&|a| a.weekly_p99.as_ref().map(|x| x.0), &|_| {
                super::model::WEEKLY_P99_FACTOR
            }),
        ));
    }
    if let Some(a) = rows
        .iter()
        .filter_map(|r| r.assessed.as_ref())
        .find(|a| a.daily_p99.is_some())
    {
        let (basis_zh, basis_en) = if a.daily_on_samples {
            ("3 秒及更短的采样值", "3-s samples")
        } else {
            ("1 分钟值", "1-min means")
        };
        let factor = a.daily_factor;
        out.push((
            if ctx.zh {
                format!("日 99 % 值（{basis_zh}，最差日；限值 × {factor}）")
            } else {
                format!("Daily 99th percentile ({basis_en}, worst day; limit × {factor})")
            },
            line(&|a| a.daily_p99.map(|x| x.0), &|a| a.daily_factor),
        ));
    }
    out
}

/// THDu, THDi or TDD per phase (phases as columns).
fn distortion_table(ctx: &Ctx, rows: &[DistortionRow], voltage: bool) -> Table {
    let mut head = vec![String::new()];
    head.extend(rows.iter().map(|r| ctx.phase(&r.phase)));
    let cells = |f: &dyn Fn(&DistortionRow) -> Cell| rows.iter().map(f).collect::<Vec<Cell>>();
    let assessed = rows.iter().any(|r| r.assessed.is_some());
    let mut lines = vec![(
        ctx.t("CP95（%）", "CP95 (%)").to_string(),
        cells(&|r| {
            let c = Cell::new(pct_num(r.cp95)).strong();
            // Under a weekly assessment the CP95 is information only.
            if r.verdict == Verdict::Fail && r.assessed.is_none() {
                c.tone(Tone::Fail)
            } else {
                c
            }
        }),
    )];
    if assessed {
        lines.extend(assessed_lines(ctx, rows));
    }
    lines.extend([
        (
            ctx.t("限值（%）", "Limit (%)").to_string(),
            cells(&|r| Cell::new(pct_num(r.limit))),
        ),
        (
            ctx.t("最大值（%）", "Max (%)").to_string(),
            cells(&|r| match r.max {
                Some((v, t)) => Cell::lines(vec![fixed(v, 2), ctx.when(t)]),
                None => Cell::new(DASH),
            }),
        ),
        (
            ctx.t("平均值（%）", "Mean (%)").to_string(),
            cells(&|r| Cell::new(pct_num(r.mean))),
        ),
    ]);
    let judged = voltage || rows.iter().any(|r| r.limit.is_some());
    if judged {
        lines.push((
            ctx.t("超限时间（分钟）", "Over limit (min)").to_string(),
            cells(&|r| {
                if r.limit.is_some() {
                    Cell::new(r.over.to_string())
                } else {
                    Cell::new(DASH)
                }
            }),
        ));
        lines.push((
            ctx.t("结论", "Verdict").to_string(),
            cells(&|r| {
                if r.limit.is_none() && r.cp95.is_some() {
                    Cell::new(ctx.t("不判定", "not judged"))
                } else {
                    Cell::verdict(ctx, r.verdict)
                }
            }),
        ));
    }
    Table::transposed(head, lines)
}

fn events(ctx: &Ctx, b: &mut Vec<Block>) {
    let r = ctx.r;
    b.push(Block::H2(format!(
        "{}{}",
        ctx.t("事件", "Events"),
        ctx.paren(&r.events.len().to_string())
    )));
    if r.events.is_empty() {
        b.push(Block::P(
            ctx.t("本周期内没有事件。", "No events in this period.")
                .into(),
        ));
        return;
    }
    let rows = r
        .events
        .iter()
        .map(|e| {
            let meter = r.meters.iter().find(|m| m.id == e.meter);
            let value = |x: f64| match (e.unit, meter) {
                ("V", Some(m)) => Volts::of(m).with_unit(x),
                ("V", None) => Volts { kv: x >= 1000.0 }.with_unit(x),
                ("%", _) => pct(Some(x)),
                (u, _) => power(x, u),
            };
            let mut what = if e.meter == crate::quality::rules::CUSTOMER_TOTAL {
                ctx.t("全部计量点合计", "all billing meters").to_string()
            } else {
                clean(&e.meter)
            };
            if !e.phase.is_empty() {
                what = format!("{what} · {}", ctx.phase(&e.phase));
            }
            let d = duration(e.end_ms - e.start_ms, ctx.lang());
            let (end, dur) = if e.open {
                (
                    format!("– {}", ctx.t("持续中", "open")),
                    if ctx.zh {
                        format!("已持续 {d}")
                    } else {
                        format!("{d} so far")
                    },
                )
            } else {
                (format!("– {}", ctx.when(e.end_ms)), d)
            };
            let end_cell = Cell::lines(vec![ctx.when(e.start_ms), end, dur]).nowrap();
            vec![
                Cell::lines(vec![kind_name(e.kind, e.order, ctx.lang()), what]).strong(),
                if e.open {
                    end_cell.tone(Tone::Fail)
                } else {
                    end_cell
                },
                Cell::lines(vec![
                    format!("{} / {}", value(e.peak), value(e.limit)),
                    ctx.source(&e.source),
                ]),
            ]
        })
        .collect();
    let mut t = Table::data(
        vec![
            ctx.t("事件 / 监测点", "Event / meter").into(),
            ctx.t("开始 – 结束", "Start – end").into(),
            ctx.t("峰值 / 限值", "Peak / limit").into(),
        ],
        vec![Align::Left; 3],
        rows,
    );
    t.spaced = true;
    t.breakable = vec![true, false, true];
    b.push(Block::Table(t));
}

fn suspensions(ctx: &Ctx, b: &mut Vec<Block>) {
    let r = ctx.r;
    if r.suspensions.is_empty() {
        return;
    }
    b.push(Block::H2(ctx.t("暂停用电", "Suspensions").into()));
    for (i, s) in r.suspensions.iter().enumerate() {
        let span = if ctx.zh {
            format!("{} 至 {}", clean(&s.from), clean(&s.to))
        } else {
            format!("{} – {}", clean(&s.from), clean(&s.to))
        };
        if r.suspensions.len() > 1 {
            b.push(Block::H3(format!(
                "{} {}{}{span}",
                ctx.t("暂停", "Suspension"),
                i + 1,
                ctx.colon()
            )));
        }
        let unit = suspension_unit(s);
        let over = matches!((&s.peak, s.allowed), (Some(p), Some(a)) if p.value > a);
        let peak = Cell::new(ctx.peak(s.peak.as_ref()));
        let mut rows = vec![
            (ctx.t("起止", "From – to").into(), Cell::new(span)),
            (
                ctx.t("暂停容量", "Suspended capacity").into(),
                Cell::new(power(s.kva, "kVA")),
            ),
            (
                ctx.t("允许负荷", "Allowed load").into(),
                Cell::new(s.allowed.map_or_else(|| DASH.into(), |a| power(a, unit))),
            ),
            (
                ctx.t("期间最大负荷", "Peak load").into(),
                if over { peak.tone(Tone::Fail) } else { peak },
            ),
            (
                ctx.t("考核依据", "Judged on").into(),
                Cell::new(if ctx.zh {
                    format!("全部计量点合计负荷的 {} 分钟平均值", s.basis_ms / 60_000)
                } else {
                    format!(
                        "{}-minute mean of all billing meters' total",
                        s.basis_ms / 60_000
                    )
                }),
            ),
            (
                ctx.t("瞬时最大值", "Instant peak").into(),
                Cell::lines(vec![
                    ctx.peak(s.instant_peak.as_ref()),
                    ctx.t("仅供参考，不作考核", "for information only").into(),
                ]),
            ),
            (
                ctx.t("违规事件", "Violations").into(),
                Cell::new(s.violations.to_string()),
            ),
        ];
        if let Some(note) = &s.note {
            rows.push((ctx.t("备注", "Note").into(), Cell::new(clean(note))));
        }
        rows.push((
            ctx.t("结论", "Verdict").into(),
            Cell::verdict(ctx, s.verdict),
        ));
        b.push(Block::Table(Table::fields(rows)));
    }
}

/// "126 kW (120 kW × 1.05)": the limit with the contract and its factor.
fn demand_limit(d: &super::model::DemandSection) -> String {
    format!(
        "{} ({} × {})",
        power(d.limit_kw, "kW"),
        power(d.contracted_kw, "kW"),
        trim_num(d.factor)
    )
}

/// "15-minute means sliding by 1 minute" / block.
fn demand_basis(ctx: &Ctx, d: &super::model::DemandSection) -> String {
    let period = d.period_ms / 60_000;
    let slide = d.slide_ms / 60_000;
    match (d.slide_ms == d.period_ms, ctx.zh) {
        (true, true) => format!("{period} 分钟区间平均功率（固定区间）"),
        (true, false) => format!("{period}-minute mean power, fixed blocks"),
        (false, true) => format!("{period} 分钟平均功率，滑差 {slide} 分钟"),
        (false, false) => format!("{period}-minute mean power sliding by {slide} minute(s)"),
    }
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

fn demand(ctx: &Ctx, b: &mut Vec<Block>) {
    let Some(d) = &ctx.r.demand else {
        return;
    };
    b.push(Block::H2(ctx.t("最大需量", "Maximum demand").into()));
    let over = d.peak.as_ref().is_some_and(|p| p.value > d.limit_kw);
    let peak = Cell::new(ctx.peak(d.peak.as_ref()));
    b.push(Block::Table(Table::fields(vec![
        (
            ctx.t("合同最大需量", "Contracted demand").into(),
            Cell::new(power(d.contracted_kw, "kW")),
        ),
        (
            ctx.t("考核限值", "Limit").into(),
            Cell::new(demand_limit(d)),
        ),
        (
            ctx.t("需量计算", "Demand basis").into(),
            Cell::new(demand_basis(ctx, d)),
        ),
        (
            ctx.t("本期最大需量", "Peak demand").into(),
            if over { peak.tone(Tone::Fail) } else { peak },
        ),
        (
            ctx.t("超限次数", "Exceedances").into(),
            Cell::new(d.exceedances.to_string()),
        ),
        (
            ctx.t("结论", "Verdict").into(),
            Cell::verdict(ctx, d.verdict),
        ),
    ])));
}

fn notes(ctx: &Ctx, csv_name: &str, b: &mut Vec<Block>) {
    let r = ctx.r;
    let target = pct(Some(r.voltage_target));
    let tz = clean(&r.tz_name);
    b.push(Block::H2(
        ctx.t("计算说明", "How the figures are computed").into(),
    ));
    let lines: Vec<String> = if ctx.zh {
        vec![
            format!(
                "电压合格率 =（1 −（超上限时间 + 超下限时间）/ 监测时间）× 100 %，按 1 分钟平均值统计；合计按各相的分钟数汇总。合格率 ≥ {target} 判定为合格；按 EN 50160 以 10 分钟平均值考核的监测点，以 10 分钟平均值在允许范围内的比例判定。"
            ),
            "CP95 为 1 分钟平均值的 95 % 概率大值（GB/T 14549 的方法：将数值排序，舍去最大的 5 %，取其余数值中的最大值），分辨率 0.01 %。任一 CP95 超过限值即判定为不合格。".into(),
            "数据完整率 = 监测时间 / 统计周期内的分钟数（周期未结束时截至生成时间）；读数不足的分钟不计入。".into(),
            format!("时间均为本地时间（{tz}）。各监测点每日分相数据见附件 {csv_name}。"),
        ]
    } else {
        vec![
            format!(
                "Qualification rate = (1 − (minutes above + minutes below) / monitored minutes) × 100 %, over the 1-minute means; the total counts every phase-minute once. The voltage verdict passes at ≥ {target}; meters judged per EN 50160 are judged on the share of 10-minute means within the band instead."
            ),
            "CP95 = the 95 % value of the 1-minute means (the GB/T 14549 method: sort, drop the largest 5 %, take the largest of the rest), to 0.01 %. A harmonic verdict fails when a CP95 is above its limit.".into(),
            "Completeness = monitored minutes / minutes in the period (up to the time of this report while the period runs); minutes without enough readings are not counted.".into(),
            format!("Times are local ({tz}). The daily figures per meter and phase are attached as {csv_name}."),
        ]
    };
    for l in lines {
        b.push(Block::Note(l, Tone::Plain));
    }
    if r.unreadable_rows > 0 {
        let n = r.unreadable_rows;
        b.push(Block::Note(
            if ctx.zh {
                format!("注意：有 {n} 条统计记录无法读取，未计入本报告。")
            } else {
                format!(
                    "Note: {n} ledger row{} could not be read and {} left out of this report.",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" }
                )
            },
            Tone::Fail,
        ));
    }
}

// ---------------------------------------------------------------- text

/// Units that stay on the line of their figure ("95.00 %", "10.5 kV").
const UNITS: [&str; 7] = ["%", "kVA", "kV", "kW", "V", "min", "A"];

/// "kVA", "%)", "kW;": a unit, perhaps followed by punctuation.
fn is_unit(word: &str) -> bool {
    let bare = word.trim_end_matches(|c: char| ",.;:)）。，；：".contains(c));
    UNITS.contains(&bare)
}

/// Columns a plain-text line may use.
const TEXT_WIDTH: usize = 78;

/// Display width of a character in a monospace client: CJK (and full-width
/// forms) take two columns.
fn char_width(c: char) -> usize {
    let u = c as u32;
    if c.is_control() {
        0
    } else if matches!(
        u,
        0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
    ) {
        2
    } else {
        1
    }
}

fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn is_wide(c: char) -> bool {
    char_width(c) == 2
}

/// Punctuation that must not start a line.
fn no_break_before(c: char) -> bool {
    "，。、；：！？）」』》】,.;:!?)%".contains(c)
}

/// Punctuation that must not end a line.
fn no_break_after(c: char) -> bool {
    "（「『《【(".contains(c)
}

/// Add a piece of a line; a unit stays with its figure.
fn push_piece(pieces: &mut Vec<(String, bool)>, piece: String, space: bool) {
    match pieces.last_mut() {
        Some((prev, _))
            if space && is_unit(&piece) && prev.ends_with(|c: char| c.is_ascii_digit()) =>
        {
            prev.push(' ');
            prev.push_str(&piece);
        }
        _ => pieces.push((piece, space)),
    }
}

/// Wrap to `max` columns: at spaces, and between CJK characters.
fn wrap(s: &str, max: usize) -> Vec<String> {
    let max = max.max(2);
    let mut lines = Vec::new();
    for para in s.split('\n') {
        // (piece, space before it)
        let mut pieces: Vec<(String, bool)> = Vec::new();
        for (wi, word) in para.split(' ').filter(|w| !w.is_empty()).enumerate() {
            let mut cur = String::new();
            let mut space = wi > 0;
            let mut prev: Option<char> = None;
            for c in word.chars() {
                if let Some(p) = prev
                    && (is_wide(p) || is_wide(c))
                    && !no_break_before(c)
                    && !no_break_after(p)
                {
                    push_piece(&mut pieces, std::mem::take(&mut cur), space);
                    space = false;
                }
                cur.push(c);
                prev = Some(c);
            }
            if !cur.is_empty() {
                push_piece(&mut pieces, cur, space);
            }
        }
        let mut line = String::new();
        let mut w = 0;
        for (piece, space) in pieces {
            let pw = width(&piece);
            let sep = usize::from(space && !line.is_empty());
            if w + sep + pw > max && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                w = 0;
            } else if sep == 1 {
                line.push(' ');
                w += 1;
            }
            if pw <= max {
                line.push_str(&piece);
                w += pw;
                continue;
            }
            // A word longer than a line: break it anywhere.
            for c in piece.chars() {
                let cw = char_width(c);
                if w + cw > max && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    w = 0;
                }
                line.push(c);
                w += cw;
            }
        }
        lines.push(line);
    }
    lines
}

fn pad(s: &str, w: usize, align: Align) -> String {
    let fill = " ".repeat(w.saturating_sub(width(s)));
    match align {
        Align::Left => format!("{s}{fill}"),
        Align::Right => format!("{fill}{s}"),
    }
}

fn text(blocks: &[Block], zh: bool) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Title(t) => {
                let _ = writeln!(out, "{t}\n{}", "=".repeat(width(t).min(TEXT_WIDTH)));
            }
            Block::Subtitle(t) => {
                for l in wrap(t, TEXT_WIDTH) {
                    let _ = writeln!(out, "{l}");
                }
                out.push('\n');
            }
            Block::Overall(line, _) => {
                let _ = writeln!(out, "\n{line}\n");
            }
            Block::H2(t) => {
                let _ = writeln!(out, "\n{t}\n{}", "-".repeat(width(t).min(TEXT_WIDTH)));
            }
            Block::H3(t) => {
                let _ = writeln!(out, "\n* {t}");
            }
            Block::Caption(t) => {
                let _ = writeln!(out, "\n{t}");
            }
            Block::P(t) => {
                for l in wrap(t, TEXT_WIDTH) {
                    let _ = writeln!(out, "{l}");
                }
            }
            Block::Note(t, _) => {
                for l in wrap(t, TEXT_WIDTH) {
                    let _ = writeln!(out, "{l}");
                }
                out.push('\n');
            }
            Block::Table(t) => {
                text_table(&mut out, t, zh);
                out.push('\n');
            }
            Block::Chart(c) => {
                text_table(&mut out, &chart_as_table(c), zh);
                out.push('\n');
            }
        }
    }
    // Keep blank lines single.
    let mut clean_out = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        clean_out.push_str(line);
        clean_out.push('\n');
    }
    let trimmed = clean_out.trim_start_matches('\n');
    format!("{}\n-- \npqwatch\n", trimmed.trim_end())
}

fn chart_as_table(c: &Chart) -> Table {
    let mut head = vec![c.date_head.clone()];
    // The heading above says min / mean / max and the unit.
    head.extend(c.phases.iter().cloned());
    let rows = c
        .days
        .iter()
        .map(|(label, vals)| {
            let mut row = vec![Cell::new(label.clone())];
            row.extend(vals.iter().map(|v| match v {
                Some((lo, mean, hi)) => Cell::new(format!(
                    "{}/{}/{}",
                    c.volts.num(*lo),
                    c.volts.num(*mean),
                    c.volts.num(*hi)
                )),
                None => Cell::new(DASH),
            }));
            row
        })
        .collect();
    let mut align = vec![Align::Left];
    align.extend(std::iter::repeat_n(Align::Right, c.phases.len()));
    Table::data(head, align, rows)
}

fn text_table(out: &mut String, t: &Table, zh: bool) {
    let indent = "  ";
    let budget = TEXT_WIDTH - indent.len();
    let gap = 2;
    let ncols = t
        .rows
        .iter()
        .map(Vec::len)
        .chain([t.head.len()])
        .max()
        .unwrap_or(0);
    if ncols == 0 {
        return;
    }
    if t.shape == Shape::Fields {
        let colon = if zh { "：" } else { ":" };
        let labels: Vec<String> = t
            .rows
            .iter()
            .map(|r| format!("{}{colon}", r.first().map_or("", |c| c.lines[0].as_str())))
            .collect();
        let lw = labels.iter().map(|l| width(l)).max().unwrap_or(0) + 1;
        let vw = budget.saturating_sub(lw).max(20);
        for (label, row) in labels.iter().zip(&t.rows) {
            let mut lines = Vec::new();
            for l in row.get(1).map_or(&[][..], |c| &c.lines[..]) {
                lines.extend(wrap(l, vw));
            }
            if lines.is_empty() {
                lines.push(String::new());
            }
            for (i, l) in lines.iter().enumerate() {
                let head = if i == 0 { label.as_str() } else { "" };
                let _ = writeln!(out, "{indent}{}{l}", pad(head, lw, Align::Left));
            }
        }
        return;
    }
    let align = |c: usize| t.align.get(c).copied().unwrap_or(Align::Left);
    // Natural widths, and how narrow a column may get (its longest word,
    // capped) before its cells wrap mid-word.
    let mut natural = vec![0usize; ncols];
    let mut least = vec![4usize; ncols];
    let all = t
        .rows
        .iter()
        .flat_map(|r| {
            r.iter()
                .enumerate()
                .flat_map(|(c, cell)| cell.lines.iter().map(move |l| (c, l)))
        })
        .chain(t.head.iter().enumerate());
    for (c, l) in all {
        natural[c] = natural[c].max(width(l));
        let word = l.split(' ').map(width).max().unwrap_or(0);
        least[c] = least[c].max(word.min(14));
    }
    let mut widths = natural.clone();
    let total = |w: &[usize]| w.iter().sum::<usize>() + gap * (w.len() - 1);
    while total(&widths) > budget {
        let Some(c) = (0..ncols)
            .filter(|&c| widths[c] > least[c])
            .max_by_key(|&c| widths[c])
        else {
            break;
        };
        widths[c] -= 1;
    }
    let emit = |out: &mut String, cells: Vec<Vec<String>>| {
        let height = cells.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..height {
            let mut line = String::from(indent);
            for (c, lines) in cells.iter().enumerate() {
                if c > 0 {
                    line.push_str(&" ".repeat(gap));
                }
                let s = lines.get(i).map_or("", String::as_str);
                line.push_str(&pad(s, widths[c], align(c)));
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    };
    let wrap_cell = |c: usize, lines: &[String]| -> Vec<String> {
        lines.iter().flat_map(|l| wrap(l, widths[c])).collect()
    };
    if !t.head.is_empty() {
        let head: Vec<Vec<String>> = (0..ncols)
            .map(|c| {
                wrap_cell(
                    c,
                    std::slice::from_ref(t.head.get(c).unwrap_or(&String::new())),
                )
            })
            .collect();
        emit(out, head);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        let _ = writeln!(out, "{indent}{}", rule.join(&" ".repeat(gap)));
    }
    for (i, row) in t.rows.iter().enumerate() {
        if t.spaced && i > 0 {
            out.push('\n');
        }
        let cells: Vec<Vec<String>> = (0..ncols)
            .map(|c| {
                row.get(c)
                    .map_or_else(Vec::new, |cell| wrap_cell(c, &cell.lines))
            })
            .collect();
        emit(out, cells);
    }
}

// ---------------------------------------------------------------- HTML

const FONT: &str = "-apple-system,'Segoe UI','PingFang SC','Hiragino Sans GB','Microsoft YaHei','Noto Sans CJK SC','WenQuanYi Micro Hei',Arial,sans-serif";
const INK: &str = "#202124";
const MUTED: &str = "#5f6368";
const RULE: &str = "#e8eaed";
const HEAD_BG: &str = "#f1f3f4";
const ACCENT: &str = "#1a73e8";
/// Chart colours: phase bars, the part of a bar outside the band, the
/// mean mark, and the band (drawn between the days). Empty stretches of
/// the scale have no colour ([`BLANK`]).
/// (Three-digit forms: a chart has a thousand cells.)
const PHASE_COLOURS: [&str; 3] = ["#17e", "#93e", "#1a9"];
const ALL_PHASES: &str = "#578";
const OUT_OF_BAND: &str = "#d33";
const MEAN_MARK: &str = "#222";
const BAND_BG: &str = "#bdc";
const BLANK: &str = "";

/// (text colour, background) of a tone.
fn tone_colours(t: Tone) -> Option<(&'static str, &'static str)> {
    match t {
        Tone::Plain => None,
        Tone::Pass => Some(("#137333", "#e6f4ea")),
        Tone::Fail => Some(("#b3261e", "#fce8e6")),
        Tone::NoData => Some((MUTED, HEAD_BG)),
    }
}

/// Escaped text in which a figure and its unit ("95.00 %", "10.5 kV")
/// stay on one line.
fn html_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev: Option<char> = None;
    for (i, c) in s.char_indices() {
        if c == ' ' && prev.is_some_and(|p| p.is_ascii_digit()) {
            let rest = &s[i + 1..];
            let unit = UNITS.iter().any(|u| {
                rest.strip_prefix(u)
                    .is_some_and(|after| !after.starts_with(|n: char| n.is_alphanumeric()))
            });
            if unit {
                out.push_str("&nbsp;");
                prev = Some(c);
                continue;
            }
        }
        out.push_str(&esc(c.encode_utf8(&mut [0; 4])));
        prev = Some(c);
    }
    out
}

/// Size, line height and colour of headings and paragraphs. The font
/// family is set once, on the container: browsers and webmail inherit it
/// into tables, and Outlook (which does not) gets it from an MSO-only
/// style block. Markup is kept lean: Gmail clips messages over ~102 KB.
fn text_style(size: u32) -> String {
    format!("font-size:{size}px;")
}

/// Attributes of a layout table.
const TABLE_ATTRS: &str =
    "role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"";

/// Largest HTML part: Gmail clips a message body over about 102 KB.
const HTML_BUDGET: usize = 100_000;

/// How much of a daily chart the HTML can afford.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ChartMode {
    /// A bar per phase and day, the band drawn between the days.
    Full,
    /// One bar per day for all phases together (lowest minimum to highest
    /// maximum, mean of the means), the band above and below: about a
    /// third of the size.
    Lean,
    /// A note instead (the text part and the CSV have the figures).
    Omitted,
}

/// The HTML part, its charts as detailed as [`HTML_BUDGET`] allows: while
/// it is too big, the last full chart becomes lean, then the last lean
/// one is left out. (A month of two three-phase meters fits in full.)
fn html(ctx: &Ctx, subject: &str, blocks: &[Block]) -> String {
    let charts = blocks
        .iter()
        .filter(|b| matches!(b, Block::Chart(_)))
        .count();
    let mut modes = vec![ChartMode::Full; charts];
    loop {
        let out = html_with(ctx, subject, blocks, &modes);
        if out.len() <= HTML_BUDGET {
            return out;
        }
        if let Some(i) = modes.iter().rposition(|m| *m == ChartMode::Full) {
            modes[i] = ChartMode::Lean;
        } else if let Some(i) = modes.iter().rposition(|m| *m == ChartMode::Lean) {
            modes[i] = ChartMode::Omitted;
        } else {
            return out;
        }
    }
}

fn html_with(ctx: &Ctx, subject: &str, blocks: &[Block], modes: &[ChartMode]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{}\" style=\"margin:0;padding:0;\">\n<head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"x-apple-disable-message-reformatting\">\n\
         <title>{}</title>\n\
         <!--[if mso]><style>table,td,th,div,p,span,h1,h2,h3{{font-family:'Microsoft YaHei','SimSun',Arial,sans-serif !important;}}</style><![endif]-->\n\
         </head>\n\
         <body style=\"margin:0;padding:0;background-color:{HEAD_BG};font-family:{FONT};\">\n\
         <table {TABLE_ATTRS} style=\"width:100%;border-collapse:collapse;background-color:{HEAD_BG};\">\
         <tr style=\"vertical-align:top;\"><td align=\"center\" style=\"padding:12px 4px;\">\n\
         <!--[if mso]><table role=\"presentation\" width=\"760\" align=\"center\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"width:760px;\"><tr style=\"vertical-align:top;\"><td style=\"padding:0;\"><![endif]-->\n\
         <table {TABLE_ATTRS} style=\"width:100%;max-width:760px;border-collapse:collapse;background-color:#ffffff;border:1px solid #dadce0;\">\
         <tr style=\"vertical-align:top;\"><td style=\"padding:16px 10px;text-align:left;font-family:{FONT};font-size:14px;line-height:1.45;color:{INK};\">\n",
        ctx.lang().tag(),
        esc(subject),
    );
    let mut charts = modes.iter();
    for b in blocks {
        let mode = match b {
            Block::Chart(_) => charts.next().copied().unwrap_or(ChartMode::Omitted),
            _ => ChartMode::Full,
        };
        html_block(&mut h, b, mode);
    }
    let _ = write!(
        h,
        "<p style=\"margin:18px 0 0 0;{}color:{MUTED};\">pqwatch</p>\n\
         </td></tr></table>\n\
         <!--[if mso]></td></tr></table><![endif]-->\n\
         </td></tr></table>\n</body>\n</html>\n",
        text_style(12)
    );
    h
}

fn html_block(h: &mut String, b: &Block, mode: ChartMode) {
    match b {
        Block::Title(t) => {
            let _ = writeln!(
                h,
                "<h1 style=\"margin:0 0 2px 0;{}line-height:1.3;font-weight:bold;\">{}</h1>",
                text_style(21),
                esc(t)
            );
        }
        Block::Subtitle(t) => {
            let _ = writeln!(
                h,
                "<p style=\"margin:0 0 12px 0;{}word-break:break-word;\">{}</p>",
                text_style(16),
                esc(t)
            );
        }
        Block::Overall(line, v) => {
            let (fg, bg) = tone_colours((*v).into()).unwrap_or((INK, HEAD_BG));
            let _ = writeln!(
                h,
                "<table {TABLE_ATTRS} style=\"width:100%;border-collapse:collapse;margin:14px 0 10px 0;\">\
                 <tr style=\"vertical-align:middle;\"><td style=\"padding:10px 12px;background-color:{bg};border-left:5px solid {fg};{}color:{fg};font-weight:bold;\">{}</td></tr></table>",
                text_style(17),
                esc(line)
            );
        }
        Block::H2(t) => {
            let _ = writeln!(
                h,
                "<h2 style=\"margin:26px 0 8px 0;padding:0 0 4px 0;border-bottom:2px solid {ACCENT};{}line-height:1.3;font-weight:bold;word-break:break-word;\">{}</h2>",
                text_style(18),
                esc(t)
            );
        }
        Block::H3(t) => {
            let _ = writeln!(
                h,
                "<h3 style=\"margin:16px 0 6px 0;{}font-weight:bold;\">{}</h3>",
                text_style(15),
                esc(t)
            );
        }
        Block::Caption(t) => {
            let _ = writeln!(
                h,
                "<p style=\"margin:10px 0 4px 0;{}font-weight:bold;\">{}</p>",
                text_style(13),
                esc(t)
            );
        }
        Block::P(t) => {
            let _ = writeln!(
                h,
                "<p style=\"margin:0 0 8px 0;{}word-break:break-word;\">{}</p>",
                text_style(13),
                html_text(t)
            );
        }
        Block::Note(t, tone) => {
            let colour = tone_colours(*tone).map_or(MUTED, |(fg, _)| fg);
            let _ = writeln!(
                h,
                "<p style=\"margin:0 0 8px 0;{}color:{colour};word-break:break-word;\">{}</p>",
                text_style(12),
                html_text(t)
            );
        }
        Block::Table(t) => html_table(h, t),
        Block::Chart(c) if mode == ChartMode::Omitted => {
            let _ = writeln!(
                h,
                "<p style=\"margin:0 0 8px 0;{}color:{MUTED};\">{}</p>",
                text_style(12),
                esc(&c.omitted)
            );
        }
        Block::Chart(c) if mode == ChartMode::Lean => html_chart(h, &c.combined(), false),
        Block::Chart(c) => html_chart(h, c, true),
    }
}

/// How a cell's text may break.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Breaks {
    /// Between words only, Chinese included (labels, figures).
    Words,
    /// Anywhere, rather than widen the table (configured strings).
    Anywhere,
}

fn cell_html(h: &mut String, tag: &str, cell: &Cell, align: Align, breaks: Breaks, extra: &str) {
    // Padding and size come from the table (cellpadding, font-size), the
    // rule under a row from the row (collapsed borders).
    let mut style = String::new();
    // <th> centres by default.
    if align == Align::Right {
        style.push_str("text-align:right;");
    } else if tag == "th" {
        style.push_str("text-align:left;");
    }
    let tone = tone_colours(cell.tone);
    if let Some((fg, bg)) = tone {
        let _ = write!(style, "color:{fg};background-color:{bg};");
    }
    if cell.strong {
        style.push_str("font-weight:bold;");
    }
    let chinese = cell.lines.iter().any(|l| l.chars().any(is_wide));
    style.push_str(match (cell.nowrap, breaks) {
        (true, _) => "white-space:nowrap;",
        (false, Breaks::Anywhere) => "word-break:break-word;",
        (false, Breaks::Words) if chinese => "word-break:keep-all;",
        (false, Breaks::Words) => "",
    });
    style.push_str(extra);
    let _ = write!(h, "<{tag} style=\"{style}\">");
    for (i, l) in cell.lines.iter().enumerate() {
        if i == 0 {
            h.push_str(&html_text(l));
        } else {
            let _ = write!(
                h,
                "<div style=\"font-size:12px;color:{};{}\">{}</div>",
                tone.map_or(MUTED, |(fg, _)| fg),
                if cell.strong {
                    "font-weight:normal;"
                } else {
                    ""
                },
                html_text(l)
            );
        }
    }
    let _ = write!(h, "</{tag}>");
}

fn html_table(h: &mut String, t: &Table) {
    let align = |c: usize| t.align.get(c).copied().unwrap_or(Align::Left);
    h.push_str(
        "<table width=\"100%\" cellpadding=\"4\" cellspacing=\"0\" border=\"0\" style=\"width:100%;border-collapse:collapse;margin:0 0 12px 0;font-size:13px;\">",
    );
    if !t.head.is_empty() {
        let _ = write!(
            h,
            "<tr style=\"background-color:{HEAD_BG};border-bottom:1px solid #dadce0;\">"
        );
        for (c, head) in t.head.iter().enumerate() {
            let cell = Cell::new(head.clone()).strong();
            let extra = format!("color:{MUTED};font-size:12px;");
            cell_html(h, "th", &cell, align(c), Breaks::Words, &extra);
        }
        h.push_str("</tr>");
    }
    for (r, row) in t.rows.iter().enumerate() {
        let _ = write!(
            h,
            "<tr valign=\"top\" style=\"border-bottom:1px solid {RULE};\">"
        );
        for (c, cell) in row.iter().enumerate() {
            // Labels in grey (unless a tone colours them).
            let label = match (t.shape, c) {
                (Shape::Fields, 0) => true,
                (Shape::Data, 0) => t.align.get(1) == Some(&Align::Right),
                _ => false,
            };
            let mut extra = String::new();
            if t.shape == Shape::Fields && c == 0 && r == 0 {
                extra.push_str("width:34%;");
            }
            if label && cell.tone == Tone::Plain {
                let _ = write!(extra, "color:{MUTED};");
            }
            let breaks = if t.breakable.get(c).copied().unwrap_or(false) {
                Breaks::Anywhere
            } else {
                Breaks::Words
            };
            cell_html(h, "td", cell, align(c), breaks, &extra);
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>\n");
}

/// One bar: widths (% of the scale) and colours, left to right; the bar
/// from the minimum to the maximum in the phase's colour (red outside the
/// band), a dark mark at the mean.
fn bar_segments(
    lo: f64,
    hi: f64,
    band: Option<(f64, f64)>,
    value: Option<(f64, f64, f64)>,
    colour: &'static str,
) -> Vec<(f64, &'static str)> {
    let span = hi - lo;
    let mark = span * 0.008;
    let mut cuts = vec![lo, hi];
    let bar = value.map(|(mn, mean, mx)| {
        let (mut a, mut b) = (mn, mx);
        if b - a < mark * 2.0 {
            let c = (a + b) / 2.0;
            (a, b) = (c - mark, c + mark);
        }
        (a, b, mean)
    });
    if let Some((a, b, mean)) = bar {
        cuts.extend([a, b, mean - mark / 2.0, mean + mark / 2.0]);
        if let Some((l, u)) = band {
            cuts.extend([l, u]);
        }
    }
    segments(lo, hi, cuts, |mid| {
        let in_band = band.is_none_or(|(l, u)| l <= mid && mid <= u);
        match bar {
            Some((_, _, mean)) if (mid - mean).abs() < mark / 2.0 => MEAN_MARK,
            Some((a, b, _)) if a <= mid && mid <= b && in_band => colour,
            Some((a, b, _)) if a <= mid && mid <= b => OUT_OF_BAND,
            _ => BLANK,
        }
    })
}

/// The band on the scale: what is drawn between the days.
fn band_segments(lo: f64, hi: f64, band: Option<(f64, f64)>) -> Vec<(f64, &'static str)> {
    let cuts = match band {
        Some((l, u)) => vec![lo, hi, l, u],
        None => vec![lo, hi],
    };
    segments(lo, hi, cuts, |mid| match band {
        Some((l, u)) if l <= mid && mid <= u => BAND_BG,
        _ => BLANK,
    })
}

/// The stretches between `cuts` (clamped to the scale), coloured by their
/// midpoint; neighbours of one colour merge.
fn segments(
    lo: f64,
    hi: f64,
    cuts: Vec<f64>,
    colour_at: impl Fn(f64) -> &'static str,
) -> Vec<(f64, &'static str)> {
    let span = hi - lo;
    let mut cuts: Vec<f64> = cuts.into_iter().map(|x| x.clamp(lo, hi)).collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup_by(|a, b| (*a - *b).abs() < span * 1e-6);
    let mut out: Vec<(f64, &'static str)> = Vec::new();
    for w in cuts.windows(2) {
        let c = colour_at((w[0] + w[1]) / 2.0);
        let pct = (w[1] - w[0]) / span * 100.0;
        match out.last_mut() {
            Some((p, last)) if *last == c => *p += pct,
            _ => out.push((pct, c)),
        }
    }
    out.retain(|(p, _)| *p >= 0.05);
    out
}

/// Columns of the chart's grid: a bar's segments are whole columns.
const CHART_COLUMNS: usize = 200;

/// Segments (widths in %) as column spans of a grid of `n` columns; every
/// segment that is a bar keeps at least one column.
fn grid_spans(segs: &[(f64, &'static str)], n: usize) -> Vec<(usize, &'static str)> {
    let mut out: Vec<(usize, &'static str)> = Vec::new();
    let mut cum = 0.0;
    let mut edge = 0usize;
    for (i, (w, c)) in segs.iter().enumerate() {
        cum += w;
        let mut next = if i + 1 == segs.len() {
            n
        } else {
            ((cum / 100.0 * n as f64).round() as usize).min(n)
        };
        let visible = !c.is_empty();
        if next <= edge && visible && edge < n {
            next = edge + 1;
        }
        if next > edge {
            out.push((next - edge, c));
            edge = next;
        }
    }
    if edge < n {
        match out.last_mut() {
            Some((span, _)) => *span += n - edge,
            None => out.push((n, BLANK)),
        }
    }
    out
}

/// A bar's colour: per phase, or one for all phases together.
fn phase_colour(c: &Chart, i: usize) -> &'static str {
    if c.phases.len() == 1 && c.phases[0] == c.all_phases {
        ALL_PHASES
    } else {
        PHASE_COLOURS[i % PHASE_COLOURS.len()]
    }
}

fn html_chart(h: &mut String, c: &Chart, band_every_day: bool) {
    let small = format!("font-size:11px;line-height:1.2;color:{MUTED};");
    let n = CHART_COLUMNS;
    let rows = c.phases.len().max(1);
    // One table: a date column, then a grid of equal columns; each phase
    // is a row of cells spanning its segments, and a thin row of the band
    // separates the days.
    let _ = write!(
        h,
        "<table {TABLE_ATTRS} style=\"width:100%;border-collapse:collapse;table-layout:fixed;margin:0 0 4px 0;\">"
    );
    // A row may end early: trailing empty columns need no cells.
    let cells = |h: &mut String, spans: &[(usize, &str)]| {
        let used = spans
            .iter()
            .rposition(|(_, col)| !col.is_empty())
            .map_or(0, |i| i + 1);
        for (span, col) in &spans[..used] {
            // An empty spacer cell has nothing to style, and colspan="1" is
            // the default: a chart is ~28 KB of Gmail's 100, so bytes count.
            let style = if col.is_empty() {
                String::new()
            } else {
                format!(" style=\"background:{col}\"")
            };
            if *span == 1 {
                let _ = write!(h, "<td{style}></td>");
            } else {
                let _ = write!(h, "<td colspan=\"{span}\"{style}></td>");
            }
        }
    };
    let band = c.bands.iter().flatten().next().copied();
    let band_spans = grid_spans(&band_segments(c.lo, c.hi, band), n);
    // The first row fixes the columns: the date column's width is set there.
    let _ = write!(
        h,
        "<tr style=\"height:3px\"><td width=\"44\" style=\"width:44px;padding:0\"></td>"
    );
    cells(h, &band_spans);
    h.push_str("</tr>");
    for (label, vals) in &c.days {
        for (i, v) in vals.iter().enumerate() {
            // (Chart rows drop the last ";": a chart is ~28 KB of Gmail's 100.)
            h.push_str("<tr style=\"height:4px\">");
            if i == 0 {
                let _ = write!(
                    h,
                    "<td rowspan=\"{rows}\" align=\"right\" nowrap style=\"padding-right:6px;font-size:11px;color:{MUTED}\">{}</td>",
                    esc(label)
                );
            }
            let colour = phase_colour(c, i);
            let band = c.bands.get(i).copied().flatten();
            cells(
                h,
                &grid_spans(&bar_segments(c.lo, c.hi, band, *v, colour), n),
            );
            h.push_str("</tr>");
        }
        // Between days: the band again, or (lean) just a gap, and the band
        // once more under the last day.
        h.push_str("<tr style=\"height:3px\"><td></td>");
        if band_every_day || std::ptr::eq(label, &c.days[c.days.len() - 1].0) {
            cells(h, &band_spans);
        }
        h.push_str("</tr>");
    }
    // The scale's ends under the bars.
    let half = n / 2;
    let _ = write!(
        h,
        "<tr style=\"vertical-align:top;\"><td style=\"padding:0 6px 0 0;text-align:right;{small}\">{}</td>\
         <td colspan=\"{half}\" style=\"text-align:left;{small}\">{}</td>\
         <td colspan=\"{}\" style=\"text-align:right;{small}\">{}</td></tr></table>",
        esc(c.volts.unit()),
        esc(&c.volts.num(c.lo)),
        n - half,
        esc(&c.volts.num(c.hi)),
    );
    h.push('\n');
    // Legend.
    let swatch = |colour: &str| {
        format!(
            "<span style=\"display:inline-block;width:12px;height:8px;background-color:{colour};vertical-align:middle;font-size:0;line-height:0;\"></span>"
        )
    };
    let item = |sw: String, label: &str| {
        format!(
            "<span style=\"display:inline-block;margin:0 12px 2px 0;white-space:nowrap;{small}\">{sw} {}</span>",
            esc(label)
        )
    };
    let mut legend = String::new();
    for (i, p) in c.phases.iter().enumerate() {
        legend.push_str(&item(swatch(phase_colour(c, i)), p));
    }
    legend.push_str(&item(swatch(MEAN_MARK), &c.legend_mean));
    legend.push_str(&item(swatch(OUT_OF_BAND), &c.legend_out));
    let band_text = match c.bands.iter().flatten().next() {
        Some((l, u)) => format!(
            "{} {}–{} {}",
            c.legend_band,
            c.volts.num(*l),
            c.volts.num(*u),
            c.volts.unit()
        ),
        None => c.legend_band.clone(),
    };
    legend.push_str(&item(swatch(BAND_BG), &band_text));
    let _ = writeln!(h, "<p style=\"margin:0 0 10px 0;{small}\">{legend}</p>");
}

// ---------------------------------------------------------------- CSV

/// `pqwatch-C001-2026-10.csv`: only [A-Za-z0-9_-] from the id and label.
fn csv_name(r: &Report) -> String {
    format!(
        "pqwatch-{}-{}.csv",
        safe_part(&r.customer_id, "customer"),
        safe_part(&r.period.label(), "period")
    )
}

/// Characters outside [A-Za-z0-9_-] become "_", runs collapse.
fn safe_part(s: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    let out = out.trim_matches('_').to_string();
    if out.is_empty() {
        fallback.to_string()
    } else {
        out
    }
}

/// A file name as given, made safe ([A-Za-z0-9._-]).
fn safe_name(s: &str, fallback: &str) -> String {
    let parts: Vec<String> = s
        .split('.')
        .map(|p| safe_part(p, ""))
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() < 2 {
        fallback.to_string()
    } else {
        parts.join(".")
    }
}

/// RFC 4180: quote when needed, doubling quotes.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A configured string in a CSV cell: cleaned, and kept from being read as
/// a formula by a spreadsheet.
fn csv_text(s: &str) -> String {
    let s = clean(s);
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s
    }
}

fn csv_num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => fixed(v, decimals),
        _ => String::new(),
    }
}

fn csv(r: &Report) -> String {
    let mut out = String::from("\u{feff}");
    let mut row = |fields: &[String]| {
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    };
    row(&CSV_HEADER.map(String::from));
    for m in &r.meters {
        let id = csv_text(&m.id);
        for d in &m.daily {
            let peak = |p: &Option<Peak>| csv_num(p.as_ref().map(|p| p.value), 2);
            for p in &d.phases {
                row(&[
                    day_key(d.date),
                    id.clone(),
                    csv_text(&p.phase),
                    d.expected.to_string(),
                    p.monitored.to_string(),
                    p.above.to_string(),
                    p.below.to_string(),
                    csv_num(p.rate.map(super::model::truncate2), 2),
                    csv_num(p.min, 2),
                    csv_num(p.mean, 2),
                    csv_num(p.max, 2),
                    csv_num(p.thd_cp95, 2),
                    csv_num(p.thd_max, 2),
                    peak(&d.active_power_peak),
                    peak(&d.demand_peak),
                    // Empty, like the other figures, on a day without data.
                    if d.outage == 0 && p.rate.is_none() {
                        String::new()
                    } else {
                        d.outage.to_string()
                    },
                ]);
            }
        }
    }
    out
}

// ---------------------------------------------------------------- sample

/// A realistic report for tests and screenshots: 华北钢铁 (C001), October
/// 2026 in Asia/Shanghai; a 10 kV meter judged on GB/T 12325 (line-to-line,
/// failing: ten days of overvoltage, two harmonic orders over) and a 0.4 kV
/// meter judged per EN 50160 on 10-minute means (passing); three events
/// (one still open), a failed suspension (with a hostile note: `<script>`
/// and CR/LF), and demand within its limit.
#[doc(hidden)]
pub fn sample(language: Language) -> Report {
    use super::model::{DayPhase, DayRow, DemandSection, EventRow, SuspensionRow, Verdicts};
    use super::schedule::Period;
    use crate::quality::rules::Kind;

    /// A small deterministic generator (64-bit LCG).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, a: f64, b: f64) -> f64 {
            a + (b - a) * self.next()
        }
        fn minute(&mut self) -> i64 {
            (self.next() * 1440.0) as i64 * 60_000
        }
    }

    struct Spec {
        id: &'static str,
        profile: &'static str,
        nominal: f64,
        refs: [&'static str; 3],
        reference: f64,
        band: (f64, f64),
        band_note: &'static str,
        voltage_standard: &'static str,
        harmonic_standard: &'static str,
        long: bool,
        pt: f64,
        ct: f64,
        /// THDu limit, odd and even order limits.
        thd_limit: f64,
        odd: f64,
        even: f64,
        thd_base: [f64; 3],
        /// Days (0-based) with sustained overvoltage.
        high: std::ops::Range<usize>,
        /// A day with a dip below the band.
        low: usize,
        /// A day with a partial outage (fewer minutes).
        gap: usize,
        /// Failing orders: (phase index, order, CP95).
        failing: &'static [(usize, u16, f64)],
        thdi: bool,
        load: (f64, f64),
    }

    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").expect("bundled tzdb");
    let period = Period::parse("2026-10").expect("a month");
    let from_ms = period.start_ms(&tz);
    let to_ms = period.end_ms(&tz);
    let target = 95.0;
    let dates: Vec<jiff::civil::Date> = period.days().collect();
    let day_start: Vec<i64> = dates
        .iter()
        .map(|d| Period::containing(PeriodKind::Day, *d).start_ms(&tz))
        .collect();
    let local = |d: usize, h: i64, m: i64| day_start[d] + (h * 60 + m) * 60_000;

    let specs = [
        Spec {
            id: "HB-10KV-IN1",
            profile: "siemens-pac3200",
            nominal: 10_000.0,
            refs: ["l1_l2", "l2_l3", "l3_l1"],
            reference: 10_000.0,
            band: (-7.0, 7.0),
            band_note: "10 kV: ±7 %",
            voltage_standard: "GB/T 12325-2008",
            harmonic_standard: "GB/T 14549-1993",
            long: false,
            pt: 100.0,
            ct: 60.0,
            thd_limit: 4.0,
            odd: 3.2,
            even: 1.6,
            thd_base: [3.55, 2.7, 3.1],
            high: 4..14,
            low: 19,
            gap: 16,
            failing: &[(0, 5, 3.41), (2, 5, 3.27)],
            thdi: true,
            load: (4200.0, 5900.0),
        },
        Spec {
            id: "HB-0.4KV-LV2",
            profile: "janitza-umg96rm",
            nominal: 400.0,
            refs: ["l1", "l2", "l3"],
            // IEC 60038: the phases of 230/400 V are judged against 230 V.
            reference: 230.0,
            band: (-10.0, 10.0),
            band_note: "LV: ±10 % for 95 % of each week's 10-minute means; +10 / -15 % for all",
            voltage_standard: "EN 50160:2010",
            harmonic_standard: "EN 50160:2010",
            long: true,
            pt: 1.0,
            ct: 200.0,
            thd_limit: 8.0,
            odd: 5.0,
            even: 1.0,
            thd_base: [2.1, 2.4, 1.9],
            high: 0..0,
            low: 22,
            gap: 99,
            failing: &[],
            thdi: false,
            load: (380.0, 610.0),
        },
    ];

    let mut rng = Rng(20_261_001);
    let mut meters = Vec::new();
    for s in &specs {
        let upper = s.reference * (1.0 + s.band.1 / 100.0);
        let lower = s.reference * (1.0 + s.band.0 / 100.0);
        let mut daily = Vec::new();
        for (d, date) in dates.iter().enumerate() {
            let mut phases = Vec::new();
            for (pi, ph) in s.refs.iter().enumerate() {
                let monitored = if d == s.gap { 1440 - 97 } else { 1440 };
                let high = s.high.contains(&d);
                let mean = s.reference
                    * if high {
                        1.0 + rng.range(0.058, 0.066)
                    } else {
                        1.0 + rng.range(0.012, 0.03)
                    };
                let max = if high {
                    s.reference * (1.0 + rng.range(0.078, 0.088))
                } else {
                    mean + s.reference * rng.range(0.012, 0.028)
                };
                let min = if d == s.low {
                    s.reference * (1.0 + s.band.0 / 100.0 - rng.range(0.005, 0.012))
                } else {
                    mean - s.reference * rng.range(0.015, 0.03)
                };
                let above = if high {
                    rng.range(380.0, 700.0) as u32
                } else {
                    0
                };
                let below = if d == s.low {
                    rng.range(12.0, 48.0) as u32
                } else {
                    0
                };
                let thd = s.thd_base[pi] + rng.range(-0.35, 0.55);
                phases.push(DayPhase {
                    phase: ph.to_string(),
                    monitored,
                    above,
                    below,
                    rate: Some((1.0 - f64::from(above + below) / f64::from(monitored)) * 100.0),
                    min: Some(min),
                    mean: Some(mean),
                    max: Some(max),
                    thd_cp95: Some(thd),
                    thd_max: Some(thd + rng.range(0.2, 0.7)),
                });
            }
            let ap = rng.range(s.load.0, s.load.1);
            daily.push(DayRow {
                date: *date,
                expected: 1440,
                phases,
                active_power_peak: Some(Peak {
                    value: ap,
                    at_ms: day_start[d] + rng.minute(),
                    unit: "kW".into(),
                }),
                demand_peak: Some(Peak {
                    value: ap * 0.93,
                    at_ms: day_start[d] + rng.minute(),
                    unit: "kW".into(),
                }),
                outage: 0,
            });
        }
        let expected = dates.len() as u64 * 1440;
        // Period rows from the days, the way the ledger merges them.
        let mut voltage = Vec::new();
        let mut totals = (0u32, 0u32, 0u32, 0.0f64);
        let mut tmax: Option<(f64, i64)> = None;
        let mut tmin: Option<(f64, i64)> = None;
        for (pi, ph) in s.refs.iter().enumerate() {
            let (mut mon, mut above, mut below, mut sum) = (0u32, 0u32, 0u32, 0.0);
            let mut max: Option<(f64, i64)> = None;
            let mut min: Option<(f64, i64)> = None;
            for (d, day) in daily.iter().enumerate() {
                let p = &day.phases[pi];
                mon += p.monitored;
                above += p.above;
                below += p.below;
                sum += p.mean.unwrap_or(0.0) * f64::from(p.monitored);
                let hi = (
                    p.max.unwrap_or(0.0),
                    day_start[d] + (d as i64 * 37 + 600) % 1440 * 60_000,
                );
                let lo = (
                    p.min.unwrap_or(0.0),
                    day_start[d] + (d as i64 * 53 + 240) % 1440 * 60_000,
                );
                if max.is_none_or(|m| hi.0 > m.0) {
                    max = Some(hi);
                }
                if min.is_none_or(|m| lo.0 < m.0) {
                    min = Some(lo);
                }
            }
            totals = (
                totals.0 + mon,
                totals.1 + above,
                totals.2 + below,
                totals.3 + sum,
            );
            if tmax.is_none_or(|m| max.is_some_and(|x| x.0 > m.0)) {
                tmax = max;
            }
            if tmin.is_none_or(|m| min.is_some_and(|x| x.0 < m.0)) {
                tmin = min;
            }
            let m = f64::from(mon);
            voltage.push(VoltageRow {
                phase: ph.to_string(),
                reference_v: s.reference,
                upper_v: upper,
                lower_v: lower,
                monitored: mon,
                above,
                below,
                rate: Some((1.0 - f64::from(above + below) / m) * 100.0),
                above_pct: Some(f64::from(above) / m * 100.0),
                below_pct: Some(f64::from(below) / m * 100.0),
                max,
                min,
                mean: Some(sum / m),
                completeness: Some(m / expected as f64 * 100.0),
            });
        }
        let (mon, above, below, sum) = totals;
        let m = f64::from(mon);
        voltage.push(VoltageRow {
            phase: "total".into(),
            reference_v: s.reference,
            upper_v: f64::NAN,
            lower_v: f64::NAN,
            monitored: mon,
            above,
            below,
            rate: Some((1.0 - f64::from(above + below) / m) * 100.0),
            above_pct: Some(f64::from(above) / m * 100.0),
            below_pct: Some(f64::from(below) / m * 100.0),
            max: tmax,
            min: tmin,
            mean: Some(sum / m),
            completeness: Some(m / (expected * 3) as f64 * 100.0),
        });
        let voltage_long: Vec<LongVoltageRow> = if s.long {
            s.refs
                .iter()
                .enumerate()
                .map(|(pi, ph)| {
                    let intervals = voltage[pi].monitored / 10;
                    let outside = (voltage[pi].below / 10).max(1) + pi as u32;
                    LongVoltageRow {
                        phase: ph.to_string(),
                        intervals,
                        outside,
                        within_pct: Some((1.0 - f64::from(outside) / f64::from(intervals)) * 100.0),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        // EN 50160 weeks of October 2026: W40 (1–4, part) … W44 (26–31, part).
        let weekly: Vec<super::model::WeekRow> = if s.long {
            [
                (40, 1, 4),
                (41, 5, 11),
                (42, 12, 18),
                (43, 19, 25),
                (44, 26, 31),
            ]
            .iter()
            .flat_map(|&(wk, a, z)| {
                s.refs.iter().enumerate().map(move |(pi, ph)| {
                    let n = (z - a + 1) as u32 * 144;
                    let n1 = 2 + pi as u32 + (wk % 3) as u32;
                    super::model::WeekRow {
                        week: format!("2026-W{wk}"),
                        from: jiff::civil::date(2026, 10, a),
                        to: jiff::civil::date(2026, 10, z),
                        partial: z - a < 6,
                        phase: ph.to_string(),
                        intervals: n,
                        outside: n1,
                        outside_range2: 0,
                        within_pct: Some((1.0 - f64::from(n1) / f64::from(n)) * 100.0),
                        required_pct: 95.0,
                        verdict: Verdict::Pass,
                    }
                })
            })
            .collect()
        } else {
            Vec::new()
        };
        let share = if s.long {
            let (n, o) = long_totals(&voltage_long);
            (1.0 - f64::from(o) / f64::from(n)) * 100.0
        } else {
            voltage.last().and_then(|r| r.rate).unwrap_or(0.0)
        };
        let voltage_verdict = if share + 1e-9 >= target {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let distortion = |field: String,
                          phase: &str,
                          order: u16,
                          cp95: f64,
                          limit: Option<f64>,
                          rng: &mut Rng| {
            let verdict = match limit {
                Some(l) if cp95 > l => Verdict::Fail,
                Some(_) => Verdict::Pass,
                None => Verdict::NoData,
            };
            let max = cp95 * rng.range(1.12, 1.4);
            DistortionRow {
                field,
                phase: phase.into(),
                order,
                minutes: (expected - 97) as u32,
                cp95: Some(cp95),
                max: Some((max, from_ms + rng.minute() * 20)),
                min: Some((cp95 * rng.range(0.2, 0.5), from_ms + rng.minute() * 20)),
                mean: Some(cp95 * rng.range(0.7, 0.85)),
                over: match limit {
                    Some(l) if cp95 > l => rng.range(2300.0, 4100.0) as u32,
                    Some(l) if max > l => rng.range(10.0, 300.0) as u32,
                    _ => 0,
                },
                limit,
                verdict,
                samples: 0,
                assessed: None,
            }
        };
        let phases_n = ["l1", "l2", "l3"];
        let thd: Vec<DistortionRow> = phases_n
            .iter()
            .enumerate()
            .map(|(pi, ph)| {
                let cp95 = s.thd_base[pi] + 0.5 + if pi == 0 && !s.long { 0.3 } else { 0.0 };
                distortion(
                    format!("thd_voltage_{ph}_n"),
                    ph,
                    0,
                    cp95,
                    Some(s.thd_limit),
                    &mut rng,
                )
            })
            .collect();
        let mut harmonics = Vec::new();
        for (pi, ph) in phases_n.iter().enumerate() {
            for order in 2..=25u16 {
                let limit = if order % 2 == 1 { s.odd } else { s.even };
                let cp95 = s
                    .failing
                    .iter()
                    .find(|(p, o, _)| *p == pi && *o == order)
                    .map_or_else(|| limit * rng.range(0.08, 0.55), |f| f.2);
                harmonics.push(distortion(
                    format!("harmonic_voltage_{ph}_n_h{order}"),
                    ph,
                    order,
                    (cp95 * 100.0).round() / 100.0,
                    Some(limit),
                    &mut rng,
                ));
            }
        }
        let thd_current = if s.thdi {
            phases_n
                .iter()
                .map(|ph| {
                    let c = rng.range(8.0, 14.0);
                    distortion(format!("thd_current_{ph}"), ph, 0, c, None, &mut rng)
                })
                .collect()
        } else {
            Vec::new()
        };
        let harmonic_verdict = Verdict::combine(thd.iter().chain(&harmonics).map(|r| r.verdict));
        let highest = |f: fn(&DayRow) -> Option<&Peak>| {
            daily
                .iter()
                .filter_map(f)
                .max_by(|a, b| a.value.total_cmp(&b.value))
                .cloned()
        };
        meters.push(MeterReport {
            id: s.id.into(),
            profile: s.profile.into(),
            nominal_voltage: s.nominal,
            phases: 3,
            pt_ratio: s.pt,
            ct_ratio: s.ct,
            voltage_standard: s.voltage_standard.into(),
            harmonic_standard: s.harmonic_standard.into(),
            band_pct: Some(s.band),
            band_note: s.band_note.into(),
            judged_on_10min: s.long,
            voltage_share: Some(share),
            window_ms: 60_000,
            expected,
            outage_minutes: 0,
            data_completeness: None,
            active_power_peak: highest(|d| d.active_power_peak.as_ref()),
            demand_peak: highest(|d| d.demand_peak.as_ref()),
            voltage,
            voltage_long,
            weekly,
            thd,
            harmonics,
            thd_current,
            tdd_current: Vec::new(),
            harmonic_currents: Vec::new(),
            unbalance: Some(super::model::UnbalanceRow {
                minutes: (expected - 97) as u32,
                cp95: Some(if s.long { 0.62 } else { 1.34 }),
                max: Some((
                    if s.long { 1.05 } else { 2.71 },
                    day_start[9] + 11 * 3_600_000,
                )),
                mean: Some(if s.long { 0.41 } else { 0.88 }),
                limit: 2.0,
                short_limit: 4.0,
                verdict: Verdict::Pass,
            }),
            frequency: Some(super::model::FrequencyRow {
                standard: s.voltage_standard.replace("12325-2008", "15945-2008"),
                nominal_hz: 50.0,
                deviation_hz: if s.long { 0.5 } else { 0.2 },
                required_pct: if s.long { 99.5 } else { 100.0 },
                monitored: (expected - 97) as u32,
                outside: 0,
                within_pct: Some(100.0),
                max: Some((50.07, day_start[3] + 9 * 3_600_000)),
                min: Some((49.93, day_start[21] + 19 * 3_600_000)),
                verdict: Verdict::Pass,
            }),
            // No sample meter computes flicker (the profiled meters do not).
            flicker: Vec::new(),
            flicker_limit: None,
            daily,
            voltage_verdict,
            harmonic_verdict,
        });
    }

    // The voltage event's peak is that day's highest L1-L2 minute.
    let high_peak = meters[0].daily[4].phases[0].max.unwrap_or(10_873.0);
    let events = vec![
        EventRow {
            meter: "HB-10KV-IN1".into(),
            kind: Kind::VoltageHigh,
            phase: "l1_l2".into(),
            order: 0,
            start_ms: local(4, 9, 12),
            end_ms: local(4, 17, 40),
            open: false,
            peak: high_peak,
            limit: 10_700.0,
            unit: "V",
            source: "GB/T 12325-2008 (10 kV: ±7 %)".into(),
        },
        EventRow {
            meter: "HB-10KV-IN1".into(),
            kind: Kind::SuspensionLoad,
            phase: String::new(),
            order: 0,
            start_ms: local(14, 10, 20),
            end_ms: local(14, 11, 5),
            open: false,
            peak: 6_312.4,
            limit: 6_000.0,
            unit: "kVA",
            source: "suspension of 2000 kVA (8000 kVA contracted × 1.00)".into(),
        },
        EventRow {
            meter: "HB-10KV-IN1".into(),
            kind: Kind::HarmonicVoltage,
            phase: "l1".into(),
            order: 5,
            start_ms: local(27, 20, 5),
            end_ms: to_ms,
            open: true,
            peak: 3.58,
            limit: 3.2,
            unit: "%",
            source: "GB/T 14549-1993 (10 kV: odd orders 3.2 %)".into(),
        },
    ];
    let suspensions = vec![SuspensionRow {
        from: "2026-10-12".into(),
        to: "2026-10-19".into(),
        from_ms: day_start[11],
        to_ms: day_start[18],
        kva: 2000.0,
        note: Some(
            "减容暂停 1# 主变 <script>alert(\"pq\")</script>\r\nBcc: attacker@evil.example".into(),
        ),
        allowed: Some(6000.0),
        peak: Some(Peak {
            value: 6_312.4,
            at_ms: local(14, 10, 47),
            unit: "kVA".into(),
        }),
        instant_peak: Some(Peak {
            value: 7_020.9,
            at_ms: local(14, 10, 39),
            unit: "kVA".into(),
        }),
        basis_ms: 900_000,
        violations: 1,
        verdict: Verdict::Fail,
    }];
    let demand_peak = meters
        .iter()
        .filter_map(|m| m.demand_peak.clone())
        .max_by(|a, b| a.value.total_cmp(&b.value));
    let demand = DemandSection {
        contracted_kw: 6000.0,
        factor: 1.05,
        limit_kw: 6300.0,
        peak: demand_peak,
        period_ms: 900_000,
        slide_ms: 60_000,
        exceedances: 0,
        verdict: Verdict::Pass,
    };
    let voltage = Verdict::combine(meters.iter().map(|m| m.voltage_verdict));
    let harmonics = Verdict::combine(meters.iter().map(|m| m.harmonic_verdict));
    let overall = Verdict::combine([voltage, harmonics, Verdict::Fail, demand.verdict]);
    Report {
        customer_id: "C001".into(),
        customer_name: "华北钢铁有限公司".into(),
        contracted_kva: Some(8000.0),
        language,
        period,
        tz: tz.clone(),
        tz_name: "Asia/Shanghai".into(),
        from_ms,
        to_ms,
        // 2026-11-01 08:00 +08:00, when the default schedule fires.
        generated_ms: to_ms + 8 * 3_600_000,
        voltage_target: target,
        min_completeness: 90.0,
        worst_phase: false,
        meters,
        events,
        suspensions,
        demand: Some(demand),
        verdicts: Verdicts {
            voltage,
            harmonics,
            unbalance: Some(Verdict::Pass),
            frequency: Some(Verdict::Pass),
            flicker: None,
            suspension: Some(Verdict::Fail),
            demand: Some(Verdict::Pass),
            overall,
        },
        unreadable_rows: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "North <script>alert('x')</script> Steel\r\nBcc: attacker@evil.example\r\n\r\nbody"
                .into();
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
        s.period = super::super::schedule::Period::parse("2026-W44").unwrap();
        assert!(
            render(&s)
                .subject
                .starts_with("[pqwatch] 电压质量周报 2026-W44 — ")
        );
        assert!(render(&s).subject.ends_with(": 合格"));
        s.period = super::super::schedule::Period::parse("2026-10-05").unwrap();
        assert!(render(&s).subject.contains("电压质量日报 2026-10-05"));
        s.period = super::super::schedule::Period::parse("2026-10-01..2026-10-15").unwrap();
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
        assert!(h.contains(
            "'Microsoft YaHei','Noto Sans CJK SC','WenQuanYi Micro Hei',Arial,sans-serif"
        ));
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
}
