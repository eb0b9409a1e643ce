//! The HTML writer: blocks → e-mail HTML that Gmail and Outlook show as a
//! browser does (nested tables, inline styles; no images, SVG, scripts,
//! flex, grid or positioning), kept under the clipping budget.

use super::Ctx;
use super::chart::html_chart;
use super::layout::{Align, Block, Cell, Shape, Table, Tone};
use super::style::{ACCENT, FONT, HEAD_BG, INK, MUTED, RULE, TABLE_ATTRS};
use super::text::{UNITS, is_wide};
use crate::mail::text::esc;
use std::fmt::Write as _;

/// (text colour, background) of a tone.
pub(super) fn tone_colours(t: Tone) -> Option<(&'static str, &'static str)> {
    match t {
        Tone::Plain => None,
        Tone::Pass => Some(("#137333", "#e6f4ea")),
        Tone::Fail => Some(("#b3261e", "#fce8e6")),
        Tone::NoData => Some((MUTED, HEAD_BG)),
    }
}

/// Escaped text in which a figure and its unit ("95.00 %", "10.5 kV")
/// stay on one line.
pub(super) fn html_text(s: &str) -> String {
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
pub(super) fn text_style(size: u32) -> String {
    format!("font-size:{size}px;")
}

/// Largest HTML part: Gmail clips a message body over about 102 KB.
pub(super) const HTML_BUDGET: usize = 100_000;

/// How much of a daily chart the HTML can afford.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ChartMode {
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
pub(super) fn html(ctx: &Ctx, subject: &str, blocks: &[Block]) -> String {
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

pub(super) fn html_with(ctx: &Ctx, subject: &str, blocks: &[Block], modes: &[ChartMode]) -> String {
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

pub(super) fn html_block(h: &mut String, b: &Block, mode: ChartMode) {
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
pub(super) enum Breaks {
    /// Between words only, Chinese included (labels, figures).
    Words,
    /// Anywhere, rather than widen the table (configured strings).
    Anywhere,
}

pub(super) fn cell_html(
    h: &mut String,
    tag: &str,
    cell: &Cell,
    align: Align,
    breaks: Breaks,
    extra: &str,
) {
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

pub(super) fn html_table(h: &mut String, t: &Table) {
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
