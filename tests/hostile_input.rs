//! Input written to hurt: recursive partials, loops and output without end, absurd
//! numbers, invalid names and emptied apps. Each is refused with an error naming the
//! file and saying what to do, quickly, and never takes the process down.

mod common;

use std::time::{Duration, Instant};

use common::{ScratchRepo, run_cli};

const CM_KUSTOMIZATION: (&str, &str) = (
    "apps/web/base/kustomization.yaml",
    "resources:\n- cm.yaml\n",
);

fn template_err(template: &str) -> String {
    template_err_with(template, &[])
}

fn template_err_with(template: &str, more: &[(&str, &str)]) -> String {
    let mut files = vec![CM_KUSTOMIZATION, ("apps/web/base/cm.yaml.hbs", template)];
    files.extend_from_slice(more);
    let repo = ScratchRepo::minimal_with(&files);
    repo.render("web", "prod-1")
        .expect_err("rendering should fail")
}

fn load_err(overrides: &[(&str, &str)]) -> String {
    ScratchRepo::minimal_with(overrides)
        .load()
        .expect_err("loading should fail")
}

#[test]
fn a_partial_that_calls_itself_is_refused_before_it_runs() {
    let e = template_err(
        "{{#*inline \"loop\"}}x{{> loop}}{{/inline}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"{{> loop}}\"\n",
    );
    assert_eq!(
        e,
        "apps/web/base/cm.yaml.hbs:1: partial 'loop' calls itself (loop -> loop); recursive partials are not supported, unroll the recursion"
    );
}

#[test]
fn partials_calling_each_other_are_refused_with_the_cycle() {
    let e = template_err(
        "{{#*inline \"a\"}}{{> b}}{{/inline}}{{#*inline \"b\"}}{{#if x}}{{> a}}{{/if}}{{/inline}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"{{> a}}\"\n",
    );
    assert!(
        e.starts_with("apps/web/base/cm.yaml.hbs:1: partial 'a' calls itself (a -> b -> a)"),
        "{e}"
    );
}

#[test]
fn partials_that_do_not_recurse_still_render() {
    let repo = ScratchRepo::minimal_with(&[
        CM_KUSTOMIZATION,
        (
            "apps/web/base/cm.yaml.hbs",
            "{{#*inline \"img\"}}{{values.image}}:1{{/inline}}{{#*inline \"full\"}}r/{{> img}}{{/inline}}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"{{> full}}\"\n  b: \"{{> img}}\"\n",
        ),
    ]);
    let r = repo.render("web", "prod-1").unwrap();
    assert_eq!(r.objects[0]["data"]["a"], "r/nginx:1");
    assert_eq!(r.objects[0]["data"]["b"], "nginx:1");
}

#[test]
fn a_partial_named_by_an_expression_is_refused() {
    let e = template_err("{{> (lookup values \"image\")}}\n");
    assert_eq!(
        e,
        "apps/web/base/cm.yaml.hbs:1: partial named by an expression; name partials literally (`{{> name}}`)"
    );
}

fn big_list(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(
        "namespace: web\ntargets:\n  stages: [test, prod]\nvalues:\n  image: nginx\n  hosts: [{}]\n",
        items.join(", ")
    )
}

