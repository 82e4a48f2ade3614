//! The rest of the kubectl matrix against the simulated API server: run, expose,
//! apply --prune, edit, wait, label, annotate, patch of every type, get in every output
//! format, describe of every kind `kubectl create` makes and delete with every cascade.
//! Each check asserts what the user sees.

use std::time::Duration;

use kube_sim::testing::{TestCluster, eventually, require_kubectl};

/// A cluster whose Pods turn ready quickly.
fn cluster(name: &str) -> TestCluster {
    require_kubectl();
    let mut options = kube_sim::SimOptions::named(name);
    options.ready_after = Duration::from_millis(300);
    TestCluster::start_with(options)
}

/// The row of `name` in `kubectl get` output, cells separated by single spaces.
fn row(out: &str, name: &str) -> String {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{out}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The words of `text` separated by single spaces.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `ports` is `<port>:<node port>/TCP` with a node port from 30000-32767.
fn has_node_port(ports: &str, port: u16) -> bool {
    ports
        .strip_prefix(&format!("{port}:"))
        .and_then(|rest| rest.strip_suffix("/TCP"))
        .and_then(|n| n.parse::<u16>().ok())
        .is_some_and(|n| (30000..=32767).contains(&n))
}

fn rolled_out(c: &TestCluster, target: &str) {
    let out = c.kubectl_ok(&["rollout", "status", target, "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[test]
fn run_and_expose_make_a_pod_and_services_with_node_ports_and_endpoints() {
    let c = cluster("kubectl-run-expose");
    let out = c.kubectl_ok(&[
        "run",
        "box",
        "--image=busybox:1.36",
        "--port=8080",
        "--",
        "sleep",
        "3600",
    ]);
    assert_eq!(out.trim(), "pod/box created");
    let labels = c.kubectl_ok(&["get", "pod", "box", "-o", "jsonpath={.metadata.labels}"]);
    assert_eq!(labels, r#"{"run":"box"}"#);
    let args = c.kubectl_ok(&[
        "get",
        "pod",
        "box",
        "-o",
        "jsonpath={.spec.containers[0].args}",
    ]);
    assert_eq!(args, r#"["sleep","3600"]"#);

    // A NodePort Service gets a node port from the default range, as `PORT(S)` shows.
    let out = c.kubectl_ok(&[
        "expose",
        "pod",
        "box",
        "--port=80",
        "--target-port=8080",
        "--type=NodePort",
    ]);
    assert_eq!(out.trim(), "service/box exposed");
    let out = c.kubectl_ok(&["get", "svc", "box", "-o", "wide"]);
    let cells: Vec<String> = row(&out, "box").split(' ').map(String::from).collect();
    assert_eq!(cells[1], "NodePort", "{out}");
    assert!(has_node_port(&cells[4], 80), "{out}");
    assert_eq!(cells.last().map(String::as_str), Some("run=box"), "{out}");
    // Once the Pod is ready its address is the Service's endpoint.
    eventually(Duration::from_secs(20), "the Service's endpoint", || {
        let ip = c.kubectl_ok(&["get", "pod", "box", "-o", "jsonpath={.status.podIP}"]);
        let described = c.kubectl_ok(&["describe", "svc", "box"]);
        !ip.is_empty()
            && described
                .lines()
                .any(|l| l.starts_with("Endpoints:") && l.ends_with(&format!("{ip}:8080")))
    });

    // A LoadBalancer Service for a Deployment: node port, then an external address.
    c.kubectl_ok(&["create", "deployment", "web", "--image=nginx:1.27"]);
    let out = c.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--type=LoadBalancer",
    ]);
    assert_eq!(out.trim(), "service/web exposed");
    eventually(
        Duration::from_secs(20),
        "the load balancer's address",
        || {
            let out = c.kubectl_ok(&["get", "svc", "web"]);
            let web = row(&out, "web");
            let cells: Vec<&str> = web.split(' ').collect();
            cells[1] == "LoadBalancer"
                && cells[3].starts_with("192.0.2.")
                && has_node_port(cells[4], 80)
        },
    );
    let selector = c.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.selector}"]);
    assert_eq!(selector, r#"{"app":"web"}"#);

    // A ClusterIP Service turned NodePort gets a node port; turned back, it loses it.
    c.kubectl_ok(&["create", "service", "clusterip", "inner", "--tcp=80:8080"]);
    c.kubectl_ok(&[
        "patch",
        "svc",
        "inner",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    let out = c.kubectl_ok(&["get", "svc", "inner"]);
    assert!(
        has_node_port(row(&out, "inner").split(' ').nth(4).unwrap(), 80),
        "{out}"
    );
    c.kubectl_ok(&[
        "patch",
        "svc",
        "inner",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let out = c.kubectl_ok(&["get", "svc", "inner"]);
    assert_eq!(
        row(&out, "inner").split(' ').nth(4),
        Some("80/TCP"),
        "{out}"
    );
}

const PRUNED: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: kept, namespace: default, labels: {set: shop}}
data: {mode: fast}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: dropped, namespace: default, labels: {set: shop}}
data: {mode: fast}
"#;

#[test]
fn apply_prune_deletes_what_left_the_files_and_nothing_else() {
    let c = cluster("kubectl-prune");
    c.kubectl_ok(&["create", "configmap", "bystander", "--from-literal=a=b"]);
    c.kubectl_ok(&["label", "configmap", "bystander", "set=other"]);
    let (code, out, err) = c.kubectl_in(&["apply", "--prune", "-l", "set=shop", "-f", "-"], PRUNED);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configmap/kept created"), "{out}");
    assert!(out.contains("configmap/dropped created"), "{out}");
    let only_kept = PRUNED.split("---").next().unwrap();
    let (code, out, err) = c.kubectl_in(
        &["apply", "--prune", "-l", "set=shop", "-f", "-"],
        only_kept,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configmap/kept unchanged"), "{out}");
    assert!(out.contains("configmap/dropped pruned"), "{out}");
    let names = c.kubectl_ok(&["get", "cm", "-o", "name"]);
    assert!(names.contains("configmap/kept"), "{names}");
    assert!(names.contains("configmap/bystander"), "{names}");
    assert!(!names.contains("configmap/dropped"), "{names}");
}

#[test]
fn edit_through_the_editor_sends_the_change_and_a_refused_edit_says_why() {
    let c = cluster("kubectl-edit");
    c.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=1",
    ]);
    let editor = c.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i -e 's/replicas: 1$/replicas: 3/' -e 's/image: nginx:1.27/image: nginx:1.28/' \"$1\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = c
        .kubectl_cmd(&["edit", "deployment", "web"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "deployment.apps/web edited");
    let got = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[*].image}",
    ]);
    assert_eq!(got, "3 nginx:1.28");

    // An edit that breaks the selector is refused with the server's reason, and kept.
    let breaking = c.path().join("break.sh");
    std::fs::write(
        &breaking,
        "#!/bin/sh\nsed -i -e 's/^      app: web$/      app: other/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&breaking, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = c
        .kubectl_cmd(&["edit", "deployment", "web"])
        .env("EDITOR", &breaking)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: deployments.apps \"web\" is invalid"),
        "{stderr}"
    );
    assert!(
        stderr.contains("A copy of your changes has been stored"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Edit cancelled, no valid changes were saved."),
        "{stderr}"
    );
    let selector = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.selector.matchLabels}",
    ]);
    assert_eq!(selector, r#"{"app":"web"}"#);
}

#[test]
fn wait_for_a_condition_a_jsonpath_value_and_a_deletion() {
    let c = cluster("kubectl-wait");
    c.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
    ]);
    let out = c.kubectl_ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=30s",
    ]);
    assert_eq!(out.trim(), "deployment.apps/web condition met");
    let out = c.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.readyReplicas}=2",
        "deployment/web",
        "--timeout=30s",
    ]);
    assert_eq!(out.trim(), "deployment.apps/web condition met");
    let out = c.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=web",
        "--timeout=30s",
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().all(|l| l.ends_with(" condition met")), "{out}");
    // A condition that never comes times out with kubectl's message.
    let (code, _, err) = c.kubectl(&[
        "wait",
        "--for=condition=Progressing=False",
        "deployment/web",
        "--timeout=1s",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("timed out waiting for the condition on deployments/web"),
        "{err}"
    );
    // --for=delete returns once the object is gone.
    let waiter = c
        .kubectl_cmd(&["wait", "--for=delete", "deployment/web", "--timeout=30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.kubectl_ok(&["delete", "deployment", "web"]);
    let out = kube_sim::testing::wait_output(waiter, Duration::from_secs(40));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/web condition met"
    );
}

#[test]
fn label_and_annotate_add_refuse_overwrite_and_remove() {
    let c = cluster("kubectl-label");
    c.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
    ]);
    let meta = |c: &TestCluster| {
        c.kubectl_ok(&[
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.metadata.labels} {.metadata.annotations}",
        ])
    };
    assert_eq!(
        c.kubectl_ok(&["label", "cm", "settings", "tier=front"])
            .trim(),
        "configmap/settings labeled"
    );
    assert_eq!(
        c.kubectl_ok(&["annotate", "cm", "settings", "owner=team-a"])
            .trim(),
        "configmap/settings annotated"
    );
    assert_eq!(meta(&c), r#"{"tier":"front"} {"owner":"team-a"}"#);
    let (code, _, err) = c.kubectl(&["label", "cm", "settings", "tier=back"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("'tier' already has a value (front), and --overwrite is false"),
        "{err}"
    );
    let (code, _, err) = c.kubectl(&["annotate", "cm", "settings", "owner=team-b"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "--overwrite is false but found the following declared annotation(s): 'owner' already has a value (team-a)"
        ),
        "{err}"
    );
    c.kubectl_ok(&["label", "cm", "settings", "tier=back", "--overwrite"]);
    c.kubectl_ok(&["annotate", "cm", "settings", "owner=team-b", "--overwrite"]);
    assert_eq!(meta(&c), r#"{"tier":"back"} {"owner":"team-b"}"#);
    assert_eq!(
        c.kubectl_ok(&["label", "cm", "settings", "tier-"]).trim(),
        "configmap/settings unlabeled"
    );
    c.kubectl_ok(&["annotate", "cm", "settings", "owner-"]);
    assert_eq!(meta(&c), " ");
    // Selectors see the labels at once.
    c.kubectl_ok(&["label", "cm", "settings", "tier=front"]);
    let names = c.kubectl_ok(&["get", "cm", "-l", "tier=front", "-o", "name"]);
    assert_eq!(names.trim(), "configmap/settings");
}

#[test]
fn patch_of_every_type_changes_what_each_type_says() {
    let c = cluster("kubectl-patch");
    c.kubectl_ok(&["create", "deployment", "web", "--image=nginx:1.27"]);
    let containers = |c: &TestCluster| {
        c.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image} {end}",
        ])
    };
    // Strategic: containers merge by name, so a new one is added beside the old.
    let out = c.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched");
    assert_eq!(
        containers(&c).trim(),
        "sidecar=busybox:1.36 nginx=nginx:1.27"
    );
    // Merge: a list is replaced whole.
    c.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}}}"#,
    ]);
    assert_eq!(containers(&c).trim(), "nginx=nginx:1.28");
    // JSON patch: operations by path; a failed test operation changes nothing.
    c.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1},{"op":"add","path":"/metadata/labels/tier","value":"front"}]"#,
    ]);
    let got = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.labels.tier}",
    ]);
    assert_eq!(got, "1 front");
    let (code, _, err) = c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":5},{"op":"replace","path":"/spec/replicas","value":7}]"#,
    ]);
    assert_eq!(code, 1, "{err}");
    let replicas = c.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "1");
    // A patch that changes nothing says so.
    let out = c.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched (no change)");
}

