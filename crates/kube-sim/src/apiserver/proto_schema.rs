//! The protobuf messages [`crate::apiserver::protobuf`] can read: for every kind a typed client
//! of kubectl sends (`create deployment|configmap|namespace|secret|service|
//! serviceaccount|job|cronjob|role|rolebinding|clusterrole|clusterrolebinding|quota|
//! priorityclass|poddisruptionbudget|ingress|token`, `auth can-i|whoami|reconcile`,
//! `autoscale`), the fields of its message and of the messages inside it, by their
//! numbers on the wire and their names in JSON.
//!
//! One line per message: `name:number:type` for each field, where the type is
//!
//! | type | wire value | JSON |
//! | --- | --- | --- |
//! | `s` | string | string |
//! | `b` | varint | boolean |
//! | `i` | varint (int32 or int64) | number |
//! | `y` | bytes | base64 string |
//! | `t` | `metav1.Time` | RFC 3339 time |
//! | `q` | `resource.Quantity` | string |
//! | `x` | `intstr.IntOrString` | number or string |
//! | `j` | `runtime.RawExtension`, `metav1.FieldsV1` | the embedded JSON |
//! | `L` | a message holding `repeated string` | array of strings |
//! | `-` | anything | left out: a top-level `status`, which a write to the object itself never changes |
//! | a message name | a message | object |
//! | `-` and a message name | a message | read past in requests (a top-level `status`), written in responses |
//!
//! prefixed `[]` for a repeated field, `{}` for a `map<string, type>`, `^` for an
//! embedded Go struct whose fields JSON puts beside its parent's; suffixed `!` when
//! the field's zero value must be kept (see the module documentation of
//! [`crate::apiserver::protobuf`]). Fields left out of a message are refused when they carry a
//! value and ignored when empty.
//!
//! The same table drives both directions: [`crate::apiserver::protobuf`] reads request bodies
//! with it and [`crate::apiserver::proto_encode`] writes response bodies with it, so a field
//! the simulator can read is a field it can write. Beside the kinds, it holds the
//! `meta/v1` messages every answer needs: `ListMeta` for lists, `Status` for errors.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The JSON type a field decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    String,
    Bool,
    Int,
    Bytes,
    Time,
    Quantity,
    IntOrString,
    Json,
    StringList,
    /// A field a write never changes and no answer holds: read past, whatever it
    /// holds; an answer with a value there cannot be written.
    Ignored,
    Message(&'static str),
}

/// One field of a message.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    pub tag: u64,
    pub kind: Kind,
    pub repeated: bool,
    pub map: bool,
    pub inline: bool,
    pub keep_zero: bool,
    /// Read past in requests, written in answers: an object's `status`, which a
    /// write to the object itself never changes but which a read shows.
    pub answer_only: bool,
}

/// A message: its name (for errors) and fields.
#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    fields: Vec<Field>,
}

impl Message {
    /// The field with wire number `tag`.
    pub fn field(&self, tag: u64) -> Option<&Field> {
        self.fields.iter().find(|f| f.tag == tag)
    }

    /// Every field, in the order of the table.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }
}

/// Top-level kinds: apiVersion, kind, message.
const KINDS: &[(&str, &str, &str)] = &[
    ("v1", "ConfigMap", "ConfigMap"),
    ("v1", "Namespace", "Namespace"),
    ("v1", "Secret", "Secret"),
    ("v1", "Service", "Service"),
    ("v1", "ServiceAccount", "ServiceAccount"),
    ("v1", "ResourceQuota", "ResourceQuota"),
    ("v1", "Pod", "Pod"),
    ("v1", "Event", "Event"),
    ("v1", "LimitRange", "LimitRange"),
    ("v1", "PodTemplate", "PodTemplate"),
    ("v1", "ReplicationController", "ReplicationController"),
    ("apps/v1", "Deployment", "Deployment"),
    ("apps/v1", "ReplicaSet", "ReplicaSet"),
    ("apps/v1", "StatefulSet", "StatefulSet"),
    ("apps/v1", "DaemonSet", "DaemonSet"),
    ("v1", "PersistentVolumeClaim", "PersistentVolumeClaim"),
    ("batch/v1", "Job", "Job"),
    ("batch/v1", "CronJob", "CronJob"),
    ("rbac.authorization.k8s.io/v1", "Role", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "RoleBinding"),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "RoleBinding",
    ),
    ("networking.k8s.io/v1", "Ingress", "Ingress"),
    ("policy/v1", "PodDisruptionBudget", "PodDisruptionBudget"),
    ("scheduling.k8s.io/v1", "PriorityClass", "PriorityClass"),
    ("autoscaling/v1", "HorizontalPodAutoscaler", "HPAv1"),
    ("autoscaling/v1", "Scale", "Scale"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "HPAv2"),
    ("authentication.k8s.io/v1", "TokenRequest", "TokenRequest"),
    ("authentication.k8s.io/v1", "TokenReview", "TokenReview"),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        "SelfSubjectReview",
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "SelfSubjectAccessReview",
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        "SelfSubjectRulesReview",
    ),
    (
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        "SubjectAccessReview",
    ),
    (
        "authorization.k8s.io/v1",
        "LocalSubjectAccessReview",
        "SubjectAccessReview",
    ),
];

