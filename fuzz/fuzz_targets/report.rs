//! Any customer name, id, meter id and note in the sample report: the
//! subject is one line, the HTML holds no tag from the input, the MIME
//! message builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwatch::config::sections::Language;
use pqwatch::report::render::{email, render, sample};

fuzz_target!(|input: (bool, String, String, String, String)| {
    let (en, name, id, meter, note) = input;
    let mut r = sample(if en { Language::En } else { Language::ZhCn });
    r.customer_name = name;
    r.customer_id = id;
    r.meters[0].id = meter;
    for s in &mut r.suspensions {
        s.note = Some(note.clone());
    }
    let out = render(&r);
    assert!(
        !out.subject.chars().any(char::is_control),
        "{:?}",
        out.subject
    );
    let lower = out.html.to_ascii_lowercase();
    for tag in ["<script", "<img", "<svg", "<iframe", "<a ", "<object"] {
        assert!(!lower.contains(tag), "{tag} in the HTML");
    }
    let from = "pqwatch <pq@example.com>".parse().unwrap();
    let to = "ops@example.com".parse().unwrap();
    email(&from, &[to], &out, "id@x", std::time::UNIX_EPOCH).expect("the MIME message builds");
});
