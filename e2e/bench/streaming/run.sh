#!/usr/bin/env bash
# Streaming benchmark (issue 17): Kafka JSON events -> Parquet partitioned by page, run by kglue's
# streaming Job (`kglue run` on a Job with spec.streaming) and by PySpark Structured Streaming
# (Spark's Kafka source from Maven Central), the same events from the same topic, the same
# trigger interval and batch cap, one engine at a time, each in its own process under
# ../tpch/measure.py (peak RSS and CPU of the whole process tree). Usage, and what is measured:
#
#   e2e/bench/streaming/run.sh [--engines kglue,spark] [--runs 3] [--phases throughput,latency]
#       [--backlog 2000000] [--rate 20000] [--warmup 30] [--duration 60] [--window 5]
#       [--max-batch 500000] [--partitions 3] [--timeout 1800] [--kglue PATH] [--setup-only]
#       [--keep-output]
#
#   throughput  a backlog of --backlog events (preloaded once, shared by every run) read to its
#               end: kglue with --until-caught-up, Spark with trigger(availableNow=True).
#               events/s = rows / wall time of the whole process (start to exit); for Spark also
#               rows / query time (without the JVM's start).
#   latency     a fresh topic per run; the engine is started, and once it is connected to the
#               broker --rate events/s are produced (open loop) for --warmup s (not measured) and
#               then --duration s. Latency of an event = the time its row became visible to a
#               reader (kglue: its file renamed into place; Spark: its batch's _spark_metadata
#               log written) - the time it was due at the producer; p50/p99 over the measured
#               events, the sustained rate, and each engine's peak RSS (its whole process tree).
#   --phases       throughput, latency (default both)
#   --backlog N    events in the throughput phase's topic
#   --rate R, --warmup S, --duration S   the latency phase's input rate (events/s) and phases
#   --window S     kglue windowSeconds = Spark trigger(processingTime='S seconds'), whole seconds
#   --max-batch N  kglue maxRecordsPerBatch = Spark maxOffsetsPerTrigger; 0: both uncapped
#   --engines      kglue, spark (PySpark); each round starts with the next engine
#   --runs N       rounds of each phase; the table shows medians
#   --timeout S    the longest one engine run may take before it is killed (and counted failed)
#   --kglue PATH   run this kglue binary instead of building one from the checkout
# Every sink is checked: each event produced exactly once (by Kafka partition and offset, and by
# id), else the run fails loudly and its output is kept under ~/.cache/kglue/bench-data/failed/.
#
# The broker is Kafka 4 (e2e/kglue-kafka) with a state directory of its own under /tmp, on free
# ports of 127.0.0.1, stopped when the script exits (Ctrl-C included). Everything else is installed
# on first use and cached outside the checkout:
#   ~/.cache/kglue/bench-venv            PySpark and DuckDB (../tpch/requirements.txt)
#   ~/.cache/kglue/bench-streaming-venv  the producer, confluent-kafka (requirements.txt)
#   ~/.cache/kglue/maven, spark-kafka/   the Spark Kafka connector's jars (spark-kafka-pom.xml)
#   ~/.cache/kglue/bench-data/results/streaming-<UTC time>/   figures, logs, summary.md
# kglue is built from this checkout (cargo build --release -p kglue-runner --bin kglue), in
# CARGO_TARGET_DIR, by default ~/.cache/kglue/target as for e2e/run-tests.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# log, die, setup_venv, need_java, setup_kglue, free_gib, setup_spark_kafka; repo, cache, data,
# kglue, spark_kafka_classpath.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$here/../lib.sh"
venv=$cache/bench-venv
producer_venv=$cache/bench-streaming-venv
measure=$here/../tpch/measure.py
kafka=$repo/e2e/kglue-kafka
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}

engines=kglue,spark
runs=3
phases=throughput,latency
backlog=2000000
rate=20000
warmup=30
duration=60
window=5
max_batch=500000
partitions=3
pages=8 # distinct values of the partition column
timeout_s=1800
setup_only=
keep_output=
kglue_given=

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

