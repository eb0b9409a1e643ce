//! The HTML's fonts, colours and table attributes, shared by the writer
//! and the chart. Data only.

pub(super) const FONT: &str = "-apple-system,'Segoe UI','PingFang SC','Hiragino Sans GB','Microsoft YaHei','Noto Sans CJK SC','WenQuanYi Micro Hei',Arial,sans-serif";
pub(super) const INK: &str = "#202124";
pub(super) const MUTED: &str = "#5f6368";
pub(super) const RULE: &str = "#e8eaed";
pub(super) const HEAD_BG: &str = "#f1f3f4";
pub(super) const ACCENT: &str = "#1a73e8";
/// Chart colours: phase bars, the part of a bar outside the band, the
/// mean mark, and the band (drawn between the days). Empty stretches of
/// the scale have no colour ([`BLANK`]).
/// (Three-digit forms: a chart has a thousand cells.)
pub(super) const PHASE_COLOURS: [&str; 3] = ["#17e", "#93e", "#1a9"];
pub(super) const ALL_PHASES: &str = "#578";
pub(super) const OUT_OF_BAND: &str = "#d33";
pub(super) const MEAN_MARK: &str = "#222";
pub(super) const BAND_BG: &str = "#bdc";
pub(super) const BLANK: &str = "";

/// Attributes of a layout table.
pub(super) const TABLE_ATTRS: &str =
    "role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"";
