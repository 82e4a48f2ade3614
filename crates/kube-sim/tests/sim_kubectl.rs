//! The simulated API server judged by a real client: kubectl applies, diffs, watches
//! and deletes against it exactly as against a real cluster.

use std::process::Stdio;
use std::time::Duration;

use kube_sim::testing::{TestCluster, eventually, require_kubectl, wait_output};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  mode: fast
---
apiVersion: v1
kind: Secret
metadata:
  name: token
  namespace: shop
stringData:
  token: s3cret
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  namespace: shop
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
  namespace: shop
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: web-reader
  namespace: shop
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {kind: ServiceAccount, name: web, namespace: shop}
"#;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue]}
"#;

fn cluster() -> TestCluster {
    require_kubectl();
    TestCluster::start("kubectl-conformance")
}

#[test]
fn kubectl_server_side_apply_creates_every_kind_and_reads_it_back() {
    let c = cluster();
    let (code, out, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 0, "{err}");
    for line in [
        "namespace/shop serverside-applied",
        "deployment.apps/web serverside-applied",
        "service/web serverside-applied",
        "configmap/settings serverside-applied",
        "secret/token serverside-applied",
        "serviceaccount/web serverside-applied",
        "role.rbac.authorization.k8s.io/reader serverside-applied",
        "rolebinding.rbac.authorization.k8s.io/web-reader serverside-applied",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let yaml = c.kubectl_ok(&["get", "deployment", "web", "-n", "shop", "-o", "yaml"]);
    assert!(yaml.contains("replicas: 2"), "{yaml}");
    assert!(yaml.contains("image: nginx:1.27"), "{yaml}");
    assert!(yaml.contains("generation: 1"), "{yaml}");
    // stringData is stored base64-encoded in data, as a real server does.
    let secret = c.kubectl_ok(&[
        "get",
        "secret",
        "token",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.token}",
    ]);
    assert_eq!(secret, "czNjcmV0");
    // The managed fields name kubectl as the applier.
    let managers = c.kubectl_ok(&[
        "get",
        "configmap",
        "settings",
        "-n",
        "shop",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
    ]);
    assert_eq!(managers, "kubectl/Apply");
    // Applying the same files again changes nothing: same resourceVersion.
    let rv = |c: &TestCluster| {
        c.kubectl_ok(&[
            "get",
            "deployment",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let before = rv(&c);
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 0, "{err}");
    // The workload simulator may have written status in between; spec writes bump
    // generation, so compare that instead when the version moved.
    let generation = c.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(
        generation,
        "1",
        "re-applying identical manifests must not change the spec (rv {before} -> {})",
        rv(&c)
    );
}

#[test]
fn a_second_field_manager_gets_the_conflict_kubectl_shows_for_a_real_cluster_until_it_forces() {
    let c = cluster();
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 0, "{err}");
    let scaled = APP.replace("replicas: 2", "replicas: 5");
    let (code, _, err) = c.kubectl_in(
        &["apply", "--server-side", "--field-manager=ops", "-f", "-"],
        &scaled,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    let (code, _, err) = c.kubectl_in(
        &[
            "apply",
            "--server-side",
            "--field-manager=ops",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &scaled,
    );
    assert_eq!(code, 0, "{err}");
    let replicas = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "5");
    // kubectl lost the field to ops: its own re-apply with 2 now conflicts with ops.
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 1);
    assert!(
        err.contains("conflict with \"ops\": .spec.replicas"),
        "{err}"
    );
}

#[test]
fn kubectl_diff_server_side_shows_pending_changes_and_nothing_once_applied() {
    let c = cluster();
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 0, "{err}");
    // kubectl diff reads the live object, then dry-runs the apply: a controller
    // writing the Deployment's status in between shows up as a difference, on a
    // real cluster too. Let the rollout finish first, as a user would.
    c.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=60s",
    ]);
    let (code, out, err) = c.kubectl_in(&["diff", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 0, "no differences expected:\n{out}{err}");
    let changed = APP.replace("mode: fast", "mode: safe");
    let (code, out, err) = c.kubectl_in(&["diff", "--server-side", "-f", "-"], &changed);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains("-  mode: fast") && out.contains("+  mode: safe"),
        "{out}"
    );
    // A diff is a dry run: nothing changed on the server.
    let mode = c.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.mode}",
    ]);
    assert_eq!(mode, "fast");
}

#[test]
fn kubectl_get_watch_sees_an_update_made_by_another_client() {
    let c = cluster();
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 0, "{err}");
    let watcher = c
        .kubectl_cmd(&[
            "get",
            "cm",
            "settings",
            "-n",
            "shop",
            "-w",
            "-o",
            "jsonpath={.data.mode}{\"\\n\"}",
            "--request-timeout=8s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.kubectl_ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"slow"}}"#,
    ]);
    let out = wait_output(watcher, Duration::from_secs(30));
    let seen = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.first(), Some(&"fast"), "{seen}");
    assert!(
        lines.contains(&"slow"),
        "the watch did not see the update: {seen}"
    );
}

