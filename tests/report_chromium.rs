//! The report's HTML as a browser lays it out: headless Chromium loads the
//! sample report (zh-CN and en) at 375 px (a phone) and 800 px, and
//! `tests/peers/layout_check.js` checks that nothing is cut or overlaps,
//! that Chinese is drawn with a real font (no tofu), and that the page
//! keeps to what mail clients render (no scripts, images, flex, grid or
//! positioning; inline styles). A self-test feeds the same checks a page
//! that breaks each rule, so a check that passes vacuously is noticed.
//!
//! Screenshots of each language and width, and the HTML they show, go to
//! `target/report-screenshots/` for people to look at.
//!
//! Needs `chromium` on PATH and a CJK font (Debian: chromium,
//! fonts-wqy-microhei; scripts/test.sh installs both). Without Chromium the
//! test fails rather than skips.

use pqwatch::config::sections::Language;
use pqwatch::report::render::{render, sample};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
const WIDTHS: [u32; 2] = [375, 800];

fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium is not on PATH: install chromium (scripts/test.sh does)")
        })
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("report-screenshots")
}

/// Run Chromium headless with `args`, in its own process group and with a
/// fresh profile under `work`; returns stdout. Waits on the process (no
/// sleeping for readiness): polls for its exit and kills the whole group
/// after [`CHROMIUM_TIMEOUT`].
fn run_chromium(work: &Path, name: &str, args: &[String]) -> String {
    use std::os::unix::process::CommandExt;
    let profile = work.join(format!("profile-{name}"));
    let out_path = work.join(format!("{name}.stdout"));
    let err_path = work.join(format!("{name}.stderr"));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start chromium ({e}): install chromium (scripts/test.sh does)")
        });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            // The group: chromium's zygote and renderers too.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ({name}) did not finish in {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        status.success(),
        "chromium ({name}) failed: {status}; stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    stdout
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Load `cases` (file name in `dir`, width) through the harness page and
/// return its JSON verdict, one result per case.
fn layout_check(dir: &Path, cases: &[(&str, u32)]) -> Vec<Value> {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/layout_check.js");
    std::fs::copy(&js, dir.join("layout_check.js")).unwrap();
    let list: Vec<Value> = cases
        .iter()
        .map(|(src, w)| serde_json::json!({ "src": src, "width": w }))
        .collect();
    let page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>layout check</title></head>\
         <body style=\"margin:0\"><pre id=\"result\">pending</pre><div id=\"frames\"></div>\
         <script src=\"layout_check.js\"></script>\
         <script>runLayoutChecks({});</script></body></html>\n",
        Value::Array(list)
    );
    let check = dir.join("check.html");
    std::fs::write(&check, page).unwrap();
    let dom = run_chromium(
        dir,
        "check",
        &[
            "--window-size=1000,800".into(),
            "--dump-dom".into(),
            file_url(&check),
        ],
    );
    let start = dom
        .find("<pre id=\"result\">")
        .unwrap_or_else(|| panic!("no result in the dumped DOM:\n{dom:.2000}"))
        + "<pre id=\"result\">".len();
    let end = start + dom[start..].find("</pre>").expect("</pre>");
    let json = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    let v: Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("harness did not finish ({e}): {json:.2000}"));
    assert_eq!(v["done"], true, "{v}");
    assert!(v.get("error").is_none(), "harness error: {}", v["error"]);
    let results = v["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), cases.len(), "{v}");
    results
}