while (($#)); do
  case $1 in
    --engines) engines=${2:?--engines needs a value}; shift 2 ;;
    --runs) runs=${2:?--runs needs a value}; shift 2 ;;
    --phases) phases=${2:?--phases needs a value}; shift 2 ;;
    --backlog) backlog=${2:?--backlog needs a value}; shift 2 ;;
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --warmup) warmup=${2:?--warmup needs a value}; shift 2 ;;
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --window) window=${2:?--window needs a value}; shift 2 ;;
    --max-batch) max_batch=${2:?--max-batch needs a value}; shift 2 ;;
    --partitions) partitions=${2:?--partitions needs a value}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
    --kglue) kglue_given=${2:?--kglue needs a path}; shift 2 ;;
    --setup-only) setup_only=1; shift ;;
    --keep-output) keep_output=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive whole number, not '$2'"; }
positive --runs "$runs"
positive --backlog "$backlog"
positive --rate "$rate"
positive --duration "$duration"
positive --window "$window"
positive --partitions "$partitions"
positive --timeout "$timeout_s"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup must be a whole number of seconds"
[[ $max_batch =~ ^[0-9]+$ ]] || die "--max-batch must be a whole number (0: uncapped)"
IFS=, read -r -a engine_list <<<"$engines"
IFS=, read -r -a phase_list <<<"$phases"
((${#engine_list[@]} > 0)) || die "--engines is empty"
for engine in "${engine_list[@]}"; do
  case $engine in kglue | spark) ;; *) die "unknown engine: $engine (kglue, spark)" ;; esac
done
for phase in "${phase_list[@]}"; do
  case $phase in throughput | latency) ;; *) die "unknown phase: $phase (throughput, latency)" ;; esac
