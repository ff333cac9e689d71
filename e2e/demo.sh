#!/usr/bin/env bash
# The README's demo: build what is needed, start a local Kubernetes control plane, install the
# kglue CRDs, apply the example pipeline and show it with `kubectl get kglue`. The control plane
# keeps running afterwards so you can look around; `e2e/kglue-cluster stop` ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
namespace=${KGLUE_DEMO_NAMESPACE:-kglue-demo}
t0=$SECONDS

e2e/kglue-cluster start
eval "$(e2e/kglue-cluster env)"

echo
echo "== installing the kglue CRDs"
kubectl apply --server-side --field-manager=kglue-demo -f crds/yaml/
kubectl wait --for=condition=Established --timeout=60s -f crds/yaml/ >/dev/null

echo
echo "== applying the example pipeline (examples/sales-pipeline) into namespace $namespace"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply --server-side --field-manager=kglue-demo -k examples/sales-pipeline -n "$namespace"

echo
echo "== kubectl get kglue -n $namespace"
kubectl get kglue -n "$namespace"

cat <<MSG

Demo ready in $((SECONDS - t0))s. Look around:
  eval "\$(e2e/kglue-cluster env)"          # KUBECONFIG and the matching kubectl on PATH
  kubectl get kglue -n $namespace
  kubectl get kgtable -n $namespace -o wide
  kubectl explain crawler.spec.targets
  kubectl explain jobs.kglue.dev.spec.sinks
Stop everything:
  e2e/kglue-cluster stop
MSG