#[test]
fn kubectl_delete_removes_objects_and_get_then_reports_not_found() {
    let c = cluster();
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 0, "{err}");
    // kubectl scale goes through the scale subresource.
    c.kubectl_ok(&["scale", "deployment", "web", "-n", "shop", "--replicas=4"]);
    let replicas = c.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "4");
    let out = c.kubectl_ok(&["delete", "deployment", "web", "-n", "shop"]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let (code, _, err) = c.kubectl(&["get", "deployment", "web", "-n", "shop"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Error from server (NotFound): deployments.apps \"web\" not found"),
        "{err}"
    );
    // Deleting the namespace takes everything in it.
    c.kubectl_ok(&["delete", "namespace", "shop"]);
    let (code, _, err) = c.kubectl(&["get", "configmap", "settings", "-n", "shop"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn a_fresh_crd_is_listed_by_api_resources_and_its_custom_resources_round_trip() {
    let c = cluster();
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], CRD);
    assert_eq!(code, 0, "{err}");
    let resources = c.kubectl_ok(&["api-resources", "--api-group=example.com"]);
    assert!(
        resources.contains("widgets") && resources.contains("Widget") && resources.contains("wd"),
        "{resources}"
    );
    let established = c.kubectl_ok(&[
        "get",
        "crd",
        "widgets.example.com",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
    ]);
    assert_eq!(established, "True");

    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3, color: red}\n";
    let (code, out, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], widget);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("widget.example.com/w1 serverside-applied"),
        "{out}"
    );
    let size = c.kubectl_ok(&[
        "get",
        "wd",
        "w1",
        "-o",
        "jsonpath={.spec.size}/{.spec.color}",
    ]);
    assert_eq!(size, "3/red");

    // The CRD's schema is enforced like a real server's.
    let (code, _, err) = c.kubectl_in(
        &["apply", "--server-side", "-f", "-"],
        &widget.replace("size: 3", "size: three"),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "spec.size: Invalid value: \"string\": spec.size in body must be of type integer"
        ),
        "{err}"
    );
    let (code, _, err) = c.kubectl_in(
        &["apply", "--server-side", "-f", "-"],
        &widget.replace("color: red", "color: green"),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("spec.color: Unsupported value: \"green\""),
        "{err}"
    );

    // Deleting the CRD removes the kind and its objects.
    c.kubectl_ok(&["delete", "crd", "widgets.example.com"]);
    eventually(
        Duration::from_secs(10),
        "the Widget kind to leave discovery",
        || {
            let out = c.kubectl_ok(&["api-resources", "--api-group=example.com", "--cached=false"]);
            !out.contains("widgets")
        },
    );
}

#[test]
fn invalid_objects_are_refused_with_the_api_servers_messages() {
    let c = cluster();
    let bad_selector = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: other}}
    spec: {containers: [{name: web, image: nginx}]}
"#;
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], bad_selector);
    assert_eq!(code, 1);
    assert!(
        err.contains("The Deployment \"web\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"),
        "{err}"
    );

    let unknown_field =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\ndatas: {a: b}\n";
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], unknown_field);
    assert_eq!(code, 1);
    assert!(err.contains("unknown field \"datas\""), "{err}");

    let missing_namespace =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: nowhere}\n";
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], missing_namespace);
    assert_eq!(code, 1);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");

    let bad_name =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid, namespace: default}\n";
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], bad_name);
    assert_eq!(code, 1);
    assert!(err.contains("a lowercase RFC 1123 subdomain"), "{err}");
}

const CLIENT_SIDE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox:1.36
        args: [sleep, infinity]
"#;

#[test]
fn client_side_apply_of_a_changed_image_patches_the_deployment_and_describe_reads_it() {
    let c = cluster();
    let (code, out, err) = c.kubectl_in(&["apply", "-f", "-"], CLIENT_SIDE);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployment.apps/shop created"), "{out}");
    // The second apply sends a strategic merge patch with `$setElementOrder/containers`.
    let changed = CLIENT_SIDE.replace("nginx:1.27", "nginx:1.28");
    let (code, out, err) = c.kubectl_in(&["apply", "-f", "-"], &changed);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployment.apps/shop configured"), "{out}");
    let images = c.kubectl_ok(&[
        "get",
        "deployment",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].image}",
    ]);
    assert_eq!(images, "nginx:1.28 busybox:1.36");
    // The defaults a real server fills are there, and apply left them alone.
    let policy = c.kubectl_ok(&[
        "get",
        "deployment",
        "shop",
        "-o",
        "jsonpath={.spec.strategy.type}/{.spec.template.spec.containers[0].imagePullPolicy}",
    ]);
    assert_eq!(policy, "RollingUpdate/IfNotPresent");
    let described = c.kubectl_ok(&["describe", "deployment", "shop"]);
    for want in [
        "Name:",
        "shop",
        "StrategyType:",
        "RollingUpdate",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "nginx:1.28",
        "busybox:1.36",
    ] {
        assert!(
            described.contains(want),
            "missing {want:?} in:\n{described}"
        );
    }
}