/// Every message, one line each (see the module documentation).
const MESSAGES: &[(&str, &str)] = &[
    // meta/v1
    (
        "ObjectMeta",
        "name:1:s generateName:2:s namespace:3:s selfLink:4:s uid:5:s resourceVersion:6:s \
         generation:7:i creationTimestamp:8:t deletionTimestamp:9:t \
         deletionGracePeriodSeconds:10:i! labels:11:{}s annotations:12:{}s \
         ownerReferences:13:[]OwnerReference finalizers:14:[]s \
         managedFields:17:[]ManagedFieldsEntry",
    ),
    (
        "OwnerReference",
        "kind:1:s name:3:s uid:4:s apiVersion:5:s controller:6:b! blockOwnerDeletion:7:b!",
    ),
    (
        "ManagedFieldsEntry",
        "manager:1:s operation:2:s apiVersion:3:s time:4:t fieldsType:6:s fieldsV1:7:j \
         subresource:8:s",
    ),
    (
        "LabelSelector",
        "matchLabels:1:{}s matchExpressions:2:[]LabelSelectorRequirement",
    ),
    (
        "LabelSelectorRequirement",
        "key:1:s operator:2:s values:3:[]s",
    ),
    (
        "ListMeta",
        "selfLink:1:s resourceVersion:2:s continue:3:s remainingItemCount:4:i!",
    ),
    (
        "Status",
        "metadata:1:ListMeta status:2:s message:3:s reason:4:s details:5:StatusDetails \
         code:6:i",
    ),
    (
        "StatusDetails",
        "name:1:s group:2:s kind:3:s causes:4:[]StatusCause retryAfterSeconds:5:i uid:6:s",
    ),
    ("StatusCause", "reason:1:s message:2:s field:3:s"),
    // The body of a typed client's delete, in any group's version.
    (
        "DeleteOptions",
        "gracePeriodSeconds:1:i! preconditions:2:Preconditions orphanDependents:3:b! \
         propagationPolicy:4:s dryRun:5:[]s",
    ),
    ("Preconditions", "uid:1:s resourceVersion:2:s"),
    (
        "Condition",
        "type:1:s status:2:s observedGeneration:3:i lastTransitionTime:4:t reason:5:s \
         message:6:s",
    ),
    // core/v1 objects
    (
        "ConfigMap",
        "metadata:1:ObjectMeta data:2:{}s binaryData:3:{}y immutable:4:b!",
    ),
    (
        "Namespace",
        "metadata:1:ObjectMeta spec:2:NamespaceSpec status:3:-NamespaceStatus",
    ),
    ("NamespaceSpec", "finalizers:1:[]s"),
    (
        "Secret",
        "metadata:1:ObjectMeta data:2:{}y type:3:s stringData:4:{}s immutable:5:b!",
    ),
    (
        "Service",
        "metadata:1:ObjectMeta spec:2:ServiceSpec status:3:-ServiceStatus",
    ),
    (
        "ServiceSpec",
        "ports:1:[]ServicePort selector:2:{}s clusterIP:3:s type:4:s externalIPs:5:[]s \
         sessionAffinity:7:s loadBalancerIP:8:s loadBalancerSourceRanges:9:[]s \
         externalName:10:s externalTrafficPolicy:11:s healthCheckNodePort:12:i \
         publishNotReadyAddresses:13:b sessionAffinityConfig:14:SessionAffinityConfig \
         ipFamilyPolicy:17:s clusterIPs:18:[]s ipFamilies:19:[]s \
         allocateLoadBalancerNodePorts:20:b! loadBalancerClass:21:s \
         internalTrafficPolicy:22:s trafficDistribution:23:s",
    ),
    (
        "ServicePort",
        "name:1:s protocol:2:s port:3:i targetPort:4:x nodePort:5:i appProtocol:6:s",
    ),
    ("SessionAffinityConfig", "clientIP:1:ClientIPConfig"),
    ("ClientIPConfig", "timeoutSeconds:1:i!"),
    (
        "ServiceAccount",
        "metadata:1:ObjectMeta secrets:2:[]ObjectReference \
         imagePullSecrets:3:[]LocalObjectReference automountServiceAccountToken:4:b!",
    ),
    (
        "ObjectReference",
        "kind:1:s namespace:2:s name:3:s uid:4:s apiVersion:5:s resourceVersion:6:s \
         fieldPath:7:s",
    ),
    ("LocalObjectReference", "name:1:s"),
    (
        "ResourceQuota",
        "metadata:1:ObjectMeta spec:2:ResourceQuotaSpec status:3:-ResourceQuotaStatus",
    ),
    (
        "ResourceQuotaSpec",
        "hard:1:{}q scopes:2:[]s scopeSelector:3:ScopeSelector",
    ),
    (
        "ScopeSelector",
        "matchExpressions:1:[]ScopedResourceSelectorRequirement",
    ),
    (
        "ScopedResourceSelectorRequirement",
        "scopeName:1:s operator:2:s values:3:[]s",
    ),
    (
        "Pod",
        "metadata:1:ObjectMeta spec:2:PodSpec status:3:-PodStatus",
    ),
    // `eventTime` is a MicroTime, read here to the second.
    (
        "Event",
        "metadata:1:ObjectMeta involvedObject:2:ObjectReference reason:3:s message:4:s \
         source:5:EventSource firstTimestamp:6:t lastTimestamp:7:t count:8:i type:9:s \
         eventTime:10:t series:11:EventSeries action:12:s related:13:ObjectReference \
         reportingComponent:14:s reportingInstance:15:s",
    ),
    ("EventSource", "component:1:s host:2:s"),
    ("EventSeries", "count:1:i lastObservedTime:2:t"),
    ("LimitRange", "metadata:1:ObjectMeta spec:2:LimitRangeSpec"),
    ("LimitRangeSpec", "limits:1:[]LimitRangeItem"),
    (
        "LimitRangeItem",
        "type:1:s max:2:{}q min:3:{}q default:4:{}q defaultRequest:5:{}q \
         maxLimitRequestRatio:6:{}q",
    ),
    (
        "PodTemplate",
        "metadata:1:ObjectMeta template:2:PodTemplateSpec",
    ),
    (
        "ReplicationController",
        "metadata:1:ObjectMeta spec:2:ReplicationControllerSpec status:3:-ReplicationControllerStatus",
    ),
    (
        "ReplicationControllerSpec",
        "replicas:1:i! selector:2:{}s template:3:PodTemplateSpec minReadySeconds:4:i",
    ),
    ("PodTemplateSpec", "metadata:1:ObjectMeta spec:2:PodSpec"),
    (
        "PersistentVolumeClaim",
        "metadata:1:ObjectMeta spec:2:PVCSpec status:3:-PVCStatus",
    ),
    (
        "PVCSpec",
        "accessModes:1:[]s resources:2:VolumeResourceRequirements volumeName:3:s \
         selector:4:LabelSelector storageClassName:5:s! volumeMode:6:s! \
         dataSource:7:TypedLocalObjectReference dataSourceRef:8:TypedObjectReference \
         volumeAttributesClassName:9:s!",
    ),
    ("VolumeResourceRequirements", "limits:1:{}q requests:2:{}q"),
    (
        "TypedObjectReference",
        "apiGroup:1:s! kind:2:s name:3:s namespace:4:s!",
    ),
    (
        "PVCStatus",
        "phase:1:s accessModes:2:[]s capacity:3:{}q conditions:4:[]PVCCondition \
         allocatedResources:5:{}q currentVolumeAttributesClassName:8:s!",
    ),
    (
        "PVCCondition",
        "type:1:s status:2:s lastProbeTime:3:t lastTransitionTime:4:t reason:5:s message:6:s",
    ),
    // core/v1 pods
    (
        "PodSpec",
        "volumes:1:[]Volume containers:2:[]Container restartPolicy:3:s \
         terminationGracePeriodSeconds:4:i! activeDeadlineSeconds:5:i! dnsPolicy:6:s \
         nodeSelector:7:{}s serviceAccountName:8:s serviceAccount:9:s nodeName:10:s \
         hostNetwork:11:b hostPID:12:b hostIPC:13:b securityContext:14:PodSecurityContext \
         imagePullSecrets:15:[]LocalObjectReference hostname:16:s subdomain:17:s \
         schedulerName:19:s initContainers:20:[]Container \
         automountServiceAccountToken:21:b! tolerations:22:[]Toleration \
         hostAliases:23:[]HostAlias priorityClassName:24:s priority:25:i! \
         shareProcessNamespace:27:b! runtimeClassName:29:s enableServiceLinks:30:b! \
         preemptionPolicy:31:s setHostnameAsFQDN:35:b! hostUsers:37:b!",
    ),
    (
        "Container",
        "name:1:s image:2:s command:3:[]s args:4:[]s workingDir:5:s ports:6:[]ContainerPort \
         env:7:[]EnvVar resources:8:ResourceRequirements volumeMounts:9:[]VolumeMount \
         livenessProbe:10:Probe readinessProbe:11:Probe terminationMessagePath:13:s \
         imagePullPolicy:14:s securityContext:15:SecurityContext stdin:16:b stdinOnce:17:b \
         tty:18:b envFrom:19:[]EnvFromSource terminationMessagePolicy:20:s \
         startupProbe:22:Probe restartPolicy:24:s",
    ),
    (
        "ContainerPort",
        "name:1:s hostPort:2:i containerPort:3:i protocol:4:s hostIP:5:s",
    ),
    ("EnvVar", "name:1:s value:2:s valueFrom:3:EnvVarSource"),
    (
        "EnvVarSource",
        "fieldRef:1:ObjectFieldSelector resourceFieldRef:2:ResourceFieldSelector \
         configMapKeyRef:3:KeySelector secretKeyRef:4:KeySelector",
    ),
    (
        "KeySelector",
        "localObjectReference:1:^LocalObjectReference key:2:s optional:3:b!",
    ),
    ("ObjectFieldSelector", "apiVersion:1:s fieldPath:2:s"),
    (
        "ResourceFieldSelector",
        "containerName:1:s resource:2:s divisor:3:q",
    ),
    (
        "EnvFromSource",
        "prefix:1:s configMapRef:2:EnvSource secretRef:3:EnvSource",
    ),
    (
        "EnvSource",
        "localObjectReference:1:^LocalObjectReference optional:2:b!",
    ),
    (
        "ResourceRequirements",
        "limits:1:{}q requests:2:{}q claims:3:[]ResourceClaim",
    ),
    ("ResourceClaim", "name:1:s request:2:s"),
    (
        "VolumeMount",
        "name:1:s readOnly:2:b mountPath:3:s subPath:4:s mountPropagation:5:s \
         subPathExpr:6:s recursiveReadOnly:7:s",
    ),
    ("Volume", "name:1:s volumeSource:2:^VolumeSource"),
    (
        "VolumeSource",
        "hostPath:1:HostPathVolumeSource emptyDir:2:EmptyDirVolumeSource \
         secret:6:SecretVolumeSource persistentVolumeClaim:10:PVCVolumeSource \
         downwardAPI:16:DownwardAPIVolumeSource configMap:19:ConfigMapVolumeSource \
         projected:26:ProjectedVolumeSource",
    ),
    ("HostPathVolumeSource", "path:1:s type:2:s"),
    ("EmptyDirVolumeSource", "medium:1:s sizeLimit:2:q"),
    (
        "SecretVolumeSource",
        "secretName:1:s items:2:[]KeyToPath defaultMode:3:i! optional:4:b!",
    ),
    (
        "ConfigMapVolumeSource",
        "localObjectReference:1:^LocalObjectReference items:2:[]KeyToPath defaultMode:3:i! \
         optional:4:b!",
    ),
    ("KeyToPath", "key:1:s path:2:s mode:3:i!"),
    (
        "DownwardAPIVolumeSource",
        "items:1:[]DownwardAPIVolumeFile defaultMode:2:i!",
    ),
    (
        "DownwardAPIVolumeFile",
        "path:1:s fieldRef:2:ObjectFieldSelector resourceFieldRef:3:ResourceFieldSelector \
         mode:4:i!",
    ),
    (
        "ProjectedVolumeSource",
        "sources:1:[]VolumeProjection defaultMode:2:i!",
    ),
    (
        "VolumeProjection",
        "secret:1:ProjectedKeys downwardAPI:2:DownwardAPIProjection configMap:3:ProjectedKeys \
         serviceAccountToken:4:ServiceAccountTokenProjection",
    ),
    (
        "ProjectedKeys",
        "localObjectReference:1:^LocalObjectReference items:2:[]KeyToPath optional:4:b!",
    ),
    ("DownwardAPIProjection", "items:1:[]DownwardAPIVolumeFile"),
    (
        "ServiceAccountTokenProjection",
        "audience:1:s expirationSeconds:2:i! path:3:s",
    ),
    ("PVCVolumeSource", "claimName:1:s readOnly:2:b"),
    (
        "Probe",
        "handler:1:^ProbeHandler initialDelaySeconds:2:i timeoutSeconds:3:i periodSeconds:4:i \
         successThreshold:5:i failureThreshold:6:i terminationGracePeriodSeconds:7:i!",
    ),
    (
        "ProbeHandler",
        "exec:1:ExecAction httpGet:2:HTTPGetAction tcpSocket:3:TCPSocketAction \
         grpc:4:GRPCAction",
    ),
    ("ExecAction", "command:1:[]s"),
    (
        "HTTPGetAction",
        "path:1:s port:2:x! host:3:s scheme:4:s httpHeaders:5:[]HTTPHeader",
    ),
    ("HTTPHeader", "name:1:s value:2:s"),
    ("TCPSocketAction", "port:1:x! host:2:s"),
    ("GRPCAction", "port:1:i service:2:s!"),
    (
        "SecurityContext",
        "capabilities:1:Capabilities privileged:2:b! runAsUser:4:i! runAsNonRoot:5:b! \
         readOnlyRootFilesystem:6:b! allowPrivilegeEscalation:7:b! runAsGroup:8:i! \
         procMount:9:s seccompProfile:11:SeccompProfile",
    ),
    ("Capabilities", "add:1:[]s drop:2:[]s"),
    (
        "PodSecurityContext",
        "runAsUser:2:i! runAsNonRoot:3:b! supplementalGroups:4:[]i fsGroup:5:i! \
         runAsGroup:6:i! fsGroupChangePolicy:9:s seccompProfile:10:SeccompProfile",
    ),
    ("SeccompProfile", "type:1:s localhostProfile:2:s!"),
    (
        "Toleration",
        "key:1:s operator:2:s value:3:s effect:4:s tolerationSeconds:5:i!",
    ),
    ("HostAlias", "ip:1:s hostnames:2:[]s"),
    // apps/v1
    (
        "Deployment",
        "metadata:1:ObjectMeta spec:2:DeploymentSpec status:3:-DeploymentStatus",
    ),
    (
        "DeploymentSpec",
        "replicas:1:i! selector:2:LabelSelector template:3:PodTemplateSpec \
         strategy:4:DeploymentStrategy minReadySeconds:5:i revisionHistoryLimit:6:i! \
         paused:7:b progressDeadlineSeconds:9:i!",
    ),
    (
        "DeploymentStrategy",
        "type:1:s rollingUpdate:2:RollingUpdateDeployment",
    ),
    (
        "RollingUpdateDeployment",
        "maxUnavailable:1:x! maxSurge:2:x!",
    ),
    (
        "ReplicaSet",
        "metadata:1:ObjectMeta spec:2:ReplicaSetSpec status:3:-ReplicaSetStatus",
    ),
    (
        "ReplicaSetSpec",
        "replicas:1:i! selector:2:LabelSelector template:3:PodTemplateSpec \
         minReadySeconds:4:i",
    ),
    (
        "StatefulSet",
        "metadata:1:ObjectMeta spec:2:StatefulSetSpec status:3:-StatefulSetStatus",
    ),
    (
        "StatefulSetSpec",
        "replicas:1:i! selector:2:LabelSelector template:3:PodTemplateSpec \
         volumeClaimTemplates:4:[]PersistentVolumeClaim serviceName:5:s \
         podManagementPolicy:6:s updateStrategy:7:StatefulSetUpdateStrategy \
         revisionHistoryLimit:8:i! minReadySeconds:9:i \
         persistentVolumeClaimRetentionPolicy:10:StatefulSetPVCRetentionPolicy \
         ordinals:11:StatefulSetOrdinals",
    ),
    (
        "StatefulSetUpdateStrategy",
        "type:1:s rollingUpdate:2:RollingUpdateStatefulSetStrategy",
    ),
    (
        "RollingUpdateStatefulSetStrategy",
        "partition:1:i! maxUnavailable:2:x!",
    ),
    (
        "StatefulSetPVCRetentionPolicy",
        "whenDeleted:1:s whenScaled:2:s",
    ),
    ("StatefulSetOrdinals", "start:1:i!"),
    (
        "StatefulSetStatus",
        "observedGeneration:1:i replicas:2:i! readyReplicas:3:i currentReplicas:4:i \
         updatedReplicas:5:i currentRevision:6:s updateRevision:7:s collisionCount:9:i! \
         conditions:10:[]ReplicaSetCondition availableReplicas:11:i!",
    ),
    (
        "DaemonSet",
        "metadata:1:ObjectMeta spec:2:DaemonSetSpec status:3:-DaemonSetStatus",
    ),
    (
        "DaemonSetSpec",
        "selector:1:LabelSelector template:2:PodTemplateSpec \
         updateStrategy:3:DaemonSetUpdateStrategy minReadySeconds:4:i \
         revisionHistoryLimit:6:i!",
    ),
    (
        "DaemonSetUpdateStrategy",
        "type:1:s rollingUpdate:2:RollingUpdateDaemonSet",
    ),
    (
        "RollingUpdateDaemonSet",
        "maxUnavailable:1:x! maxSurge:2:x!",
    ),
    (
        "DaemonSetStatus",
        "currentNumberScheduled:1:i! numberMisscheduled:2:i! desiredNumberScheduled:3:i! \
         numberReady:4:i! observedGeneration:5:i updatedNumberScheduled:6:i \
         numberAvailable:7:i numberUnavailable:8:i collisionCount:9:i! \
         conditions:10:[]ReplicaSetCondition",
    ),
    // batch/v1
    (
        "Job",
        "metadata:1:ObjectMeta spec:2:JobSpec status:3:-JobStatus",
    ),
    (
        "JobSpec",
        "parallelism:1:i! completions:2:i! activeDeadlineSeconds:3:i! selector:4:LabelSelector \
         manualSelector:5:b! template:6:PodTemplateSpec backoffLimit:7:i! \
         ttlSecondsAfterFinished:8:i! completionMode:9:s suspend:10:b! \
         backoffLimitPerIndex:12:i! maxFailedIndexes:13:i! podReplacementPolicy:14:s \
         managedBy:15:s",
    ),
    (
        "CronJob",
        "metadata:1:ObjectMeta spec:2:CronJobSpec status:3:-CronJobStatus",
    ),
    (
        "CronJobSpec",
        "schedule:1:s startingDeadlineSeconds:2:i! concurrencyPolicy:3:s suspend:4:b! \
         jobTemplate:5:JobTemplateSpec successfulJobsHistoryLimit:6:i! \
         failedJobsHistoryLimit:7:i! timeZone:8:s!",
    ),
    ("JobTemplateSpec", "metadata:1:ObjectMeta spec:2:JobSpec"),
    // rbac.authorization.k8s.io/v1
    ("Role", "metadata:1:ObjectMeta rules:2:[]PolicyRule"),
    (
        "ClusterRole",
        "metadata:1:ObjectMeta rules:2:[]PolicyRule aggregationRule:3:AggregationRule",
    ),
    ("AggregationRule", "clusterRoleSelectors:1:[]LabelSelector"),
    (
        "PolicyRule",
        "verbs:1:[]s apiGroups:2:[]s resources:3:[]s resourceNames:4:[]s \
         nonResourceURLs:5:[]s",
    ),
    (
        "RoleBinding",
        "metadata:1:ObjectMeta subjects:2:[]Subject roleRef:3:RoleRef",
    ),
    ("Subject", "kind:1:s apiGroup:2:s name:3:s namespace:4:s"),
    ("RoleRef", "apiGroup:1:s! kind:2:s! name:3:s!"),
    // networking.k8s.io/v1
    (
        "Ingress",
        "metadata:1:ObjectMeta spec:2:IngressSpec status:3:-IngressStatus",
    ),
    (
        "IngressSpec",
        "defaultBackend:1:IngressBackend tls:2:[]IngressTLS rules:3:[]IngressRule \
         ingressClassName:4:s!",
    ),
    (
        "IngressBackend",
        "resource:3:TypedLocalObjectReference service:4:IngressServiceBackend",
    ),
    (
        "TypedLocalObjectReference",
        "apiGroup:1:s! kind:2:s name:3:s",
    ),
    (
        "IngressServiceBackend",
        "name:1:s port:2:ServiceBackendPort",
    ),
    ("ServiceBackendPort", "name:1:s number:2:i"),
    ("IngressTLS", "hosts:1:[]s secretName:2:s"),
    (
        "IngressRule",
        "host:1:s ingressRuleValue:2:^IngressRuleValue",
    ),
    ("IngressRuleValue", "http:1:HTTPIngressRuleValue"),
    ("HTTPIngressRuleValue", "paths:1:[]HTTPIngressPath"),
    (
        "HTTPIngressPath",
        "path:1:s backend:2:IngressBackend pathType:3:s!",
    ),
    // policy/v1
    (
        "PodDisruptionBudget",
        "metadata:1:ObjectMeta spec:2:PodDisruptionBudgetSpec status:3:-PodDisruptionBudgetStatus",
    ),
    (
        "PodDisruptionBudgetSpec",
        "minAvailable:1:x! selector:2:LabelSelector maxUnavailable:3:x! \
         unhealthyPodEvictionPolicy:4:s!",
    ),
    // scheduling.k8s.io/v1
    (
        "PriorityClass",
        "metadata:1:ObjectMeta value:2:i! globalDefault:3:b description:4:s \
         preemptionPolicy:5:s!",
    ),
    // autoscaling
    (
        "HPAv1",
        "metadata:1:ObjectMeta spec:2:HPASpecV1 status:3:-HPAStatusV1",
    ),
    (
        "HPASpecV1",
        "scaleTargetRef:1:CrossVersionObjectReference minReplicas:2:i! maxReplicas:3:i \
         targetCPUUtilizationPercentage:4:i!",
    ),
    (
        "CrossVersionObjectReference",
        "kind:1:s name:2:s apiVersion:3:s",
    ),
    (
        "HPAv2",
        "metadata:1:ObjectMeta spec:2:HPASpecV2 status:3:-HPAStatusV2",
    ),
    (
        "HPASpecV2",
        "scaleTargetRef:1:CrossVersionObjectReference minReplicas:2:i! maxReplicas:3:i \
         metrics:4:[]MetricSpec",
    ),
    ("MetricSpec", "type:1:s resource:4:ResourceMetricSource"),
    ("ResourceMetricSource", "name:1:s target:2:MetricTarget"),
    (
        "MetricTarget",
        "type:1:s value:2:q averageValue:3:q averageUtilization:4:i!",
    ),
    // The `scale` subresource of workloads.
    (
        "Scale",
        "metadata:1:ObjectMeta spec:2:ScaleSpec status:3:-ScaleStatus",
    ),
    ("ScaleSpec", "replicas:1:i!"),
    ("ScaleStatus", "replicas:1:i! selector:2:s"),
    // authentication.k8s.io/v1
    (
        "TokenRequest",
        "metadata:1:ObjectMeta spec:2:TokenRequestSpec status:3:-TokenRequestStatus",
    ),
    (
        "TokenRequestSpec",
        "audiences:1:[]s boundObjectRef:3:BoundObjectReference expirationSeconds:4:i!",
    ),
    (
        "BoundObjectReference",
        "kind:1:s apiVersion:2:s name:3:s uid:4:s",
    ),
    (
        "TokenReview",
        "metadata:1:ObjectMeta spec:2:TokenReviewSpec status:3:-TokenReviewStatus",
    ),
    ("TokenReviewSpec", "token:1:s audiences:2:[]s"),
    (
        "SelfSubjectReview",
        "metadata:1:ObjectMeta status:2:-SelfSubjectReviewStatus",
    ),
    // authorization.k8s.io/v1
    (
        "SelfSubjectAccessReview",
        "metadata:1:ObjectMeta spec:2:SelfSubjectAccessReviewSpec status:3:-SubjectAccessReviewStatus",
    ),
    (
        "SelfSubjectAccessReviewSpec",
        "resourceAttributes:1:ResourceAttributes nonResourceAttributes:2:NonResourceAttributes",
    ),
    (
        "SubjectAccessReview",
        "metadata:1:ObjectMeta spec:2:SubjectAccessReviewSpec status:3:-SubjectAccessReviewStatus",
    ),
    (
        "SubjectAccessReviewSpec",
        "resourceAttributes:1:ResourceAttributes nonResourceAttributes:2:NonResourceAttributes \
         user:3:s groups:4:[]s extra:5:{}L uid:6:s",
    ),
    (
        "ResourceAttributes",
        "namespace:1:s verb:2:s group:3:s version:4:s resource:5:s subresource:6:s name:7:s \
         fieldSelector:8:SelectorAttributes labelSelector:9:SelectorAttributes",
    ),
    (
        "SelectorAttributes",
        "rawSelector:1:s requirements:2:[]LabelSelectorRequirement",
    ),
    ("NonResourceAttributes", "path:1:s verb:2:s"),
    (
        "SelfSubjectRulesReview",
        "metadata:1:ObjectMeta spec:2:SelfSubjectRulesReviewSpec status:3:-SubjectRulesReviewStatus",
    ),
    ("SelfSubjectRulesReviewSpec", "namespace:1:s"),
    // statuses, which answers carry and requests leave out
    (
        "NamespaceStatus",
        "phase:1:s conditions:2:[]NamespaceCondition",
    ),
    (
        "NamespaceCondition",
        "type:1:s status:2:s lastTransitionTime:4:t reason:5:s message:6:s",
    ),
    (
        "ServiceStatus",
        "loadBalancer:1:LoadBalancerStatus conditions:2:[]Condition",
    ),
    ("LoadBalancerStatus", "ingress:1:[]LoadBalancerIngress"),
    (
        "LoadBalancerIngress",
        "ip:1:s hostname:2:s ipMode:3:s! ports:4:[]PortStatus",
    ),
    ("PortStatus", "port:1:i protocol:2:s error:3:s!"),
    ("ResourceQuotaStatus", "hard:1:{}q used:2:{}q"),
    (
        "PodStatus",
        "phase:1:s conditions:2:[]PodCondition message:3:s reason:4:s hostIP:5:s podIP:6:s \
         startTime:7:t containerStatuses:8:[]ContainerStatus qosClass:9:s \
         initContainerStatuses:10:[]ContainerStatus nominatedNodeName:11:s podIPs:12:[]PodIP \
         ephemeralContainerStatuses:13:[]ContainerStatus hostIPs:16:[]PodIP \
         observedGeneration:17:i",
    ),
    (
        "PodCondition",
        "type:1:s status:2:s lastProbeTime:3:t lastTransitionTime:4:t reason:5:s message:6:s \
         observedGeneration:7:i",
    ),
    ("PodIP", "ip:1:s"),
    (
        "ContainerStatus",
        "name:1:s state:2:ContainerState lastState:3:ContainerState ready:4:b! \
         restartCount:5:i! image:6:s! imageID:7:s! containerID:8:s started:9:b! \
         allocatedResources:10:{}q resources:11:ResourceRequirements \
         volumeMounts:12:[]VolumeMountStatus",
    ),
    (
        "ContainerState",
        "waiting:1:ContainerStateWaiting running:2:ContainerStateRunning \
         terminated:3:ContainerStateTerminated",
    ),
    ("ContainerStateWaiting", "reason:1:s message:2:s"),
    ("ContainerStateRunning", "startedAt:1:t"),
    (
        "ContainerStateTerminated",
        "exitCode:1:i! signal:2:i reason:3:s message:4:s startedAt:5:t finishedAt:6:t \
         containerID:7:s",
    ),
    (
        "VolumeMountStatus",
        "name:1:s mountPath:2:s readOnly:3:b recursiveReadOnly:4:s!",
    ),
    (
        "ReplicationControllerStatus",
        "replicas:1:i! fullyLabeledReplicas:2:i readyReplicas:4:i availableReplicas:5:i \
         observedGeneration:3:i conditions:6:[]ReplicaSetCondition",
    ),
    (
        "DeploymentStatus",
        "observedGeneration:1:i replicas:2:i updatedReplicas:3:i availableReplicas:4:i \
         unavailableReplicas:5:i conditions:6:[]DeploymentCondition readyReplicas:7:i \
         collisionCount:8:i! terminatingReplicas:9:i!",
    ),
    (
        "DeploymentCondition",
        "type:1:s status:2:s reason:4:s message:5:s lastUpdateTime:6:t \
         lastTransitionTime:7:t",
    ),
    (
        "ReplicaSetStatus",
        "replicas:1:i! fullyLabeledReplicas:2:i observedGeneration:3:i readyReplicas:4:i \
         availableReplicas:5:i conditions:6:[]ReplicaSetCondition terminatingReplicas:7:i!",
    ),
    (
        "ReplicaSetCondition",
        "type:1:s status:2:s lastTransitionTime:3:t reason:4:s message:5:s",
    ),
    (
        "JobStatus",
        "conditions:1:[]JobCondition startTime:2:t completionTime:3:t active:4:i \
         succeeded:5:i failed:6:i completedIndexes:7:s \
         uncountedTerminatedPods:8:UncountedTerminatedPods ready:9:i! failedIndexes:10:s! \
         terminating:11:i!",
    ),
    (
        "JobCondition",
        "type:1:s status:2:s lastProbeTime:3:t lastTransitionTime:4:t reason:5:s message:6:s",
    ),
    ("UncountedTerminatedPods", "succeeded:1:[]s failed:2:[]s"),
    (
        "CronJobStatus",
        "active:1:[]ObjectReference lastScheduleTime:4:t lastSuccessfulTime:5:t",
    ),
    ("IngressStatus", "loadBalancer:1:IngressLoadBalancerStatus"),
    (
        "IngressLoadBalancerStatus",
        "ingress:1:[]IngressLoadBalancerIngress",
    ),
    (
        "IngressLoadBalancerIngress",
        "ip:1:s hostname:2:s ports:4:[]IngressPortStatus",
    ),
    ("IngressPortStatus", "port:1:i protocol:2:s error:3:s!"),
    (
        "PodDisruptionBudgetStatus",
        "observedGeneration:1:i disruptedPods:2:{}t disruptionsAllowed:3:i \
         currentHealthy:4:i desiredHealthy:5:i expectedPods:6:i conditions:7:[]Condition",
    ),
    (
        "HPAStatusV1",
        "observedGeneration:1:i! lastScaleTime:2:t currentReplicas:3:i desiredReplicas:4:i \
         currentCPUUtilizationPercentage:5:i!",
    ),
    (
        "HPAStatusV2",
        "observedGeneration:1:i! lastScaleTime:2:t currentReplicas:3:i desiredReplicas:4:i \
         currentMetrics:5:[]MetricStatus conditions:6:[]HPACondition",
    ),
    ("MetricStatus", "type:1:s resource:4:ResourceMetricStatus"),
    (
        "ResourceMetricStatus",
        "name:1:s current:2:MetricValueStatus",
    ),
    (
        "MetricValueStatus",
        "value:1:q averageValue:2:q averageUtilization:3:i!",
    ),
    (
        "HPACondition",
        "type:1:s status:2:s lastTransitionTime:3:t reason:4:s message:5:s",
    ),
    ("TokenRequestStatus", "token:1:s expirationTimestamp:2:t"),
    (
        "TokenReviewStatus",
        "authenticated:1:b user:2:UserInfo error:3:s audiences:4:[]s",
    ),
    ("SelfSubjectReviewStatus", "userInfo:1:UserInfo"),
    ("UserInfo", "username:1:s uid:2:s groups:3:[]s extra:4:{}L"),
    (
        "SubjectAccessReviewStatus",
        "allowed:1:b reason:2:s evaluationError:3:s denied:4:b",
    ),
    (
        "SubjectRulesReviewStatus",
        "resourceRules:1:[]ResourceRule nonResourceRules:2:[]NonResourceRule incomplete:3:b \
         evaluationError:4:s",
    ),
    (
        "ResourceRule",
        "verbs:1:[]s apiGroups:2:[]s resources:3:[]s resourceNames:4:[]s",
    ),
    ("NonResourceRule", "verbs:1:[]s nonResourceURLs:2:[]s"),
];

