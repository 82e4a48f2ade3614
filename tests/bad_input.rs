//! Bad input of every kind gets a precise error naming where and what, never a panic.

mod common;

use common::{ScratchRepo, run_cli};

fn render_err(overrides: &[(&str, &str)]) -> String {
    let repo = ScratchRepo::minimal_with(overrides);
    repo.render("web", "prod-1")
        .expect_err("rendering should fail")
}

fn load_err(overrides: &[(&str, &str)]) -> String {
    let repo = ScratchRepo::minimal_with(overrides);
    repo.load().expect_err("loading should fail")
}

#[test]
fn the_minimal_fleet_renders() {
    let repo = ScratchRepo::minimal_with(&[]);
    let r = repo.render("web", "prod-1").unwrap();
    assert_eq!(r.objects.len(), 1);
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let e = render_err(&[(
        "apps/web/base/deployment.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
    )]);
    assert!(e.starts_with("apps/web/base/deployment.yaml:"), "{e}");
}

#[test]
fn wrong_type_names_the_field() {
    let e = load_err(&[("apps/web/app.yaml", "targets:\n  stages: prod\n")]);
    assert!(e.starts_with("apps/web/app.yaml:2:"), "{e}");
    assert!(e.contains("field 'targets.stages'"), "{e}");
}

#[test]
fn unknown_field_in_app_yaml_lists_the_known_ones() {
    let e = load_err(&[(
        "apps/web/app.yaml",
        "targets:\n  stages: [prod]\noverlay: x\n",
    )]);
    assert!(
        e.starts_with("apps/web/app.yaml:3:1: unknown field 'overlay', expected one of"),
        "{e}"
    );
}

#[test]
fn unknown_field_in_a_kustomization_is_an_error() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\nnamePrefx: a-\n",
    )]);
    assert!(
        e.starts_with("apps/web/base/kustomization.yaml:3:1: unknown field 'namePrefx'"),
        "{e}"
    );
}

#[test]
fn unsupported_kustomize_field_is_named() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\nvalidators:\n- validate.yaml\n",
    )]);
    assert_eq!(
        e,
        "apps/web/base/kustomization.yaml:3: kustomize field 'validators' is not supported by rollwave; express it with patches or remove it"
    );
}

#[test]
fn exec_transformer_plugin_is_refused_naming_its_file() {
    let e = render_err(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- deployment.yaml\ntransformers:\n- sed.yaml\n",
        ),
        (
            "apps/web/base/sed.yaml",
            "apiVersion: someteam.example.com/v1\nkind: SedTransformer\nmetadata:\n  name: sed\n",
        ),
    ]);
    assert_eq!(
        e,
        "apps/web/base/sed.yaml: someteam.example.com/v1/SedTransformer is not a kustomize built-in (apiVersion: builtin); exec and Go plugins are refused, rollwave runs no programs from the repository"
    );
}

#[test]
fn replacement_without_its_target_field_names_the_field() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\nreplacements:\n- source: {kind: Deployment, name: web}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.missing]\n",
    )]);
    assert_eq!(
        e,
        "apps/web/base/kustomization.yaml: replacements[0]: Deployment web: unable to find field \"spec.missing\" in replacement target"
    );
}

#[test]
fn missing_resource_is_named() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- missing.yaml\n",
    )]);
    assert_eq!(
        e,
        "apps/web/base/kustomization.yaml: resource 'missing.yaml' does not exist (looked for apps/web/base/missing.yaml)"
    );
}

#[test]
fn cyclic_kustomizations_are_reported_with_the_chain() {
    let e = render_err(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- ../other\n",
        ),
        (
            "apps/web/other/kustomization.yaml",
            "resources:\n- ../base\n",
        ),
    ]);
    assert_eq!(
        e,
        "cycle in kustomizations: apps/web/base -> apps/web/other -> apps/web/base"
    );
}

#[test]
fn path_escaping_the_repository_is_refused() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- ../../../../../etc\n",
    )]);
    assert_eq!(
        e,
        "apps/web/base: path '../../../../../etc' leaves the repository; use a path inside it"
    );
}

#[cfg(unix)]
#[test]
fn symlink_pointing_outside_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("secret.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\n",
    )
    .unwrap();
    let repo = ScratchRepo::minimal_with(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- link.yaml\n",
    )]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        repo.path().join("apps/web/base/link.yaml"),
    )
    .unwrap();
    let e = repo.render("web", "prod-1").unwrap_err();
    assert_eq!(
        e,
        "apps/web/base/link.yaml: symlink points outside the repository; replace it with the file itself"
    );
}