/// Every `kubectl create <subcommand>`, as a user types it; kubectl sends these
/// through its typed clients in protobuf. Each pair is the command and the line
/// kubectl prints.
const CREATES: &[(&[&str], &str)] = &[
    (
        &[
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
        "deployment.apps/web created",
    ),
    (
        &[
            "configmap",
            "settings",
            "--from-literal=mode=fast",
            "--from-literal=level=3",
        ],
        "configmap/settings created",
    ),
    (&["namespace", "shop"], "namespace/shop created"),
    (
        &["secret", "generic", "token", "--from-literal=token=s3cret"],
        "secret/token created",
    ),
    (
        &[
            "secret",
            "docker-registry",
            "pull",
            "--docker-server=registry.example",
            "--docker-username=u",
            "--docker-password=p",
        ],
        "secret/pull created",
    ),
    (
        &["service", "clusterip", "web", "--tcp=80:8080"],
        "service/web created",
    ),
    (
        &["service", "nodeport", "node", "--tcp=80:8080"],
        "service/node created",
    ),
    (
        &["service", "loadbalancer", "edge", "--tcp=443:8443"],
        "service/edge created",
    ),
    (
        &[
            "service",
            "externalname",
            "docs",
            "--external-name=docs.example.com",
        ],
        "service/docs created",
    ),
    (&["serviceaccount", "bot"], "serviceaccount/bot created"),
    (
        &["job", "once", "--image=busybox", "--", "echo", "hi"],
        "job.batch/once created",
    ),
    (
        &[
            "cronjob",
            "tick",
            "--image=busybox",
            "--schedule=*/5 * * * *",
            "--",
            "echo",
            "hi",
        ],
        "cronjob.batch/tick created",
    ),
    (
        &[
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods,configmaps",
        ],
        "role.rbac.authorization.k8s.io/reader created",
    ),
    (
        &[
            "rolebinding",
            "bot-reader",
            "--role=reader",
            "--serviceaccount=default:bot",
        ],
        "rolebinding.rbac.authorization.k8s.io/bot-reader created",
    ),
    (
        &[
            "clusterrole",
            "node-reader",
            "--verb=get",
            "--resource=nodes",
        ],
        "clusterrole.rbac.authorization.k8s.io/node-reader created",
    ),
    (
        &[
            "clusterrolebinding",
            "alice-nodes",
            "--clusterrole=node-reader",
            "--user=alice",
        ],
        "clusterrolebinding.rbac.authorization.k8s.io/alice-nodes created",
    ),
    (
        &["quota", "pods", "--hard=pods=10,cpu=2"],
        "resourcequota/pods created",
    ),
    (
        &[
            "priorityclass",
            "high",
            "--value=1000",
            "--description=important",
        ],
        "priorityclass.scheduling.k8s.io/high created",
    ),
    (
        &[
            "poddisruptionbudget",
            "web",
            "--selector=app=web",
            "--min-available=1",
        ],
        "poddisruptionbudget.policy/web created",
    ),
    (
        &[
            "ingress",
            "web",
            "--rule=shop.example/cart=web:80,tls=shop-tls",
        ],
        "ingress.networking.k8s.io/web created",
    ),
];

const TLS_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBhDCCASugAwIBAgIUEwuNEJ9AdmH8ZNY6lP7VTbcJO4QwCgYIKoZIzj0EAwIw\nFzEVMBMGA1UEAwwMc2hvcC5leGFtcGxlMCAXDTI2MTIwMTE2NDYyOVoYDzIxMjYx\nMTA3MTY0NjI5WjAXMRUwEwYDVQQDDAxzaG9wLmV4YW1wbGUwWTATBgcqhkjOPQIB\nBggqhkjOPQMBBwNCAAR70P6U7rDN1ZZkEGo1G0LU3okLjGNajJZHZUikaP2gLIzv\nrc9BqjJxW50Bfa6tHdJga+NrcisUtEdjoBSr7C+2o1MwUTAdBgNVHQ4EFgQU5Z0R\nfyBK1knx+CEoFzyaVxgNjN0wHwYDVR0jBBgwFoAU5Z0RfyBK1knx+CEoFzyaVxgN\njN0wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAAlPub+tfN1V0l\n6vNti/CHlD8uh7obbjHstXIoaIV09QIgFMcTsz7VQB1Y41gbH6B2WHJ/yG6vTmXm\nNQa3Ot73Y90=\n-----END CERTIFICATE-----\n";
const TLS_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoOmYPmhnSLAK6mGt\n+yx4ETLw2sH5NnnbMI7OHkM8Tc6hRANCAAR70P6U7rDN1ZZkEGo1G0LU3okLjGNa\njJZHZUikaP2gLIzvrc9BqjJxW50Bfa6tHdJga+NrcisUtEdjoBSr7C+2\n-----END PRIVATE KEY-----\n";

fn create_everything(c: &TestCluster) {
    for (args, line) in CREATES {
        let mut full = vec!["create"];
        full.extend_from_slice(args);
        let out = c.kubectl_ok(&full);
        assert_eq!(out.trim(), *line, "kubectl {full:?}");
    }
}

/// The header line of `kubectl get` output, words separated by single spaces.
fn header(out: &str) -> String {
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
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

#[test]
fn every_kubectl_create_subcommand_creates_what_get_then_shows() {
    let c = cluster();
    create_everything(&c);
    // The secret kubectl builds from a certificate and key (a throwaway self-signed
    // pair, valid for a century).
    let (cert, key) = (c.path().join("tls.crt"), c.path().join("tls.key"));
    std::fs::write(&cert, TLS_CERT).unwrap();
    std::fs::write(&key, TLS_KEY).unwrap();
    let out = c.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "shop-tls",
        &format!("--cert={}", cert.display()),
        &format!("--key={}", key.display()),
    ]);
    assert_eq!(out.trim(), "secret/shop-tls created");

    for (kind, name) in [
        ("deployment", "web"),
        ("configmap", "settings"),
        ("namespace", "shop"),
        ("secret", "token"),
        ("secret", "pull"),
        ("secret", "shop-tls"),
        ("service", "docs"),
        ("serviceaccount", "bot"),
        ("job", "once"),
        ("cronjob", "tick"),
        ("role", "reader"),
        ("rolebinding", "bot-reader"),
        ("clusterrole", "node-reader"),
        ("clusterrolebinding", "alice-nodes"),
        ("resourcequota", "pods"),
        ("priorityclass", "high"),
        ("poddisruptionbudget", "web"),
        ("ingress", "web"),
    ] {
        let out = c.kubectl_ok(&["get", kind, name, "-o", "name"]);
        assert!(out.trim().ends_with(&format!("/{name}")), "{kind}: {out}");
    }
    // What the protobuf carried arrives intact.
    let deployment = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}",
    ]);
    assert_eq!(deployment, "2 nginx:1.27 80");
    let secret = c.kubectl_ok(&["get", "secret", "token", "-o", "jsonpath={.data.token}"]);
    assert_eq!(secret, "czNjcmV0");
    let rules = c.kubectl_ok(&[
        "get",
        "role",
        "reader",
        "-o",
        "jsonpath={.rules[0].apiGroups}",
    ]);
    assert_eq!(rules, r#"[""]"#);
    let schedule = c.kubectl_ok(&["get", "cronjob", "tick", "-o", "jsonpath={.spec.schedule}"]);
    assert_eq!(schedule, "*/5 * * * *");
    let tls = c.kubectl_ok(&[
        "get",
        "ingress",
        "web",
        "-o",
        "jsonpath={.spec.tls[0].secretName} {.spec.rules[0].http.paths[0].path}",
    ]);
    assert_eq!(tls, "shop-tls /cart");

    // A job made from a cronjob carries the server's copy of its template.
    let out = c.kubectl_ok(&["create", "job", "manual", "--from=cronjob/tick"]);
    assert_eq!(out.trim(), "job.batch/manual created");
    // A server-side dry run answers like a create and stores nothing.
    let out = c.kubectl_ok(&[
        "create",
        "deployment",
        "dry",
        "--image=nginx",
        "--dry-run=server",
    ]);
    assert_eq!(out.trim(), "deployment.apps/dry created (server dry run)");
    let (code, _, err) = c.kubectl(&["get", "deployment", "dry"]);
    assert_eq!(code, 1);
    assert!(err.contains("deployments.apps \"dry\" not found"), "{err}");
}

