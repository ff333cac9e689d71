#!/usr/bin/env bash
# PostgreSQL benchmark: TPC-H lineitem read from a PostgreSQL table into Snappy Parquet partitioned
# by ship month (kglue, ConnectorX with Polars, PySpark's JDBC source), and written from Parquet into
# a new PostgreSQL table (kglue, PySpark's JDBC sink), each run in its own process under
# ../tpch/measure.py. See docs/benchmarks.md for what is measured and how.
#
#   e2e/bench/jdbc/run.sh [--scale 1] [--read kglue,connectorx,pyspark] [--write kglue,pyspark]
#                         [--runs 3] [--tls disable|require] [--setup-only] [--keep-output]
#                         [--timeout SECONDS]
#
# `--read ''` or `--write ''` leaves a direction out. The table lives in a private PostgreSQL
# server (e2e/kglue-postgres) on a free port of 127.0.0.1, loaded from the CSV on every invocation
# and stopped when the script exits. Everything else is installed on first use and cached:
#   ~/.cache/kglue/bench-jdbc-venv  Python venv with the pinned peer engines (requirements.txt)
#   ~/.cache/kglue/maven            PostgreSQL's JDBC driver for PySpark (Maven Central, sha1 pinned)
#   ~/.cache/kglue/tools, bench-data  tpchgen-cli and the lineitem CSV, shared with ../tpch/run.sh
# kglue is built from this checkout (cargo build --release -p kglue-runner --bin kglue), in
# CARGO_TARGET_DIR, by default ~/.cache/kglue/target as for e2e/run-tests.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# log, die, setup_venv, need_java, setup_kglue, free_gib, generate; repo, cache, data, kglue.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$here/../lib.sh"
venv=$cache/bench-jdbc-venv
measure=$here/../tpch/measure.py
postgres=$repo/e2e/kglue-postgres
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}

# PySpark's JDBC driver, from Maven Central (pinned and checked by e2e/kglue-pgjdbc).
jdbc_driver=

scales=1
read_engines=kglue,connectorx,pyspark
write_engines=kglue,pyspark
runs=3
tls=disable
setup_only=
keep_output=
timeout_s=3600
partitions=2 # parallel reads and threads of every engine (engines.py's PARTITIONS says the same)

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --scale) scales=${2:?--scale needs a value}; shift 2 ;;
    --read) read_engines=${2?--read needs a value}; shift 2 ;;
    --write) write_engines=${2?--write needs a value}; shift 2 ;;
    --runs) runs=${2:?--runs needs a value}; shift 2 ;;
    --tls) tls=${2:?--tls needs a value}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
    --setup-only) setup_only=1; shift ;;
    --keep-output) keep_output=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive whole number"
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a number of seconds"
case $tls in
  disable) kglue_tls=Disable ;;
  require) kglue_tls=Require ;;
  *) die "--tls must be disable or require" ;;
