#!/usr/bin/env bash
# SQL benchmark: TPC-H Q1 and Q6 over lineitem as Snappy Parquet partitioned by ship month (the
# layout the ETL benchmark's job writes), through `kglue sql` (a catalog Table), through a session
# (`kglue serve`, what a Session's pod runs, with psql as the client) and DuckDB (read_parquet,
# hive partitioning). `kglue sql` and DuckDB run each query in a process of their own under
# ../tpch/measure.py; the session's server stays up and psql is measured from its start to its
# exit (connection and login included); the server's peak memory is read at the end. All with 2
# threads, engines alternating. Answers are compared; figures are medians.
#
#   e2e/bench/sql/run.sh [--scale 1] [--runs 5] [--queries q1,q6]
#
# Cached: the lineitem CSV (shared with ../tpch and ../jdbc), its Parquet (bench-data/sf<N>/
# lineitem-parquet), DuckDB in ~/.cache/kglue/bench-venv (../tpch/requirements.txt), kglue built
# from this checkout (release) in CARGO_TARGET_DIR, by default ~/.cache/kglue/target.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# log, die, setup_venv, setup_kglue, generate; repo, cache, data, kglue.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$here/../lib.sh"
venv=$cache/bench-venv
measure=$here/../tpch/measure.py
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}

scales=1
runs=5
queries=q1,q6
while (($#)); do
  case $1 in
    --scale) scales=${2:?--scale needs a value}; shift 2 ;;
    --runs) runs=${2:?--runs needs a value}; shift 2 ;;
    --queries) queries=${2:?--queries needs a value}; shift 2 ;;
    -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive whole number"
IFS=, read -r -a scale_list <<<"$scales"
IFS=, read -r -a query_list <<<"$queries"
for q in "${query_list[@]}"; do [[ -f $here/$q.sql ]] || die "no query $q ($here/$q.sql)"; done

setup_venv "$here/../tpch/requirements.txt"
setup_kglue
results=$data/results/sql-$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d "${TMPDIR:-/tmp}/kglue-bench-sql.XXXXXX")
trap '[[ -n ${session_pid:-} ]] && kill "$session_pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$results"

# run_one ENGINE SF QUERY RUN: one measured run; its answer to $results/answers/.
run_one() {
  local engine=$1 sf=$2 q=$3 run=$4 parquet=$data/sf$2/lineitem-parquet
  local out=$results/sf$sf-$q-$engine-$run.json answer=$results/answers/sf$sf-$q-$engine-$run.csv cmd
  mkdir -p "$results/answers"
  case $engine in
    kglue) cmd=("$kglue" sql --catalog "$work/sf$sf" -d tpch --format csv -f "$here/$q.sql") ;;
    duckdb) cmd=("$venv/bin/python" "$here/bench.py" duckdb "$parquet" "$here/$q.sql") ;;
    session) cmd=(env PGPASSWORD=bench PGSSLMODE=disable psql -X -q -v ON_ERROR_STOP=1 --csv -h 127.0.0.1 -p "$session_port" -U bench -d kglue -f "$here/$q.sql") ;;
  esac
  "$venv/bin/python" "$measure" --timeout 600 --out "$out" -- bash -c '"$@" >"$0"' "$answer" "${cmd[@]}" \
    >/dev/null || die "SF$sf $q $engine run $run failed; see $answer"
  log "SF$sf $q $engine run $run: $("$venv/bin/python" "$here/bench.py" line "$out")"
}

for sf in "${scale_list[@]}"; do
  generate "$sf"
  parquet=$data/sf$sf/lineitem-parquet
  if [[ ! -d $parquet ]]; then
    log "SF$sf: writing lineitem as Parquet partitioned by ship_month (DuckDB)"
    "$venv/bin/python" "$here/bench.py" parquet "$data/sf$sf/lineitem" "$parquet.tmp"
    mv "$parquet.tmp" "$parquet"
  fi
  mkdir -p "$work/sf$sf"
  "$venv/bin/python" "$here/bench.py" catalog "$parquet" "$work/sf$sf"
  find "$parquet" -type f -exec cat {} + >/dev/null # warm the page cache for every engine
  # The session: one server for every query of this scale factor, as a Session's pod is.
  KGLUE_SESSION_PASSWORD=bench "$kglue" serve --catalog "$work/sf$sf" --database tpch --port 0 --username bench \
    2>"$work/serve-sf$sf.log" &
  session_pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$work/serve-sf$sf.log" && break; sleep 0.1; done
  session_port=$(sed -n 's/^kglue serve: listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/serve-sf$sf.log" | head -1)
  [[ -n $session_port ]] || die "kglue serve did not start: $(cat "$work/serve-sf$sf.log")"
  for q in "${query_list[@]}"; do
    for ((run = 1; run <= runs; run++)); do
      if ((run % 2)); then order=(kglue session duckdb); else order=(duckdb session kglue); fi
      for engine in "${order[@]}"; do run_one "$engine" "$sf" "$q" "$run"; done
      for engine in kglue session; do
        "$venv/bin/python" "$here/bench.py" compare \
          "$results/answers/sf$sf-$q-$engine-$run.csv" "$results/answers/sf$sf-$q-duckdb-$run.csv" >&2 ||
          die "SF$sf $q run $run: $engine's answer differs from DuckDB's"
      done
    done
  done
  awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$session_pid/status" >"$results/sf$sf-session-server-peak-mib"
  kill "$session_pid"
  wait "$session_pid" 2>/dev/null || true
done

python3 - "$results" "$runs" "${scale_list[*]}" "${query_list[*]}" <<'PY' | tee "$results/summary.md"
import json, statistics, sys
results, runs, scales, queries = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
print(f"TPC-H queries over lineitem Parquet (partitioned by ship_month), median of {runs} runs, process start to exit, 2 threads each\n")
print("| SF | query | kglue sql wall s | session (psql) wall s | DuckDB wall s | DuckDB / kglue sql | DuckDB / session | kglue sql CPU s | DuckDB CPU s | kglue sql peak MiB | DuckDB peak MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for sf in scales:
    for q in queries:
        m = {}
        for engine in ("kglue", "session", "duckdb"):
            rs = [json.load(open(f"{results}/sf{sf}-{q}-{engine}-{r}.json")) for r in range(1, runs + 1)]
            m[engine] = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s", "peak_rss_mib")}
        k, s, d = m["kglue"], m["session"], m["duckdb"]
        print(f"| {sf} | {q.upper()} | {k['wall_s']:.2f} | {s['wall_s']:.2f} | {d['wall_s']:.2f} | {d['wall_s'] / k['wall_s']:.2f} | {d['wall_s'] / s['wall_s']:.2f} | {k['cpu_s']:.2f} | {d['cpu_s']:.2f} | {k['peak_rss_mib']:.0f} | {d['peak_rss_mib']:.0f} |")
for sf in scales:
    print(f"\nSF{sf}: the session's server (kglue serve) peaked at {open(f'{results}/sf{sf}-session-server-peak-mib').read()} MiB over all its queries.")
PY
log "results: $results"