fn parse_field(spec: &'static str) -> Field {
    let mut parts = spec.splitn(3, ':');
    let name = parts.next().unwrap_or("");
    let tag = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let mut ty = parts.next().unwrap_or("");
    let keep_zero = ty.ends_with('!');
    ty = ty.trim_end_matches('!');
    let repeated = ty.starts_with("[]");
    let map = ty.starts_with("{}");
    ty = ty.trim_start_matches("[]").trim_start_matches("{}");
    let inline = ty.starts_with('^');
    ty = ty.trim_start_matches('^');
    let answer_only = ty.len() > 1 && ty.starts_with('-');
    if answer_only {
        ty = &ty[1..];
    }
    let kind = match ty {
        "s" => Kind::String,
        "b" => Kind::Bool,
        "i" => Kind::Int,
        "y" => Kind::Bytes,
        "t" => Kind::Time,
        "q" => Kind::Quantity,
        "x" => Kind::IntOrString,
        "j" => Kind::Json,
        "L" => Kind::StringList,
        "-" => Kind::Ignored,
        m => Kind::Message(m),
    };
    Field {
        name,
        tag,
        kind,
        repeated,
        map,
        inline,
        keep_zero,
        answer_only,
    }
}

fn messages() -> &'static HashMap<&'static str, Message> {
    static MESSAGES_BY_NAME: OnceLock<HashMap<&'static str, Message>> = OnceLock::new();
    MESSAGES_BY_NAME.get_or_init(|| {
        MESSAGES
            .iter()
            .map(|(name, fields)| {
                let fields = fields.split_whitespace().map(parse_field).collect();
                (*name, Message { name, fields })
            })
            .collect()
    })
}

/// The message named `name`.
pub fn message(name: &str) -> Option<&'static Message> {
    messages().get(name)
}

/// The message of objects of `kind` in `api_version`.
pub fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    KINDS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
        .and_then(|(_, _, m)| message(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_names_a_known_type_and_numbers_are_unique_per_message() {
        for (name, msg) in messages() {
            let mut tags = Vec::new();
            for f in &msg.fields {
                assert!(f.tag > 0 && !f.name.is_empty(), "{name}: {f:?}");
                assert!(!tags.contains(&f.tag), "{name}: field {} twice", f.tag);
                tags.push(f.tag);
                if let Kind::Message(m) = f.kind {
                    assert!(message(m).is_some(), "{name}.{}: no message {m}", f.name);
                }
                assert!(!(f.inline && f.repeated), "{name}.{}", f.name);
            }
        }
        for (av, kind, _) in KINDS {
            assert!(message_for(av, kind).is_some(), "{av} {kind}");
        }
    }
}
