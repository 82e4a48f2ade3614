//! Golden tests: every case under tests/kustomize/ is built by rollwave and compared,
//! document by document as parsed data, with `expected.yaml` produced by real
//! kustomize (`tests/kustomize/regenerate.sh`). Cases kustomize refuses hold
//! `expected-error.txt` instead, and rollwave must refuse them too. Built cases are
//! then compared byte for byte: rollwave prints what kustomize prints.

mod common;

use std::path::Path;

use rollwave::render::kustomize;
use rollwave::tree::{DirTree, RepoPath};

fn check(case: &str) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kustomize");
    let tree = DirTree::open(&root).map_err(|e| e.to_string())?;
    if root.join(case).join("expected-error.txt").exists() {
        let kustomize_says =
            std::fs::read_to_string(root.join(case).join("expected-error.txt")).unwrap_or_default();
        return match kustomize::build(&tree, &RepoPath::new(case).unwrap()) {
            Ok(_) => Err(format!(
                "rollwave builds it, kustomize refuses it: {}",
                kustomize_says.trim()
            )),
            Err(_) => Ok(()),
        };
    }
    let expected_text = std::fs::read_to_string(root.join(case).join("expected.yaml"))
        .map_err(|e| e.to_string())?;
    let expected = rollwave::yaml::parse_documents("expected.yaml", &expected_text)
        .map_err(|e| e.to_string())?;
    let actual = kustomize::build(&tree, &RepoPath::new(case).unwrap())
        .map_err(|e| format!("build failed: {e}"))?;
    // Compare through a YAML round trip so both sides are typed by the same parser.
    let actual =
        rollwave::yaml::parse_documents("actual", &rollwave::yaml::to_yaml_stream(&actual))
            .map_err(|e| e.to_string())?;
    if actual == expected {
        return Ok(());
    }
    let a = rollwave::yaml::to_yaml_stream(&actual);
    let e = rollwave::yaml::to_yaml_stream(&expected);
    let diff = similar::TextDiff::from_lines(&e, &a)
        .unified_diff()
        .header("kustomize", "rollwave")
        .to_string();
    Err(format!("output differs from kustomize:\n{diff}"))
}

#[test]
fn rollwave_build_matches_kustomize_on_every_golden_case() {
    let cases = common::golden_cases();
    assert!(
        cases.len() >= 150,
        "expected at least 150 golden cases, found {}",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c).err().map(|e| format!("== {c}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// rollwave's printed build of a case, when kustomize builds it.
fn printed(case: &str) -> Option<Result<(String, String), String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kustomize");
    let expected = std::fs::read_to_string(root.join(case).join("expected.yaml")).ok()?;
    let tree = match DirTree::open(&root) {
        Ok(tree) => tree,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(
        kustomize::build(&tree, &RepoPath::new(case).unwrap())
            .map(|objects| (rollwave::yaml::to_yaml_stream(&objects), expected))
            .map_err(|e| format!("build failed: {e}")),
    )
}

#[test]
fn rollwave_prints_every_golden_case_byte_for_byte_as_kustomize() {
    let cases = common::golden_cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| match printed(case)? {
            Err(e) => Some(format!("== {case}: {e}")),
            Ok((actual, expected)) if actual != expected => {
                let diff = similar::TextDiff::from_lines(&expected, &actual)
                    .unified_diff()
                    .header("kustomize", "rollwave")
                    .to_string();
                Some(format!("== {case}: printed differently:\n{diff}"))
            }
            Ok(_) => None,
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases print differently:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