#[test]
fn get_prints_the_columns_a_real_server_prints() {
    let c = cluster();
    create_everything(&c);
    let out = c.kubectl_ok(&["get", "deploy", "-o", "wide"]);
    assert_eq!(
        header(&out),
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
    );
    let web = row(&out, "web");
    assert!(web.ends_with("nginx nginx:1.27 app=web"), "{web}");
    eventually(
        Duration::from_secs(20),
        "the deployment to turn ready",
        || {
            let out = c.kubectl_ok(&["get", "deploy", "web"]);
            row(&out, "web").starts_with("web 2/2 2 2 ")
        },
    );

    let out = c.kubectl_ok(&["get", "svc", "-o", "wide"]);
    assert_eq!(
        header(&out),
        "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR"
    );
    let docs = row(&out, "docs");
    assert!(
        docs.starts_with("docs ExternalName <none> docs.example.com <none> "),
        "{docs}"
    );
    let web = row(&out, "web");
    assert!(web.starts_with("web ClusterIP 10."), "{web}");
    assert!(web.contains(" <none> 80/TCP "), "{web}");
    assert!(web.ends_with(" app=web"), "{web}");

    let out = c.kubectl_ok(&["get", "cm", "settings"]);
    assert_eq!(header(&out), "NAME DATA AGE");
    assert!(row(&out, "settings").starts_with("settings 2 "), "{out}");
    let out = c.kubectl_ok(&["get", "secret", "pull"]);
    assert_eq!(header(&out), "NAME TYPE DATA AGE");
    assert!(
        row(&out, "pull").starts_with("pull kubernetes.io/dockerconfigjson 1 "),
        "{out}"
    );
    let out = c.kubectl_ok(&["get", "ns", "shop"]);
    assert_eq!(header(&out), "NAME STATUS AGE");
    assert!(row(&out, "shop").starts_with("shop Active "), "{out}");
    let out = c.kubectl_ok(&["get", "ingress", "web"]);
    assert_eq!(header(&out), "NAME CLASS HOSTS ADDRESS PORTS AGE");
    assert!(
        row(&out, "web").starts_with("web <none> shop.example 80, 443 "),
        "{out}"
    );
    let out = c.kubectl_ok(&["get", "cronjob", "tick", "-o", "wide"]);
    assert_eq!(
        header(&out),
        "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE CONTAINERS IMAGES SELECTOR"
    );
    let out = c.kubectl_ok(&["get", "job", "once", "-o", "wide"]);
    assert_eq!(
        header(&out),
        "NAME STATUS COMPLETIONS DURATION AGE CONTAINERS IMAGES SELECTOR"
    );
    let out = c.kubectl_ok(&["get", "rolebinding", "bot-reader", "-o", "wide"]);
    assert_eq!(header(&out), "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS");
    assert!(row(&out, "bot-reader").contains("Role/reader"), "{out}");
    assert!(row(&out, "bot-reader").ends_with("default/bot"), "{out}");
    let out = c.kubectl_ok(&["get", "pdb", "web"]);
    assert_eq!(
        header(&out),
        "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE"
    );
    // The two ready Pods of web, one of which may go while one stays available.
    eventually(
        Duration::from_secs(10),
        "the budget to count the Pods",
        || {
            let out = c.kubectl_ok(&["get", "pdb", "web"]);
            row(&out, "web").starts_with("web 1 N/A 1 ")
        },
    );
    let out = c.kubectl_ok(&["get", "priorityclass", "high"]);
    assert!(row(&out, "high").starts_with("high 1000 false "), "{out}");
    let out = c.kubectl_ok(&["get", "role", "reader"]);
    assert_eq!(header(&out), "NAME CREATED AT");

    // `get all` expands the `all` category from discovery.
    let out = c.kubectl_ok(&["get", "all"]);
    for line in [
        "service/web",
        "service/docs",
        "deployment.apps/web",
        "job.batch/once",
        "cronjob.batch/tick",
    ] {
        assert!(out.contains(line), "missing {line} in:\n{out}");
    }
    assert!(!out.contains("configmap/"), "{out}");
}

