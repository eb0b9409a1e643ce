//! Harmonic and distortion tables: THD and individual orders against their
//! limits, by the statistic each preset judges.

use super::layout::{Align, Block, Cell, Table, Tone};
use super::{Ctx, DASH, fixed, pct_num};
use crate::mail::text::clean;
use crate::report::model::{DistortionRow, MeterReport, Verdict};

/// The harmonics part of a meter's section: voltage THD and orders, then
/// current THD, orders and TDD, each where the meter has them.
pub(super) fn harmonics(ctx: &Ctx, m: &MeterReport, b: &mut Vec<Block>) {
    b.push(Block::H3(ctx.t("谐波", "Harmonics").into()));
    let std = clean(&m.harmonic_standard);
    if !std.is_empty() {
        b.push(Block::P(format!(
            "{}{}{std}",
            ctx.t("依据", "Standard"),
            ctx.colon()
        )));
    }
    voltage_thd(ctx, m, b);
    voltage_orders(ctx, m, b);
    current_thd(ctx, m, b);
    current_orders(ctx, m, b);
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

/// Voltage THD: its table, and a note where the CP95 is on polled samples.
fn voltage_thd(ctx: &Ctx, m: &MeterReport, b: &mut Vec<Block>) {
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
}

/// Individual voltage orders: one sentence counting those judged, then a
/// table of the failing ones only.
fn voltage_orders(ctx: &Ctx, m: &MeterReport, b: &mut Vec<Block>) {
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
}

/// Current THD, where the meter reads it, with a note where no limit
/// applies to it.
fn current_thd(ctx: &Ctx, m: &MeterReport, b: &mut Vec<Block>) {
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
}

/// Individual current orders with a limit: one sentence naming the
/// standard's method, then a table of the failing ones.
fn current_orders(ctx: &Ctx, m: &MeterReport, b: &mut Vec<Block>) {
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
}

/// The harmonic orders above their limit: phase, order, CP95, limit and
/// maximum in `unit` ("%" of the fundamental for voltages, with the minutes
/// over the limit; "A" for currents, whose minute means carry no count).
pub(super) fn failing_orders(ctx: &Ctx, failing: &[&DistortionRow], unit: &str) -> Table {
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
pub(super) fn over_limit(v: Option<f64>, limit: Option<f64>, factor: f64) -> Cell {
    let c = Cell::new(pct_num(v)).strong();
    match (v, limit) {
        (Some(v), Some(l)) if v > factor * l => c.tone(Tone::Fail),
        _ => c,
    }
}

/// The weekly and daily percentiles of rows under EN 50160's or IEEE 519's
/// assessment, one table line each, a figure above its limit in red.
pub(super) fn assessed_lines(ctx: &Ctx, rows: &[DistortionRow]) -> Vec<(String, Vec<Cell>)> {
    // One figure of every row, against its limit × the factor.
    let line = |figure: &dyn Fn(&crate::report::model::Assessed) -> Option<f64>,
                factor: &dyn Fn(&crate::report::model::Assessed) -> f64| {
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
                let f = crate::report::model::WEEKLY_P99_FACTOR;
                if ctx.zh {
                    format!("周 99 % 值（限值 × {f}）")
                } else {
                    format!("Weekly 99th percentile (limit × {f})")
                }
            },
            line(&|a| a.weekly_p99.as_ref().map(|x| x.0), &|_| {
                crate::report::model::WEEKLY_P99_FACTOR
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
pub(super) fn distortion_table(ctx: &Ctx, rows: &[DistortionRow], voltage: bool) -> Table {
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