#[test]
fn get_prints_every_output_format() {
    let c = cluster("kubectl-get-formats");
    c.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
    ]);
    c.kubectl_ok(&["create", "deployment", "api", "--image=nginx:1.28"]);
    rolled_out(&c, "deployment/web");
    rolled_out(&c, "deployment/api");
    let out = c.kubectl_ok(&["get", "deploy"]);
    assert!(row(&out, "web").starts_with("web 2/2 2 2 "), "{out}");
    let out = c.kubectl_ok(&["get", "deploy", "-o", "wide"]);
    assert!(
        row(&out, "api").ends_with(" nginx nginx:1.28 app=api"),
        "{out}"
    );
    let out = c.kubectl_ok(&["get", "deploy", "-o", "name"]);
    assert_eq!(out, "deployment.apps/api\ndeployment.apps/web\n");
    let out = c.kubectl_ok(&[
        "get",
        "deploy",
        "-o",
        "custom-columns=NAME:.metadata.name,IMAGE:.spec.template.spec.containers[0].image,READY:.status.readyReplicas",
    ]);
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        ["NAME IMAGE READY", "api nginx:1.28 1", "web nginx:1.27 2"]
    );
    let out = c.kubectl_ok(&[
        "get",
        "deploy",
        "-o",
        "go-template={{range .items}}{{.metadata.name}}:{{.spec.replicas}};{{end}}",
    ]);
    assert_eq!(out, "api:1;web:2;");
    let out = c.kubectl_ok(&["get", "deploy", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(out, "api web");
    let out = c.kubectl_ok(&["get", "deploy", "web", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["kind"], "Deployment");
    assert_eq!(json["status"]["availableReplicas"], 2);
    let out = c.kubectl_ok(&["get", "deploy", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().map(Vec::len), Some(2));
    let out = c.kubectl_ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(
        out.starts_with("apiVersion: apps/v1\nkind: Deployment\n"),
        "{out}"
    );
    assert!(out.contains("\n      - image: nginx:1.27\n"), "{out}");
    assert!(out.contains("\n  availableReplicas: 2\n"), "{out}");
    let out = c.kubectl_ok(&["get", "deploy", "web", "--show-labels"]);
    assert!(row(&out, "web").ends_with(" app=web"), "{out}");
    let out = c.kubectl_ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .all(|l| l.contains(" 1/1 ") && l.contains(" Running ")),
        "{out}"
    );
    let out = c.kubectl_ok(&["get", "deploy", "--sort-by=.spec.replicas", "-o", "name"]);
    assert_eq!(out, "deployment.apps/api\ndeployment.apps/web\n");
}

/// One object of every kind `kubectl create` makes, in namespace `shop`.
const CREATES: &[&[&str]] = &[
    &["deployment", "web", "--image=nginx:1.27", "--port=80"],
    &["configmap", "settings", "--from-literal=mode=fast"],
    &["secret", "generic", "token", "--from-literal=token=s3cret"],
    &["service", "nodeport", "web", "--tcp=80:80"],
    &["serviceaccount", "bot"],
    &["job", "once", "--image=busybox:1.36", "--", "echo", "hi"],
    &[
        "cronjob",
        "tick",
        "--image=busybox:1.36",
        "--schedule=*/5 * * * *",
        "--",
        "echo",
        "hi",
    ],
    &["role", "reader", "--verb=get,list", "--resource=pods"],
    &[
        "rolebinding",
        "bot-reader",
        "--role=reader",
        "--serviceaccount=shop:bot",
    ],
    &["ingress", "web", "--rule=shop.example/cart=web:80"],
    &[
        "poddisruptionbudget",
        "web",
        "--selector=app=web",
        "--min-available=1",
    ],
    &["quota", "pods", "--hard=pods=10,configmaps=20"],
];

#[test]
fn describe_reads_every_kind_kubectl_creates() {
    let c = cluster("kubectl-describe");
    c.kubectl_ok(&["create", "namespace", "shop"]);
    for args in CREATES {
        let mut full = vec!["create", "-n", "shop"];
        full.extend_from_slice(args);
        c.kubectl_ok(&full);
    }
    c.kubectl_ok(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
    ]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "alice-nodes",
        "--clusterrole=node-reader",
        "--user=alice",
    ]);
    c.kubectl_ok(&[
        "create",
        "priorityclass",
        "high",
        "--value=1000",
        "--description=important",
    ]);
    let out = c.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pod = c
        .kubectl_ok(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"])
        .trim()
        .to_string();
    let rs = c
        .kubectl_ok(&["get", "rs", "-n", "shop", "-l", "app=web", "-o", "name"])
        .trim()
        .to_string();
    eventually(Duration::from_secs(20), "the Job to complete", || {
        c.kubectl_ok(&[
            "get",
            "job",
            "once",
            "-n",
            "shop",
            "-o",
            "jsonpath={.status.succeeded}",
        ]) == "1"
    });
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "deployment/web".into(),
            vec![
                "Replicas:               1 desired | 1 updated | 1 total | 1 available | 0 unavailable",
                "StrategyType:           RollingUpdate",
                "Image:         nginx:1.27",
            ],
        ),
        (
            "service/web".into(),
            vec![
                "Type:                     NodePort",
                "NodePort:                 80-80  3",
                "Endpoints:                10.244.",
            ],
        ),
        (
            "configmap/settings".into(),
            vec!["Data\n====\nmode:\n----\nfast"],
        ),
        (
            "secret/token".into(),
            vec!["Type:  Opaque", "token:  6 bytes"],
        ),
        (
            "namespace/shop".into(),
            vec![
                "Status:       Active",
                "Resource Quotas",
                "pods        1     10",
            ],
        ),
        (
            "job/once".into(),
            vec![
                "Completions:      1",
                "Pods Statuses:    0 Active (0 Ready) / 1 Succeeded / 0 Failed",
            ],
        ),
        (
            "cronjob/tick".into(),
            vec![
                "Schedule:                      */5 * * * *",
                "Suspend:                       False",
            ],
        ),
        (
            "serviceaccount/bot".into(),
            vec!["Name:                bot", "Namespace:           shop"],
        ),
        (
            "role/reader".into(),
            vec!["pods       []                 []              [get list]"],
        ),
        (
            "rolebinding/bot-reader".into(),
            vec![
                "Role:\n  Kind:  Role\n  Name:  reader",
                "ServiceAccount  bot   shop",
            ],
        ),
        (
            "clusterrole/node-reader".into(),
            vec!["nodes      []                 []              [get]"],
        ),
        (
            "clusterrolebinding/alice-nodes".into(),
            vec!["Kind:  ClusterRole", "User  alice"],
        ),
        (
            "ingress/web".into(),
            vec!["shop.example", "/cart   web:80 (10.244."],
        ),
        (
            "poddisruptionbudget/web".into(),
            vec![
                "Min available:  1",
                "Allowed disruptions:  0",
                "Current:              1",
            ],
        ),
        (
            "resourcequota/pods".into(),
            vec!["configmaps  2     20", "pods        1     10"],
        ),
        (
            "priorityclass/high".into(),
            vec!["Value:              1000", "Description:        important"],
        ),
        (
            pod.clone(),
            vec![
                "Status:           Running",
                "Controlled By:  ReplicaSet/web-",
                "Node:             node-1/",
            ],
        ),
        (
            rs.clone(),
            vec![
                "Controlled By:  Deployment/web",
                "Pods Status:    1 Running / 0 Waiting / 0 Succeeded / 0 Failed",
            ],
        ),
    ];
    for (target, wants) in cases {
        let out = c.kubectl_ok(&["describe", "-n", "shop", &target]);
        // Column widths vary with the longest field; words and their order do not.
        let squashed = squash(&out);
        for want in wants {
            assert!(
                squashed.contains(&squash(want)),
                "describe {target}: missing {want:?} in:\n{out}"
            );
        }
    }
}

