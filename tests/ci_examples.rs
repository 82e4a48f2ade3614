//! The CI examples in `examples/ci/` as far as they can run here: both files follow
//! their system's schema (check-jsonschema, from PyPI through `tests/python/setup`,
//! carries the GitHub workflow and GitLab CI schemas), and the commands of their review
//! step, taken from the YAML as written, run in a fixture fleet repository against a
//! local stand-in of the comment API that records every request: the first push
//! creates the comment, the next one updates the same comment in place.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{get, patch, put};
use serde_json::{Value, json};

use common::git::{commit_files, git};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci")
}

/// The examples' YAML as JSON values.
fn workflow(path: &str) -> Value {
    let text = std::fs::read_to_string(examples().join(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// check-jsonschema from the tests' Python virtualenv.
fn check_jsonschema() -> PathBuf {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/setup");
    let out = Command::new(&setup)
        .output()
        .expect("run tests/python/setup");
    assert!(
        out.status.success(),
        "tests/python/setup failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    python.with_file_name("check-jsonschema")
}

#[test]
fn the_ci_examples_follow_the_github_and_gitlab_schemas() {
    let check = check_jsonschema();
    for (schema, file) in [
        ("vendor.github-workflows", "github/rollwave-review.yml"),
        ("vendor.gitlab-ci", "gitlab/.gitlab-ci.yml"),
    ] {
        let out = Command::new(&check)
            .args(["--builtin-schema", schema])
            .arg(examples().join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file} does not follow {schema}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The check can fail: a misspelt key is caught.
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("github/rollwave-review.yml")).unwrap();
    let bad = tmp.path().join("bad.yml");
    std::fs::write(&bad, text.replace("runs-on:", "runs_on:")).unwrap();
    let out = Command::new(&check)
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken workflow passed the schema");
}

/// One request the stand-in received: method, path and its token header.
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    method: String,
    path: String,
    token: String,
}

/// The comment API of GitHub (issue comments) and GitLab (merge-request notes), in
/// memory: comments by id, and every request.
#[derive(Default)]
struct Comments {
    by_id: BTreeMap<u64, String>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<Comments>>;

fn record(state: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) {
    let token = ["authorization", "private-token"]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    state.lock().unwrap().requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        token,
    });
}

async fn list(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> axum::Json<Value> {
    record(&state, &method, &uri, &headers);
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let comments = state.lock().unwrap();
    let all: Vec<Value> = comments
        .by_id
        .iter()
        .map(|(id, body)| json!({"id": id, "body": body}))
        .collect();
    axum::Json(Value::Array(if page == 1 { all } else { Vec::new() }))
}

async fn create(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    record(&state, &method, &uri, &headers);
    let mut comments = state.lock().unwrap();
    let id = 1000 + comments.by_id.len() as u64;
    let text = body["body"].as_str().unwrap_or("").to_string();
    comments.by_id.insert(id, text.clone());
    (
        axum::http::StatusCode::CREATED,
        axum::Json(json!({"id": id, "body": text})),
    )
}

async fn update(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    UrlPath(parts): UrlPath<Vec<(String, String)>>,
    axum::Json(body): axum::Json<Value>,
) -> Result<axum::Json<Value>, axum::http::StatusCode> {
    record(&state, &method, &uri, &headers);
    let id: u64 = parts
        .iter()
        .find(|(k, _)| k == "id")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or(axum::http::StatusCode::BAD_REQUEST)?;
    let mut comments = state.lock().unwrap();
    let slot = comments
        .by_id
        .get_mut(&id)
        .ok_or(axum::http::StatusCode::NOT_FOUND)?;
    *slot = body["body"].as_str().unwrap_or("").to_string();
    Ok(axum::Json(json!({"id": id, "body": slot.clone()})))
}

/// The stand-in, listening on a free port until the test process ends; its base URL
/// and state. A comment by someone else is there from the start.
fn comment_api() -> (String, Shared) {
    let state: Shared = Arc::default();
    state
        .lock()
        .unwrap()
        .by_id
        .insert(1, "Looks good to me".to_string());
    let app = Router::new()
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(list).post(create),
        )
        .route("/repos/{owner}/{repo}/issues/comments/{id}", patch(update))
        .route(
            "/projects/{project}/merge_requests/{iid}/notes",
            get(list).post(create),
        )
        .route(
            "/projects/{project}/merge_requests/{iid}/notes/{id}",
            put(update),
        )
        .with_state(state.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (url, state)
}

/// A fleet repository whose `main` has one app on two clusters, with the review
/// script where the examples say to copy it, and a branch `change` checked out.
fn fleet_repository(dir: &Path) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    let script = std::fs::read_to_string(examples().join("rollwave-review.sh")).unwrap();
    let base = commit_files(
        dir,
        &[
            ("ci/rollwave-review.sh", &script),
            ("fleet.yaml", "stages: [test, prod]\nrollout:\n  bake: 5m\n"),
            ("clusters/test-1.yaml", "name: test-1\nstage: test\n"),
            ("clusters/prod-1.yaml", "name: prod-1\nstage: prod\n"),
            (
                "apps/shop/app.yaml",
                "namespace: shop\nowners: ['@example/shop']\ntargets:\n  stages: [test, prod]\n",
            ),
            (
                "apps/shop/base/kustomization.yaml",
                "resources: [config.yaml, secret.yaml]\n",
            ),
            (
                "apps/shop/base/config.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop}\ndata: {TIMEOUT: 30s}\n",
            ),
            (
                "apps/shop/base/secret.yaml",
                "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-db}\nstringData: {password: hunter2}\n",
            ),
        ],
        "fleet",
    );
    git(dir, &["checkout", "-q", "-b", "change"]);
    base
}

/// Runs `script` with bash in `dir` with `env` (and PATH); its exit code and output.
fn run_step(dir: &Path, script: &str, env: &[(&str, String)]) -> (i32, String) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The comments now held, by id.
fn comments(state: &Shared) -> BTreeMap<u64, String> {
    state.lock().unwrap().by_id.clone()
}

/// The requests received since the last call, as (method, path); each must carry
/// `token` (GitHub's `Authorization` or GitLab's `PRIVATE-TOKEN` header).
fn requests(state: &Shared, token: &str) -> Vec<(String, String)> {
    let drained: Vec<Recorded> = state.lock().unwrap().requests.drain(..).collect();
    for r in &drained {
        assert_eq!(r.token, token, "{r:?}");
    }
    drained.into_iter().map(|r| (r.method, r.path)).collect()
}

/// The header each platform's requests carry, from the tokens the tests set.
const GITHUB_TOKEN: &str = "Bearer ghs_job_token";
const GITLAB_TOKEN: &str = "glpat-review";

#[test]
fn the_github_workflow_posts_one_review_comment_and_updates_it_on_the_next_push() {
    let flow = workflow("github/rollwave-review.yml");
    let step = flow["jobs"]["review"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Review")
        .expect("a Review step")
        .clone();
    let run = step["run"].as_str().unwrap();
    // Every variable the step's command reads comes from its env (the expressions
    // GitHub fills in) or from Actions itself.
    for var in ["GITHUB_TOKEN", "PR_NUMBER", "BASE_SHA", "HEAD_SHA"] {
        assert!(step["env"][var].is_string(), "the step sets {var}");
    }
    let (api, state) = comment_api();
    let tmp = tempfile::tempdir().unwrap();
    let base = fleet_repository(tmp.path());
    let env = |head: &str| {
        vec![
            ("GITHUB_ACTIONS", "true".to_string()),
            ("GITHUB_API_URL", api.clone()),
            ("GITHUB_REPOSITORY", "team/fleet".to_string()),
            ("GITHUB_TOKEN", "ghs_job_token".to_string()),
            ("PR_NUMBER", "7".to_string()),
            ("BASE_SHA", base.clone()),
            ("HEAD_SHA", head.to_string()),
            ("ROLLWAVE", env!("CARGO_BIN_EXE_rollwave").to_string()),
        ]
    };

    let head = commit_files(
        tmp.path(),
        &[(
            "apps/shop/base/config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop}\ndata: {TIMEOUT: 45s}\n",
        )],
        "shop: a longer timeout",
    );
    let (code, out) = run_step(tmp.path(), run, &env(&head));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        requests(&state, GITHUB_TOKEN),
        [
            ("GET".into(), "/repos/team/fleet/issues/7/comments".into()),
            ("POST".into(), "/repos/team/fleet/issues/7/comments".into()),
        ]
    );
    let held = comments(&state);
    assert_eq!(held.len(), 2, "{held:?}");
    let (&id, body) = held.iter().find(|(id, _)| **id != 1).unwrap();
    assert!(body.starts_with("<!-- rollwave diff -->\n"), "{body}");
    assert!(body.contains("- **shop**: changes 2 clusters"), "{body}");
    assert!(body.contains("+  TIMEOUT: 45s"), "{body}");

    // The next push: the same comment, updated; the other one untouched.
    let head = commit_files(
        tmp.path(),
        &[(
            "apps/shop/base/secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-db}\nstringData: {password: s3cret-2}\n",
        )],
        "shop: rotate the password",
    );
    let (code, out) = run_step(tmp.path(), run, &env(&head));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        requests(&state, GITHUB_TOKEN),
        [
            ("GET".into(), "/repos/team/fleet/issues/7/comments".into()),
            (
                "PATCH".into(),
                format!("/repos/team/fleet/issues/comments/{id}")
            ),
        ]
    );
    let held = comments(&state);
    assert_eq!(held.len(), 2, "still one review comment: {held:?}");
    assert_eq!(held[&1], "Looks good to me");
    let body = &held[&id];
    assert!(body.contains("`Secret shop/shop-db`: changed"), "{body}");
    assert!(
        !body.contains("hunter2") && !body.contains("s3cret-2"),
        "{body}"
    );
}

#[test]
fn the_gitlab_job_posts_one_review_note_updates_it_and_fails_on_a_broken_revision() {
    let flow = workflow("gitlab/.gitlab-ci.yml");
    let script: Vec<String> = flow["rollwave-review"]["script"]
        .as_array()
        .expect("the job's script")
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let script = script.join("\n");
    let (api, state) = comment_api();
    let tmp = tempfile::tempdir().unwrap();
    let base = fleet_repository(tmp.path());
    // What the job's cache holds after its before_script built rollwave.
    std::fs::create_dir_all(tmp.path().join(".rollwave-bin/bin")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_rollwave"),
        tmp.path().join(".rollwave-bin/bin/rollwave"),
    )
    .unwrap();
    let env = |head: &str| {
        vec![
            ("GITLAB_CI", "true".to_string()),
            ("CI_API_V4_URL", api.clone()),
            ("CI_PROJECT_ID", "42".to_string()),
            ("CI_MERGE_REQUEST_IID", "3".to_string()),
            ("CI_MERGE_REQUEST_DIFF_BASE_SHA", base.clone()),
            ("CI_COMMIT_SHA", head.to_string()),
            ("ROLLWAVE_REVIEW_TOKEN", "glpat-review".to_string()),
        ]
    };
    let head = commit_files(
        tmp.path(),
        &[(
            "apps/shop/base/config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop}\ndata: {TIMEOUT: 45s}\n",
        )],
        "shop: a longer timeout",
    );
    let (code, out) = run_step(tmp.path(), &script, &env(&head));
    assert_eq!(code, 0, "{out}");
    let notes = "/projects/42/merge_requests/3/notes".to_string();
    assert_eq!(
        requests(&state, GITLAB_TOKEN),
        [
            ("GET".into(), notes.clone()),
            ("POST".into(), notes.clone())
        ]
    );
    let held = comments(&state);
    let (&id, _) = held.iter().find(|(id, _)| **id != 1).unwrap();

    // A revision that does not render: the note says why and the job fails.
    let head = commit_files(
        tmp.path(),
        &[(
            "apps/shop/base/kustomization.yaml",
            "resources: [config.yaml, secret.yaml, missing.yaml]\n",
        )],
        "shop: a resource that is not there",
    );
    let (code, out) = run_step(tmp.path(), &script, &env(&head));
    assert_eq!(code, 1, "a broken revision fails the job:\n{out}");
    assert_eq!(
        requests(&state, GITLAB_TOKEN),
        [
            ("GET".into(), notes.clone()),
            ("PUT".into(), format!("{notes}/{id}"))
        ]
    );
    let body = &comments(&state)[&id];
    assert!(body.contains("> [!CAUTION]"), "{body}");
    assert!(body.contains("missing.yaml"), "{body}");
    assert!(body.contains("#### `rollwave validate`"), "{body}");
}
