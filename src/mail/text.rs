//! Text that goes into mail: escaping for headers, plain text and HTML,
//! and the wording both kinds of mail share (event kinds, durations) in
//! zh-CN and en. Pure.
//!
//! Every configured or measured string passes through [`clean`] before it
//! reaches a header or a line of text, and through `esc` before it
//! reaches HTML.

use crate::config::sections::Language;
use crate::quality::rules::Kind;

/// Control characters (CR, LF, TAB, NUL, …) become spaces; runs of
/// whitespace collapse; the ends are trimmed. Bidirectional formatting
/// characters (U+202A–E, U+2066–9, U+200E/F, U+061C) are removed: they
/// make a name display in another order than it reads
/// ("Steel \u{202E}gnp.exe" shows as "Steel exe.png").
pub fn clean(s: &str) -> String {
    let replaced: String = s
        .chars()
        .filter(|c| !crate::config::is_bidi(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    replaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// HTML text escaping.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The name of an event kind (with its harmonic order) in `lang`.
pub(crate) fn kind_name(kind: Kind, order: u16, lang: Language) -> String {
    let zh = lang == Language::ZhCn;
    match kind {
        Kind::VoltageHigh if zh => "电压偏高".into(),
        Kind::VoltageHigh => "voltage high".into(),
        Kind::VoltageLow if zh => "电压偏低".into(),
        Kind::VoltageLow => "voltage low".into(),
        Kind::ThdVoltage if zh => "电压总谐波畸变率".into(),
        Kind::ThdVoltage => "voltage THD".into(),
        Kind::HarmonicVoltage if zh => format!("{order}次谐波电压含有率"),
        Kind::HarmonicVoltage => format!("harmonic voltage H{order}"),
        Kind::ThdCurrent if zh => "电流总谐波畸变率".into(),
        Kind::ThdCurrent => "current THD".into(),
        Kind::TddCurrent if zh => "电流总需量畸变率 TDD".into(),
        Kind::TddCurrent => "current TDD".into(),
        Kind::HarmonicCurrent if zh => format!("{order}次谐波电流"),
        Kind::HarmonicCurrent => format!("harmonic current H{order}"),
        Kind::Unbalance if zh => "三相电压不平衡度".into(),
        Kind::Unbalance => "voltage unbalance".into(),
        Kind::SuspensionLoad if zh => "暂停期间超容用电".into(),
        Kind::SuspensionLoad => "load during suspension".into(),
        Kind::DemandExceeded if zh => "需量超限".into(),
        Kind::DemandExceeded => "demand above contract".into(),
    }
}

/// "4 min 30 s" / "4分30秒".
pub(crate) fn duration(ms: i64, lang: Language) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let zh = lang == Language::ZhCn;
    let parts: [(i64, &str, &str); 4] = [
        (d, "天", " d"),
        (h, "小时", " h"),
        (m, "分", " min"),
        (sec, "秒", " s"),
    ];
    // The two most significant non-zero parts are precise enough.
    let shown: Vec<String> = parts
        .iter()
        .skip_while(|(n, _, _)| *n == 0)
        .take(2)
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, z, e)| format!("{n}{}", if zh { z } else { e }))
        .collect();
    match (shown.is_empty(), zh) {
        (true, true) => "0秒".into(),
        (true, false) => "0 s".into(),
        (false, true) => shown.concat(),
        (false, false) => shown.join(" "),
    }
}
