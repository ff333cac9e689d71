#!/usr/bin/env bash
# TPC-H lineitem ETL benchmark: CSV -> Parquet (Snappy) partitioned by ship month, run by kglue,
# DuckDB, Polars and PySpark over the same files, each in its own process under measure.py.
# See docs/benchmarks.md for what is measured and how.
#
#   e2e/bench/tpch/run.sh [--scale 1,5] [--engines kglue,duckdb,polars,pyspark] [--runs 3]
#                         [--setup-only] [--keep-output] [--timeout SECONDS]
#
# Everything it needs is installed on first use and cached outside the checkout:
#   ~/.cache/kglue/bench-venv    Python venv with the pinned peer engines (requirements.txt)
#   ~/.cache/kglue/tools         tpchgen-cli (cargo install --locked)
#   ~/.cache/kglue/bench-data    sf<N>/lineitem/ CSV (generated once per scale factor), results/
# kglue itself is built from this checkout: cargo build --release -p kglue-runner --bin kglue.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# log, die, setup_venv, setup_tpchgen, need_java, setup_kglue, free_gib, generate; repo, cache,
# tools, data, tpchgen_version, kglue.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$here/../lib.sh"
venv=$cache/bench-venv

scales=1
engines=kglue,duckdb,polars,pyspark
runs=3
setup_only=
keep_output=
timeout_s=3600
threads=2

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --scale) scales=${2:?--scale needs a value}; shift 2 ;;
    --engines) engines=${2:?--engines needs a value}; shift 2 ;;
    --runs) runs=${2:?--runs needs a value}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
    --setup-only) setup_only=1; shift ;;
    --keep-output) keep_output=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive whole number"
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a number of seconds"
IFS=, read -r -a scale_list <<<"$scales"
IFS=, read -r -a engine_list <<<"$engines"
for sf in "${scale_list[@]}"; do
  [[ $sf =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad scale factor: $sf"
done
for engine in "${engine_list[@]}"; do
  case $engine in kglue | duckdb | polars | pyspark) ;; *) die "unknown engine: $engine (kglue, duckdb, polars, pyspark)" ;; esac
done

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------

has_engine() { [[ ",$engines," == *",$1,"* ]]; }

setup_venv "$here/requirements.txt"
setup_tpchgen
if has_engine pyspark; then need_java; fi
if has_engine kglue; then setup_kglue; fi
if [[ -n $setup_only ]]; then
  log "tools ready: $venv, $tools/bin/tpchgen-cli${kglue:+, $kglue}"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

# check_disk SF: enough room for the CSV (if not generated yet) and one engine's output.
check_disk() {
  local sf=$1 need have
  # ~0.75 GiB of CSV and at most ~0.35 GiB of Parquet per scale factor, plus 2 GiB to spare.
  need=$(awk -v sf="$sf" -v csv="$([[ -f $data/sf$sf/expected.json ]] && echo 0 || echo 1)" \
    'BEGIN { printf "%d", sf * (0.75 * csv + 0.35) + 2.99 }')
  have=$(free_gib "$data")
  ((have >= need)) || die "SF$sf needs about $need GiB free under $data, only $have GiB are"
}

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

mkdir -p "$data"
results=$data/results/$(date -u +%Y%m%dT%H%M%SZ)
outputs=$data/out
work=$results/work
mkdir -p "$results/logs" "$work"
cleanup() {
  if [[ -z $keep_output ]]; then rm -rf "$outputs"; fi
  rm -rf "$work"
}
trap cleanup EXIT

# engine_command ENGINE SF OUT: the command line of one run, as NUL-separated words on stdout.
engine_command() {
  local engine=$1 sf=$2 out=$3 input=$data/sf$2/lineitem
  case $engine in
    kglue)
      mkdir -p "$work/sf$sf/catalog"
      sed "s|@LINEITEM@|file://$input/|" "$here/catalog/lineitem.yaml" >"$work/sf$sf/catalog/lineitem.yaml"
      sed "s|@OUTPUT@|file://$out/|" "$here/kglue-job.yaml" >"$work/sf$sf/job.yaml"
      printf '%s\0' "$kglue" run -f "$work/sf$sf/job.yaml" --catalog "$work/sf$sf/catalog"
      ;;
    polars) printf '%s\0' env POLARS_MAX_THREADS=$threads "$venv/bin/python" "$here/engines.py" polars "$input" "$out" ;;
    pyspark) printf '%s\0' env PYSPARK_PYTHON="$venv/bin/python" SPARK_LOCAL_IP=127.0.0.1 "$venv/bin/python" "$here/engines.py" pyspark "$input" "$out" ;;
    duckdb) printf '%s\0' "$venv/bin/python" "$here/engines.py" duckdb "$input" "$out" ;;
  esac
}

failures=0
# run_one ENGINE SF RUN: measure one run, verify its output, record both, delete the output.
run_one() {
  local engine=$1 sf=$2 run=$3 out=$outputs/$1 json=$results/sf$2-$1-$3.json
  local log=$results/logs/sf$2-$1-$3.log cmd status=0
  rm -rf "$out"
  mkdir -p "$outputs"
  mapfile -d '' -t cmd < <(engine_command "$engine" "$sf" "$out")
  sync
  "$venv/bin/python" "$here/measure.py" --timeout "$timeout_s" --out "$json.measure" -- "${cmd[@]}" \
    >"$log" 2>&1 || status=$?
  if ((status != 0)); then
    log "SF$sf $engine run $run: FAILED (exit $status); the last lines of $log:"
    tail -n 15 "$log" >&2
    failures=$((failures + 1))
    "$venv/bin/python" "$here/report.py" merge "$json.measure" - "$json" "$log" >/dev/null
    rm -f "$json.measure"
    rm -rf "$out"
    return
  fi
  "$venv/bin/python" "$here/verify.py" check "$data/sf$sf/expected.json" "$out" >"$json.verify" || status=$?
  "$venv/bin/python" "$here/report.py" merge "$json.measure" "$json.verify" "$json" "$log" |
    while IFS= read -r line; do log "SF$sf $engine run $run: $line"; done
  rm -f "$json.measure" "$json.verify"
  if ((status != 0)); then
    failures=$((failures + 1))
    rm -rf "$data/failed/$engine-sf$sf"
    mkdir -p "$data/failed"
    mv "$out" "$data/failed/$engine-sf$sf"
    log "SF$sf $engine run $run: FAILED verification (output kept in $data/failed/$engine-sf$sf)"
    return
  fi
  if [[ -z $keep_output ]]; then rm -rf "$out"; fi
}

n=${#engine_list[@]}
for sf in "${scale_list[@]}"; do
  check_disk "$sf"
  generate "$sf"
  # Warm the page cache so that no engine pays for the first read of the CSV.
  cat "$data/sf$sf/lineitem/"*.csv >/dev/null
  for ((run = 1; run <= runs; run++)); do
    # Alternate: every round starts with the next engine, so background noise is shared.
    for ((i = 0; i < n; i++)); do
      engine=${engine_list[(i + run - 1) % n]}
      log "SF$sf run $run/$runs: $engine"
      run_one "$engine" "$sf" "$run"
    done
  done
  echo
  "$venv/bin/python" "$here/report.py" table "$results" "$sf" "$engines" || true
  echo
done
log "results: $results"
if ((failures > 0)); then
  log "$failures run(s) failed or wrote wrong output"
  exit 1
fi