done
has_engine() { [[ ",$engines," == *",$1,"* ]]; }
has_phase() { [[ ",$phases," == *",$1,"* ]]; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------

command -v ss >/dev/null || die "ss (iproute2) is required: it tells when an engine is connected to the broker"
setup_venv "$repo/e2e/bench/tpch/requirements.txt"
venv=$producer_venv setup_venv "$here/requirements.txt"
# Kafka's jars (and mvn and Java 17, installed when missing) for the broker.
"$kafka" classpath >/dev/null || die "e2e/kglue-kafka could not resolve Kafka's jars"
if has_engine spark; then
  need_java
  setup_spark_kafka "$here/spark-kafka-pom.xml"
  pyspark_version=$("$venv/bin/python" -c 'import pyspark; print(pyspark.__version__)')
  connector_version=$(sed -n 's|.*<artifactId>spark-sql-kafka-0-10_2.13</artifactId><version>\([^<]*\)</version>.*|\1|p' \
    "$here/spark-kafka-pom.xml")
  [[ $pyspark_version == "$connector_version" ]] ||
    die "PySpark is $pyspark_version but spark-kafka-pom.xml pins the Kafka connector at $connector_version; make them agree"
fi
if has_engine kglue; then
  if [[ -n $kglue_given ]]; then
    kglue=$(realpath "$kglue_given")
    [[ $("$kglue" run --help 2>/dev/null || true) == *--until-caught-up* ]] ||
      die "--kglue $kglue_given: not a kglue binary that runs streaming jobs (no 'run --until-caught-up')"
  else
    setup_kglue
  fi
fi
if [[ -n $setup_only ]]; then
  log "tools ready: $venv, $producer_venv${kglue:+, $kglue}${spark_kafka_classpath:+, $spark_kafka_classpath}"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Processes: everything started in the background is tracked, and ended on exit
# ---------------------------------------------------------------------------------------------

mkdir -p "$data"
results=$data/results/streaming-$(date -u +%Y%m%dT%H%M%SZ)
outputs=$data/out-streaming
work=$results/work
mkdir -p "$results/logs" "$work"

# measure.py processes in flight; each runs its command as the leader of a session of its own.
measured=()
# session_of PID: the session (= process group) measure.py PID started its command in, once it has.
session_of() {
  local child
  child=$(pgrep -P "$1" 2>/dev/null | head -n 1) || true
  [[ -n $child ]] && echo "$child"
}
# stop_session SID: TERM the process group SID, KILL what is left after 10 s.
stop_session() {
  local sid=$1 i
  kill -TERM -- "-$sid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 -- "-$sid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "process group $sid ignored SIGTERM for 10 s; killing it"
  kill -KILL -- "-$sid" 2>/dev/null || true
}
stop_measured() {
  local pid sid
  for pid in "${measured[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    if sid=$(session_of "$pid"); then stop_session "$sid"; fi
    kill -TERM "$pid" 2>/dev/null || true
  done
  measured=()
}

export KGLUE_KAFKA_STATE KGLUE_KAFKA_PORT KGLUE_KAFKA_SASL_PORT KGLUE_KAFKA_SASL_SSL_PORT KGLUE_KAFKA_CONTROLLER_PORT
# The broker's state directory (which kglue-kafka creates) and its lock file, in a folder of our own.
broker_dir=$(mktemp -d /tmp/kglue-bench-kafka.XXXXXX)
KGLUE_KAFKA_STATE=$broker_dir/state
broker_started=
cleanup() {
  local rc=$?
  trap '' INT TERM HUP # bounded (about 20 s at most): let it finish, so that nothing is left running
  stop_measured
  if [[ -n $broker_started ]]; then
    cp "$KGLUE_KAFKA_STATE/logs/java.log" "$results/logs/kafka-broker.log" 2>/dev/null || true
    "$kafka" stop >>"$results/logs/kafka.log" 2>&1 ||
      log "warning: stopping the Kafka broker failed; see $results/logs/kafka.log"
  fi
  rm -f "$broker_dir/state.lock"
  rmdir "$broker_dir" 2>/dev/null || log "warning: $broker_dir is left behind"
  if [[ -z $keep_output ]]; then rm -rf "$outputs"; fi
  rm -rf "$work"
  return "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------------
# The broker
# ---------------------------------------------------------------------------------------------

read -r KGLUE_KAFKA_PORT KGLUE_KAFKA_SASL_PORT KGLUE_KAFKA_SASL_SSL_PORT KGLUE_KAFKA_CONTROLLER_PORT < <(
  "$venv/bin/python" -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
bootstrap=127.0.0.1:$KGLUE_KAFKA_PORT
free=$(free_gib /tmp)
need=$(awk -v b="$backlog" -v r="$rate" -v s="$((warmup + duration))" 'BEGIN { printf "%d", (b + r * s) * 400 / 2^30 + 2.99 }')
((free >= need)) || die "the broker needs about $need GiB free under /tmp for its topics, only $free GiB are"
free=$(free_gib "$data")
((free >= need)) || die "the sinks need about $need GiB free under $data, only $free GiB are"

broker_started=1
"$kafka" start --owner-pid $$ >"$results/logs/kafka.log" 2>&1 || {
  tail -n 30 "$results/logs/kafka.log" >&2
  die "the Kafka broker did not start (e2e/kglue-kafka start; state $KGLUE_KAFKA_STATE)"
}
log "Kafka broker at $bootstrap (state $KGLUE_KAFKA_STATE)"

producer() { "$producer_venv/bin/python" "$here/produce.py" "$@"; }

# What ran: kglue's commit (+changes when the checkout's Rust sources differ from it), the peers.
kglue_version=$(cd "$repo" && git rev-parse --short HEAD)
if [[ -n $(cd "$repo" && git status --porcelain -- '*.rs' '*Cargo.toml' Cargo.lock) ]]; then
  kglue_version+=+changes
fi
if [[ -n $kglue_given ]]; then kglue_version="$kglue (given)"; fi
java_version=$( (java -version 2>&1 || true) | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -1)
kafka_version=$(sed -n 's/^kafka_version=//p' "$kafka")
"$venv/bin/python" - "$results/settings.json" <<PY
import json, sys
import duckdb
settings = {
    "engines": "$engines".split(","), "runs": $runs,
    "phases": {"throughput": $(has_phase throughput && echo True || echo False),
               "latency": $(has_phase latency && echo True || echo False)},
    "backlog": $backlog, "rate": $rate, "warmup": $warmup, "duration": $duration, "window": $window,
    "max_batch": $max_batch, "partitions": $partitions, "pages": $pages, "cpus": $(nproc),
    "versions": {"kglue": "$kglue_version", "PySpark": "${pyspark_version:-none}",
                 "Spark Kafka connector": "${connector_version:-none}", "Java": "${java_version:-none}",
                 "Kafka broker": "$kafka_version",
                 "confluent-kafka (producer)": "$("$producer_venv/bin/python" -c 'import confluent_kafka; print(confluent_kafka.__version__)')",
                 "DuckDB (checks)": duckdb.__version__},
}
with open(sys.argv[1], "w") as f:
    json.dump(settings, f)
PY

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

# engine_command ENGINE MODE TOPIC OUT NAME: the command line of one engine run, NUL-separated on
# stdout. MODE: throughput (read the topic to its end) or latency (until stopped).
engine_command() {
  local engine=$1 mode=$2 topic=$3 out=$4 name=$5 dir=$work/$5 extra=
  mkdir -p "$dir/catalog" "$dir/spill"
  case $engine in
    kglue)
      sed -e "s|@BOOTSTRAP@|$bootstrap|" -e "s|@TOPIC@|$topic|" "$here/catalog/events.yaml" >"$dir/catalog/events.yaml"
      if ((max_batch > 0)); then extra=", maxRecordsPerBatch: $max_batch"; fi
      sed -e "s|@OUTPUT@|file://$out/|" -e "s|@WINDOW@|$window|" -e "s|@STREAMING_EXTRA@|$extra|" \
        "$here/kglue-job.yaml" >"$dir/job.yaml"
      printf '%s\0' "$kglue" run -f "$dir/job.yaml" --catalog "$dir/catalog" --json --spill-dir "$dir/spill"
      if [[ $mode == throughput ]]; then printf '%s\0' --until-caught-up; fi
      ;;
    spark)
      printf '%s\0' env PYSPARK_PYTHON="$venv/bin/python" SPARK_LOCAL_IP=127.0.0.1 PATH="$venv/bin:$PATH" \
        "$venv/bin/python" "$here/spark_stream.py" --bootstrap "$bootstrap" --topic "$topic" --out "$out" \
        --checkpoint "$dir/spark-checkpoint" --jars-file "$spark_kafka_classpath" --result "$dir/spark.json"
      if ((max_batch > 0)); then printf '%s\0' --max-offsets-per-trigger "$max_batch"; fi
      if [[ $mode == throughput ]]; then
        printf '%s\0' --available-now
      else
        # Stops itself once every event is committed; run.sh gives up on it after $grace s more.
        printf '%s\0' --trigger-seconds "$window" --until-rows "$((rate * (warmup + duration)))" \
          --run-seconds "$((ready_timeout + warmup + duration + grace + 30))"
      fi
      ;;
  esac
}

# start_measured TIMEOUT JSON LOG COMMAND...: measure.py running COMMAND in the background; sets
# started to measure.py's pid.
started=
start_measured() {
  local timeout=$1 json=$2 log=$3
  shift 3
  "$venv/bin/python" "$measure" --timeout "$timeout" --out "$json" -- "$@" >"$log" 2>&1 &
  started=$!
  measured+=("$started")
}
# wait_measured PID: its exit status; forgets it.
wait_measured() {
  local pid=$1 status=0 p keep=()
  wait "$pid" || status=$?
  for p in "${measured[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  measured=("${keep[@]}")
  return "$status"
}

# connected SID: a process of session SID has a TCP connection to the broker.
connected() {
  local pid
  for pid in $(ss -Htnp state established "( dport = :$KGLUE_KAFKA_PORT )" 2>/dev/null |
    grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    [[ $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f4) == "$1" ]] && return 0
  done
  return 1
}

failures=0
# finish_run PHASE ENGINE RUN OUT STATUS ENGINE_JSON [PRODUCED PRODUCER_MEASURE]: check the sink,
# record the run, keep a failed run's output, delete the rest.
finish_run() {
  local phase=$1 engine=$2 run=$3 out=$4 status=$5 engine_json=$6 produced=$7 producer_measure=${8:--}
  local name=$phase-$engine-$run latency=() check=0
  if [[ $phase == latency ]]; then latency=(--latency-from-id "$((rate * warmup))"); fi
  if ((status != 0)); then
    log "$phase $engine run $run: FAILED (exit $status); the last lines of $results/logs/$name.log:"
    tail -n 15 "$results/logs/$name.log" >&2
  fi
  "$venv/bin/python" "$here/sink.py" "$engine" "$out" --produced "$produced" --pages "$pages" "${latency[@]}" \
    --out "$work/$name.sink.json" >/dev/null || check=$?
  [[ -s $work/$name.sink.json ]] || check=1
  local producer_args=()
  if [[ $phase == latency ]]; then producer_args=("$produced" "$producer_measure"); fi
  "$venv/bin/python" "$here/report.py" merge "$results/$name.json" "$phase" "$engine" "$work/$name.measure.json" \
    "$([[ -s $work/$name.sink.json ]] && echo "$work/$name.sink.json" || echo -)" "$engine_json" \
    "${producer_args[@]}" | while IFS= read -r line; do log "$phase $engine run $run: $line"; done
  if ((status != 0 || check != 0)); then
    failures=$((failures + 1))
    if [[ -d $out ]]; then
      rm -rf "$data/failed/streaming-$name"
      mkdir -p "$data/failed"
      mv "$out" "$data/failed/streaming-$name"
      log "$phase $engine run $run: FAILED; its output is kept in $data/failed/streaming-$name"
    fi
  fi
  if [[ -z $keep_output ]]; then rm -rf "$out"; fi
}

# engine_report ENGINE NAME: what the engine said about itself (spark_stream.py's result, kglue's
# batch lines in its log).
engine_report() {
  case $1 in
    spark) echo "$work/$2/spark.json" ;;
    kglue) echo "$results/logs/$2.log" ;;
  esac
}

