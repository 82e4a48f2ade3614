// Command cplane runs a real Kubernetes control plane on loopback for rollwave's tests:
// etcd (embedded), kube-apiserver and kube-controller-manager built from the pinned
// k8s.io/kubernetes module, and a fake kubelet that binds Pods to one Node and reports
// them Running and Ready, and a Job's Pods Succeeded after that (never for images
// tagged `broken`).
//
//	cplane run OUT_DIR [--pod-ready-after=DURATION] [--exit-with-stdin]
//
// writes OUT_DIR/kubeconfig (admin), logs each component to OUT_DIR/*.log, prints
// `ready` on stdout once the API answers and the controllers run, and on SIGTERM or
// SIGINT stops every component and removes OUT_DIR/data. The apiserver and the
// controller manager run as child processes of the same binary (`cplane
// kube-apiserver ARGS`, `cplane kube-controller-manager ARGS`) because each keeps
// process-wide state (flags, metrics registries) that the other must not share.
package main

import (
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as the real binaries
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:]))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cplane run OUT_DIR [--pod-ready-after=DURATION] [--exit-with-stdin]")
	os.Exit(2)
}