const HELD: &str = r#"{"metadata":{"finalizers":["example.com/hold"]}}"#;

#[test]
fn delete_with_every_cascade_treats_the_dependents_as_a_real_cluster_does() {
    let c = cluster("kubectl-cascade");
    for name in ["bg", "orphan", "fg", "held"] {
        c.kubectl_ok(&[
            "create",
            "deployment",
            name,
            "--image=nginx:1.27",
            "--replicas=2",
        ]);
    }
    for name in ["bg", "orphan", "fg", "held"] {
        rolled_out(&c, &format!("deployment/{name}"));
    }
    let names = |c: &TestCluster, kind: &str, app: &str| {
        c.kubectl_ok(&["get", kind, "-l", &format!("app={app}"), "-o", "name"])
    };

    // Background (the default): the Deployment goes at once, its ReplicaSet and Pods
    // after it.
    let out = c.kubectl_ok(&["delete", "deployment", "bg", "--cascade=background"]);
    assert_eq!(out.trim(), "deployment.apps \"bg\" deleted");
    eventually(Duration::from_secs(10), "the dependents to go", || {
        names(&c, "rs", "bg").is_empty() && names(&c, "pods", "bg").is_empty()
    });

    // Orphan: the ReplicaSet and Pods stay, without the owner's reference.
    c.kubectl_ok(&["delete", "deployment", "orphan", "--cascade=orphan"]);
    let owners = c.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        "app=orphan",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences}",
    ]);
    assert_eq!(owners, "");
    assert_eq!(names(&c, "pods", "orphan").lines().count(), 2);

    // Foreground, waited for: when kubectl returns, everything is gone.
    let out = c.kubectl_ok(&["delete", "deployment", "fg", "--cascade=foreground"]);
    assert_eq!(out.trim(), "deployment.apps \"fg\" deleted");
    let (code, _, _) = c.kubectl(&["get", "deployment", "fg"]);
    assert_eq!(code, 1);
    assert_eq!(names(&c, "rs", "fg"), "");
    assert_eq!(names(&c, "pods", "fg"), "");

    // Foreground with a dependent held by a finalizer: the owner and the ReplicaSet
    // wait, marked for deletion, until the Pod goes.
    let pod = names(&c, "pods", "held")
        .lines()
        .next()
        .unwrap()
        .to_string();
    c.kubectl_ok(&["patch", &pod, "--type=merge", "-p", HELD]);
    c.kubectl_ok(&[
        "delete",
        "deployment",
        "held",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let marks = |c: &TestCluster, target: &str| {
        c.kubectl_ok(&[
            "get",
            target,
            "-o",
            "jsonpath={.metadata.finalizers}/{.metadata.deletionTimestamp}",
        ])
    };
    eventually(
        Duration::from_secs(10),
        "the ReplicaSet to be marked",
        || {
            let rs = names(&c, "rs", "held");
            !rs.is_empty() && marks(&c, rs.trim()).starts_with(r#"["foregroundDeletion"]/20"#)
        },
    );
    assert!(
        marks(&c, "deployment/held").starts_with(r#"["foregroundDeletion"]/20"#),
        "{}",
        marks(&c, "deployment/held")
    );
    assert!(marks(&c, &pod).starts_with(r#"["example.com/hold"]/20"#));
    // The other Pod had no finalizer and is gone already.
    assert_eq!(names(&c, "pods", "held").trim(), pod);
    c.kubectl_ok(&[
        "patch",
        &pod,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    c.kubectl_ok(&["wait", "--for=delete", "deployment/held", "--timeout=20s"]);
    let (code, _, err) = c.kubectl(&["get", "deployment", "held"]);
    assert_eq!(code, 1);
    assert!(err.contains("deployments.apps \"held\" not found"), "{err}");
    assert_eq!(names(&c, "rs", "held"), "");
    assert_eq!(names(&c, "pods", "held"), "");
}

const SETS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "postgres:16"}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: "agent:1"}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: batch, namespace: default}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: "busybox:1.36", command: [echo, hi]}]
"#;

/// `name image revision-label` of each Pod selected by `selector`.
fn pods_of(c: &TestCluster, selector: &str) -> Vec<String> {
    let out = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase}{\"\\n\"}{end}",
    ]);
    out.lines().map(String::from).collect()
}

