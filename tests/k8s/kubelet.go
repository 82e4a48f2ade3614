package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// fakeKubelet stands in for the scheduler and the kubelet of one Node: it binds every
// unscheduled Pod to its Node (a DaemonSet's Pods too: the daemonset controller leaves
// them unbound with a node affinity naming the Node), reports bound Pods Running and
// Ready once readyAfter has passed since it first saw them bound, each with an address
// of its own in the pod network, and finishes graceful deletions. A StatefulSet's Pods
// are therefore Ready one after the other, as the statefulset controller creates them.
//
// A Pod that runs to completion (a Job's, or any with restartPolicy Never or
// OnFailure) goes on: readyAfter after it turned Running its containers exit 0 and it
// is Succeeded, so a Job, and a CronJob's Jobs, complete through the real job
// controller.
//
// A Pod with a container image tagged `broken` never runs: it stays Pending with the
// container waiting in ImagePullBackOff, so a Deployment of it reaches
// ProgressDeadlineExceeded through the real deployment controller, and a Job of it
// never completes (it fails only by its own activeDeadlineSeconds).
type fakeKubelet struct {
	client     kubernetes.Interface
	node       string
	readyAfter time.Duration

	mu sync.Mutex
	// since is when a bound Pod's current step began: bound (waiting to run) or, for
	// a Pod that runs to completion, Running (waiting to exit).
	since map[types.UID]time.Time
	// lastIP numbers the Pod addresses handed out so far.
	lastIP int
}

func (k *fakeKubelet) run(ctx context.Context) error {
	if err := k.registerNode(ctx); err != nil {
		return fmt.Errorf("register node %s: %w", k.node, err)
	}
	k.since = map[types.UID]time.Time{}
	factory := informers.NewSharedInformerFactory(k.client, 0)
	pods := factory.Core().V1().Pods()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	// Two workers: one slow write never holds up every other Pod.
	for range 2 {
		go func() {
			for {
				key, quit := queue.Get()
				if quit {
					return
				}
				requeue, err := k.sync(ctx, pods.Lister(), key)
				switch {
				case err != nil:
					if ctx.Err() == nil {
						log.Printf("fake kubelet: pod %s: %v", key, err)
					}
					queue.AddRateLimited(key)
				case requeue > 0:
					queue.Forget(key)
					queue.AddAfter(key, requeue)
				default:
					queue.Forget(key)
				}
				queue.Done(key)
			}
		}()
	}
	return nil
}

// registerNode creates the Node as a kubelet does, Ready and with room for any number
// of Pods, and leaves it without taints, so the daemonset controller places a Pod of
// every DaemonSet on it.
func (k *fakeKubelet) registerNode(ctx context.Context) error {
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("10000"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: k.node,
			Labels: map[string]string{
				"kubernetes.io/hostname": k.node,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
	}
	created, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = k.client.CoreV1().Nodes().Get(ctx, k.node, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Capacity:    resources,
		Allocatable: resources,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "fake kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: k.node}},
		NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v0.0.0-fake", OperatingSystem: "linux", Architecture: "amd64"},
	}
	updated, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	// The apiserver taints a new Node not-ready (NoSchedule) until the node lifecycle
	// controller, which does not run here, sees it Ready and lifts the taint: lift it
	// as that controller would, or the daemonset controller leaves the Node out.
	var taints []corev1.Taint
	for _, t := range updated.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady {
			taints = append(taints, t)
		}
	}
	if len(taints) == len(updated.Spec.Taints) {
		return nil
	}
	updated.Spec.Taints = taints
	_, err = k.client.CoreV1().Nodes().Update(ctx, updated, metav1.UpdateOptions{})
	return err
}

// sync moves one Pod one step; a positive duration asks to look again after it.
func (k *fakeKubelet) sync(ctx context.Context, lister corelisters.PodLister, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pods := k.client.CoreV1().Pods(ns)
	switch {
	case pod.DeletionTimestamp != nil:
		// The kubelet confirms a graceful deletion once the containers stopped; here
		// there are none, so at once (a Pod not yet bound is deleted by the apiserver).
		if pod.Spec.NodeName != k.node {
			return 0, nil
		}
		zero := int64(0)
		err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return 0, nil
		}
		k.forget(pod.UID)
		return 0, err
	case pod.Spec.NodeName == "":
		if pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != corev1.DefaultSchedulerName {
			return 0, nil
		}
		err := pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.node},
		}, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return 0, nil
		}
		return 0, err
	case pod.Spec.NodeName != k.node:
		return 0, nil
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return 0, nil
	}

	if image, broken := brokenImage(pod); broken {
		if podCondition(pod, corev1.ContainersReady) != nil && pod.Status.ContainerStatuses != nil {
			return 0, nil
		}
		_, err := pods.UpdateStatus(ctx, k.withStatus(pod, imagePullBackOff, image), metav1.UpdateOptions{})
		return 0, ignoreGone(err)
	}
	completes := runsToCompletion(pod)
	running := pod.Status.Phase == corev1.PodRunning
	if running && !completes {
		return 0, nil
	}
	if wait := k.waitLeft(pod.UID); wait > 0 {
		return wait, nil
	}
	next := podRunning
	if running {
		next = podSucceeded
	}
	_, err = pods.UpdateStatus(ctx, k.withStatus(pod, next, ""), metav1.UpdateOptions{})
	if err == nil {
		if next == podRunning && completes {
			// Its containers exit readyAfter from now.
			k.restartClock(pod.UID)
		} else {
			k.forget(pod.UID)
		}
	}
	return 0, ignoreGone(err)
}

