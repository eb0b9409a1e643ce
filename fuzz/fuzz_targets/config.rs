//! Any text as a config: no panic, and every problem says where it is.
#![no_main]

use libfuzzer_sys::fuzz_target;

use pqwatch::config::SECTIONS;

fuzz_target!(|text: &str| {
    let Err(e) = pqwatch::config::from_str(text, std::path::Path::new("/nonexistent")) else {
        return;
    };
    for p in &e.problems {
        let located = p.starts_with("embedded config: TOML parse error at line ")
            || p.contains(": unknown section")
            || SECTIONS.iter().any(|s| {
                p.strip_prefix(s)
                    .is_some_and(|r| r.starts_with(['.', '[', ':']))
            });
        assert!(located, "no key path in {p:?}");
        assert!(!p.contains('\n'), "a multi-line problem: {p:?}");
    }
});