#[test]
fn statefulsets_daemonsets_and_jobs_run_pods_and_report_status_from_them() {
    let c = cluster("kubectl-sets");
    let (code, _, err) = c.kubectl_in(&["apply", "-f", "-"], SETS);
    assert_eq!(code, 0, "{err}");
    let out = c.kubectl_ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    assert!(
        out.contains("roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    // Ordered names, one claim per ordinal, the labels of the real controller.
    assert_eq!(
        pods_of(&c, "app=db"),
        [
            "db-0 postgres:16 Running",
            "db-1 postgres:16 Running",
            "db-2 postgres:16 Running"
        ]
    );
    let labels = c.kubectl_ok(&[
        "get",
        "pod",
        "db-1",
        "-o",
        "jsonpath={.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index} {.spec.hostname} {.spec.subdomain} {.spec.volumes[0].persistentVolumeClaim.claimName}",
    ]);
    assert_eq!(labels, "db-1 1 db-1 db data-db-1");
    eventually(Duration::from_secs(20), "the claims to bind", || {
        let out = c.kubectl_ok(&["get", "pvc", "-l", "app=db"]);
        ["data-db-0", "data-db-1", "data-db-2"].iter().all(|n| {
            out.lines()
                .any(|l| l.starts_with(n) && l.contains(" Bound "))
        })
    });
    let out = c.kubectl_ok(&["get", "sts", "db"]);
    assert!(row(&out, "db").starts_with("db 3/3 "), "{out}");
    // A new template replaces the Pods, highest ordinal first.
    c.kubectl_ok(&["set", "image", "statefulset/db", "db=postgres:17"]);
    let out = c.kubectl_ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    assert!(out.contains("roll out complete"), "{out}");
    assert_eq!(
        pods_of(&c, "app=db"),
        [
            "db-0 postgres:17 Running",
            "db-1 postgres:17 Running",
            "db-2 postgres:17 Running"
        ]
    );
    let revisions = c.kubectl_ok(&[
        "get",
        "sts",
        "db",
        "-o",
        "jsonpath={.status.currentRevision}={.status.updateRevision} {.status.updatedReplicas}",
    ]);
    let (current, rest) = revisions.split_once('=').unwrap();
    assert!(rest.starts_with(&format!("{current} 3")), "{revisions}");
    // Scaled down, the highest ordinals go and the claims stay.
    c.kubectl_ok(&["scale", "statefulset/db", "--replicas=1"]);
    eventually(Duration::from_secs(20), "db-1 and db-2 to go", || {
        pods_of(&c, "app=db") == ["db-0 postgres:17 Running"]
    });
    let claims = c.kubectl_ok(&["get", "pvc", "-o", "name"]);
    assert_eq!(claims.lines().count(), 3, "{claims}");

    // One Pod on the one Node, replaced by a new template.
    let out = c.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let out = c.kubectl_ok(&["get", "ds", "agent"]);
    assert!(
        row(&out, "agent").starts_with("agent 1 1 1 1 1 <none> "),
        "{out}"
    );
    let node = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[0].spec.nodeName}",
    ]);
    assert_eq!(node, "node-1");
    c.kubectl_ok(&["set", "image", "daemonset/agent", "agent=agent:2"]);
    c.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    eventually(Duration::from_secs(20), "the new agent", || {
        let pods = pods_of(&c, "app=agent");
        pods.len() == 1 && pods[0].ends_with(" agent:2 Running")
    });

    // The Job runs two at a time until three succeeded.
    let out = c.kubectl_ok(&[
        "wait",
        "--for=condition=Complete",
        "job/batch",
        "--timeout=60s",
    ]);
    assert_eq!(out.trim(), "job.batch/batch condition met");
    let pods = pods_of(&c, "job-name=batch");
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(
        pods.iter().all(|p| p.ends_with(" busybox:1.36 Succeeded")),
        "{pods:?}"
    );
    let out = c.kubectl_ok(&["get", "job", "batch"]);
    assert!(
        row(&out, "batch").starts_with("batch Complete 3/3 "),
        "{out}"
    );
    let out = c.kubectl_ok(&["get", "pods", "-l", "job-name=batch"]);
    assert!(
        out.lines()
            .skip(1)
            .all(|l| l.contains(" 0/1 ") && l.contains(" Completed ")),
        "{out}"
    );
    let described = squash(&c.kubectl_ok(&["describe", "job", "batch"]));
    assert!(
        described.contains("Pods Statuses: 0 Active (0 Ready) / 3 Succeeded / 0 Failed"),
        "{described}"
    );
    // A finished container still has its log.
    let logs = c.kubectl_ok(&["logs", "job/batch"]);
    assert!(
        logs.contains("simulated container work started from image busybox:1.36"),
        "{logs}"
    );
}

