//! Property tests of report rendering (`report::render`): the sample report
//! (`report::render::sample`) with hostile customer names and ids, meter
//! ids, profile names, event sources, suspension notes and Message-IDs
//! (CR/LF, NUL, `<script>`, `</td>`, quotes, the RTL override U+202E,
//! formula starts `=+-@`, Chinese) must render to HTML in which every `<`
//! from the input is escaped, a subject and headers without CR/LF, a CSV
//! that parses back (RFC 4180) to the same cells, and a MIME message.
//!
//! `PROPTEST_CASES=2000 cargo test --test prop_report` for a long run
//! (docs/fuzzing.md).

use lettre::message::Mailbox;
use pqwatch::config::sections::Language;
use pqwatch::mail::text::clean;
use pqwatch::report::model::Report;
use pqwatch::report::render::{CSV_HEADER, Rendered, email, render, sample};
use proptest::prelude::*;
mod prop_support;
use prop_support::cases;
use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

/// Bidirectional formatting characters: they make a name display in
/// another order than it reads (`invoice\u{202E}fdp.exe`).
const BIDI: &[char] = &[
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
];

/// Stand-ins for `<` and `>` in the control rendering: 4 bytes in UTF-8,
/// like `&lt;` and `&gt;`, so both renderings have the same size (the HTML
/// keeps to a byte budget), one column wide and, like `<`, neither
/// alphanumeric nor whitespace (musical symbols U+1D100, U+1D101).
const LT: char = '\u{1D100}';
const GT: char = '\u{1D101}';

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "</td></tr></table><h1>",
            "<!--",
            "<",
            ">",
            "<<>>",
            "\r\nBcc: attacker@evil.example\r\n",
            "\r\n\r\nbody",
            "\n",
            "\r",
            "\0",
            "\t",
            "\u{202E}",
            "\u{2066}",
            "\u{200F}",
            "\u{85}",
            "\u{2028}",
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\"",
            "'",
            "&amp;",
            ",",
            ";",
            "钢铁厂",
            "华北",
            " ",
            "  ",
            "C001",
            "..",
            "/",
        ])
        .prop_map(String::from),
        2 => "[a-zA-Z0-9 ._-]{1,8}",
        1 => any::<String>().prop_map(|s| s.chars().filter(|c| *c != LT && *c != GT).collect()),
    ]
}

fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..6).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
struct Inputs {
    language: Language,
    customer_name: String,
    customer_id: String,
    meter_ids: Vec<String>,
    profile: String,
    source: String,
    note: Option<String>,
    message_id: String,
}

fn inputs() -> impl Strategy<Value = Inputs> {
    (
        prop_oneof![Just(Language::ZhCn), Just(Language::En)],
        hostile(),
        hostile(),
        prop::collection::vec(hostile(), 2),
        hostile(),
        hostile(),
        prop::option::of(hostile()),
        hostile(),
    )
        .prop_map(
            |(
                language,
                customer_name,
                customer_id,
                meter_ids,
                profile,
                source,
                note,
                message_id,
            )| {
                Inputs {
                    language,
                    customer_name,
                    customer_id,
                    meter_ids,
                    profile,
                    source,
                    note,
                    message_id,
                }
            },
        )
}

/// The sample report with the inputs in place (`map` applied to each).
fn report(i: &Inputs, map: impl Fn(&str) -> String) -> Report {
    let mut r = sample(i.language);
    r.customer_name = map(&i.customer_name);
    r.customer_id = map(&i.customer_id);
    for (m, id) in r.meters.iter_mut().zip(&i.meter_ids) {
        let old = std::mem::replace(&mut m.id, map(id));
        for e in r.events.iter_mut().filter(|e| e.meter == old) {
            e.meter = m.id.clone();
        }
        m.profile = map(&i.profile);
    }
    for e in &mut r.events {
        e.source = map(&i.source);
    }
    for s in &mut r.suspensions {
        s.note = i.note.as_deref().map(&map);
    }
    r
}

