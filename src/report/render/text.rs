//! The plain-text writer: blocks → monospace text, CJK characters counted
//! two columns wide, lines wrapped within 78 columns where the content
//! allows.

use super::DASH;
use super::layout::{Align, Block, Cell, Chart, Shape, Table};
use std::fmt::Write as _;

/// Units that stay on the line of their figure ("95.00 %", "10.5 kV").
pub(super) const UNITS: [&str; 7] = ["%", "kVA", "kV", "kW", "V", "min", "A"];

/// "kVA", "%)", "kW;": a unit, perhaps followed by punctuation.
pub(super) fn is_unit(word: &str) -> bool {
    let bare = word.trim_end_matches(|c: char| ",.;:)）。，；：".contains(c));
    UNITS.contains(&bare)
}

/// Columns a plain-text line may use.
pub(super) const TEXT_WIDTH: usize = 78;

/// Display width of a character in a monospace client: CJK (and full-width
/// forms) take two columns.
pub(super) fn char_width(c: char) -> usize {
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

pub(super) fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

pub(super) fn is_wide(c: char) -> bool {
    char_width(c) == 2
}

/// Punctuation that must not start a line.
pub(super) fn no_break_before(c: char) -> bool {
    "，。、；：！？）」』》】,.;:!?)%".contains(c)
}

/// Punctuation that must not end a line.
pub(super) fn no_break_after(c: char) -> bool {
    "（「『《【(".contains(c)
}

/// Add a piece of a line; a unit stays with its figure.
pub(super) fn push_piece(pieces: &mut Vec<(String, bool)>, piece: String, space: bool) {
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
pub(super) fn wrap(s: &str, max: usize) -> Vec<String> {
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

pub(super) fn pad(s: &str, w: usize, align: Align) -> String {
    let fill = " ".repeat(w.saturating_sub(width(s)));
    match align {
        Align::Left => format!("{s}{fill}"),
        Align::Right => format!("{fill}{s}"),
    }
}

pub(super) fn text(blocks: &[Block], zh: bool) -> String {
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

pub(super) fn chart_as_table(c: &Chart) -> Table {
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

pub(super) fn text_table(out: &mut String, t: &Table, zh: bool) {
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
