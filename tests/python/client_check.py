"""The official Kubernetes Python client against a cluster (KUBECONFIG): CRUD, lists
with selectors, watch, merge, strategic and JSON patches and server-side apply through
the typed models of CoreV1Api, AppsV1Api, DiscoveryV1Api, ApiextensionsV1Api and
CustomObjectsApi. Every answer is deserialized by the client's models, which refuse
shapes they do not expect; each check prints `ok: <what>`, the last line is
`all checks passed`. Run by tests/sim_python.rs."""

import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "py"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"

config.load_kube_config()
api = client.ApiClient()
core = client.CoreV1Api(api)
apps = client.AppsV1Api(api)
discovery = client.DiscoveryV1Api(api)
ext = client.ApiextensionsV1Api(api)
custom = client.CustomObjectsApi(api)


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def fails_with(status, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ApiException as e:
        if e.status != status:
            raise AssertionError(f"expected {status}, got {e.status}: {e.body}")
        return e
    raise AssertionError(f"expected {status}, the call succeeded")


def wait_for(what, probe, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(answer):
    """A delete's answer: this client version hands the Status over as a plain dict."""
    if isinstance(answer, dict):
        return answer.get("kind"), answer.get("status")
    return type(answer).__name__, getattr(answer, "status", None)


def meta(name, labels=None):
    return client.V1ObjectMeta(name=name, labels=labels)


# --- Namespaces and ConfigMaps: create, read, list, replace, delete -----------------

ns = core.create_namespace(client.V1Namespace(metadata=meta(NS)))
check(isinstance(ns, client.V1Namespace) and ns.status.phase == "Active", "create a Namespace")
check(ns.metadata.labels == {"kubernetes.io/metadata.name": NS}, "the Namespace's name label")
sa = core.read_namespaced_service_account("default", NS)
check(isinstance(sa, client.V1ServiceAccount), "the namespace has its default ServiceAccount")
ca = core.read_namespaced_config_map("kube-root-ca.crt", NS)
check("ca.crt" in ca.data, "the namespace has its kube-root-ca.crt ConfigMap")

for name, tier in [("a", "front"), ("b", "back"), ("c", "front")]:
    made = core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=meta(name, {"tier": tier}), data={"k": name})
    )
    check(made.metadata.uid and made.metadata.resource_version, f"create ConfigMap {name}")
cm = core.read_namespaced_config_map("a", NS)
check(cm.data == {"k": "a"} and cm.metadata.labels == {"tier": "front"}, "read a ConfigMap")
check(cm.metadata.managed_fields[0].operation == "Update", "managedFields in the typed model")

front = core.list_namespaced_config_map(NS, label_selector="tier=front")
check(isinstance(front, client.V1ConfigMapList), "a list is a V1ConfigMapList")
check(sorted(i.metadata.name for i in front.items) == ["a", "c"], "list with a label selector")
check(front.metadata.resource_version, "a list has a resourceVersion")
notback = core.list_namespaced_config_map(NS, label_selector="tier,tier notin (back)")
check(sorted(i.metadata.name for i in notback.items) == ["a", "c"], "set-based label selector")
by_name = core.list_namespaced_config_map(NS, field_selector="metadata.name=b")
check([i.metadata.name for i in by_name.items] == ["b"], "list with a field selector")
page = core.list_namespaced_config_map(NS, label_selector="tier", limit=2)
check(len(page.items) == 2 and page.metadata._continue, "a limited list gives a continue token")
rest = core.list_namespaced_config_map(
    NS, label_selector="tier", limit=2, _continue=page.metadata._continue
)
check([i.metadata.name for i in rest.items] == ["c"], "the continued list")
everywhere = core.list_config_map_for_all_namespaces(label_selector="tier=back")
check([i.metadata.name for i in everywhere.items] == ["b"], "list across namespaces")

cm.data = {"k": "A"}
replaced = core.replace_namespaced_config_map("a", NS, cm)
check(replaced.data == {"k": "A"}, "replace a ConfigMap")
cm.data = {"k": "stale"}
err = fails_with(409, core.replace_namespaced_config_map, "a", NS, cm)
check("the object has been modified" in err.body, "a stale replace is 409 Conflict")
fails_with(409, core.create_namespaced_config_map, NS, client.V1ConfigMap(metadata=meta("a")))
check(True, "creating an existing name is 409")

# --- Patches -----------------------------------------------------------------------