#[test]
fn get_watch_prints_new_rows_in_the_same_columns() {
    let c = cluster();
    let watcher = c
        .kubectl_cmd(&["get", "deploy", "-w", "--request-timeout=6s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.kubectl_ok(&["create", "deployment", "web", "--image=nginx:1.27"]);
    let out = wait_output(watcher, Duration::from_secs(30));
    let seen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        header(&seen),
        "NAME READY UP-TO-DATE AVAILABLE AGE",
        "{seen}"
    );
    assert!(row(&seen, "web").starts_with("web 0/1 0 0 "), "{seen}");
}

#[test]
fn a_custom_resource_prints_its_crds_printer_columns() {
    let c = cluster();
    let crd = CRD.replace(
        "    schema:\n",
        "    additionalPrinterColumns:\n    - {name: Size, type: integer, jsonPath: .spec.size}\n    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}\n    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}\n    schema:\n",
    );
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], &crd);
    assert_eq!(code, 0, "{err}");
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3, color: red}\n";
    eventually(
        Duration::from_secs(10),
        "the Widget kind to be served",
        || {
            c.kubectl_in(&["apply", "--server-side", "-f", "-"], widget)
                .0
                == 0
        },
    );
    let out = c.kubectl_ok(&["get", "wd"]);
    assert_eq!(header(&out), "NAME SIZE AGE");
    assert!(row(&out, "w1").starts_with("w1 3 "), "{out}");
    let out = c.kubectl_ok(&["get", "wd", "-o", "wide"]);
    assert_eq!(header(&out), "NAME SIZE COLOR AGE");
    assert!(row(&out, "w1").starts_with("w1 3 red "), "{out}");
}

#[test]
fn auth_can_i_whoami_and_create_token_answer_as_for_an_administrator() {
    let c = cluster();
    assert_eq!(
        c.kubectl_ok(&["auth", "can-i", "delete", "nodes"]).trim(),
        "yes"
    );
    assert_eq!(
        c.kubectl_ok(&["auth", "can-i", "create", "deployments", "-n", "default"])
            .trim(),
        "yes"
    );
    let list = c.kubectl_ok(&["auth", "can-i", "--list"]);
    assert!(list.lines().any(|l| l.starts_with("*.*")), "{list}");
    let whoami = c.kubectl_ok(&["auth", "whoami"]);
    assert_eq!(row(&whoami, "Username"), "Username admin", "{whoami}");
    assert_eq!(
        row(&whoami, "Groups"),
        "Groups [system:masters system:authenticated]",
        "{whoami}"
    );

    let (code, _, err) = c.kubectl(&["create", "token", "bot"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error: failed to create token: serviceaccounts \"bot\" not found"),
        "{err}"
    );
    c.kubectl_ok(&["create", "serviceaccount", "bot"]);
    let token = c.kubectl_ok(&["create", "token", "bot", "--audience=shop", "--duration=1h"]);
    let claims = token.trim().split('.').nth(1).expect("a JWT");
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:default:bot");
    assert_eq!(claims["aud"], serde_json::json!(["shop"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    let (code, _, err) = c.kubectl(&["create", "token", "bot", "--duration=1m"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
}

#[test]
fn auth_reconcile_creates_then_leaves_rbac_objects_alone() {
    let c = cluster();
    let rbac = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: viewer}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewers, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: viewer}
subjects:
- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: viewers}
"#;
    let (code, out, err) = c.kubectl_in(&["auth", "reconcile", "-f", "-"], rbac);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("clusterrole.rbac.authorization.k8s.io/viewer reconciled"),
        "{out}"
    );
    assert!(
        out.contains("rolebinding.rbac.authorization.k8s.io/viewers reconciled"),
        "{out}"
    );
    assert!(err.contains("reconciliation required create"), "{err}");
    let (code, _, err) = c.kubectl_in(&["auth", "reconcile", "-f", "-"], rbac);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("reconciliation required"), "{err}");
    let verbs = c.kubectl_ok(&[
        "get",
        "clusterrole",
        "viewer",
        "-o",
        "jsonpath={.rules[0].verbs}",
    ]);
    assert_eq!(verbs, r#"["get","list"]"#);
}

#[test]
fn discovery_lists_short_names_categories_and_review_kinds_and_explain_reads_schemas() {
    let c = cluster();
    let out = c.kubectl_ok(&["api-resources", "-o", "wide"]);
    let line = |name: &str| row(&out, name);
    assert!(
        line("deployments").starts_with("deployments deploy apps/v1 true Deployment "),
        "{out}"
    );
    assert!(line("deployments").ends_with(" all"), "{out}");
    assert!(
        line("replicationcontrollers")
            .starts_with("replicationcontrollers rc v1 true ReplicationController"),
        "{out}"
    );
    assert!(
        line("selfsubjectaccessreviews").contains("SelfSubjectAccessReview create"),
        "{out}"
    );
    assert!(
        line("selfsubjectreviews").contains("SelfSubjectReview create"),
        "{out}"
    );
    let out = c.kubectl_ok(&["api-resources", "--api-group=autoscaling"]);
    assert!(out.contains("autoscaling/v2"), "{out}");
    let v1 = c.kubectl_ok(&["get", "--raw", "/apis/autoscaling/v1"]);
    assert!(v1.contains("\"horizontalpodautoscalers\""), "{v1}");
    let core = c.kubectl_ok(&["get", "--raw", "/api/v1"]);
    for sub in ["serviceaccounts/token", "pods/ephemeralcontainers"] {
        assert!(core.contains(&format!("\"{sub}\"")), "no {sub} in {core}");
    }

    let (code, _, err) = c.kubectl(&["get", "--raw", "/api/v1/nothings"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): the server could not find the requested resource"
    );

    let out = c.kubectl_ok(&["explain", "deployment.spec.replicas"]);
    assert!(out.contains("FIELD: replicas <integer>"), "{out}");
    assert!(out.contains("Number of desired pods"), "{out}");
}

#[test]
fn a_protobuf_body_of_a_kind_the_simulator_cannot_read_gets_415_not_400() {
    use std::io::{Read, Write};
    let c = cluster();
    // The envelope of an object kubectl never sends in protobuf.
    let type_meta = [
        b"\x0a\x0e".as_slice(),
        b"example.com/v1",
        b"\x12\x06",
        b"Widget",
    ]
    .concat();
    let mut unknown = vec![0x0a, type_meta.len() as u8];
    unknown.extend_from_slice(&type_meta);
    unknown.extend_from_slice(b"\x12\x00");
    let body = [b"k8s\0".as_slice(), &unknown].concat();
    let addr = c.sim().addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\
         Content-Type: application/vnd.kubernetes.protobuf\r\n\
         Accept: application/vnd.kubernetes.protobuf,application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 415"), "{text}");
    // The client prefers protobuf, so the Status comes in protobuf: a meta/v1 Status
    // message whose strings are readable in the bytes.
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/vnd.kubernetes.protobuf"),
        "{text}"
    );
    for part in [
        "Status",
        "UnsupportedMediaType",
        "example.com/v1 Widget cannot be read from protobuf",
    ] {
        assert!(text.contains(part), "no {part} in {text}");
    }
}

