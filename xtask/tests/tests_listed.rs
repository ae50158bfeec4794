//! Every integration test file in the repository's `tests/` runs.
//!
//! The veth tests live in the top-level `tests/` but belong to the `xstack-tools`
//! package (`stack/tools/`), which owns the `xstack` binary they start. Cargo discovers
//! tests only inside a package's own directory, so each is listed as a `[[test]]` in
//! `stack/tools/Cargo.toml`; this test fails when a file in `tests/` is not listed (it
//! would never run) or a listed path does not exist.

use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn every_file_in_tests_is_a_test_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root");
    let on_disk: BTreeSet<String> = std::fs::read_dir(root.join("tests"))
        .expect("tests/")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
            (is_file && name.ends_with(".rs")).then(|| format!("../../tests/{name}"))
        })
        .collect();
    let manifest = std::fs::read_to_string(root.join("stack/tools/Cargo.toml"))
        .expect("stack/tools/Cargo.toml");
    let listed: BTreeSet<String> = manifest
        .lines()
        .filter_map(|l| {
            let v = l
                .trim()
                .strip_prefix("path")?
                .trim()
                .strip_prefix('=')?
                .trim();
            Some(v.trim_matches('"').to_string())
        })
        .filter(|p| p.starts_with("../../tests/"))
        .collect();
    assert!(!on_disk.is_empty(), "no test files found in tests/");
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    assert!(
        unlisted.is_empty() && missing.is_empty(),
        "stack/tools/Cargo.toml must list every tests/*.rs as a [[test]]:\n  \
         not listed (never run): {unlisted:?}\n  listed but missing: {missing:?}"
    );
}