fn problems(r: &Value) -> Vec<String> {
    r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn report_layout_holds_at_phone_and_desktop_widths_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // zh-CN and en; and a third meter, which turns the charts lean (one
    // bar a day) to keep the mail under Gmail's clipping size.
    let mut three = sample(Language::ZhCn);
    let mut m = three.meters[0].clone();
    m.id = "HB-10KV-IN2".into();
    three.meters.push(m);
    let reports = [
        ("zh", sample(Language::ZhCn)),
        ("en", sample(Language::En)),
        ("zh-3-meters", three),
    ];
    // The HTML goes next to the screenshots too, to look at when a check fails.
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    for (tag, report) in &reports {
        let r = render(report);
        assert!(r.html.len() <= 100_000, "{tag}: {} bytes", r.html.len());
        if *tag == "zh-3-meters" {
            assert!(r.html.contains("各相合并"), "lean charts expected");
        }
        let name = format!("report-{tag}.html");
        std::fs::write(dir.join(&name), &r.html).unwrap();
        std::fs::write(shots.join(&name), &r.html).unwrap();
    }
    let names: Vec<(String, u32)> = reports
        .iter()
        .flat_map(|(tag, _)| WIDTHS.map(|w| (format!("report-{tag}.html"), w)))
        .collect();
    let cases: Vec<(&str, u32)> = names.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    let results = layout_check(dir, &cases);

    let mut failures = Vec::new();
    for r in &results {
        let (src, width) = (r["src"].as_str().unwrap(), r["width"].as_u64().unwrap());
        let p = problems(r);
        if !p.is_empty() {
            failures.push(format!(
                "{src} at {width} px: {} problem(s):\n  {}",
                r["problemCount"],
                p.join("\n  ")
            ));
        }
        assert_eq!(r["viewport"].as_u64(), Some(width), "{r}");
        // The checks saw the report, not an empty frame.
        assert!(r["cells"].as_u64().unwrap() > 200, "{src}: {r}");
        assert!(r["text"].as_u64().unwrap() > 3000, "{src}: {r}");
        // Chinese in both (the customer's name), lots of it in zh-CN.
        let least = if src.contains("-zh") { 150 } else { 8 };
        assert!(r["cjkChars"].as_u64().unwrap() >= least, "{src}: {r}");
        // The hostile note is shown as text, not run.
        assert_eq!(r["literalScript"], true, "{src}");
        let container = r["containerWidth"].as_f64().expect("container table");
        assert!(
            container <= 760.5,
            "{src} at {width}: container {container} px"
        );
        if width == 800 {
            assert!(
                container >= 759.5,
                "{src} at 800 px: container {container} px"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Screenshots for people: each width in a frame of exactly that width
    // and the report's height (headless windows are at least 500 px wide,
    // so the 375 px frame is what is captured).
    for r in &results {
        let (src, width) = (r["src"].as_str().unwrap(), r["width"].as_u64().unwrap());
        let height = r["height"].as_u64().unwrap().clamp(100, 16_000);
        let stem = format!("{}-{width}", src.trim_end_matches(".html"));
        let frame = dir.join(format!("shot-{stem}.html"));
        std::fs::write(
            &frame,
            format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\
                 <body style=\"margin:0;background:#fff\"><iframe src=\"{src}\" scrolling=\"no\" \
                 style=\"width:{width}px;height:{height}px;border:0;display:block\"></iframe></body></html>\n"
            ),
        )
        .unwrap();
        let png = shots.join(format!("{stem}.png"));
        let _ = std::fs::remove_file(&png);
        run_chromium(
            dir,
            &format!("shot-{stem}"),
            &[
                format!("--window-size={width},{height}"),
                format!("--screenshot={}", png.display()),
                file_url(&frame),
            ],
        );
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", png.display());
    }
}

/// The checks must be able to fail: a page that breaks each rule is
/// flagged for each.
#[test]
fn layout_checks_catch_cut_overlapping_and_tofu_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bad = "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"></head>\
        <body style=\"margin:0;font-family:'WenQuanYi Micro Hei',sans-serif\">\
        <table style=\"width:600px\"><tr style=\"\"><td style=\"white-space:nowrap\">电压合格率 wide table</td></tr></table>\
        <div style=\"width:100px;overflow:hidden;white-space:nowrap\">this text is far too long for its box</div>\
        <table style=\"width:200px;table-layout:fixed;border-collapse:collapse\"><tr style=\"\">\
        <td style=\"width:50px;white-space:nowrap\">AAAAAAAAAAAAAAAAAAAA</td>\
        <td style=\"width:150px\">BBB</td></tr></table>\
        <div style=\"display:flex\">flex</div><p>unstyled</p>\
        <p style=\"\">\u{9FFF}</p></body></html>\n";
    std::fs::write(dir.join("bad.html"), bad).unwrap();
    let results = layout_check(dir, &[("bad.html", 375)]);
    let p = problems(&results[0]).join("\n");
    for want in [
        "horizontal scroll",
        "past the right edge",
        "content cut horizontally",
        "text runs outside its cell",
        "text overlaps",
        "display:flex",
        "no inline style: <p> \"unstyled\"",
        "no glyph (tofu): U+9FFF",
    ] {
        assert!(
            p.contains(want),
            "the checks missed {want:?}; they said:\n{p}"
        );
    }
    // The characters a real font has are not reported.
    assert!(!p.contains("U+7535"), "电 reported as tofu:\n{p}");
}