/// Tag names the renderer writes, from the unmodified sample.
fn tags_of(html: &str) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    let mut rest = html;
    while let Some(k) = rest.find('<') {
        rest = &rest[k + 1..];
        let name: String = if let Some(r) = rest.strip_prefix("!--") {
            let end = r
                .find("-->")
                .ok_or_else(|| "an unterminated comment".to_string())?;
            // Outlook's conditional comments hold markup of their own.
            let inner = &r[..end];
            if !(inner.starts_with("[if mso]>") || inner.starts_with("[if mso]><")) {
                return Err(format!("a comment: <!--{inner}-->"));
            }
            "!--".into()
        } else if rest.starts_with("![endif]") {
            "![endif]".into()
        } else {
            rest.trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                .collect()
        };
        if name.is_empty() {
            return Err(format!(
                "a bare '<' before {:?}",
                rest.chars().take(20).collect::<String>()
            ));
        }
        names.insert(name.to_ascii_lowercase());
    }
    Ok(names)
}

/// RFC 4180: CRLF-separated records, `"`-quoted fields with `""` inside.
fn parse_csv(s: &str) -> Result<Vec<Vec<String>>, String> {
    let s = s.strip_prefix('\u{feff}').ok_or("no BOM")?;
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut quoted = false;
    let mut it = s.chars().peekable();
    let mut at_start = true;
    while let Some(c) = it.next() {
        if quoted {
            match c {
                '"' if it.peek() == Some(&'"') => {
                    it.next();
                    field.push('"');
                }
                '"' => {
                    quoted = false;
                    if !matches!(it.peek(), Some(',') | Some('\r') | None) {
                        return Err("text after a closing quote".into());
                    }
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
                continue;
            }
            '"' => return Err("a quote inside an unquoted field".into()),
            ',' => {
                row.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            '\r' => {
                if it.next() != Some('\n') {
                    return Err("CR without LF".into());
                }
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                at_start = true;
                continue;
            }
            '\n' => return Err("a bare LF".into()),
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("an unterminated quote".into());
    }
    if !field.is_empty() || !row.is_empty() {
        return Err("a last record without CRLF".into());
    }
    Ok(rows)
}

/// A configured string as a CSV cell must read: cleaned, and never a
/// formula for a spreadsheet.
fn csv_cell(s: &str) -> String {
    let s = clean(s);
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s
    }
}

/// Inputs without anything to escape.
fn neutral(language: Language) -> Inputs {
    Inputs {
        language,
        customer_name: "Name".into(),
        customer_id: "C1".into(),
        meter_ids: vec!["M1".into(), "M2".into()],
        profile: "p".into(),
        source: "src".into(),
        note: Some("note".into()),
        message_id: "id@x".into(),
    }
}

/// The tags the renderer writes for a report without anything to escape
/// (which has no `&lt;` or `&gt;` of its own), once per language.
fn allowed_tags(language: Language) -> &'static BTreeSet<String> {
    static TAGS: std::sync::OnceLock<[BTreeSet<String>; 2]> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        [Language::ZhCn, Language::En].map(|l| {
            let html = render(&report(&neutral(l), str::to_string)).html;
            assert!(!html.contains("&lt;") && !html.contains("&gt;"));
            tags_of(&html).expect("the renderer's own HTML")
        })
    });
    &tags[usize::from(language == Language::En)]
}