#[test]
fn nested_loops_over_generated_lists_stop_at_the_iteration_limit_in_seconds() {
    let started = Instant::now();
    let e = template_err_with(
        "{{#each values.hosts}}{{#each ../values.hosts}}{{#each ../../values.hosts}}{{/each}}{{/each}}{{/each}}\n",
        &[("apps/web/app.yaml", &big_list(1000))],
    );
    assert_eq!(
        e,
        "apps/web/base/cm.yaml.hbs:1:23: template loops more than 1000000 times (#each iterations); loop over smaller lists or split the template"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_template_writing_gigabytes_stops_at_the_output_cap() {
    let line = "x".repeat(1000);
    let template = format!(
        "{{{{#each values.hosts}}}}{{{{#each ../values.hosts}}}}{line}{{{{/each}}}}{{{{/each}}}}\n"
    );
    let e = template_err_with(&template, &[("apps/web/app.yaml", &big_list(2000))]);
    assert!(
        e.starts_with("apps/web/base/cm.yaml.hbs:")
            && e.ends_with("template output exceeds 8388608 bytes; render less per file"),
        "{e}"
    );
}

#[test]
fn blocks_nested_thousands_deep_are_refused_before_parsing() {
    let template = format!(
        "{}x{}\n",
        "{{#if values}}".repeat(5000),
        "{{/if}}".repeat(5000)
    );
    let e = template_err(&template);
    assert_eq!(
        e,
        "apps/web/base/cm.yaml.hbs:1: template blocks nest more than 64 levels deep; flatten the template"
    );
}

#[test]
fn each_keeps_its_documented_variables_and_else() {
    let repo = ScratchRepo::minimal_with(&[
        CM_KUSTOMIZATION,
        (
            "apps/web/app.yaml",
            "namespace: web\ntargets:\n  stages: [test, prod]\nvalues:\n  image: nginx\n  hosts: [a, b]\n  ports: {http: 80, https: 443}\n  none: []\n",
        ),
        (
            "apps/web/base/cm.yaml.hbs",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  hosts: \"{{#each values.hosts}}{{@index}}={{this}}{{#if @first}}(first){{/if}}{{#if @last}}(last){{/if}};{{/each}}\"\n  ports: \"{{#each values.ports as |port name|}}{{name}}:{{port}}@{{@key}};{{/each}}\"\n  none: \"{{#each values.none}}x{{else}}empty{{/each}}\"\n  up: \"{{#each values.hosts}}{{../app.name}}-{{this}};{{/each}}\"\n",
        ),
    ]);
    let r = repo.render("web", "prod-1").unwrap();
    let data = &r.objects[0]["data"];
    assert_eq!(data["hosts"], "0=a(first);1=b(last);");
    assert_eq!(data["ports"], "http:80@http;https:443@https;");
    assert_eq!(data["none"], "empty");
    assert_eq!(data["up"], "web-a;web-b;");
}

#[test]
fn validate_reports_a_recursive_partial_and_exits_1_instead_of_crashing() {
    let repo = ScratchRepo::minimal_with(&[
        CM_KUSTOMIZATION,
        (
            "apps/web/base/cm.yaml.hbs",
            "{{#*inline \"p\"}}{{> q}}{{/inline}}{{#*inline \"q\"}}{{> p}}{{/inline}}{{> p}}\n",
        ),
    ]);
    let path = repo.path().to_str().unwrap().to_string();
    let (code, out, err) = run_cli(&["validate", "--repo", &path]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("apps/web/base/cm.yaml.hbs:1: partial 'p' calls itself (p -> q -> p)"),
        "{all}"
    );
}

#[test]
fn a_batch_ratio_beyond_the_limit_is_refused_with_the_line() {
    let e = load_err(&[(
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  batches: [5, 18446744073709551615]\n",
    )]);
    assert_eq!(
        e,
        "fleet.yaml:3: rollout.batches: ratio 18446744073709551615 is over the limit of 1000; ratios are shares, e.g. [1, 2, 7]"
    );
}

#[test]
fn a_bake_of_centuries_is_refused() {
    let e = load_err(&[(
        "apps/web/app.yaml",
        "targets: {stages: [prod]}\nrollout:\n  bake: 18446744073709551615s\n",
    )]);
    assert_eq!(
        e,
        "apps/web/app.yaml:3: rollout.bake: '18446744073709551615s' is longer than the limit of 7d"
    );
}

#[test]
fn a_zero_progress_deadline_is_refused() {
    let e = load_err(&[(
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  progressDeadline: 0s\n",
    )]);
    assert_eq!(
        e,
        "fleet.yaml:3: rollout.progressDeadline: must be at least 1s"
    );
}

#[test]
fn an_app_namespace_kubernetes_would_refuse_is_refused_by_the_model() {
    let e = load_err(&[(
        "apps/web/app.yaml",
        "namespace: Not_A/Valid..Namespace\ntargets: {stages: [prod]}\n",
    )]);
    assert_eq!(
        e,
        "apps/web/app.yaml:1: namespace: 'Not_A/Valid..Namespace' is not a valid namespace name: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
    );
}

#[test]
fn invalid_cluster_labels_and_selectors_are_refused() {
    let e = load_err(&[(
        "clusters/prod-1.yaml",
        "name: prod-1\nstage: prod\nlabels: {region: \"b j\"}\n",
    )]);
    assert_eq!(
        e,
        "clusters/prod-1.yaml:3: labels: label value 'b j' of 'region' is not valid: empty, or at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
    );
    let e = load_err(&[("apps/web/app.yaml", "targets:\n  selector: {\"-bad\": x}\n")]);
    assert!(
        e.starts_with("apps/web/app.yaml:2: targets.selector: label key '-bad' is not valid"),
        "{e}"
    );
}

#[test]
fn an_app_that_renders_nothing_is_refused_unless_it_allows_it() {
    let empty = ("apps/web/base/kustomization.yaml", "resources: []\n");
    let repo = ScratchRepo::minimal_with(&[empty]);
    let e = repo.render("web", "prod-1").unwrap_err();
    assert_eq!(
        e,
        "apps/web/base: renders no objects for cluster prod-1; applying it would prune everything the app has. Remove an app by taking it out of targets or deleting its directory, or set allowEmpty: true in apps/web/app.yaml if it is meant to be empty"
    );
    let allowed = ScratchRepo::minimal_with(&[
        empty,
        (
            "apps/web/app.yaml",
            "namespace: web\ntargets:\n  stages: [test, prod]\nallowEmpty: true\n",
        ),
    ]);
    assert!(allowed.render("web", "prod-1").unwrap().objects.is_empty());
}

#[test]
fn a_canary_listed_twice_is_refused() {
    let e = load_err(&[(
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  canary: [test-1, test-1]\n",
    )]);
    assert_eq!(e, "fleet.yaml:3: rollout.canary: 'test-1' is listed twice");
}

#[test]
fn validate_lists_every_broken_app_and_still_checks_the_others() {
    let repo = ScratchRepo::minimal_with(&[
        ("apps/web/app.yaml", "targets:\n  stage: [prod]\n"),
        (
            "apps/api/app.yaml",
            "namespace: api\ntargets: {stages: [prod]}\nbake: 1m\n",
        ),
        (
            "apps/ok/app.yaml",
            "namespace: ok\ntargets: {stages: [prod]}\n",
        ),
        (
            "apps/ok/base/kustomization.yaml",
            "resources: [missing.yaml]\n",
        ),
    ]);
    let path = repo.path().to_str().unwrap().to_string();
    let (code, out, err) = run_cli(&["validate", "--repo", &path]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("error: app 'web': apps/web/app.yaml:2:3:"),
        "{err}"
    );
    assert!(
        err.contains("error: app 'api': apps/api/app.yaml:3:1: unknown field 'bake'"),
        "{err}"
    );
    assert!(
        err.contains("error: app 'ok' for cluster 'prod-1':"),
        "{err}"
    );
    assert!(
        out.contains("validated 3 apps on 2 clusters: 1 renderings, 3 errors"),
        "{out}"
    );
}

#[test]
fn a_batch_ratio_beyond_64_bits_names_the_entry_as_written() {
    let e = load_err(&[(
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  batches: [1, 100000000000000000000000000000]\n",
    )]);
    assert_eq!(
        e,
        "fleet.yaml:3:16: field 'rollout.batches[1]': invalid u64"
    );
}

/// `kubectl kustomize DIR`: whether real kustomize builds it.
fn kustomize_accepts(dir: &std::path::Path) -> bool {
    std::process::Command::new("kubectl")
        .args(["kustomize", dir.to_str().unwrap()])
        .output()
        .expect("kubectl is required by the tests (kubectl kustomize is the reference renderer)")
        .status
        .success()
}

#[test]
fn empty_patch_files_are_refused_where_kustomize_refuses_them() {
    let deployment = common::MINIMAL[5];
    let cases = [
        (
            "patches:\n- path: p.yaml\n",
            "",
            Some("the patch is empty, which kustomize reads as a JSON 6902 patch without a target"),
        ),
        (
            "patches:\n- path: p.yaml\n",
            "# nothing\n",
            Some("the patch holds only whitespace, comments or a null"),
        ),
        (
            "patches:\n- path: p.yaml\n  target: {kind: Deployment}\n",
            "\n\n",
            Some("the patch holds only whitespace, comments or a null"),
        ),
        (
            "patches:\n- path: p.yaml\n  target: {kind: Deployment}\n",
            "# no operations\n[]\n",
            Some("the patch is an empty list"),
        ),
        (
            "patches:\n- target: {kind: Deployment}\n  patch: \"  \\n\"\n",
            "",
            Some("an inline patch that is blank counts as none"),
        ),
        (
            "patchesStrategicMerge:\n- p.yaml\n",
            "",
            Some("the patch is empty; give it content or remove the entry"),
        ),
        (
            "patchesJson6902:\n- path: p.yaml\n  target: {group: apps, version: v1, kind: Deployment, name: web}\n",
            "",
            Some("the patch is empty; give it content or remove the entry"),
        ),
        (
            "patches:\n- path: p.yaml\n  target: {kind: Deployment}\n",
            "",
            None,
        ),
    ];
    for (field, patch, refused) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            format!("resources:\n- deployment.yaml\n{field}"),
        )
        .unwrap();
        std::fs::write(dir.path().join("deployment.yaml"), deployment.1).unwrap();
        std::fs::write(dir.path().join("p.yaml"), patch).unwrap();
        let (code, _, err) = run_cli(&["build", dir.path().to_str().unwrap()]);
        match refused {
            Some(message) => {
                assert!(
                    !kustomize_accepts(dir.path()),
                    "kustomize refuses {field:?} with {patch:?}"
                );
                assert_eq!(code, 1, "{field:?} with {patch:?}");
                assert!(err.contains(message), "{err}");
            }
            None => {
                assert!(kustomize_accepts(dir.path()));
                assert_eq!(code, 0, "{err}");
            }
        }
    }
}

#[test]
fn a_git_server_that_accepts_and_never_answers_fails_the_fetch_within_its_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and keeps it open without a byte in return.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args([
            "plan",
            "--repo",
            &format!("git://127.0.0.1:{port}/fleet.git"),
        ])
        .env("ROLLWAVE_CACHE", cache.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("rollwave plan still waiting on a silent Git server after 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    assert!(!output.status.success());
    // The I/O timeout is 30 s; a little more for the process itself.
    assert!(
        took >= Duration::from_secs(25) && took < Duration::from_secs(60),
        "took {took:?}"
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
}
