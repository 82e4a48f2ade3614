//go:build tools

// Package tools pins the helm command the tests render charts with; `build` compiles
// it from this module's requirements.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