// runsToCompletion tells a Pod whose containers exit (a Job's) from one the kubelet
// keeps running (restartPolicy Always, the default).
func runsToCompletion(pod *corev1.Pod) bool {
	if ref := metav1.GetControllerOf(pod); ref != nil && ref.Kind == "Job" && strings.HasPrefix(ref.APIVersion, "batch/") {
		return true
	}
	return pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
}

// waitLeft is how long the Pod's current step still lasts; its first call starts it.
func (k *fakeKubelet) waitLeft(uid types.UID) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	first, ok := k.since[uid]
	if !ok {
		first = time.Now()
		k.since[uid] = first
	}
	return time.Until(first.Add(k.readyAfter))
}

// restartClock starts the Pod's next step now.
func (k *fakeKubelet) restartClock(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.since[uid] = time.Now()
}

func (k *fakeKubelet) forget(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.since, uid)
}

// podIP is the Pod's address in the pod network (10.244.0.0/16): the one it has, or the
// next free one. Distinct addresses keep the endpoints and endpointslice controllers'
// answers as they are in a cluster.
func (k *fakeKubelet) podIP(pod *corev1.Pod) string {
	if pod.Status.PodIP != "" {
		return pod.Status.PodIP
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastIP++
	n := k.lastIP % (256 * 250)
	return fmt.Sprintf("10.244.%d.%d", n/250, n%250+2)
}

func ignoreGone(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		// Gone, or changed since the informer saw it: the next event brings it back.
		return nil
	}
	return err
}

// imageTag is the tag of an image reference: after the last ':' of the last path
// element, before any digest.
func imageTag(image string) string {
	if at := strings.IndexByte(image, '@'); at >= 0 {
		image = image[:at]
	}
	last := image[strings.LastIndexByte(image, '/')+1:]
	if colon := strings.LastIndexByte(last, ':'); colon >= 0 {
		return last[colon+1:]
	}
	return "latest"
}

func brokenImage(pod *corev1.Pod) (string, bool) {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if imageTag(c.Image) == "broken" {
			return c.Image, true
		}
	}
	return "", false
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// podState is a step of a Pod's life as the fake kubelet reports it.
type podState int

const (
	// podRunning: every container runs and is ready.
	podRunning podState = iota
	// podSucceeded: every container exited 0 (a Pod that does not restart).
	podSucceeded
	// imagePullBackOff: a container's image cannot be pulled; nothing runs.
	imagePullBackOff
)

// withStatus is the status a kubelet reports for a Pod in state, brokenImage naming
// the image that cannot be pulled.
func (k *fakeKubelet) withStatus(pod *corev1.Pod, state podState, brokenImage string) *corev1.Pod {
	pod = pod.DeepCopy()
	now := metav1.Now()
	status, reason := corev1.ConditionTrue, ""
	switch state {
	case imagePullBackOff:
		status, reason = corev1.ConditionFalse, "ContainersNotReady"
	case podSucceeded:
		status, reason = corev1.ConditionFalse, "PodCompleted"
	}
	set := func(t corev1.PodConditionType, s corev1.ConditionStatus, reason string) {
		if c := podCondition(pod, t); c != nil {
			if c.Status != s {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason = s, reason
			return
		}
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now})
	}
	set(corev1.PodScheduled, corev1.ConditionTrue, "")
	set(corev1.PodInitialized, corev1.ConditionTrue, "")
	set(corev1.ContainersReady, status, reason)
	set(corev1.PodReady, status, reason)
	pod.Status.HostIP = "127.0.0.1"
	pod.Status.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	ip := k.podIP(pod)
	pod.Status.PodIP = ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if pod.Status.StartTime == nil {
		pod.Status.StartTime = &now
	}
	// started is when the containers started: kept from the Running status.
	started := now
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
			break
		}
	}
	exited := func(c corev1.Container) corev1.ContainerStatus {
		return corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image,
			ContainerID: "fake://" + string(pod.UID) + "/" + c.Name,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: now,
				ContainerID: "fake://" + string(pod.UID) + "/" + c.Name,
			}},
		}
	}
	runs := func(c corev1.Container) corev1.ContainerStatus {
		yes := true
		return corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: &yes,
			ContainerID: "fake://" + string(pod.UID) + "/" + c.Name,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		}
	}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		var cs corev1.ContainerStatus
		switch state {
		case podRunning:
			cs = runs(c)
		case podSucceeded:
			cs = exited(c)
		case imagePullBackOff:
			cs = corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image}
			cs.State.Waiting = &corev1.ContainerStateWaiting{
				Reason:  "ImagePullBackOff",
				Message: fmt.Sprintf("Back-off pulling image %q", brokenImage),
			}
		}
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, cs)
	}
	if state != imagePullBackOff {
		// Init containers ran to completion before the others started; sidecars
		// (restartPolicy Always) run beside them and stop with them.
		pod.Status.InitContainerStatuses = nil
		for _, c := range pod.Spec.InitContainers {
			cs := exited(c)
			if state == podRunning && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				cs = runs(c)
			}
			pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, cs)
		}
	}
	switch state {
	case podRunning:
		pod.Status.Phase = corev1.PodRunning
	case podSucceeded:
		pod.Status.Phase = corev1.PodSucceeded
	case imagePullBackOff:
		pod.Status.Phase = corev1.PodPending
	}
	return pod
}