/// One GET with this `Accept` header, over a plain connection: the status line, the
/// Content-Type and the body's bytes.
fn get_accepting(c: &TestCluster, path: &str, accept: &str) -> (String, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(c.sim().addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.lines().next().unwrap_or("").to_string();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, buf[split + 4..].to_vec())
}

#[test]
fn what_protobuf_cannot_hold_is_answered_in_json_or_refused_with_406_never_cut_short() {
    let c = cluster();
    const PB: &str = "application/vnd.kubernetes.protobuf";
    c.kubectl_ok(&["create", "configmap", "plain", "--from-literal=a=b"]);
    let (status, ct, body) = get_accepting(&c, "/api/v1/namespaces/default/configmaps/plain", PB);
    assert_eq!((status.as_str(), ct.as_str()), ("HTTP/1.1 200 OK", PB));
    assert!(body.starts_with(b"k8s\0"));

    // A Pod with an affinity, a field the protobuf table does not cover.
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "placed"},
        "spec": {"containers": [{"name": "a", "image": "nginx:1.27"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}}}}"#;
    let (code, _, err) = c.kubectl_in(&["create", "-f", "-"], pod);
    assert_eq!(code, 0, "{err}");
    let path = "/api/v1/namespaces/default/pods/placed";
    let (status, ct, body) = get_accepting(&c, path, &format!("{PB}, application/json"));
    assert_eq!(
        (status.as_str(), ct.as_str()),
        ("HTTP/1.1 200 OK", "application/json")
    );
    let pod: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "kubernetes.io/os"
    );
    let (status, ct, body) = get_accepting(&c, path, PB);
    assert_eq!(status, "HTTP/1.1 406 Not Acceptable");
    assert_eq!(ct, PB);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("v1 Pod.spec.affinity: PodSpec has no field for it"),
        "{text}"
    );

    // A kind without a message: its list too.
    let (status, ct, _) = get_accepting(
        &c,
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
        &format!("{PB}, */*"),
    );
    assert_eq!(
        (status.as_str(), ct.as_str()),
        ("HTTP/1.1 200 OK", "application/json")
    );
    let (status, _, body) = get_accepting(
        &c,
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
        PB,
    );
    assert_eq!(status, "HTTP/1.1 406 Not Acceptable");
    assert!(
        String::from_utf8_lossy(&body)
            .contains("networking.k8s.io/v1 NetworkPolicyList has no protobuf schema"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn explain_and_client_side_apply_read_the_openapi_v2_document() {
    let c = cluster();
    let out = c.kubectl_ok(&[
        "explain",
        "deployment.spec.strategy",
        "--output=plaintext-openapiv2",
    ]);
    assert!(out.contains("RESOURCE: strategy <Object>"), "{out}");
    assert!(
        out.contains("DeploymentStrategy describes how to replace existing pods with new ones."),
        "{out}"
    );
    assert!(out.contains("rollingUpdate\t<Object>"), "{out}");

    // A custom resource's schema is in the document as soon as its CRD is.
    let (code, _, err) = c.kubectl_in(&["apply", "-f", "-"], CRD);
    assert_eq!(code, 0, "{err}");
    eventually(
        Duration::from_secs(10),
        "the Widget kind in openapi v2",
        || {
            let (code, out, _) =
                c.kubectl(&["explain", "widgets.spec", "--output=plaintext-openapiv2"]);
            code == 0 && out.contains("size\t<integer> -required-")
        },
    );

    // Client-side apply computes its patch from the document's merge keys: changing
    // one container leaves what another client set on the other one.
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: two, namespace: default}
spec:
  selector: {matchLabels: {app: two}}
  template:
    metadata: {labels: {app: two}}
    spec:
      containers:
      - {name: a, image: "nginx:1.27", ports: [{containerPort: 80}]}
      - {name: b, image: "busybox:1.36"}
"#;
    let (code, _, err) = c.kubectl_in(&["apply", "-f", "-"], deployment);
    assert_eq!(code, 0, "{err}");
    c.kubectl_ok(&["set", "env", "deployment/two", "-c", "b", "FOO=bar"]);
    let (code, out, err) = c.kubectl_in(
        &["apply", "-f", "-", "-v=6"],
        &deployment.replace("nginx:1.27", "nginx:1.28"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployment.apps/two configured"), "{out}");
    assert!(
        err.lines()
            .any(|l| l.contains("GET ") && l.contains("/openapi/v2") && l.contains("200 OK")),
        "kubectl did not read /openapi/v2: {err}"
    );
    let containers = c.kubectl_ok(&[
        "get",
        "deployment",
        "two",
        "-o",
        "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image} {.env}{\"\\n\"}{end}",
    ]);
    assert_eq!(
        containers.trim(),
        "a=nginx:1.28 \nb=busybox:1.36 [{\"name\":\"FOO\",\"value\":\"bar\"}]"
    );
}

#[test]
fn kubectl_typed_clients_get_their_answers_in_protobuf() {
    let c = cluster();
    let response_types = |err: &str| -> Vec<String> {
        // kubectl -v=8 prints each answer's headers after "Response Headers:".
        let mut types = Vec::new();
        let mut in_response = false;
        for line in err.lines() {
            if line.contains("Response Headers:") {
                in_response = true;
            } else if in_response && line.contains("Content-Type:") {
                types.push(
                    line.rsplit("Content-Type:")
                        .next()
                        .unwrap()
                        .trim()
                        .to_string(),
                );
                in_response = false;
            }
        }
        types
    };
    let (code, out, err) = c.kubectl(&[
        "create",
        "configmap",
        "pb-settings",
        "--from-literal=mode=fast",
        "-v=8",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "configmap/pb-settings created");
    assert_eq!(
        response_types(&err).last().map(String::as_str),
        Some("application/vnd.kubernetes.protobuf"),
        "{err}"
    );
    let (code, out, err) = c.kubectl(&["auth", "can-i", "get", "pods", "-v=8"]);
    assert_eq!((code, out.trim()), (0, "yes"), "{err}");
    assert!(
        response_types(&err).contains(&"application/vnd.kubernetes.protobuf".to_string()),
        "{err}"
    );
    // kubectl describe reads the object and its related lists with typed clients.
    let (code, out, err) = c.kubectl(&["describe", "configmap", "pb-settings", "-v=8"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mode:\n----\nfast"), "{out}");
    assert!(
        response_types(&err).contains(&"application/vnd.kubernetes.protobuf".to_string()),
        "{err}"
    );
}

#[test]
fn kubectl_debug_adds_an_ephemeral_container_and_get_pods_prints_its_columns() {
    let c = cluster();
    assert_eq!(
        c.kubectl_ok(&["run", "shell", "--image=nginx:1.27"]).trim(),
        "pod/shell created"
    );
    eventually(Duration::from_secs(20), "the pod to run", || {
        let out = c.kubectl_ok(&["get", "pods", "-o", "wide"]);
        header(&out) == "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES"
            && row(&out, "shell").starts_with("shell 1/1 Running 0 ")
    });
    let (code, out, err) = c.kubectl(&["debug", "shell", "--image=busybox", "--profile=general"]);
    assert_eq!(code, 0, "{err}");
    let name = out
        .lines()
        .chain(err.lines())
        .find_map(|l| l.strip_prefix("Defaulting debug container name to "))
        .map(|n| n.trim_end_matches('.').to_string())
        .unwrap_or_else(|| panic!("no debug container named in:\n{out}{err}"));
    let names = c.kubectl_ok(&[
        "get",
        "pod",
        "shell",
        "-o",
        "jsonpath={.spec.ephemeralContainers[*].name}",
    ]);
    assert_eq!(names, name);
}

/// A cluster whose Pods turn ready quickly, for the controller tests.
fn quick_cluster(name: &str) -> TestCluster {
    require_kubectl();
    let mut options = kube_sim::SimOptions::named(name);
    options.ready_after = Duration::from_millis(300);
    TestCluster::start_with(options)
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"#;

fn rolled_out(c: &TestCluster, target: &str) {
    let out = c.kubectl_ok(&["rollout", "status", target, "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

fn pod_images(c: &TestCluster) -> Vec<String> {
    let out = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    out.lines().map(String::from).collect()
}

#[test]
fn rollout_history_undo_pause_resume_and_restart_work_through_the_simulated_controllers() {
    let c = quick_cluster("kubectl-rollouts");
    let (code, _, err) = c.kubectl_in(&["apply", "-f", "-"], WEB);
    assert_eq!(code, 0, "{err}");
    rolled_out(&c, "deployment/web");
    // One ReplicaSet named with the pod-template-hash, revision 1, two Running Pods on
    // the Node.
    let rs = c.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}/{.metadata.labels.pod-template-hash}/{.metadata.annotations.deployment\\.kubernetes\\.io/revision}/{.status.readyReplicas}{\"\\n\"}{end}",
    ]);
    let parts: Vec<&str> = rs.trim().split('/').collect();
    assert_eq!(parts.len(), 4, "{rs}");
    assert_eq!(parts[0], format!("web-{}", parts[1]), "{rs}");
    assert_eq!(&parts[2..], ["1", "2"], "{rs}");
    let pods = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.status.phase}/{.spec.nodeName}/{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ]);
    assert_eq!(pods, "Running/node-1/True\nRunning/node-1/True\n");

    c.kubectl_ok(&["set", "image", "deployment/web", "web=nginx:1.28"]);
    rolled_out(&c, "deployment/web");
    assert_eq!(pod_images(&c), ["nginx:1.28", "nginx:1.28"]);
    let history = c.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("REVISION"), "{history}");
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let first = c.kubectl_ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(first.contains("nginx:1.27"), "{first}");

    // Undo goes back to revision 1's template, which becomes revision 3.
    let out = c.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rolled_out(&c, "deployment/web");
    assert_eq!(pod_images(&c), ["nginx:1.27", "nginx:1.27"]);
    let history = c.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 ") && !history.contains("\n1 "),
        "{history}"
    );
    c.kubectl_ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]);
    rolled_out(&c, "deployment/web");
    assert_eq!(pod_images(&c), ["nginx:1.28", "nginx:1.28"]);

    // Paused, a new template waits; resumed, it rolls out.
    c.kubectl_ok(&["rollout", "pause", "deployment/web"]);
    c.kubectl_ok(&["set", "image", "deployment/web", "web=nginx:1.29"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pod_images(&c), ["nginx:1.28", "nginx:1.28"]);
    let reason = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
    ]);
    assert_eq!(reason, "DeploymentPaused");
    c.kubectl_ok(&["rollout", "resume", "deployment/web"]);
    rolled_out(&c, "deployment/web");
    assert_eq!(pod_images(&c), ["nginx:1.29", "nginx:1.29"]);

    // A restart is a new template: new Pods, a new revision.
    let before = c.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    c.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    rolled_out(&c, "deployment/web");
    let after = c.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(after.lines().count(), 2, "{after}");
    assert!(
        after.lines().all(|p| !before.contains(p)),
        "{before} / {after}"
    );
    let restarted = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    ]);
    assert!(!restarted.is_empty());
}

