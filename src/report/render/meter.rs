//! Each meter's section: voltage tables (daily, long-interval, weekly) and
//! the daily voltage chart.

use super::distortion::harmonics;
use super::layout::{Align, Block, Cell, Chart, ChartDay, Table, Tone};
use super::{
    Ctx, DASH, Volts, band_of, completeness_lines, flicker_figure, long_totals, nominal, pct,
    pct_num, rate, total_row, trim_num,
};
use crate::mail::text::clean;
use crate::report::model::{DistortionRow, MeterReport, Verdict, VoltageRow};

/// One meter's section: fact sheet, voltage, harmonics and load.
pub(super) fn meter(ctx: &Ctx, m: &MeterReport, b: &mut Vec<Block>) {
    let v = Volts::of(m);
    let id = clean(&m.id);
    b.push(Block::H2(if ctx.zh {
        format!("监测点 {id}")
    } else {
        format!("Meter {id}")
    }));
    b.push(Block::Table(facts(ctx, m, v)));
    voltage(ctx, m, v, b);
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

/// The meter's fact sheet on top of its section: what it is, what it is
/// judged by, and its verdicts, with a row each for unbalance and flicker
/// where it measures them.
fn facts(ctx: &Ctx, m: &MeterReport, v: Volts) -> Table {
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
            Cell::lines(band_lines(ctx, m, v)),
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
    rows.extend(unbalance_fact(ctx, m));
    rows.extend(flicker_fact(ctx, m));
    Table::fields(rows)
}

/// The voltage band as configured (percent) and as measured against
/// (volts, from the first phase's row), with the preset's source note.
fn band_lines(ctx: &Ctx, m: &MeterReport, v: Volts) -> Vec<String> {
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
    band_cell
}

/// The unbalance fact, where the meter measures it.
fn unbalance_fact(ctx: &Ctx, m: &MeterReport) -> Option<(String, Cell)> {
    let u = m.unbalance.as_ref()?;
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
    Some((
        ctx.t("不平衡度 95%/最大", "Unbalance 95%/max").into(),
        if u.verdict == Verdict::Fail {
            cell.tone(Tone::Fail)
        } else {
            cell
        },
    ))
}

/// The long-term flicker (Plt) fact, where the meter measures it.
fn flicker_fact(ctx: &Ctx, m: &MeterReport) -> Option<(String, Cell)> {
    let plt: Vec<&DistortionRow> = m
        .flicker
        .iter()
        .filter(|r| r.field.starts_with("flicker_plt_"))
        .collect();
    if plt.is_empty() {
        return None;
    }
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
    Some((
        ctx.t("长时间闪变 Plt", "Flicker Plt").into(),
        if fail { cell.tone(Tone::Fail) } else { cell },
    ))
}

/// The voltage part of the section: the period's table, the 10-minute
/// table where the preset judges on those, and the daily chart.
fn voltage(ctx: &Ctx, m: &MeterReport, v: Volts, b: &mut Vec<Block>) {
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
}

/// "+7", "-10", "+5.5".
pub(super) fn signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", trim_num(v))
    } else {
        trim_num(v)
    }
}

pub(super) fn voltage_table(ctx: &Ctx, m: &MeterReport, v: Volts) -> Table {
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

pub(super) fn long_table(ctx: &Ctx, m: &MeterReport) -> Table {
    let rows = &m.voltage_long;
    let mut head = vec![String::new()];
    head.extend(rows.iter().map(|r| ctx.phase(&r.phase)));
    let (n, out) = long_totals(rows);
    let total_within = (n > 0).then(|| (1.0 - f64::from(out) / f64::from(n)) * 100.0);
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
pub(super) fn weekly_table(ctx: &Ctx, m: &MeterReport) -> Table {
    let mut weeks: Vec<Vec<&crate::report::model::WeekRow>> = Vec::new();
    for w in &m.weekly {
        match weeks.last_mut() {
            Some(g) if g[0].week == w.week => g.push(w),
            _ => weeks.push(vec![w]),
        }
    }
    let per_phase = |g: &[&crate::report::model::WeekRow],
                     f: &dyn Fn(&crate::report::model::WeekRow) -> u32| {
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

pub(super) fn chart(ctx: &Ctx, m: &MeterReport, v: Volts) -> Option<Chart> {
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
