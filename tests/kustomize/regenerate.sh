#!/usr/bin/env bash
# Regenerates every case's expected output with real kustomize (`kubectl kustomize`).
# Run from anywhere; commit the results. A case kustomize builds gets expected.yaml;
# a case kustomize refuses gets expected-error.txt (kustomize's message), and rollwave
# must refuse it too. The golden test compares rollwave's build of each case to
# expected.yaml document by document, as parsed data, and then byte for byte.
# usage: regenerate.sh [CASE...]   (default: every case)
set -euo pipefail
cd "$(dirname "$0")"
kubectl version --client 2>/dev/null | grep -i kustomize || true
if [[ $# -gt 0 ]]; then dirs=("$@"); else dirs=(*/); fi
for dir in "${dirs[@]}"; do
  dir=${dir%/}
  if [[ -f $dir/kustomization.yaml || -f $dir/kustomization.yml || -f $dir/Kustomization ]]; then
    rm -f "$dir/expected.yaml" "$dir/expected-error.txt"
    # Written as kustomize prints it, byte for byte (a command substitution would
    # drop trailing line breaks).
    if kubectl kustomize "$dir" >"$dir/.stdout" 2>"$dir/.stderr"; then
      mv "$dir/.stdout" "$dir/expected.yaml"
      echo "regenerated $dir/expected.yaml"
    else
      grep -v '^# Warning' "$dir/.stderr" | sed "s|$PWD/||g" > "$dir/expected-error.txt"
      echo "regenerated $dir/expected-error.txt (kustomize refuses it)"
    fi
    rm -f "$dir/.stdout" "$dir/.stderr"
  fi
done