#[test]
fn logs_endpoints_namespace_defaults_and_an_orphaning_delete_work_as_on_a_real_cluster() {
    let c = quick_cluster("kubectl-controllers");
    let (code, _, err) = c.kubectl_in(&["apply", "--server-side", "-f", "-"], APP);
    assert_eq!(code, 0, "{err}");
    let out = c.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");

    // Every namespace has what the namespace controllers put there.
    c.kubectl_ok(&["get", "serviceaccount", "default", "-n", "shop"]);
    let ca = c.kubectl_ok(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");

    // kubectl logs answers at once with the container's lines.
    let logs = c.kubectl_ok(&["logs", "deployment/web", "-n", "shop"]);
    assert!(
        logs.contains("simulated container web started from image nginx:1.27"),
        "{logs}"
    );

    // The Service's endpoints list both Pods' IPs.
    let pod_ips = c.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "shop",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let mut pod_ips: Vec<&str> = pod_ips.split_whitespace().collect();
    pod_ips.sort();
    assert_eq!(pod_ips.len(), 2);
    assert!(
        pod_ips.iter().all(|ip| ip.starts_with("10.244.")),
        "{pod_ips:?}"
    );
    eventually(
        Duration::from_secs(10),
        "the endpoints of the Service",
        || {
            let slice = c.kubectl_ok(&[
                "get",
                "endpointslices",
                "-n",
                "shop",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "jsonpath={.items[*].endpoints[*].addresses[0]}",
            ]);
            let mut slice: Vec<&str> = slice.split_whitespace().collect();
            slice.sort();
            let ep = c.kubectl_ok(&[
                "get",
                "endpoints",
                "web",
                "-n",
                "shop",
                "-o",
                "jsonpath={.subsets[0].addresses[*].ip}",
            ]);
            let mut ep: Vec<&str> = ep.split_whitespace().collect();
            ep.sort();
            slice == pod_ips && ep == pod_ips
        },
    );
    let port = c.kubectl_ok(&[
        "get",
        "endpointslices",
        "-n",
        "shop",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={.items[0].ports[0].port}/{.items[0].ports[0].protocol}",
    ]);
    assert_eq!(port, "80/TCP");

    // Orphaned, the ReplicaSet stays without its owner reference, its Pods with it.
    let out = c.kubectl_ok(&[
        "delete",
        "deployment",
        "web",
        "-n",
        "shop",
        "--cascade=orphan",
    ]);
    assert!(out.contains("deleted"), "{out}");
    let owners = c.kubectl_ok(&[
        "get",
        "rs",
        "-n",
        "shop",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}:{.items[*].metadata.ownerReferences}",
    ]);
    let (names, refs) = owners.split_once(':').unwrap();
    assert!(names.starts_with("web-"), "{owners}");
    assert_eq!(refs, "", "{owners}");
    let pods = c.kubectl_ok(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"]);
    assert_eq!(pods.lines().count(), 2, "{pods}");
    // Deleting the ReplicaSet takes its Pods.
    c.kubectl_ok(&["delete", "rs", "--all", "-n", "shop"]);
    eventually(Duration::from_secs(10), "the Pods to go", || {
        c.kubectl_ok(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"])
            .is_empty()
    });
}

#[test]
fn a_broken_image_leaves_pods_not_ready_and_rollout_status_reports_the_deadline() {
    let c = quick_cluster("kubectl-broken");
    let broken = WEB
        .replace("nginx:1.27", "nginx:broken")
        .replace("replicas: 2", "replicas: 1\n  progressDeadlineSeconds: 2");
    let (code, _, err) = c.kubectl_in(&["apply", "-f", "-"], &broken);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("deployment \"web\" exceeded its progress deadline"),
        "{err}"
    );
    let state = c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].status.phase}/{.items[0].status.containerStatuses[0].state.waiting.reason}/{.items[0].status.conditions[?(@.type==\"Ready\")].reason}",
    ]);
    assert_eq!(state, "Pending/ImagePullBackOff/ContainersNotReady");
    let (code, _, err) = c.kubectl(&["logs", "deployment/web"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is waiting to start: trying and failing to pull image"),
        "{err}"
    );
}
