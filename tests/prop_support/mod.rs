//! What the property tests (`tests/prop_*.rs`) share: how many cases to
//! run and where failures are kept. Pure proptest, nothing of the servers
//! in `tests/common`.

use proptest::prelude::ProptestConfig;
use proptest::test_runner::FileFailurePersistence;

/// `default` cases unless `PROPTEST_CASES` says otherwise; failures are
/// kept in `proptest-regressions/` (replayed first on every run).
pub(crate) fn cases(default: u32, file: &'static str) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..ProptestConfig::default()
    }
}
