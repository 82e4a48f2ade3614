package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// controllers are the kube-controller-manager controllers the tests rely on (names as
// in k8s.io/kubernetes/cmd/kube-controller-manager/names): every workload kind an app
// may hold (Deployment, StatefulSet, DaemonSet, Job, CronJob), what a Service and a
// PodDisruptionBudget get from their controllers, the clean-up of finished Jobs, of
// owned objects and of deleted namespaces, ServiceAccounts and their tokens, the
// autoscaler, and the aggregation of ClusterRoles (aggregationRule). Left out are those that look after Nodes, volumes, certificates and
// quotas: with one fake Node and no storage they would only cost CPU here.
var controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"cronjob-controller",
	"ttl-after-finished-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"disruption-controller",
	"clusterrole-aggregation-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"horizontal-pod-autoscaler-controller",
	"root-ca-certificate-publisher-controller",
}

func run(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	readyAfter := fs.Duration("pod-ready-after", 2*time.Second, "how long a bound Pod waits before the fake kubelet reports it Ready (and a Job's Pod, as long again before it reports it Succeeded)")
	withStdin := fs.Bool("exit-with-stdin", false, "stop when stdin reaches end of file (the parent holding the pipe exited)")
	if len(args) < 1 || strings.HasPrefix(args[0], "-") {
		usage()
	}
	out, err := filepath.Abs(args[0])
	if err != nil {
		return fail(err)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cp := &controlPlane{out: out, data: filepath.Join(out, "data")}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *withStdin {
		// A test process may keep one control plane for its whole life and never get to
		// run a destructor: its exit closes the pipe, and that is the signal to stop.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}
	started := time.Now()
	err = cp.start(ctx, *readyAfter)
	if err == nil {
		fmt.Fprintf(os.Stderr, "control plane ready in %.1fs: KUBECONFIG=%s\n", time.Since(started).Seconds(), filepath.Join(out, "kubeconfig"))
		fmt.Println("ready")
		err = cp.wait(ctx)
	}
	cp.stop()
	if err != nil && ctx.Err() == nil {
		return fail(err)
	}
	return 0
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "cplane: %v\n", err)
	return 1
}

type controlPlane struct {
	out, data string
	etcd      *embed.Etcd
	children  []*child
	cancel    context.CancelFunc
}

type child struct {
	name   string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func (cp *controlPlane) start(ctx context.Context, readyAfter time.Duration) error {
	if err := os.RemoveAll(cp.data); err != nil {
		return err
	}
	if err := os.MkdirAll(cp.data, 0o700); err != nil {
		return err
	}
	p, err := newPKI(filepath.Join(cp.data, "pki"))
	if err != nil {
		return fmt.Errorf("generate certificates: %w", err)
	}

	etcdURL, err := cp.startEtcd()
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(port)
	policy := filepath.Join(cp.data, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return err
	}
	apiserver, err := cp.spawn("kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(cp.data, "apiserver"),
		"--tls-cert-file="+p.path("apiserver.crt"),
		"--tls-private-key-file="+p.path("apiserver.key"),
		"--client-ca-file="+p.path("ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.path("sa.pub"),
		"--service-account-signing-key-file="+p.path("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/16",
		// Endpoints may not hold loopback addresses; nothing here needs the
		// `kubernetes` Service to have endpoints.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--audit-policy-file="+policy,
		"--audit-log-path="+filepath.Join(cp.out, "audit.log"),
		"--audit-log-format=json",
		// Each event is written by the request's own handler, not by a batch later.
		"--audit-log-mode=blocking",
		"--audit-log-maxsize=0",
	)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, apiserver, server+"/readyz", p, 3*time.Minute); err != nil {
		return err
	}

	if err := writeKubeconfig(filepath.Join(cp.out, "kubeconfig"), server, p.caPEM, p.adminCertPEM, p.adminKeyPEM); err != nil {
		return err
	}
	kubeconfig := filepath.Join(cp.data, "control-plane.kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, p.caPEM, p.controlPlaneCertPEM, p.controlPlaneKeyPEM); err != nil {
		return err
	}
	if _, err := cp.spawn("kube-controller-manager",
		"--kubeconfig="+kubeconfig,
		"--controllers="+strings.Join(controllers, ","),
		"--service-account-private-key-file="+p.path("sa.key"),
		"--root-ca-file="+p.path("ca.crt"),
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--profiling=false",
	); err != nil {
		return err
	}

	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	config.QPS, config.Burst = 100, 200
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	kctx, cancel := context.WithCancel(context.Background())
	cp.cancel = cancel
	kubelet := &fakeKubelet{client: client, node: "node-1", readyAfter: readyAfter}
	if err := kubelet.run(kctx); err != nil {
		return err
	}
	// The service-account controller creating `default` in `default` shows that the
	// controller manager's informers synced and its controllers run.
	return cp.poll(ctx, "controller manager to create ServiceAccount default/default", 3*time.Minute, func() (bool, error) {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

func (cp *controlPlane) startEtcd() (string, error) {
	clientPort, err := freePort()
	if err != nil {
		return "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "cplane"
	cfg.Dir = filepath.Join(cp.data, "etcd")
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(cp.out, "etcd.log")}
	// Test data: losing it on a crash of the machine costs nothing, fsync costs a lot.
	cfg.UnsafeNoFsync = true
	cfg.SnapshotCount = 5000
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", err
	}
	cp.etcd = e
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		return "", errors.New("etcd not ready after 1m")
	}
	return client.String(), nil
}

// spawn starts this binary again as one component, its output in OUT_DIR/NAME.log.
func (cp *controlPlane) spawn(name string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(cp.out, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A child never outlives this process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	cp.children = append(cp.children, c)
	return c, nil
}

// wait returns when a signal asks to stop (nil) or a component dies (its error).
func (cp *controlPlane) wait(ctx context.Context) error {
	for {
		if err := cp.deadChild(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-cp.etcd.Err():
			return fmt.Errorf("etcd: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (cp *controlPlane) deadChild() error {
	for _, c := range cp.children {
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", c.name, c.err, c.log, tail(c.log, 20))
		default:
		}
	}
	return nil
}

func (cp *controlPlane) poll(ctx context.Context, what string, limit time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if err := cp.deadChild(); err != nil {
			return err
		}
		ok, err := done()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %v waiting for %s (last error: %v)", limit, what, last)
}

// stop ends the components in reverse order of start, then removes the data.
func (cp *controlPlane) stop() {
	if cp.cancel != nil {
		cp.cancel()
	}
	for i := len(cp.children) - 1; i >= 0; i-- {
		c := cp.children[i]
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if cp.etcd != nil {
		cp.etcd.Close()
	}
	_ = os.RemoveAll(cp.data)
}

func waitReady(ctx context.Context, c *child, endpoint string, p *pki, limit time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	cert, err := tls.X509KeyPair(p.adminCertPEM, p.adminKeyPEM)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}
	cp := &controlPlane{children: []*child{c}}
	return cp.poll(ctx, endpoint, limit, func() (bool, error) {
		resp, err := client.Get(endpoint)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("%s: %s", endpoint, resp.Status)
	})
}

// controlPlaneUser is who the controller manager and the fake kubelet are to the
// apiserver; RealCluster::writes in the Rust tests leaves its writes out.
const controlPlaneUser = "rollwave-test-control-plane"

// auditPolicy records every write (not reads, watches, Leases or Events) at Metadata
// level: who wrote what, with which verb and answer. Tests count the writes of the
// agent from it, apart from the controllers' (whose status updates come whenever they
// please).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [get, list, watch]
- level: None
  resources:
  - {group: coordination.k8s.io, resources: [leases]}
  - {group: "", resources: [events]}
  - {group: events.k8s.io, resources: [events]}
- level: Metadata
`

func writeKubeconfig(path, server string, caPEM, certPEM, keyPEM []byte) error {
	b64 := base64.StdEncoding.EncodeToString
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: cplane
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: cplane
  context: {cluster: cplane, user: admin}
current-context: cplane
`, server, b64(caPEM), b64(certPEM), b64(keyPEM))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
