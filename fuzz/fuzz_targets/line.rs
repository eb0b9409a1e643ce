//! Any tags, field names and values: one line per record with a field,
//! no control character inside it, never a comment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwatch::reading::{MeterMeta, Reading};
use pqwatch::sink::line::{Dialect, encode};
use std::collections::BTreeMap;
use std::sync::Arc;

fuzz_target!(
    |input: (bool, BTreeMap<String, String>, Vec<(String, f64)>, i64)| {
        let (v1, tags, values, ts_ms) = input;
        let d = if v1 { Dialect::V1 } else { Dialect::V2 };
        let r = Reading {
            meter: Arc::new(MeterMeta::new("M", "C", &tags)),
            ts_ms,
            values: values
                .iter()
                .map(|(k, v)| (Arc::from(k.as_str()), *v))
                .collect(),
        };
        let mut out = String::new();
        let n = encode(&r, d, &mut out);
        if n == 0 {
            assert!(out.is_empty(), "{out:?}");
            return;
        }
        let line = out.strip_suffix('\n').expect("ends with a newline");
        assert!(!line.chars().any(char::is_control), "{out:?}");
        assert!(!line.starts_with('#'), "{out:?}");
        assert!(line.ends_with(&format!(" {ts_ms}")), "{out:?}");
    }
);