fn check(i: &Inputs) -> Result<(), TestCaseError> {
    let r = report(i, str::to_string);
    let out: Rendered = render(&r);

    // Subject: one line, no control or bidi formatting character.
    prop_assert!(
        !out.subject
            .chars()
            .any(|c| c.is_control() || BIDI.contains(&c)),
        "subject {:?}",
        out.subject
    );
    // Text: lines only, no other control or bidi character.
    let bad: Vec<char> = out
        .text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || BIDI.contains(&c))
        .collect();
    prop_assert!(bad.is_empty(), "text has control characters {:?}", bad);
    prop_assert!(!out.html.chars().any(|c| BIDI.contains(&c)), "bidi in HTML");

    // HTML: every '<' starts one of the renderer's own tags…
    let allowed = allowed_tags(i.language);
    let names = tags_of(&out.html).map_err(|e| TestCaseError::fail(format!("HTML: {e}")))?;
    let foreign: Vec<_> = names.difference(allowed).collect();
    prop_assert!(foreign.is_empty(), "tags from the input: {:?}", foreign);
    // …and the input's '<' and '>' are exactly its "&lt;" and "&gt;": the
    // same report with stand-ins renders to the same HTML.
    let control = render(&report(i, |s| {
        s.replace('<', &LT.to_string())
            .replace('>', &GT.to_string())
    }));
    let mapped = out
        .html
        .replace("&lt;", &LT.to_string())
        .replace("&gt;", &GT.to_string());
    prop_assert!(
        mapped == control.html,
        "an input '<' or '>' was not escaped as &lt; / &gt;"
    );

    // CSV: parses back to the same cells.
    let rows = parse_csv(&out.csv).map_err(|e| TestCaseError::fail(format!("CSV: {e}")))?;
    prop_assert_eq!(&rows[0], &CSV_HEADER.map(String::from).to_vec());
    let mut want = Vec::new();
    for m in &r.meters {
        for d in &m.daily {
            for p in &d.phases {
                want.push((csv_cell(&m.id), csv_cell(&p.phase)));
            }
        }
    }
    prop_assert_eq!(rows.len(), want.len() + 1);
    for (row, (id, phase)) in rows[1..].iter().zip(&want) {
        prop_assert_eq!(row.len(), CSV_HEADER.len());
        prop_assert_eq!(&row[1], id);
        prop_assert_eq!(&row[2], phase);
    }
    prop_assert!(
        !out.csv_name.contains(['/', '\\', '\r', '\n', '"']),
        "{}",
        out.csv_name
    );

    // MIME: builds; headers are the expected ones, each on its own line.
    let from: Mailbox = "pqwatch <pqwatch@example.com>".parse().unwrap();
    let to: Mailbox = "Ops <ops@example.com>".parse().unwrap();
    let msg = email(
        &from,
        &[to],
        &out,
        &i.message_id,
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    )
    .map_err(|e| TestCaseError::fail(format!("email: {e}")))?;
    let raw = String::from_utf8(msg.formatted()).expect("7-bit headers");
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    prop_assert!(
        !head.replace("\r\n", "").contains(['\r', '\n']),
        "a bare CR or LF in the headers"
    );
    let expected = [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
    ];
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let name = line.split(':').next().unwrap_or_default();
        prop_assert!(
            expected.contains(&name),
            "unexpected header line {:?}",
            line
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256, "proptest-regressions/prop_report.txt"))]

    #[test]
    fn hostile_names_render_safely(i in inputs()) {
        check(&i)?;
    }
}

/// The RTL override U+202E passed through `clean` into the subject, the
/// HTML, the text and the CSV: "Steel \u{202E}gnp.exe" displays as
/// "Steel exe.png". Bidi formatting characters are now removed.
#[test]
fn an_rtl_override_in_a_customer_name_is_removed() {
    let mut r = sample(Language::En);
    r.customer_name = "Steel \u{202E}gnp.exe".into();
    r.meters[0].id = "M\u{2066}1\u{2069}".into();
    let out = render(&r);
    for part in [&out.subject, &out.text, &out.html, &out.csv] {
        assert!(!part.contains(BIDI), "{part:.200}");
    }
    assert!(out.subject.contains("Steel gnp.exe"), "{}", out.subject);
    assert!(out.csv.contains(",M1,"));
    assert_eq!(clean("a\u{202E}b\u{200F} c"), "ab c");
}

/// The hostile strings the module docs name, through every check.
#[test]
fn script_crlf_nul_and_formulas() {
    check(&Inputs {
        language: Language::ZhCn,
        customer_name: "<script>alert(1)</script>\r\nBcc: a@evil.example\0".into(),
        customer_id: "=1+1".into(),
        meter_ids: vec!["</td></tr></table>".into(), "@SUM(A1)\r\n\"x\",y".into()],
        profile: "<img src=x onerror=alert(1)>".into(),
        source: "\u{202E}GB/T".into(),
        note: Some("note\r\n\r\nbody<!--".into()),
        message_id: "<id@x>\r\nBcc: a@evil.example".into(),
    })
    .unwrap();
}
