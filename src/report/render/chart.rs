//! The daily voltage chart in HTML: bars made of table cells whose widths
//! are the values (no images or SVG reach an e-mail client).

use super::layout::Chart;
use super::style::{
    ALL_PHASES, BAND_BG, BLANK, MEAN_MARK, MUTED, OUT_OF_BAND, PHASE_COLOURS, TABLE_ATTRS,
};
use crate::mail::text::esc;
use std::fmt::Write as _;

/// One bar: widths (% of the scale) and colours, left to right; the bar
/// from the minimum to the maximum in the phase's colour (red outside the
/// band), a dark mark at the mean.
pub(super) fn bar_segments(
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
pub(super) fn band_segments(
    lo: f64,
    hi: f64,
    band: Option<(f64, f64)>,
) -> Vec<(f64, &'static str)> {
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
pub(super) fn segments(
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
pub(super) const CHART_COLUMNS: usize = 200;

/// Segments (widths in %) as column spans of a grid of `n` columns; every
/// segment that is a bar keeps at least one column.
pub(super) fn grid_spans(segs: &[(f64, &'static str)], n: usize) -> Vec<(usize, &'static str)> {
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
pub(super) fn phase_colour(c: &Chart, i: usize) -> &'static str {
    if c.phases.len() == 1 && c.phases[0] == c.all_phases {
        ALL_PHASES
    } else {
        PHASE_COLOURS[i % PHASE_COLOURS.len()]
    }
}

pub(super) fn html_chart(h: &mut String, c: &Chart, band_every_day: bool) {
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