esac
IFS=, read -r -a scale_list <<<"$scales"
IFS=, read -r -a read_list <<<"$read_engines"
IFS=, read -r -a write_list <<<"$write_engines"
((${#read_list[@]} + ${#write_list[@]} > 0)) || die "nothing to run: --read and --write are both empty"
for sf in "${scale_list[@]}"; do
  [[ $sf =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad scale factor: $sf"
done
for engine in "${read_list[@]}"; do
  case $engine in kglue | connectorx | pyspark) ;; *) die "unknown --read engine: $engine (kglue, connectorx, pyspark)" ;; esac
done
for engine in "${write_list[@]}"; do
  case $engine in kglue | pyspark) ;; *) die "unknown --write engine: $engine (kglue, pyspark)" ;; esac
done

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------

uses() { [[ ",$read_engines,$write_engines," == *",$1,"* ]]; }

setup_jdbc_driver() {
  jdbc_driver=$("$repo/e2e/kglue-pgjdbc")
}

setup_venv "$here/requirements.txt"
if uses pyspark; then
  need_java
  setup_jdbc_driver
fi
if uses kglue; then setup_kglue; fi
if [[ -n $setup_only ]]; then
  log "tools ready: $venv${kglue:+, $kglue}$(uses pyspark && echo ", $jdbc_driver")"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

mkdir -p "$data"
results=$data/results/jdbc-$(date -u +%Y%m%dT%H%M%SZ)
outputs=$data/out-jdbc
work=$results/work
mkdir -p "$results/logs" "$work"

# A state directory of its own under /tmp (the server's user must reach it: not under $HOME), a
# free loopback port, a password of its own; the server also stops if this script is killed.
export KGLUE_POSTGRES_STATE KGLUE_POSTGRES_PORT KGLUE_POSTGRES_PASSWORD
export KGLUE_POSTGRES_USER=kglue KGLUE_POSTGRES_DATABASE=tpch
KGLUE_POSTGRES_STATE=$(mktemp -d /tmp/kglue-bench-postgres.XXXXXX)
KGLUE_POSTGRES_PORT=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KGLUE_POSTGRES_PASSWORD=bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
server_started=
cleanup() {
  if [[ -n $server_started ]]; then
    cp "$KGLUE_POSTGRES_STATE/logs/postgres.log" "$results/logs/postgres-server.log" 2>/dev/null || true
    "$postgres" stop >>"$results/logs/postgres.log" 2>&1 ||
      log "warning: stopping PostgreSQL failed; see $results/logs/postgres.log"
  fi
  rmdir "$KGLUE_POSTGRES_STATE" 2>/dev/null || true
  if [[ -z $keep_output ]]; then rm -rf "$outputs"; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

server_started=1
"$postgres" start --owner-pid $$ >"$results/logs/postgres.log" 2>&1 || {
  tail -n 20 "$results/logs/postgres.log" >&2
  die "PostgreSQL did not start (e2e/kglue-postgres start)"
}
eval "$("$postgres" env 2>/dev/null)"
postmaster=$(<"$KGLUE_POSTGRES_STATE/pids/postgres.pid")
sql() { PGOPTIONS=--client-min-messages=warning psql -X -q -v ON_ERROR_STOP=1 "$@"; }
# No autovacuum: the table is vacuumed once after loading, and a worker waking up on a table an
# engine just wrote would run into the next measurement.
sql -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
server_version=$(sql -tAc "SHOW server_version")
log "PostgreSQL $server_version on 127.0.0.1:$KGLUE_POSTGRES_PORT (state $KGLUE_POSTGRES_STATE)"

# kglue's catalog (the Connection) and its Secret as files.
mkdir -p "$work/catalog" "$work/secrets/bench-db-credentials"
sed -e "s|@URL@|$KGLUE_POSTGRES_URL|" -e "s|@TLS@|$kglue_tls|" "$here/catalog/connection.yaml" >"$work/catalog/connection.yaml"
printf '%s' "$KGLUE_POSTGRES_USER" >"$work/secrets/bench-db-credentials/username"
printf '%s' "$KGLUE_POSTGRES_PASSWORD" >"$work/secrets/bench-db-credentials/password"

# What ran: kglue's commit (+changes when the checkout's Rust sources differ from it), the peers.
kglue_version=$(cd "$repo" && git rev-parse --short HEAD)
if [[ -n $(cd "$repo" && git status --porcelain -- '*.rs' '*Cargo.toml' Cargo.lock) ]]; then
  kglue_version+=+changes
fi
java_version=$( (java -version 2>&1 || true) | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -1)
"$venv/bin/python" - "$results/versions.json" "$partitions" "$tls" "$kglue_version" "$server_version" \
  "$(basename "${jdbc_driver:-none}" .jar | sed "s/^postgresql-//")" "${java_version:-none}" <<'PY'
import json, sys
import connectorx, duckdb, polars, pyarrow, pyspark
out, partitions, tls, kglue, server, driver, java = sys.argv[1:]
versions = {"partitions": int(partitions), "tls": tls, "kglue": kglue, "PostgreSQL": server,
            "ConnectorX": connectorx.__version__, "Polars": polars.__version__, "pyarrow": pyarrow.__version__,
            "PySpark": pyspark.__version__, "PostgreSQL JDBC": driver, "Java": java,
            "DuckDB (checks)": duckdb.__version__, "Python": sys.version.split()[0]}
with open(out, "w") as f:
    json.dump(versions, f)
PY

# load SF: public.lineitem from the CSV (typed, with its primary key, vacuumed and analysed), the
# figures the checks compare with, and the write direction's Parquet input.
load() {
  local sf=$1 file t0=$SECONDS
  log "SF$sf: loading lineitem into PostgreSQL"
  sql -c "DROP TABLE IF EXISTS lineitem, lineitem_copy" -c "$("$venv/bin/python" "$here/verify.py" ddl table)"
  for file in "$data/sf$sf/lineitem/"*.csv; do
    sql -c "\\copy lineitem FROM '$file' WITH (FORMAT csv, HEADER true)"
  done
  sql -c "$("$venv/bin/python" "$here/verify.py" ddl key)" -c "VACUUM (FREEZE, ANALYZE) lineitem" -c "CHECKPOINT"
  log "SF$sf: loaded in $((SECONDS - t0)) s, $(sql -tAc "SELECT pg_size_pretty(pg_total_relation_size('lineitem'))") with its key"
  "$venv/bin/python" "$here/verify.py" expected "$data/sf$sf/expected.json" "$work/sf$sf/expected.json" >&2
  if ((${#write_list[@]} > 0)); then
    log "SF$sf: the write direction's input: the CSV as one Parquet file (DuckDB)"
    "$venv/bin/python" "$here/verify.py" source "$data/sf$sf/lineitem" "$work/sf$sf/expected.json" \
      "$work/sf$sf/lineitem.parquet" >&2
  fi
}

# check_disk SF: room for the CSV (if not generated yet) and one engine's Parquet under $data,
# and for the server's files under /tmp: the table three times (the source, one copy and kglue's
# staging table), ~1.2 GiB each per scale factor with the WAL. Plus 2 GiB to spare on each.
check_disk() {
  local sf=$1 need have
  need=$(awk -v sf="$sf" -v csv="$([[ -f $data/sf$sf/expected.json ]] && echo 0 || echo 1)" \
    'BEGIN { printf "%d", sf * (0.75 * csv + 0.5) + 2.99 }')
  have=$(free_gib "$data")
  ((have >= need)) || die "SF$sf needs about $need GiB free under $data, only $have GiB are"
  need=$(awk -v sf="$sf" 'BEGIN { printf "%d", sf * 3 * 1.2 + 2.99 }')
  have=$(free_gib "$KGLUE_POSTGRES_STATE")
  ((have >= need)) || die "SF$sf needs about $need GiB free under /tmp for PostgreSQL, only $have GiB are"
}

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

# engine_command DIRECTION ENGINE SF OUT: the command line of one run, NUL-separated on stdout.
engine_command() {
  local direction=$1 engine=$2 sf=$3 out=$4 job=$work/sf$3/$1-job.yaml
  local expected=$work/sf$sf/expected.json table=lineitem lower upper
  case $direction-$engine in
    read-kglue | write-kglue)
      if [[ $direction == write ]]; then table=lineitem_copy; fi
      sed -e "s|@TABLE@|$KGLUE_POSTGRES_DATABASE.public.$table|" -e "s|@PARTITIONS@|$partitions|" \
        -e "s|@OUTPUT@|file://$out/|" -e "s|@INPUT@|file://$work/sf$sf/lineitem.parquet/|" \
        "$here/kglue-$direction-job.yaml" >"$job"
      printf '%s\0' "$kglue" run -f "$job" --catalog "$work/catalog" --secrets-dir "$work/secrets"
      ;;
    read-connectorx)
      printf '%s\0' env POLARS_MAX_THREADS=$partitions "$venv/bin/python" "$here/engines.py" connectorx-read "$tls" "$out"
      ;;
    read-pyspark)
      read -r lower upper < <("$venv/bin/python" -c 'import json, sys; e = json.load(open(sys.argv[1])); print(e["min_orderkey"], e["max_orderkey"])' "$expected")
      printf '%s\0' env PYSPARK_PYTHON="$venv/bin/python" SPARK_LOCAL_IP=127.0.0.1 PG_JDBC_JAR="$jdbc_driver" \
        "$venv/bin/python" "$here/engines.py" pyspark-read "$tls" "$lower" "$upper" "$out"
      ;;
    write-pyspark)
      printf '%s\0' env PYSPARK_PYTHON="$venv/bin/python" SPARK_LOCAL_IP=127.0.0.1 PG_JDBC_JAR="$jdbc_driver" \
        "$venv/bin/python" "$here/engines.py" pyspark-write "$tls" "$work/sf$sf/lineitem.parquet"
      ;;
  esac
}

failures=0
# run_one DIRECTION ENGINE SF RUN: measure one run, check what it wrote, record both, then delete
# the output (read) or the table (write).
run_one() {
  local direction=$1 engine=$2 sf=$3 run=$4 out=$outputs/$2
  local name=sf$3-$1-$2-$4 cmd status=0 before after check=("$1" "$work/sf$3/expected.json")
  local json=$results/$name.json log=$results/logs/$name.log
  rm -rf "$out"
  mkdir -p "$outputs"
  sql -c "DROP TABLE IF EXISTS lineitem_copy" -c "CHECKPOINT"
  mapfile -d '' -t cmd < <(engine_command "$direction" "$engine" "$sf" "$out")
  sync
  before=$("$venv/bin/python" "$here/report.py" server-cpu "$postmaster")
  "$venv/bin/python" "$measure" --timeout "$timeout_s" --out "$json.measure" -- "${cmd[@]}" \
    >"$log" 2>&1 || status=$?
  sleep 0.2 # the sessions' backends exit and are reaped: their CPU moves to the postmaster's
  after=$("$venv/bin/python" "$here/report.py" server-cpu "$postmaster")
  if ((status == 0)); then
    if [[ $direction == read ]]; then check+=("$out"); fi
    "$venv/bin/python" "$here/verify.py" "${check[@]}" >"$json.verify" || status=$?
    [[ -s $json.verify ]] || status=1
  else
    log "SF$sf $direction $engine run $run: FAILED (exit $status); the last lines of $log:"
    tail -n 15 "$log" >&2
  fi
  "$venv/bin/python" "$here/report.py" merge "$json.measure" "$([[ -s $json.verify ]] && echo "$json.verify" || echo -)" \
    "$before" "$after" "$json" "$log" |
    while IFS= read -r line; do log "SF$sf $direction $engine run $run: $line"; done
  rm -f "$json.measure" "$json.verify"
  if ((status != 0)); then
    failures=$((failures + 1))
    if [[ $direction == read && -d $out ]]; then
      rm -rf "$data/failed/jdbc-$engine-sf$sf"
      mkdir -p "$data/failed"
      mv "$out" "$data/failed/jdbc-$engine-sf$sf"
      log "SF$sf $direction $engine run $run: output kept in $data/failed/jdbc-$engine-sf$sf"
    fi
  fi
  if [[ -z $keep_output ]]; then rm -rf "$out"; fi
}

# rounds DIRECTION SF ENGINE...: $runs rounds; every round starts with the next engine, so that
# background noise is shared.
rounds() {
  local direction=$1 sf=$2 run i
  shift 2
  local engines=("$@") n=$#
  for ((run = 1; run <= runs; run++)); do
    for ((i = 0; i < n; i++)); do
      engine=${engines[(i + run - 1) % n]}
      log "SF$sf $direction run $run/$runs: $engine"
      run_one "$direction" "$engine" "$sf" "$run"
    done
  done
  echo
  "$venv/bin/python" "$here/report.py" table "$results" "$sf" "$direction" "$(IFS=,; echo "${engines[*]}")" || true
  echo
}

for sf in "${scale_list[@]}"; do
  check_disk "$sf"
  generate "$sf"
  mkdir -p "$work/sf$sf"
  load "$sf"
  if ((${#read_list[@]} > 0)); then rounds read "$sf" "${read_list[@]}"; fi
  if ((${#write_list[@]} > 0)); then rounds write "$sf" "${write_list[@]}"; fi
done
log "results: $results"
if ((failures > 0)); then
  log "$failures run(s) failed or wrote wrong output"
  exit 1
fi
