//! The layout model: what a report says, as [`Block`]s of paragraphs,
//! tables and charts with tones, before any writer spells it out as text
//! or HTML. Data only.

use super::{Ctx, Volts};
use crate::report::model::Verdict;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Tone {
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
pub(super) struct Cell {
    pub(super) lines: Vec<String>,
    pub(super) tone: Tone,
    pub(super) strong: bool,
    /// Keep each line on one line in HTML (times, verdict words).
    pub(super) nowrap: bool,
}

impl Cell {
    pub(super) fn new(s: impl Into<String>) -> Cell {
        Cell {
            lines: vec![s.into()],
            tone: Tone::Plain,
            strong: false,
            nowrap: false,
        }
    }

    pub(super) fn lines(lines: Vec<String>) -> Cell {
        Cell {
            lines,
            tone: Tone::Plain,
            strong: false,
            nowrap: false,
        }
    }

    pub(super) fn verdict(ctx: &Ctx, v: Verdict) -> Cell {
        Cell {
            lines: vec![ctx.verdict(v).into()],
            tone: v.into(),
            strong: true,
            nowrap: true,
        }
    }

    pub(super) fn tone(mut self, t: Tone) -> Cell {
        self.tone = t;
        self
    }

    pub(super) fn strong(mut self) -> Cell {
        self.strong = true;
        self
    }

    pub(super) fn nowrap(mut self) -> Cell {
        self.nowrap = true;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Shape {
    /// Header row, then rows.
    Data,
    /// Two columns, label → value, no header.
    Fields,
}

#[derive(Debug, Clone)]
pub(super) struct Table {
    pub(super) shape: Shape,
    pub(super) head: Vec<String>,
    pub(super) align: Vec<Align>,
    pub(super) rows: Vec<Vec<Cell>>,
    /// A blank line between rows in text (rows of several lines).
    pub(super) spaced: bool,
    /// Columns holding configured strings (ids, notes, sources), which may
    /// be broken anywhere in HTML rather than widen the table. Other
    /// columns break only between words, so figures and labels stay whole.
    pub(super) breakable: Vec<bool>,
}

impl Table {
    pub(super) fn data(head: Vec<String>, align: Vec<Align>, rows: Vec<Vec<Cell>>) -> Table {
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

    pub(super) fn fields(rows: Vec<(String, Cell)>) -> Table {
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
    pub(super) fn transposed(head: Vec<String>, rows: Vec<(String, Vec<Cell>)>) -> Table {
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
pub(super) type ChartDay = (String, Vec<Option<(f64, f64, f64)>>);

/// Daily min / mean / max per phase, as bars on a common scale.
#[derive(Debug, Clone)]
pub(super) struct Chart {
    pub(super) volts: Volts,
    pub(super) phases: Vec<String>,
    /// Per phase, the band (V).
    pub(super) bands: Vec<Option<(f64, f64)>>,
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) days: Vec<ChartDay>,
    pub(super) date_head: String,
    pub(super) legend_mean: String,
    pub(super) legend_out: String,
    pub(super) legend_band: String,
    /// Said instead of the chart when the mail would be too big for it.
    pub(super) omitted: String,
    /// The legend of a bar for all phases together.
    pub(super) all_phases: String,
}

impl Chart {
    /// All phases as one: per day the lowest minimum, the highest maximum
    /// and the mean of the means; the first phase's band.
    pub(super) fn combined(&self) -> Chart {
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
pub(super) enum Block {
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
