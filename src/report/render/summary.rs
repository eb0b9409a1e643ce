//! The report's opening: subject, the header block and the summary lines
//! (voltage, flicker, unbalance, frequency, harmonics, suspensions).

use super::layout::{Align, Block, Cell, Table, Tone};
use super::{
    Ctx, DASH, cut, demand_limit, fixed, flicker_figure, pct, power, rate, suspension_unit,
    trim_num,
};
use crate::calendar::day_key;
use crate::mail::text::clean;
use crate::report::model::{DemandSection, DistortionRow, MeterReport, Verdict};

/// `[pqwatch] 电压质量月报 2026-10 — 华北钢铁 (C001): 不合格`; ASCII
/// parentheses in both languages, as `docs/reports.md` shows.
pub(super) fn subject(ctx: &Ctx) -> String {
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

/// The report's opening blocks: title, fact sheet, a note while the period
/// is still running, the overall verdict and the summary table.
pub(super) fn header(ctx: &Ctx, b: &mut Vec<Block>) {
    let r = ctx.r;
    b.push(Block::Title(ctx.title()));
    b.push(Block::Subtitle(ctx.customer(120)));
    b.push(Block::Table(header_facts(ctx)));
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
    b.push(Block::Table(summary_table(ctx)));
}

/// The header's fact sheet: customer, period, time zone, when generated,
/// contracted capacity, meters and the count of events.
fn header_facts(ctx: &Ctx) -> Table {
    let r = ctx.r;
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
    Table::fields(rows)
}

/// One row per judged section (voltage and harmonics always, the others
/// where the report has them): its verdict and a one-line summary.
fn summary_table(ctx: &Ctx) -> Table {
    let r = ctx.r;
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
        let text = demand_summary(ctx, d);
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
    summary
}

/// The demand row's summary: the peak, the limit and the exceedances.
fn demand_summary(ctx: &Ctx, d: &DemandSection) -> String {
    if ctx.zh {
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
    }
}

/// The share the voltage verdict is on: the total qualification rate (or
/// the worst phase's, `[reports] phase_rule`), or for meters judged on
/// 10-minute means the share of those in the band.
pub(super) fn voltage_share(m: &MeterReport) -> Option<f64> {
    m.voltage_share
}

pub(super) fn voltage_summary(ctx: &Ctx) -> String {
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
pub(super) fn flicker_summary(ctx: &Ctx) -> String {
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

pub(super) fn unbalance_summary(ctx: &Ctx) -> String {
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
pub(super) fn frequency_summary(ctx: &Ctx) -> String {
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

pub(super) fn harmonic_summary(ctx: &Ctx) -> String {
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

pub(super) fn suspension_summary(ctx: &Ctx) -> String {
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
