#!/usr/bin/env bash
# TPC-H ETL benchmark: kglue, DuckDB, Polars and PySpark run the same jobs over the same files,
# each run in its own process under measure.py. See docs/benchmarks.md for what is measured and how.
#
#   e2e/bench/tpch/run.sh [--scale 1,5] [--workloads transcode,curate,flatten] [--runs 3]
#                         [--engines kglue,duckdb,polars,pyspark] [--workers 1,2,4]
#                         [--setup-only] [--keep-output] [--timeout SECONDS]
#
# --workers: kglue runs once per worker count each round; a count above 1 is the engine
# kglue-w<N> (`kglue run --workers N`: a scheduler and N executor processes on this machine, the
# machine's 2 CPUs and memory shared among them; docs/scaling.md). Default 1.
#
# Workloads (default: transcode; see engines.py for their exact semantics):
#   transcode  lineitem CSV -> Snappy Parquet partitioned by ship month
#   curate     versioned orders CSV, latest version per key, joined to lineitem CSV -> detail
#              Parquet by ship month + summary Parquet (revenue and lines per month and priority)
#   flatten    orders JSON lines with the items nested -> one row per item, Parquet by ship month
# For each scale factor, for each workload: rounds of every engine, alternating the first engine.
# Results: <workload>-sf<N>-<engine>-<run>.json and the table <workload>-sf<N>.md.
#
# Everything it needs is installed on first use and cached outside the checkout:
#   ~/.cache/kglue/bench-venv    Python venv with the pinned peer engines (requirements.txt)
#   ~/.cache/kglue/tools         tpchgen-cli (cargo install --locked)
#   ~/.cache/kglue/bench-data    per scale factor (generated once, when a workload needs it):
#                                sf<N>/lineitem/ CSV, sf<N>/orders/ versioned CSV (curate),
#                                sf<N>/orders-json/ JSON lines (flatten, 2.3 GiB per SF); results/
# kglue itself is built from this checkout: cargo build --release -p kglue-runner --bin kglue
# (KGLUE_PROFILE=dist: the released images' profile instead; see setup_kglue in ../lib.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# log, die, setup_venv, setup_tpchgen, need_java, setup_kglue, free_gib, generate, generate_orders,
# generate_orders_json; repo, cache, tools, data, tpchgen_version, kglue.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$here/../lib.sh"
venv=$cache/bench-venv

scales=1
workloads=transcode
engines=kglue,duckdb,polars,pyspark
runs=3
setup_only=
keep_output=
timeout_s=3600
threads=2
workers=1

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --scale) scales=${2:?--scale needs a value}; shift 2 ;;
    --workloads) workloads=${2:?--workloads needs a value}; shift 2 ;;
    --engines) engines=${2:?--engines needs a value}; shift 2 ;;
    --runs) runs=${2:?--runs needs a value}; shift 2 ;;
    --workers) workers=${2:?--workers needs a value}; shift 2 ;;
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
IFS=, read -r -a workload_list <<<"$workloads"
IFS=, read -r -a engine_list <<<"$engines"
for sf in "${scale_list[@]}"; do
  [[ $sf =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad scale factor: $sf"
done
for workload in "${workload_list[@]}"; do
  case $workload in transcode | curate | flatten) ;; *) die "unknown workload: $workload (transcode, curate, flatten)" ;; esac
done
for engine in "${engine_list[@]}"; do
  case $engine in kglue | duckdb | polars | pyspark) ;; *) die "unknown engine: $engine (kglue, duckdb, polars, pyspark)" ;; esac
done
# kglue once per worker count: kglue itself for 1, kglue-w<N> for N above 1.
IFS=, read -r -a worker_list <<<"$workers"
kglue_engines=()
for w in "${worker_list[@]}"; do
  [[ $w =~ ^[1-9][0-9]*$ ]] || die "bad worker count: $w"
  if ((w == 1)); then kglue_engines+=(kglue); else kglue_engines+=("kglue-w$w"); fi
done
expanded=()
for engine in "${engine_list[@]}"; do
  if [[ $engine == kglue ]]; then expanded+=("${kglue_engines[@]}"); else expanded+=("$engine"); fi
done
engine_list=("${expanded[@]}")
engines=$(IFS=,; echo "${engine_list[*]}")

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------