#[test]
fn missing_template_variable_names_file_line_and_variable() {
    let e = render_err(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- cm.yaml\n",
        ),
        (
            "apps/web/base/cm.yaml.hbs",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"{{values.nope}}\"\n",
        ),
    ]);
    assert_eq!(
        e,
        "apps/web/base/cm.yaml.hbs:6:7: template variable 'values.nope' is not defined; add it to the fleet, app or cluster values"
    );
}

#[test]
fn template_syntax_error_is_reported() {
    let e = render_err(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- cm.yaml\n",
        ),
        (
            "apps/web/base/cm.yaml.hbs",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{#if x}}\"\n",
        ),
    ]);
    assert!(e.starts_with("apps/web/base/cm.yaml.hbs:"), "{e}");
    assert!(e.contains("template syntax error"), "{e}");
}

#[test]
fn duplicate_object_ids_are_refused() {
    let e = render_err(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- deployment.yaml\n- again.yaml\n",
        ),
        (
            "apps/web/base/again.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
        ),
    ]);
    assert_eq!(
        e,
        "Deployment web is defined twice (in apps/web/base/deployment.yaml and in apps/web/base/again.yaml); an object may appear once per build"
    );
}

#[test]
fn yaml_alias_bomb_is_refused() {
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let items = vec![format!("*{}", w[0]); 9].join(",");
        bomb.push_str(&format!("  {n}: &{n} [{items}]\n", n = w[1]));
    }
    let e = render_err(&[("apps/web/base/deployment.yaml", &bomb)]);
    assert!(e.starts_with("apps/web/base/deployment.yaml:"), "{e}");
    assert!(e.contains("parse budget"), "{e}");
}

#[test]
fn a_50_mb_file_is_refused_before_parsing() {
    let repo = ScratchRepo::minimal_with(&[]);
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  a: \"{}\"\n",
        "x".repeat(50 * 1024 * 1024)
    );
    repo.write("apps/web/base/deployment.yaml", big);
    let e = repo.render("web", "prod-1").unwrap_err();
    assert!(
        e.starts_with("apps/web/base/deployment.yaml: file is 524288"),
        "{e}"
    );
    assert!(
        e.ends_with("over the 8388608-byte limit for repository files"),
        "{e}"
    );
}

#[test]
fn cluster_with_unknown_stage_names_file_and_line() {
    let e = load_err(&[("clusters/prod-1.yaml", "name: prod-1\nstage: qa\n")]);
    assert_eq!(
        e,
        "clusters/prod-1.yaml:2: stage: 'qa' is not one of the stages in fleet.yaml (test, prod)"
    );
}

#[test]
fn cluster_name_must_match_its_file() {
    let e = load_err(&[("clusters/prod-1.yaml", "name: prod-2\nstage: prod\n")]);
    assert_eq!(
        e,
        "clusters/prod-1.yaml:1: name: 'prod-2' must equal the file name 'prod-1'"
    );
}

#[test]
fn canary_that_is_not_a_cluster_names_the_line() {
    let e = load_err(&[(
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  canary:\n  - test-9\n",
    )]);
    assert_eq!(
        e,
        "fleet.yaml:4: rollout.canary: 'test-9' is not a cluster in clusters/"
    );
}

#[test]
fn zero_batch_ratio_is_refused() {
    let e = load_err(&[(
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  batches: [1, 0, 7]\n",
    )]);
    assert!(
        e.starts_with("fleet.yaml:3: rollout.batches: a ratio of 0 is not allowed"),
        "{e}"
    );
}

#[test]
fn negative_bake_is_refused() {
    let e = load_err(&[(
        "apps/web/app.yaml",
        "targets: {stages: [prod]}\nrollout:\n  bake: -5m\n",
    )]);
    assert_eq!(
        e,
        "apps/web/app.yaml:3: rollout.bake: duration '-5m' is negative"
    );
}

#[test]
fn remote_bases_are_refused() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- https://github.com/example/repo//base?ref=v1\n",
    )]);
    assert!(
        e.contains("remote base 'https://github.com/example/repo//base?ref=v1' is refused"),
        "{e}"
    );
}

#[test]
fn component_listed_as_resource_is_explained() {
    let e = render_err(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- deployment.yaml\n- ../comp\n",
        ),
        (
            "apps/web/comp/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n",
        ),
    ]);
    assert_eq!(
        e,
        "apps/web/comp: is a Component; list it under 'components', not 'resources'"
    );
}