merged = core.patch_namespaced_config_map(
    "a", NS, {"data": {"m": "1"}, "metadata": {"labels": {"x": "y"}}}, _content_type=MERGE
)
check(merged.data == {"k": "A", "m": "1"} and merged.metadata.labels["x"] == "y", "merge patch")
removed = core.patch_namespaced_config_map("a", NS, {"data": {"m": None}}, _content_type=MERGE)
check(removed.data == {"k": "A"}, "a merge patch's null removes a key")
patched = core.patch_namespaced_config_map(
    "a",
    NS,
    [{"op": "replace", "path": "/data/k", "value": "J"}, {"op": "add", "path": "/data/n", "value": "2"}],
)
check(patched.data == {"k": "J", "n": "2"}, "JSON patch")
strategic = core.patch_namespaced_config_map(
    "a", NS, {"metadata": {"labels": {"x": None, "z": "1"}}}, _content_type=STRATEGIC
)
check(strategic.metadata.labels == {"tier": "front", "z": "1"}, "strategic merge patch")

status = core.delete_namespaced_config_map("b", NS)
check(status_of(status) == ("Status", "Success"), "delete answers a success Status")
err = fails_with(404, core.read_namespaced_config_map, "b", NS)
check('configmaps \\"b\\" not found' in err.body, "reading a deleted ConfigMap is 404")

# --- Watch -------------------------------------------------------------------------

rv = core.list_namespaced_config_map(NS, label_selector="tier").metadata.resource_version
core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=meta("d", {"tier": "back"})))
core.patch_namespaced_config_map("d", NS, {"data": {"w": "1"}}, _content_type=MERGE)
core.delete_namespaced_config_map("d", NS)
events = [
    (e["type"], e["object"].metadata.name, type(e["object"]).__name__)
    for e in watch.Watch().stream(
        core.list_namespaced_config_map,
        NS,
        label_selector="tier",
        resource_version=rv,
        timeout_seconds=2,
    )
]
check(
    events
    == [("ADDED", "d", "V1ConfigMap"), ("MODIFIED", "d", "V1ConfigMap"), ("DELETED", "d", "V1ConfigMap")],
    f"a watch from a resourceVersion replays what happened since: {events}",
)


def create_later():
    time.sleep(0.5)
    core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=meta("e", {"tier": "back"})))


threading.Thread(target=create_later).start()
live = []
w = watch.Watch()
for e in w.stream(core.list_namespaced_config_map, NS, label_selector="tier", timeout_seconds=10):
    live.append((e["type"], e["object"].metadata.name))
    if e["object"].metadata.name == "e":
        w.stop()
check(
    live[:2] == [("ADDED", "a"), ("ADDED", "c")] and live[-1] == ("ADDED", "e"),
    f"a watch lists what is there, then sees a new object: {live}",
)

# --- Server-side apply -------------------------------------------------------------

applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": NS},
           "data": {"a": "1"}}
out = core.patch_namespaced_config_map("applied", NS, applied, field_manager="py-apply", _content_type=APPLY)
check(out.data == {"a": "1"}, "server-side apply creates")
entries = [(m.manager, m.operation) for m in out.metadata.managed_fields]
check(entries == [("py-apply", "Apply")], f"the applier owns its fields: {entries}")
again = core.patch_namespaced_config_map("applied", NS, applied, field_manager="py-apply", _content_type=APPLY)
check(again.metadata.resource_version == out.metadata.resource_version, "a no-op apply writes nothing")
other = dict(applied, data={"a": "2"})
err = fails_with(409, core.patch_namespaced_config_map, "applied", NS, other,
                 field_manager="someone-else", _content_type=APPLY)
check('conflict with \\"py-apply\\"' in err.body, "a second applier gets a conflict")
forced = core.patch_namespaced_config_map("applied", NS, other, field_manager="someone-else",
                                          force=True, _content_type=APPLY)
check(forced.data == {"a": "2"}, "force takes the field over")
dry = core.patch_namespaced_config_map("applied", NS, dict(applied, data={"a": "3"}), field_manager="someone-else",
                                       dry_run="All", _content_type=APPLY)
check(dry.data == {"a": "3"} and core.read_namespaced_config_map("applied", NS).data == {"a": "2"},
      "a dry-run apply stores nothing")

# --- Deployments and what the controllers make of them -----------------------------

labels = {"app": "web"}
container = client.V1Container(name="web", image="nginx:1.27",
                               ports=[client.V1ContainerPort(container_port=80, name="http")])
