//! The report's later sections: events, suspensions, contracted demand and
//! the notes.

use super::layout::{Align, Block, Cell, Table, Tone};
use super::{Ctx, DASH, Volts, demand_limit, pct, power, suspension_unit};
use crate::mail::text::{clean, duration, kind_name};

pub(super) fn events(ctx: &Ctx, b: &mut Vec<Block>) {
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

pub(super) fn suspensions(ctx: &Ctx, b: &mut Vec<Block>) {
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

/// "15-minute means sliding by 1 minute" / block.
pub(super) fn demand_basis(ctx: &Ctx, d: &crate::report::model::DemandSection) -> String {
    let period = d.period_ms / 60_000;
    let slide = d.slide_ms / 60_000;
    match (d.slide_ms == d.period_ms, ctx.zh) {
        (true, true) => format!("{period} 分钟区间平均功率（固定区间）"),
        (true, false) => format!("{period}-minute mean power, fixed blocks"),
        (false, true) => format!("{period} 分钟平均功率，滑差 {slide} 分钟"),
        (false, false) => format!("{period}-minute mean power sliding by {slide} minute(s)"),
    }
}

pub(super) fn demand(ctx: &Ctx, b: &mut Vec<Block>) {
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

pub(super) fn notes(ctx: &Ctx, csv_name: &str, b: &mut Vec<Block>) {
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