has_engine() { [[ ",$engines," == *",$1"[,-]* ]]; }

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

has_workload() { [[ ",$workloads," == *",$1,"* ]]; }

# check_disk SF: enough room for the inputs the selected workloads need that are not generated
# yet, and for the largest output of one engine (one output at a time: each is deleted once
# verified).
check_disk() {
  local sf=$1 dir=$data/sf$1 per_sf=0 slice=0 output=0 size need have workload
  # GiB per scale factor (measured at SF0.1, rounded up): lineitem CSV 0.75; versioned orders
  # CSV 0.23, with tpchgen's orders (0.17) beside it while it is written; orders JSON lines 2.3,
  # with tpchgen's orders and DuckDB's database of orders and lineitem (0.2) beside them while
  # they are written; and one slice of the JSON lines (~1.6 GiB at most, see verify.py) while
  # the slices are joined into one file.
  if [[ ! -f $dir/expected.json ]]; then per_sf=0.75; fi
  if has_workload curate && [[ ! -f $dir/expected-curate.json ]]; then per_sf=$(awk -v a="$per_sf" 'BEGIN { print a + 0.4 }'); fi
  if has_workload flatten && [[ ! -f $dir/expected-flatten.json ]]; then
    per_sf=$(awk -v a="$per_sf" 'BEGIN { print a + 2.8 }')
    slice=1.6
  fi
  # One engine's output: Parquet of transcode ~0.35, curate ~0.5 (detail and summary), flatten
  # ~0.45 GiB per scale factor.
  for workload in "${workload_list[@]}"; do
    case $workload in transcode) size=0.35 ;; curate) size=0.5 ;; flatten) size=0.45 ;; esac
    output=$(awk -v a="$output" -v b="$size" 'BEGIN { print (b > a ? b : a) }')
  done
  # Plus 2 GiB to spare.
  need=$(awk -v sf="$sf" -v inputs="$per_sf" -v slice="$slice" -v out="$output" \
    'BEGIN { printf "%d", sf * (inputs + out) + slice + 2.99 }')
  have=$(free_gib "$data")
  ((have >= need)) || die "SF$sf needs about $need GiB free under $data, only $have GiB are"
}

# prepare WORKLOAD SF: the workload's inputs (generated once per scale factor), read once so that
# no engine pays for the first read of them (the page cache keeps them).
prepare() {
  local workload=$1 sf=$2 dir=$data/sf$2
  generate "$sf"
  case $workload in
    transcode) cat "$dir/lineitem/"*.csv >/dev/null ;;
    curate)
      generate_orders "$sf"
      cat "$dir/lineitem/"*.csv "$dir/orders/"*.csv >/dev/null
      ;;
    flatten)
      generate_orders_json "$sf"
      cat "$dir/orders-json/"*.jsonl >/dev/null
      ;;
  esac
}

# expected WORKLOAD SF: the file verify.py checks the workload's output against.
expected() {
  case $1 in
    transcode) echo "$data/sf$2/expected.json" ;;
    *) echo "$data/sf$2/expected-$1.json" ;;
  esac
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