#[test]
fn a_deployment_adopts_its_orphaned_replicaset_and_waits_min_ready_seconds() {
    let c = cluster("kubectl-adoption");
    let manifest = c.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let (code, _, err) = c.kubectl_in(&["apply", "-f", "-"], &manifest);
    assert_eq!(code, 0, "{err}");
    rolled_out(&c, "deployment/web");
    let pods = |c: &TestCluster| c.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    let before = pods(&c);
    c.kubectl_ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    // Applied again, the Deployment takes its ReplicaSet back: same Pods, revision 1.
    let (code, _, err) = c.kubectl_in(&["apply", "-f", "-"], &manifest);
    assert_eq!(code, 0, "{err}");
    rolled_out(&c, "deployment/web");
    let owner = c.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences[0].kind}/{.items[*].metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owner, "Deployment/web");
    assert_eq!(pods(&c), before);
    let history = c.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("\n1 "), "{history}");
    assert!(!history.contains("\n2 "), "{history}");

    // With minReadySeconds a ready Pod is not available at once.
    c.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minReadySeconds":3,"replicas":3}}"#,
    ]);
    eventually(Duration::from_secs(20), "the third Pod to be ready", || {
        c.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]) == "3"
    });
    let available = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.status.availableReplicas}",
    ]);
    // Pods Ready for less than minReadySeconds (the new one at least) do not count.
    assert_ne!(available, "3", "ready, but not yet for minReadySeconds");
    eventually(
        Duration::from_secs(20),
        "the third Pod to be available",
        || {
            c.kubectl_ok(&[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ]) == "3"
        },
    );
}
