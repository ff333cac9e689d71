#!/usr/bin/env bash
# The README's demo, from a fresh machine to a finished pipeline run:
#   1. builds kglue (operator, runner, node agent), the control plane, the S3 server, helm;
#   2. starts a local Kubernetes control plane, the node agent (which plays the kubelet: pods run as
#      local processes, images mapped to the built binaries) and the S3 server, all on 127.0.0.1;
#   3. installs kglue with its Helm chart (charts/kglue);
#   4. applies the example pipeline's dev environment (examples/environments/dev);
#   5. lands order and customer files in the landing bucket; the Event trigger starts the workflow;
#   6. waits for the workflow (crawl → clean → publish) and prints the catalog, the runs and the
#      revenue report the last job computed over the curated table.
# Everything keeps running afterwards so you can look around; `e2e/demo.sh stop` ends it all.
#
# `e2e/demo.sh --images` runs it from the OCI images instead of the binaries: it builds them
# (e2e/kglue-images), pushes them and the packaged chart to a local registry on 127.0.0.1, installs
# the chart from oci:// with the images pinned by digest, and the node agent pulls every pod's
# image and runs it under runc (its container mode; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${KGLUE_CACHE:-$HOME/.cache/kglue}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
namespace=sales-dev
state=${KGLUE_DEMO_STATE:-/tmp/kglue-demo-$(id -u)}
metrics_port=${KGLUE_DEMO_METRICS_PORT:-28080}
registry_port=${KGLUE_DEMO_REGISTRY_PORT:-28500}
from_images=false

say() { printf '\n== %s\n' "$*"; }

stop_all() {
  if [ -s "$state/node-agent.pid" ]; then
    local agent
    agent=$(cat "$state/node-agent.pid")
    kill "$agent" 2>/dev/null || true
    # It kills its containers and unmounts their roots before it exits.
    for _ in $(seq 150); do kill -0 "$agent" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -d "$state/registry" ]; then
    e2e/kglue-images registry-stop --dir "$state/registry" || true
  fi
  e2e/kglue-s3 stop || true
  e2e/kglue-cluster stop || true
  rm -rf "$state"
  echo "demo stopped"
}

case ${1:-} in
  stop)
    stop_all
    exit 0
    ;;
  --images)
    [ "$(id -u)" = 0 ] || { echo "demo --images: runc needs root" >&2; exit 1; }
    from_images=true
    ;;
  '') ;;
  *) echo "usage: e2e/demo.sh [--images | stop]" >&2; exit 2 ;;
esac

t0=$SECONDS
say "building kglue (cargo), the control plane, the S3 server and helm (cached in $cache)"
cargo build --workspace --locked --bins
bin=$CARGO_TARGET_DIR/debug
e2e/kglue-cluster build
e2e/kglue-s3 build
e2e/kglue-tools build
tools=$(e2e/kglue-tools bin-dir)
agent_images=(
  --image "ghcr.io/kglue/kglue-operator=$bin/kglue-operator"
  --image "ghcr.io/kglue/kglue-runner=$bin/kglue"
)
chart=(charts/kglue)
if $from_images; then
  say "building the OCI images (e2e/kglue-images) and pushing them and the chart to a local registry"
  e2e/kglue-images tools
  e2e/kglue-images build --profile dev
  images=$(e2e/kglue-images bin-dir)
  mkdir -p "$state"
  [ -d "$state/registry" ] || e2e/kglue-images registry-start --port "$registry_port" --dir "$state/registry"
  registry=127.0.0.1:$registry_port
  pushed=$(e2e/kglue-images push --registry "$registry")
  ref_of() { grep -o "[^ ]*/$1@sha256:[0-9a-f]*" <<<"$pushed"; }
  operator_ref=$(ref_of kglue-operator)
  runner_ref=$(ref_of kglue-runner)
  version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
  "$tools/helm" package charts/kglue --destination "$state" >/dev/null
  "$tools/helm" push "$state/kglue-$version.tgz" "oci://$registry/charts" --plain-http
  agent_images=(--run-images --crane "$images/crane" --runc "$images/runc")
  chart=("oci://$registry/charts/kglue" --version "$version" --plain-http
    --set "image.operator.repository=${operator_ref%@*}" --set "image.operator.digest=${operator_ref#*@}"
    --set "image.runner.repository=${runner_ref%@*}" --set "image.runner.digest=${runner_ref#*@}")
fi

say "starting the control plane, the S3 server and the node agent"
e2e/kglue-cluster start
e2e/kglue-s3 start
eval "$(e2e/kglue-cluster env)"
eval "$(e2e/kglue-s3 env)"
mkdir -p "$state"
if ! { [ -s "$state/node-agent.pid" ] && kill -0 "$(cat "$state/node-agent.pid")" 2>/dev/null; }; then
  setsid "$bin/kglue-node-agent" --kubeconfig "$KUBECONFIG" --node-name kglue-node \
    --state-dir "$state/node-agent" --kubelet-port 0 "${agent_images[@]}" \
    </dev/null >"$state/node-agent.log" 2>&1 &
  echo $! >"$state/node-agent.pid"
fi
kubectl wait --for=condition=Ready node/kglue-node --timeout=60s >/dev/null 2>&1 ||
  { sleep 3; kubectl wait --for=condition=Ready node/kglue-node --timeout=60s; }

say "installing kglue with helm (${chart[0]}) into kglue-system"
for ns in kglue-system "$namespace"; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
# The operator's endpoint listens on loopback here; in a cluster it binds the pod's IP.
"$tools/helm" upgrade --install kglue "${chart[@]}" -n kglue-system --wait --timeout 120s \
  --set "runner.namespaces={$namespace}" \
  --set operator.metricsBindAddress=127.0.0.1 --set "operator.metricsPort=$metrics_port" \
  --set operator.logFormat=plain

