//! The kustomization loader and build on any kustomization.yaml with a patch and two
//! resources (the input is split on NUL bytes): objects or an error naming the file,
//! never a panic, and the same answer twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollwave::tree::{MemTree, RepoPath};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let mut tree = MemTree::new();
    tree.insert("app/kustomization.yaml", parts.next().unwrap_or_default());
    tree.insert("app/patch.yaml", parts.next().unwrap_or_default());
    tree.insert("app/a.yaml", parts.next().unwrap_or_default());
    tree.insert(
        "app/base/kustomization.yaml",
        parts.next().unwrap_or(b"resources: [b.yaml]\n"),
    );
    tree.insert(
        "app/base/b.yaml",
        parts
            .next()
            .unwrap_or(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"),
    );
    let root = RepoPath::new("app").expect("valid path");
    let first = rollwave::render::kustomize::build(&tree, &root);
    let second = rollwave::render::kustomize::build(&tree, &root);
    assert_eq!(first.is_ok(), second.is_ok(), "the build is deterministic");
    if let (Ok(a), Ok(b)) = (first, second) {
        assert_eq!(a, b, "the build is deterministic");
    }
});
