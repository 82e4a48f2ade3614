#!/usr/bin/env bash
# Regenerates every case's expected.yaml with real kustomize (`kubectl kustomize`).
# Run from anywhere; commit the results. The golden test compares rollwave's build of
# each case to these files document by document, as parsed data.
set -euo pipefail
cd "$(dirname "$0")"
kubectl version --client 2>/dev/null | grep -i kustomize || true
for dir in */; do
  dir=${dir%/}
  if [[ -f $dir/kustomization.yaml || -f $dir/kustomization.yml || -f $dir/Kustomization ]]; then
    kubectl kustomize "$dir" > "$dir/expected.yaml"
    echo "regenerated $dir/expected.yaml"
  fi
done
