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

step "control plane, S3 server and GitOps tools (built once, then cached in $cache/bin)"
e2e/kglue-cluster build
e2e/kglue-s3 build
e2e/kglue-tools build

step "DuckDB for Python (runner/tests/ddl_cli.rs runs the DDL of kglue table ddl in it)"
if ! python3 -c 'import duckdb' 2>/dev/null; then
  python3 -m pip install --quiet duckdb
fi

step "cargo test (unit, CRD drift, integration against the local control plane)"
cargo test --workspace --locked --lib --bins --tests

printf '\nrun-tests: all checks passed in %ss\n' "$((SECONDS - t0))"