#[test]
fn json_patch_without_target_is_refused() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\npatches:\n- patch: '[{\"op\": \"remove\", \"path\": \"/spec\"}]'\n",
    )]);
    assert_eq!(
        e,
        "apps/web/base: apps/web/base: inline patch: a JSON 6902 patch needs a 'target'"
    );
}

#[test]
fn patch_that_matches_nothing_is_refused() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\npatches:\n- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: api}\n    spec: {replicas: 2}\n",
    )]);
    assert!(
        e.contains("no resource matches the patch for Deployment api"),
        "{e}"
    );
}

#[test]
fn object_without_a_name_is_refused() {
    let e = render_err(&[(
        "apps/web/base/deployment.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
    )]);
    assert_eq!(e, "apps/web/base/deployment.yaml: missing 'metadata.name'");
}

#[test]
fn files_outside_the_kustomization_directory_are_refused() {
    let e = render_err(&[
        (
            "apps/web/base/kustomization.yaml",
            "resources:\n- ../shared/cm.yaml\n",
        ),
        (
            "apps/web/shared/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        ),
    ]);
    assert!(
        e.starts_with(
            "apps/web/base: file '../shared/cm.yaml' is outside this kustomization's directory"
        ),
        "{e}"
    );
}

#[test]
fn app_targeting_an_unknown_cluster_names_the_line() {
    let e = load_err(&[("apps/web/app.yaml", "targets:\n  clusters:\n  - prod-9\n")]);
    assert_eq!(
        e,
        "apps/web/app.yaml:3: targets.clusters: 'prod-9' is not a cluster in clusters/"
    );
}

#[test]
fn missing_fleet_yaml_is_explained() {
    let repo = ScratchRepo::minimal_with(&[]);
    repo.remove("fleet.yaml");
    assert_eq!(
        repo.load().unwrap_err(),
        "fleet.yaml: missing: a fleet repository needs fleet.yaml at its root"
    );
}

#[test]
fn invalid_target_regex_is_reported() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\npatches:\n- target: {name: \"web[\"}\n  patch: '[{\"op\": \"remove\", \"path\": \"/spec\"}]'\n",
    )]);
    assert!(
        e.contains("target.name 'web[' is not a valid regular expression"),
        "{e}"
    );
}

#[test]
fn replicas_for_a_missing_workload_is_refused() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\nreplicas:\n- {name: api, count: 2}\n",
    )]);
    assert_eq!(
        e,
        "apps/web/base: replicas: no Deployment, ReplicaSet, ReplicationController or StatefulSet named 'api'"
    );
}

#[test]
fn generator_literal_without_equals_is_refused() {
    let e = render_err(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\nconfigMapGenerator:\n- name: c\n  literals: [novalue]\n",
    )]);
    assert_eq!(
        e,
        "apps/web/base: generator 'c': literal 'novalue' is not KEY=value"
    );
}

#[test]
fn cli_reports_bad_input_with_exit_1_and_no_panic() {
    let repo = ScratchRepo::minimal_with(&[("clusters/prod-1.yaml", "name: prod-1\nstage: qa\n")]);
    let path = repo.path().to_string_lossy().into_owned();
    for args in [
        vec!["render", "--repo", path.as_str(), "--cluster", "prod-1"],
        vec!["validate", "--repo", path.as_str()],
    ] {
        let (code, _out, err) = run_cli(&args);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("clusters/prod-1.yaml:2: stage: 'qa'"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn cli_build_of_a_missing_directory_exits_1() {
    let (code, _out, err) = run_cli(&["build", "/nonexistent/rollwave/dir"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: /nonexistent/rollwave/dir: cannot open directory"),
        "{err}"
    );
}

#[test]
fn cli_render_of_an_unknown_cluster_lists_the_known_ones() {
    let repo = ScratchRepo::minimal_with(&[]);
    let path = repo.path().to_string_lossy().into_owned();
    let (code, _out, err) = run_cli(&["render", "--repo", &path, "--cluster", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error: cluster 'nope' is not in clusters/ (known: prod-1, test-1)"
    );
}

#[test]
fn validate_lists_every_failing_rendering() {
    let repo = ScratchRepo::minimal_with(&[(
        "apps/web/base/kustomization.yaml",
        "resources:\n- missing.yaml\n",
    )]);
    let path = repo.path().to_string_lossy().into_owned();
    let (code, out, err) = run_cli(&["validate", "--repo", &path]);
    assert_eq!(code, 1);
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("error: app 'web'"))
            .count(),
        2,
        "{err}"
    );
    assert!(out.contains("2 renderings, 2 errors"), "{out}");
}
