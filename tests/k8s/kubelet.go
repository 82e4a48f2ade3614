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
// unscheduled Pod to its Node, reports bound Pods Running and Ready once readyAfter has
// passed since it first saw them bound, and finishes graceful deletions. A Pod with a
// container image tagged `broken` never becomes Ready: it stays Pending with the
// container waiting in ImagePullBackOff, so a Deployment of it reaches
// ProgressDeadlineExceeded through the real deployment controller.
type fakeKubelet struct {
	client     kubernetes.Interface
	node       string
	readyAfter time.Duration

	mu        sync.Mutex
	boundSeen map[types.UID]time.Time
}

func (k *fakeKubelet) run(ctx context.Context) error {
	if err := k.registerNode(ctx); err != nil {
		return fmt.Errorf("register node %s: %w", k.node, err)
	}
	k.boundSeen = map[types.UID]time.Time{}
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

func (k *fakeKubelet) registerNode(ctx context.Context) error {
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("10000"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   k.node,
			Labels: map[string]string{"kubernetes.io/hostname": k.node, "kubernetes.io/os": "linux"},
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
	_, err = k.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
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
		_, err := pods.UpdateStatus(ctx, withStatus(pod, false, image), metav1.UpdateOptions{})
		return 0, ignoreGone(err)
	}
	if c := podCondition(pod, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
		return 0, nil
	}
	if wait := k.waitLeft(pod.UID); wait > 0 {
		return wait, nil
	}
	_, err = pods.UpdateStatus(ctx, withStatus(pod, true, ""), metav1.UpdateOptions{})
	if err == nil {
		k.forget(pod.UID)
	}
	return 0, ignoreGone(err)
}

func (k *fakeKubelet) waitLeft(uid types.UID) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	first, ok := k.boundSeen[uid]
	if !ok {
		first = time.Now()
		k.boundSeen[uid] = first
	}
	return time.Until(first.Add(k.readyAfter))
}

func (k *fakeKubelet) forget(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.boundSeen, uid)
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

// withStatus is the status a kubelet reports for a Pod whose containers all run and
// pass readiness (ready), or whose image cannot be pulled (brokenImage).
func withStatus(pod *corev1.Pod, ready bool, brokenImage string) *corev1.Pod {
	pod = pod.DeepCopy()
	now := metav1.Now()
	status := corev1.ConditionTrue
	reason := ""
	if !ready {
		status, reason = corev1.ConditionFalse, "ContainersNotReady"
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
	pod.Status.PodIP = "10.244.0.1"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "10.244.0.1"}}
	if pod.Status.StartTime == nil {
		pod.Status.StartTime = &now
	}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image}
		if ready {
			started := true
			cs.Ready, cs.Started = true, &started
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
			cs.ContainerID = "fake://" + string(pod.UID) + "/" + c.Name
		} else {
			cs.State.Waiting = &corev1.ContainerStateWaiting{
				Reason:  "ImagePullBackOff",
				Message: fmt.Sprintf("Back-off pulling image %q", brokenImage),
			}
		}
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, cs)
	}
	if ready {
		pod.Status.Phase = corev1.PodRunning
	} else {
		pod.Status.Phase = corev1.PodPending
	}
	return pod
}