say "applying the example pipeline's dev environment (examples/environments/dev)"
kubectl apply --server-side --field-manager=gitops --force-conflicts -k examples/environments/dev
# The dev overlay brings its own object store (examples/components/object-store: a StatefulSet,
# which this control plane does not run) and that store's dev keys in the Secret lake-credentials.
# Point the Connection at the local S3 server instead, and the Secret at its keys (`data`, not
# `stringData`: server-side apply tracks only the former cleanly). The label lets Connections use
# the Secret (docs/security.md): without it no run mounts it.
kubectl apply --server-side --field-manager=kglue-demo --force-conflicts -f - >/dev/null <<EOF
apiVersion: kglue.dev/v1alpha1
kind: Connection
metadata: {name: lake, namespace: $namespace}
spec:
  s3: {endpoint: "$AWS_ENDPOINT_URL"}
---
apiVersion: v1
kind: Secret
metadata:
  name: lake-credentials
  namespace: $namespace
  labels: {kglue.dev/secret-type: connection}
data:
  AWS_ACCESS_KEY_ID: $(printf %s "$AWS_ACCESS_KEY_ID" | base64 -w0)
  AWS_SECRET_ACCESS_KEY: $(printf %s "$AWS_SECRET_ACCESS_KEY" | base64 -w0)
EOF
# clean-orders becomes Ready once the first crawl has created its source tables.
kubectl wait --for=condition=Ready -n "$namespace" --timeout=90s --all \
  databases,tables,connections,classifiers,crawlers,triggers,workflows
kubectl wait --for=condition=Ready -n "$namespace" --timeout=90s jobs.kglue.dev/publish-revenue
kubectl get kglue -n "$namespace"

say "landing a day of orders (JSON lines) and the partner's customer list (pipe-delimited CSV)"
for bucket in sales-landing sales-curated sales-reports; do e2e/kglue-s3 mb "$bucket" >/dev/null; done
s3() { # s3 METHOD PATH [FILE]: a request to the local S3 server signed with curl's SigV4
  local method=$1 path=$2 file=${3:-/dev/null}
  curl -sfS -X "$method" --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: $(sha256sum "$file" | cut -d' ' -f1)" \
    ${3:+-T "$file"} "$AWS_ENDPOINT_URL/$path"
}
# Files, not stdin: S3's signature needs the length up front.
printf 'customer_id|country\n0|NL\n1|DE\n2|FR\n' >"$state/customers.csv"
s3 PUT sales-landing/customers/part-0.csv "$state/customers.csv" >/dev/null
python3 - >"$state/orders.json" <<'EOF'
import json
for i in range(1, 41):
    print(json.dumps({"order_id": i, "customer_id": i % 3, "amount": i * 2 + 0.25,
                      "ordered_at": f"2024-05-0{1 + i % 2} 10:{i % 60:02d}:00",
                      "items": [{"sku": f"s{i % 7}", "quantity": i % 5 + 1}]}))
EOF
# Paths are URL-encoded as SigV4 signs them ('=' is %3D, '/' in a query is %2F).
s3 PUT "sales-landing/orders/dt%3D2024-05-01/part-0.json" "$state/orders.json" >/dev/null

say "waiting for the Event trigger to start the workflow, and for the run to finish"
state_of_last_run() { kubectl get workflow sales-pipeline -n "$namespace" -o jsonpath='{.status.runs[-1:].state}'; }
deadline=$((SECONDS + 300))
until [[ $(state_of_last_run) =~ ^(Succeeded|Failed|Stopped|Error)$ ]]; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "the workflow did not finish within 5 minutes" >&2; exit 1; }
  sleep 2
done
"$bin/kglue" runs workflow sales-pipeline -n "$namespace"
[ "$(state_of_last_run)" = Succeeded ] || { echo "the workflow run did not succeed" >&2; exit 1; }

say "the catalog: tables and their schemas"
kubectl get kgtable -n "$namespace"
for table in $(kubectl get kgtable -n "$namespace" -o jsonpath='{.items[*].metadata.name}'); do
  echo
  echo "$table"
  kubectl get kgtable "$table" -n "$namespace" \
    -o jsonpath='{range .spec.columns[*]}{"  "}{.name}{"\t"}{.type}{"\n"}{end}{range .spec.partitionKeys[*]}{"  "}{.name}{"\t"}{.type}{"  (partition)\n"}{end}'
done

say "the runs"
"$bin/kglue" runs crawler landing -n "$namespace"
"$bin/kglue" runs job clean-orders -n "$namespace"
"$bin/kglue" runs job publish-revenue -n "$namespace"

say "revenue per day and country: the query publish-revenue ran over the curated table"
for key in $(s3 GET "sales-reports?list-type=2&prefix=revenue%2F" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'); do
  s3 GET "sales-reports/${key//=/%3D}" | gunzip -c
done

cat <<MSG

Demo finished in $((SECONDS - t0))s. Look around:
  eval "\$(e2e/kglue-cluster env)"                 # KUBECONFIG and the matching kubectl on PATH
  kubectl get kglue -n $namespace                    # every kglue object, with its state
  kubectl describe job.kglue.dev clean-orders -n $namespace
  kubectl logs -n kglue-system deployment/kglue      # the operator
  $bin/kglue start workflow sales-pipeline -n $namespace --wait
  $bin/kglue runs job clean-orders -n $namespace
  curl -s 127.0.0.1:$metrics_port/metrics | grep kglue_
Stop everything:
  e2e/demo.sh stop
MSG