# throughput_run ENGINE RUN: read the backlog topic to its end.
throughput_run() {
  local engine=$1 run=$2 name=throughput-$1-$2 out=$outputs/throughput-$1 status=0 cmd
  rm -rf "$out"
  mkdir -p "$outputs"
  mapfile -d '' -t cmd < <(engine_command "$engine" throughput backlog "$out" "$name")
  sync
  start_measured "$timeout_s" "$work/$name.measure.json" "$results/logs/$name.log" "${cmd[@]}"
  wait_measured "$started" || status=$?
  finish_run throughput "$engine" "$run" "$out" "$status" "$(engine_report "$engine" "$name")" "$work/backlog.produced.json"
}

# latency_run ENGINE RUN: a fresh topic; the engine started; once it is connected to the broker,
# the events at the fixed rate; once it has committed them all (or $grace s after the last was
# sent), the engine stopped.
ready_timeout=300
grace=$((warmup + duration > 120 ? warmup + duration : 120))
latency_run() {
  local engine=$1 run=$2 name=latency-$1-$2 out=$outputs/latency-$1 topic=latency-$1-$2 status=0 cmd
  local engine_pid sid t0 produced=$work/latency-$1-$2.produced.json producer_pid pstatus=0 total deadline committed
  total=$((rate * (warmup + duration)))
  rm -rf "$out"
  mkdir -p "$outputs"
  producer create --bootstrap "$bootstrap" --topic "$topic" --partitions "$partitions" ||
    die "could not create topic $topic on the broker at $bootstrap"
  mapfile -d '' -t cmd < <(engine_command "$engine" latency "$topic" "$out" "$name")
  sync
  start_measured "$((ready_timeout + warmup + duration + grace + 120))" "$work/$name.measure.json" \
    "$results/logs/$name.log" "${cmd[@]}"
  engine_pid=$started
  # Wait until the engine is connected to the broker (Spark: its JVM started, the query planned).
  t0=$SECONDS
  sid=
  until [[ -n $sid ]] && connected "$sid"; do
    if ! kill -0 "$engine_pid" 2>/dev/null; then
      status=1
      log "latency $engine run $run: the engine exited before it connected to the broker"
      break
    fi
    if ((SECONDS - t0 > ready_timeout)); then
      status=1
      log "latency $engine run $run: not connected to the broker after $ready_timeout s; stopping it"
      break
    fi
    [[ -n $sid ]] || sid=$(session_of "$engine_pid") || true
    sleep 0.2
  done
  if ((status == 0)); then
    log "latency $engine run $run: connected after $((SECONDS - t0)) s; producing $rate events/s for $warmup + $duration s"
    start_measured "$((warmup + duration + 120))" "$work/$name.producer-measure.json" "$results/logs/$name.producer.log" \
      "$producer_venv/bin/python" "$here/produce.py" send --bootstrap "$bootstrap" --topic "$topic" \
      --rate "$rate" --count "$total" --pages "$pages" --out "$produced"
    producer_pid=$started
    wait_measured "$producer_pid" || pstatus=$?
    if ((pstatus != 0)) || [[ ! -s $produced ]]; then
      tail -n 10 "$results/logs/$name.producer.log" >&2
      die "latency $engine run $run: the producer failed (exit $pstatus); see $results/logs/$name.producer.log"
    fi
    # Until every event is committed: Spark stops by itself (--until-rows); kglue is stopped
    # (SIGTERM: after the batch in progress) once its batch lines add up to every event.
    deadline=$((SECONDS + grace))
    while kill -0 "$engine_pid" 2>/dev/null && ((SECONDS < deadline)); do
      if [[ $engine == kglue ]]; then
        committed=$("$venv/bin/python" "$here/report.py" rows "$results/logs/$name.log") || committed=0
        if ((committed >= total)); then
          kill -TERM "$sid" 2>/dev/null || true # the session's leader is kglue itself
          break
        fi
      fi
      sleep 0.5
    done
    if kill -0 "$engine_pid" 2>/dev/null && ((SECONDS >= deadline)); then
      log "latency $engine run $run: not every event committed $grace s after the last was sent; stopping it"
      status=1
    fi
  fi
  if ((status != 0)) && [[ -n $sid ]]; then stop_session "$sid"; fi
  if ! wait_measured "$engine_pid"; then status=1; fi
  [[ -s $produced ]] || printf '{"sent": %d, "ends": {}}\n' "$total" >"$produced"
  finish_run latency "$engine" "$run" "$out" "$status" "$(engine_report "$engine" "$name")" "$produced" \
    "$work/$name.producer-measure.json"
  producer delete --bootstrap "$bootstrap" --topic "$topic" >/dev/null 2>&1 ||
    log "warning: could not delete topic $topic"
}