# kglue_job WORKLOAD SF OUT JOB [CATALOG-FILE PLACEHOLDER URL]...: the kglue command line (NUL-
# separated words) of the Job manifest JOB with @OUTPUT@ set to OUT, and copies of the catalog
# files with each one's placeholder set to its input's URL. Every workload has a catalog directory
# of its own under $work, so that it sees only its own tables.
kglue_job() {
  local workload=$1 sf=$2 out=$3 job=$4 dir=$work/sf$2/$1
  shift 4
  rm -rf "$dir"
  mkdir -p "$dir/catalog"
  while (($#)); do
    sed "s|$2|$3|" "$here/catalog/$1" >"$dir/catalog/$1"
    shift 3
  done
  sed "s|@OUTPUT@|file://$out/|" "$here/$job" >"$dir/job.yaml"
  printf '%s\0' "$kglue" run -f "$dir/job.yaml" --catalog "$dir/catalog"
}

# engine_command WORKLOAD ENGINE SF OUT: the command line of one run, as NUL-separated words on
# stdout.
engine_command() {
  local workload=$1 engine=$2 sf=$3 out=$4 dir=$data/sf$3 inputs
  case $workload in
    transcode) inputs=("$dir/lineitem") ;;
    curate) inputs=("$dir/lineitem" "$dir/orders") ;;
    flatten) inputs=("$dir/orders-json") ;;
  esac
  case $engine:$workload in
    kglue:transcode) kglue_job transcode "$sf" "$out" kglue-job.yaml lineitem.yaml @LINEITEM@ "file://$dir/lineitem/" ;;
    kglue:curate)
      kglue_job curate "$sf" "$out" kglue-curate.yaml lineitem.yaml @LINEITEM@ "file://$dir/lineitem/" \
        orders.yaml @ORDERS@ "file://$dir/orders/"
      ;;
    kglue:flatten) kglue_job flatten "$sf" "$out" kglue-flatten.yaml orders-json.yaml @ORDERS_JSON@ "file://$dir/orders-json/" ;;
    kglue-w*:*)
      engine_command "$workload" kglue "$sf" "$out"
      printf '%s\0' --workers "${engine#kglue-w}"
      ;;
    polars:*) printf '%s\0' env POLARS_MAX_THREADS=$threads "$venv/bin/python" "$here/engines.py" polars "$workload" "${inputs[@]}" "$out" ;;
    pyspark:*) printf '%s\0' env PYSPARK_PYTHON="$venv/bin/python" SPARK_LOCAL_IP=127.0.0.1 "$venv/bin/python" "$here/engines.py" pyspark "$workload" "${inputs[@]}" "$out" ;;
    duckdb:*) printf '%s\0' "$venv/bin/python" "$here/engines.py" duckdb "$workload" "${inputs[@]}" "$out" ;;
  esac
}

failures=0
# run_one WORKLOAD ENGINE SF RUN: measure one run, verify its output, record both, delete the
# output.
run_one() {
  local workload=$1 engine=$2 sf=$3 run=$4 out=$outputs/$2 name=$1-sf$3-$2-$4 cmd status=0
  local json=$results/$name.json log=$results/logs/$name.log what="$1 SF$3 $2 run $4"
  local failed=$data/failed/$1-$2-sf$3
  rm -rf "$out"
  mkdir -p "$outputs"
  mapfile -d '' -t cmd < <(engine_command "$workload" "$engine" "$sf" "$out")
  sync
  "$venv/bin/python" "$here/measure.py" --timeout "$timeout_s" --out "$json.measure" -- "${cmd[@]}" \
    >"$log" 2>&1 || status=$?
  if ((status != 0)); then
    log "$what: FAILED (exit $status); the last lines of $log:"
    tail -n 15 "$log" >&2
    failures=$((failures + 1))
    "$venv/bin/python" "$here/report.py" merge "$json.measure" - "$json" "$log" >/dev/null
    rm -f "$json.measure"
    rm -rf "$out"
    return
  fi
  "$venv/bin/python" "$here/verify.py" check "$workload" "$(expected "$workload" "$sf")" "$out" >"$json.verify" || status=$?
  "$venv/bin/python" "$here/report.py" merge "$json.measure" "$json.verify" "$json" "$log" |
    while IFS= read -r line; do log "$what: $line"; done
  rm -f "$json.measure" "$json.verify"
  if ((status != 0)); then
    failures=$((failures + 1))
    rm -rf "$failed"
    mkdir -p "$data/failed"
    mv "$out" "$failed"
    log "$what: FAILED verification (output kept in $failed)"
    return
  fi
  if [[ -z $keep_output ]]; then rm -rf "$out"; fi
}

n=${#engine_list[@]}
for sf in "${scale_list[@]}"; do
  check_disk "$sf"
  for workload in "${workload_list[@]}"; do
    prepare "$workload" "$sf"
    for ((run = 1; run <= runs; run++)); do
      # Alternate: every round starts with the next engine, so background noise is shared.
      for ((i = 0; i < n; i++)); do
        engine=${engine_list[(i + run - 1) % n]}
        log "$workload SF$sf run $run/$runs: $engine"
        run_one "$workload" "$engine" "$sf" "$run"
      done
    done
    echo
    "$venv/bin/python" "$here/report.py" table "$results" "$workload" "$sf" "$engines" || true
    echo
  done
done
log "results: $results"
if ((failures > 0)); then
  log "$failures run(s) failed or wrote wrong output"
  exit 1
fi
