// Command protoclient speaks Kubernetes' protobuf encoding with client-go's own
// codecs, for rollwave's tests of the simulated API server:
//
//	protoclient decode            reads one protobuf answer (k8s\0 envelope) on stdin
//	                              and prints the object as JSON, decoded by client-go
//	protoclient run KUBECONFIG NS runs client-go's typed clients in protobuf against a
//	                              cluster: creates, reads, lists, updates, patches and
//	                              deletes objects in namespace NS, printing one JSON
//	                              line per step and the Content-Type of every answer
//
// It lives in the control plane's module so its client-go is the one pinned there.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "decode":
		os.Exit(decode())
	case "run":
		if len(os.Args) != 4 {
			usage()
		}
		os.Exit(run(os.Args[2], os.Args[3]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: protoclient decode < BODY | protoclient run KUBECONFIG NAMESPACE")
	os.Exit(2)
}

func decode() int {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: reading stdin: %v\n", err)
		return 1
	}
	obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: decoding: %v\n", err)
		return 1
	}
	obj.GetObjectKind().SetGroupVersionKind(*gvk)
	out, err := json.Marshal(obj)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: encoding JSON: %v\n", err)
		return 1
	}
	fmt.Println(string(out))
	return 0
}

// seen records the Content-Type of every answer.
type seen struct {
	next  http.RoundTripper
	mu    sync.Mutex
	types map[string]int
}

func (s *seen) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		s.types[resp.Header.Get("Content-Type")]++
		s.mu.Unlock()
	}
	return resp, err
}

func run(kubeconfig, ns string) int {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	config.ContentType = "application/vnd.kubernetes.protobuf"
	config.AcceptContentTypes = "application/vnd.kubernetes.protobuf"
	rec := &seen{types: map[string]int{}}
	config.Wrap(func(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec })
	cs, err := kubernetes.NewForConfig(config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	ctx := context.Background()
	failed := false
	step := func(name string, v any, err error) {
		line := map[string]any{"step": name}
		if err != nil {
			failed = true
			line["error"] = err.Error()
		} else {
			line["result"] = v
		}
		out, _ := json.Marshal(line)
		fmt.Println(string(out))
	}

	cms := cs.CoreV1().ConfigMaps(ns)
	cm, err := cms.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings", Labels: map[string]string{"app": "web"}},
		Data:       map[string]string{"mode": "fast"},
	}, metav1.CreateOptions{})
	step("create configmap", map[string]any{"name": cm.Name, "data": cm.Data, "uid": cm.UID != ""}, err)
	if err != nil {
		return 1
	}
	// Watched from the created version on: the update and the patch below arrive
	// as protobuf WatchEvents.
	w, err := cms.Watch(ctx, metav1.ListOptions{
		FieldSelector:   "metadata.name=settings",
		ResourceVersion: cm.ResourceVersion,
	})
	if err != nil {
		step("watch configmap", nil, err)
		return 1
	}
	defer w.Stop()
	got, err := cms.Get(ctx, "settings", metav1.GetOptions{})
	step("get configmap", map[string]any{"data": got.Data, "labels": got.Labels, "resourceVersion": got.ResourceVersion == cm.ResourceVersion}, err)
	got.Data["mode"] = "slow"
	upd, err := cms.Update(ctx, got, metav1.UpdateOptions{})
	step("update configmap", map[string]any{"data": upd.Data}, err)
	pat, err := cms.Patch(ctx, "settings", types.StrategicMergePatchType, []byte(`{"data":{"extra":"1"}}`), metav1.PatchOptions{})
	step("patch configmap", map[string]any{"data": pat.Data}, err)
	var events []map[string]any
	timeout := time.After(20 * time.Second)
	for len(events) < 2 {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				step("watch configmap", events, fmt.Errorf("the watch ended early"))
				return 1
			}
			e := map[string]any{"type": ev.Type}
			if c, isCM := ev.Object.(*corev1.ConfigMap); isCM {
				e["data"] = c.Data
			} else {
				e["object"] = fmt.Sprintf("%T", ev.Object)
			}
			events = append(events, e)
		case <-timeout:
			step("watch configmap", events, fmt.Errorf("no events within 20s"))
			return 1
		}
	}
	step("watch configmap", events, nil)
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	var names []string
	if err == nil {
		for _, it := range list.Items {
			names = append(names, it.Name)
		}
	}
	step("list configmaps", map[string]any{"names": names, "resourceVersion": err == nil && list.ResourceVersion != ""}, err)

	replicas := int32(2)
	labels := map[string]string{"app": "web"}
	dep, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "nginx:1.27",
					Ports: []corev1.ContainerPort{{ContainerPort: 80}},
				}}},
			},
		},
	}, metav1.CreateOptions{})
	if err == nil {
		c := dep.Spec.Template.Spec.Containers[0]
		step("create deployment", map[string]any{
			"replicas": *dep.Spec.Replicas, "strategy": dep.Spec.Strategy.Type,
			"maxSurge":        dep.Spec.Strategy.RollingUpdate.MaxSurge.String(),
			"imagePullPolicy": c.ImagePullPolicy, "protocol": c.Ports[0].Protocol,
			"revisionHistoryLimit": *dep.Spec.RevisionHistoryLimit,
		}, nil)
	} else {
		step("create deployment", nil, err)
	}

	deps := cs.AppsV1().Deployments(ns)
	scale, err := deps.GetScale(ctx, "web", metav1.GetOptions{})
	if err == nil {
		scale.Spec.Replicas = 3
		// Unconditional: the real controllers may write the Deployment meanwhile.
		scale.ResourceVersion = ""
		scale, err = deps.UpdateScale(ctx, "web", scale, metav1.UpdateOptions{})
	}
	if err == nil {
		step("scale deployment", map[string]any{"replicas": scale.Spec.Replicas, "selector": scale.Status.Selector}, nil)
	} else {
		step("scale deployment", nil, err)
	}

	_, err = cms.Get(ctx, "missing", metav1.GetOptions{})
	step("get a missing configmap", map[string]any{"notFound": apierrors.IsNotFound(err), "message": fmt.Sprint(err)}, nil)
	_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}}, metav1.CreateOptions{})
	step("create it again", map[string]any{"alreadyExists": apierrors.IsAlreadyExists(err)}, nil)

	err = cms.Delete(ctx, "settings", metav1.DeleteOptions{})
	step("delete configmap", "deleted", err)
	_, err = cms.Get(ctx, "settings", metav1.GetOptions{})
	step("get it after delete", map[string]any{"notFound": apierrors.IsNotFound(err)}, nil)

	var ctypes []string
	for t := range rec.types {
		ctypes = append(ctypes, t)
	}
	sort.Strings(ctypes)
	step("content types", ctypes, nil)
	if failed {
		return 1
	}
	return 0
}
