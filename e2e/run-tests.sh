#!/usr/bin/env bash
# The project's test command (see README): formatting, lints, unit tests, the CRD drift test and the
# integration tests against a real local Kubernetes control plane (built from the Go module proxy
# on first use; e2e/kglue-cluster). Build caches live outside the checkout, under ~/.cache/kglue,
# so a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${KGLUE_CACHE:-$HOME/.cache/kglue}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n== %s\n' "$*"; }
t0=$SECONDS

for tool in cargo go; do
  command -v "$tool" >/dev/null || { echo "run-tests: $tool is required" >&2; exit 1; }
done
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "control plane, S3 server, GitOps tools and Kafka (built or downloaded once, then cached in $cache)"
e2e/kglue-cluster build
e2e/kglue-s3 build
e2e/kglue-tools build
# crane, runc and kglue-image (the OCI image builder) from the Go module proxy.
e2e/kglue-images tools
# Kafka's jars from Maven Central (e2e/tests/streaming.rs starts brokers from them).
e2e/kglue-kafka classpath >/dev/null

step "DuckDB and psycopg for Python in a venv (runner/tests/ddl_cli.rs runs kglue table ddl's DDL in DuckDB; e2e/tests/sql_cli.rs and the Session trial query kglue serve with psycopg)"
# A venv of the project's own, not the system Python; its python3 comes first on PATH for the tests.
venv=$cache/venv
if ! "$venv/bin/python3" -c 'import duckdb, psycopg' 2>/dev/null; then
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check duckdb 'psycopg[binary]'
fi
export PATH="$venv/bin:$PATH"

step "cargo test --no-run: every test binary, and the binaries the tests run, built once"
# One build with one selection of packages and targets, so features unify the same way in every
# step below and nothing is compiled twice. Integration tests take the kglue, kglue-operator and
# kglue-node-agent binaries this build makes (kglue_e2e::workspace_binary); none builds again.
cargo test --workspace --locked --lib --bins --tests --no-run

step "OCI images of the operator and the runner, from the binaries just built (e2e/kglue-images)"
# No container engine: the images are assembled from the debug binaries of the build above on a
# base of Debian packages, validated and checked (user, entrypoint, labels, libraries, SBOM against
# Cargo.lock). operator/tests/images.rs pushes them to a local registry and runs the chart and the
# example pipeline from them under runc. Release images are the same script with --profile release.
e2e/kglue-images build --profile dev
e2e/kglue-images check --profile dev

step "cargo test: unit tests, the CRD drift test and the integration suites, in two lanes"
# The suites are independent (each starts its own control plane, S3 server and node agent on
# ports of its own), so they run two at a time on two cores: the longest first, spread by their
# usual wall time so both lanes end together. A suite not in the table counts 30 s.
lanes=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
seconds = {"runs": 170, "integrity": 420, "sessions": 100, "pipelines": 100, "streaming": 80, "streams": 170, "chart": 45, "images": 60, "controllers": 45, "attempt": 35, "node_agent": 30,
           "workers": 60, "run_cli": 20, "node_logs": 12, "ddl_cli": 10, "api": 10, "crawl_s3": 8, "crawl_cli": 8, "etl_s3": 6, "s3": 5}
tests = sorted({t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "test" in t["kind"]},
               key=lambda name: -seconds.get(name, 30))
lanes = [["--lib", "--bins"], []]
load = [15, 0]
for name in tests:
    lane = load.index(min(load))
    lanes[lane] += ["--test", name]
    load[lane] += seconds.get(name, 30)
print("\n".join(" ".join(lane) for lane in lanes))
')
logs=$(mktemp -d)
lane=0
while read -r selection; do
  lane=$((lane + 1))
  # shellcheck disable=SC2086 # the selection is a list of arguments
  # `|| rc=$?`: under set -e a failing cargo would end the subshell before its status is written.
  (
    rc=0
    cargo test --workspace --locked --no-fail-fast $selection >"$logs/lane$lane.log" 2>&1 || rc=$?
    echo "$rc" >"$logs/lane$lane.rc"
  ) &
done <<<"$lanes"
wait
failed=0
for log in "$logs"/lane*.log; do
  printf '\n---- %s: cargo test --workspace --locked --no-fail-fast %s\n' "$(basename "$log" .log)" "$(sed -n "$(basename "$log" .log | tr -dc 0-9)p" <<<"$lanes")"
  cat "$log"
  [ "$(cat "${log%.log}.rc")" = 0 ] || failed=1
done
rm -rf "$logs"
if [ "$failed" != 0 ]; then
  echo "run-tests: tests failed (see the lanes above)" >&2
  exit 1
fi

printf '\nrun-tests: all checks passed in %ss\n' "$((SECONDS - t0))"