deployment = client.V1Deployment(
    metadata=meta("web", labels),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels=labels),
        template=client.V1PodTemplateSpec(metadata=meta(None, labels),
                                          spec=client.V1PodSpec(containers=[container])),
    ),
)
created = apps.create_namespaced_deployment(NS, deployment)
check(created.metadata.generation == 1, "create a Deployment")
check(created.spec.strategy.type == "RollingUpdate" and created.spec.revision_history_limit == 10
      and created.spec.progress_deadline_seconds == 600, "the Deployment's defaults")
check(created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
      and created.spec.template.spec.restart_policy == "Always", "the pod template's defaults")
service = core.create_namespaced_service(NS, client.V1Service(
    metadata=meta("web"),
    spec=client.V1ServiceSpec(selector=labels, ports=[client.V1ServicePort(port=80, target_port="http")]),
))
check(service.spec.type == "ClusterIP" and service.spec.cluster_ip and service.spec.ports[0].protocol == "TCP",
      "create a Service, defaulted")


def available(name, replicas):
    d = apps.read_namespaced_deployment_status(name, NS)
    s = d.status
    done = (s is not None and s.observed_generation == d.metadata.generation and s.updated_replicas == replicas
            and s.available_replicas == replicas and s.replicas == replicas)
    return d if done else None


ready = wait_for("the Deployment to be available", lambda: available("web", 2))
conditions = {c.type: (c.status, c.reason) for c in ready.status.conditions}
check(conditions == {"Available": ("True", "MinimumReplicasAvailable"),
                     "Progressing": ("True", "NewReplicaSetAvailable")}, f"status conditions: {conditions}")
sets = apps.list_namespaced_replica_set(NS, label_selector="app=web")
rs = sets.items[0]
check(len(sets.items) == 1 and rs.metadata.owner_references[0].kind == "Deployment"
      and rs.metadata.owner_references[0].controller
      and rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
      and rs.metadata.name == "web-" + rs.metadata.labels["pod-template-hash"]
      and rs.status.ready_replicas == 2, "the Deployment's ReplicaSet")
pods = core.list_namespaced_pod(NS, label_selector="app=web").items
check(len(pods) == 2 and all(p.status.phase == "Running" and p.status.container_statuses[0].ready
                             and p.spec.node_name and p.status.pod_ip for p in pods),
      "its Pods run, scheduled, with an IP")
node = core.read_node(pods[0].spec.node_name)
check(node.status.node_info.operating_system == "linux"
      and [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"], "the Node")
log = core.read_namespaced_pod_log(pods[0].metadata.name, NS)
check("simulated container web started" in log, "a Pod's log")

strategic = apps.patch_namespaced_deployment(
    "web", NS, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}},
    _content_type=STRATEGIC)
c0 = strategic.spec.template.spec.containers[0]
check(strategic.metadata.generation == 2 and c0.image == "nginx:1.28" and c0.ports[0].container_port == 80,
      "a strategic merge patch merges the container by name")
scale = apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 3}}, _content_type=MERGE)
check(isinstance(scale, client.V1Scale) and scale.spec.replicas == 3, "the scale subresource")
wait_for("the new revision to roll out", lambda: available("web", 3))
revisions = sorted(s.metadata.annotations["deployment.kubernetes.io/revision"]
                   for s in apps.list_namespaced_replica_set(NS, label_selector="app=web").items)
check(revisions == ["1", "2"], f"a ReplicaSet per revision: {revisions}")
jp = apps.patch_namespaced_deployment("web", NS, [{"op": "replace", "path": "/spec/replicas", "value": 2}])
check(jp.spec.replicas == 2, "a JSON patch on a Deployment")


def three_endpoints():
    slices = discovery.list_namespaced_endpoint_slice(NS, label_selector="kubernetes.io/service-name=web")
    ips = [a for s in slices.items for e in (s.endpoints or []) for a in e.addresses]
    return slices if len(ips) == 2 else None


slices = wait_for("the Service's endpoint slices", three_endpoints)
slice0 = slices.items[0]
check(slice0.address_type == "IPv4" and slice0.ports[0].port == 80
      and all(e.conditions.ready for e in slice0.endpoints), "EndpointSlices of the Service")
endpoints = core.read_namespaced_endpoints("web", NS)
check(len(endpoints.subsets[0].addresses) == 2, "Endpoints of the Service")

applied_deployment = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
    "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
             "spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}},
}
out = apps.patch_namespaced_deployment("web", NS, applied_deployment, field_manager="py-apply",
                                       _content_type=APPLY)
check(("py-apply", "Apply") in [(m.manager, m.operation) for m in out.metadata.managed_fields],
      "server-side apply of a Deployment")