n=${#engine_list[@]}
if has_phase throughput; then
  log "throughput: producing a backlog of $backlog events into topic backlog ($partitions partitions)"
  producer create --bootstrap "$bootstrap" --topic backlog --partitions "$partitions" ||
    die "could not create topic backlog on the broker at $bootstrap"
  start_measured "$timeout_s" "$work/backlog.producer-measure.json" "$results/logs/backlog.producer.log" \
    "$producer_venv/bin/python" "$here/produce.py" send --bootstrap "$bootstrap" --topic backlog \
    --rate 0 --count "$backlog" --pages "$pages" --out "$work/backlog.produced.json"
  wait_measured "$started" || {
    tail -n 10 "$results/logs/backlog.producer.log" >&2
    die "producing the backlog failed; see $results/logs/backlog.producer.log"
  }
  log "throughput: backlog of $backlog events in $(sed -n 's/.*"wall_s": \([0-9.]*\).*/\1/p' "$work/backlog.produced.json") s"
  for ((run = 1; run <= runs; run++)); do
    # Alternate: every round starts with the next engine, so that background noise is shared.
    for ((i = 0; i < n; i++)); do
      engine=${engine_list[(i + run - 1) % n]}
      log "throughput run $run/$runs: $engine"
      throughput_run "$engine" "$run"
    done
  done
fi
if has_phase latency; then
  for ((run = 1; run <= runs; run++)); do
    for ((i = 0; i < n; i++)); do
      engine=${engine_list[(i + run - 1) % n]}
      log "latency run $run/$runs: $engine"
      latency_run "$engine" "$run"
    done
  done
fi

echo
"$venv/bin/python" "$here/report.py" table "$results" || true
echo
log "results: $results"
if ((failures > 0)); then
  log "$failures run(s) failed or wrote wrong output"
  exit 1
fi