status = apps.delete_namespaced_deployment("web", NS)
check(status_of(status) == ("Status", "Success"), "delete a Deployment")
wait_for("its Pods to go", lambda: not core.list_namespaced_pod(NS, label_selector="app=web").items)
deleted = core.delete_namespaced_service("web", NS)
check(status_of(deleted)[0] in ("Service", "V1Service"), "delete a Service (answered with the object)")

# --- Custom resources --------------------------------------------------------------

props = client.V1JSONSchemaProps
crd = ext.create_custom_resource_definition(client.V1CustomResourceDefinition(
    metadata=meta("widgets.py.example.com"),
    spec=client.V1CustomResourceDefinitionSpec(
        group="py.example.com", scope="Namespaced",
        names=client.V1CustomResourceDefinitionNames(kind="Widget", plural="widgets", singular="widget",
                                                     short_names=["wd"]),
        versions=[client.V1CustomResourceDefinitionVersion(
            name="v1", served=True, storage=True,
            subresources=client.V1CustomResourceSubresources(status={}),
            schema=client.V1CustomResourceValidation(open_apiv3_schema=props(type="object", properties={
                "spec": props(type="object", properties={"size": props(type="integer")}),
                "status": props(type="object", properties={"ready": props(type="boolean")}),
            })),
        )],
    ),
))
check(crd.metadata.name == "widgets.py.example.com", "create a CustomResourceDefinition")


def established():
    c = ext.read_custom_resource_definition("widgets.py.example.com")
    return any(x.type == "Established" and x.status == "True" for x in (c.status.conditions or []))


wait_for("the CRD to be established", established)
group = ("py.example.com", "v1", NS, "widgets")
widget = {"apiVersion": "py.example.com/v1", "kind": "Widget",
          "metadata": {"name": "w1", "labels": {"size": "small"}}, "spec": {"size": 1}}
made = custom.create_namespaced_custom_object(*group, widget)
check(made["metadata"]["generation"] == 1 and made["spec"] == {"size": 1}, "create a custom resource")
got = custom.get_namespaced_custom_object(*group, "w1")
check(got["metadata"]["uid"] == made["metadata"]["uid"], "get a custom resource")
listed = custom.list_namespaced_custom_object(*group, label_selector="size=small")
check([i["metadata"]["name"] for i in listed["items"]] == ["w1"], "list custom resources with a selector")
everywhere = custom.list_cluster_custom_object("py.example.com", "v1", "widgets")
check(len(everywhere["items"]) == 1, "list custom resources across namespaces")
merged = custom.patch_namespaced_custom_object(*group, "w1", {"spec": {"size": 2}}, _content_type=MERGE)
check(merged["spec"]["size"] == 2 and merged["metadata"]["generation"] == 2, "merge patch a custom resource")
jp = custom.patch_namespaced_custom_object(*group, "w1", [{"op": "replace", "path": "/spec/size", "value": 3}],
                                           _content_type=JSON_PATCH)
check(jp["spec"]["size"] == 3, "JSON patch a custom resource")
fails_with(415, custom.patch_namespaced_custom_object, *group, "w1", {"spec": {"size": 4}},
           _content_type=STRATEGIC)
check(True, "a strategic merge patch of a custom resource is 415, as on a real server")
st = custom.patch_namespaced_custom_object_status(*group, "w1", {"status": {"ready": True}}, _content_type=MERGE)
check(st["status"] == {"ready": True} and st["spec"]["size"] == 3, "the status subresource")
applied_widget = {"apiVersion": "py.example.com/v1", "kind": "Widget", "metadata": {"name": "w2"},
                  "spec": {"size": 5}}
created = custom.patch_namespaced_custom_object(*group, "w2", applied_widget, field_manager="py-apply",
                                                _content_type=APPLY)
# This client maps only 200 to a body for custom objects: the 201 of an apply that
# creates (a real server's answer too) comes back as None.
check(created is None, "server-side apply creates a custom resource (201)")
ap = custom.patch_namespaced_custom_object(*group, "w2", applied_widget, field_manager="py-apply",
                                           _content_type=APPLY)
check(ap["spec"]["size"] == 5 and ap["metadata"]["managedFields"][0]["manager"] == "py-apply",
      "server-side apply of a custom resource")
gone = custom.delete_namespaced_custom_object(*group, "w1")
check(gone["metadata"]["name"] == "w1", "delete a custom resource (answered with the object)")
ext.delete_custom_resource_definition("widgets.py.example.com")
core.delete_namespace(NS)
check(True, "delete the CRD and the namespace")

print("all checks passed", flush=True)
