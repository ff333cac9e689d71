# shellcheck shell=bash disable=SC2154 # the sourcing script sets venv
# Shared by the benchmark scripts (e2e/bench/tpch/run.sh, e2e/bench/jdbc/run.sh): logging, a
# benchmark's pinned Python venv, tpchgen-cli and the cached TPC-H lineitem CSV (and the orders
# inputs of tpch/run.sh's curate and flatten workloads), the Java check for PySpark, and kglue
# built from this checkout. Sourced, not run. bash only.
#
# The sourcing script sets `venv` (its venv directory) before calling setup_venv, setup_kglue or
# generate; everything else is set here:
#   bench  this folder (e2e/bench)          repo   the checkout
#   cache  $KGLUE_CACHE or ~/.cache/kglue   tools  $cache/tools (tpchgen-cli)
#   data   $cache/bench-data: sf<N>/lineitem/*.csv and sf<N>/expected.json, generated once per
#          scale factor and shared by every benchmark; results/<UTC time>/ of each invocation.
#          For tpch/run.sh's curate and flatten workloads also (only when one of them runs):
#          sf<N>/orders/orders.{1,2}.csv and sf<N>/expected-curate.json (generate_orders),
#          sf<N>/orders-json/orders.jsonl and sf<N>/expected-flatten.json (generate_orders_json)

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$bench/../.." && pwd)
cache=${KGLUE_CACHE:-$HOME/.cache/kglue}
tools=$cache/tools
data=$cache/bench-data
tpchgen_version=4.0.0
kglue=

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# setup_venv REQUIREMENTS: $venv with exactly the pinned packages of REQUIREMENTS, (re)installed
# when the file changes.
setup_venv() {
  local requirements=$1 stamp want
  # Unset, `python3 -m venv` would make a venv of the current folder.
  [[ -n ${venv:-} ]] || die "setup_venv: venv (the venv folder) is not set"
  want=$(sha256sum "$requirements" | cut -c1-16)
  stamp=$venv/.kglue-requirements
  if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return
  fi
  command -v python3 >/dev/null || die "python3 is required"
  log "installing the peer engines into $venv (${requirements#"$repo/"} $want)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
  echo "$want" >"$stamp"
}

setup_tpchgen() {
  local bin=$tools/bin/tpchgen-cli
  if [[ -x $bin ]] && "$bin" --version 2>/dev/null | grep -q " $tpchgen_version\$"; then
    return
  fi
  command -v cargo >/dev/null || die "cargo is required to install tpchgen-cli"
  log "installing tpchgen-cli $tpchgen_version into $tools"
  # Its own target dir, so that it never shares a build lock with the workspace.
  CARGO_TARGET_DIR=$cache/tools-build cargo install --quiet --locked --version "$tpchgen_version" \
    --root "$tools" tpchgen-cli
  rm -rf "$cache/tools-build"
}

need_java() {
  command -v java >/dev/null || die "java (17) is required for PySpark"
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [[ $v -ge 17 ]] || die "PySpark needs Java 17 or later, found ${v:-none}"
}

# setup_kglue: kglue from this checkout into $kglue, built with Cargo profile $KGLUE_PROFILE:
# `release` by default; `dist` is what the released images ship (fat LTO, one codegen unit, 33 to
# 42 minutes to build on 2 cores). Cargo's target dir: ./target unless CARGO_TARGET_DIR.
setup_kglue() {
  local target profile=${KGLUE_PROFILE:-release}
  [[ $profile =~ ^(release|dist)$ ]] || die "KGLUE_PROFILE must be release or dist, not '$profile'"
  command -v cargo >/dev/null || die "cargo is required to build kglue"
  log "building kglue (cargo build --profile $profile -p kglue-runner --bin kglue)"
  (cd "$repo" && cargo build --quiet --profile "$profile" --locked -p kglue-runner --bin kglue)
  target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  kglue=$target/$profile/kglue
  "$kglue" run --help >/dev/null 2>&1 ||
    die "$kglue has no 'run' command: this checkout cannot run ETL jobs yet"
}

# free_gib PATH: whole GiB free on the file system of PATH.
free_gib() { df -P -k "$1" | awk 'NR == 2 { print int($4 / 1048576) }'; }

# generate SF: sf<SF>/lineitem/*.csv and sf<SF>/expected.json, unless both are there already.
# expected.json is what tpch/verify.py checks outputs against (DuckDB, from $venv).
generate() {
  local sf=$1 dir=$data/sf$1 tmp n
  if [[ -f $dir/expected.json ]] && compgen -G "$dir/lineitem/*.csv" >/dev/null; then
    log "SF$sf: using the cached lineitem CSV in $dir/lineitem"
    return
  fi
  tmp=$data/.generating-sf$sf
  rm -rf "$tmp" "$dir"
  mkdir -p "$tmp"
  tpchgen_table "$sf" lineitem "$tmp"
  n=$(find "$tmp/lineitem" -name '*.csv' | wc -l)
  log "SF$sf: $n file(s), $(du -sh "$tmp/lineitem" | cut -f1); counting what it holds (DuckDB)"
  "$venv/bin/python" "$bench/tpch/verify.py" expected "$tmp/lineitem" "$tmp/expected.json" >&2
  mkdir -p "$dir"
  mv "$tmp/lineitem" "$dir/lineitem"
  mv "$tmp/expected.json" "$dir/expected.json"
  rm -rf "$tmp"
}

# tpchgen_table SF TABLE DIR: tpchgen-cli's TABLE CSV (header line) as DIR/TABLE/TABLE.<n>.csv
# (one file, or several parts), DIR being a scratch folder of the caller's.
tpchgen_table() {
  local sf=$1 table=$2 dir=$3 n=0 file
  mkdir -p "$dir/out-$table" "$dir/$table"
  setup_tpchgen
  log "SF$sf: generating $table CSV with tpchgen-cli $tpchgen_version"
  "$tools/bin/tpchgen-cli" csv --scale-factor "$sf" --tables "$table" \
    --output-dir "$dir/out-$table" >"$dir/tpchgen-$table.log" 2>&1 || {
    cat "$dir/tpchgen-$table.log" >&2
    die "tpchgen-cli failed"
  }
  while IFS= read -r -d '' file; do
    mv "$file" "$dir/$table/$table.$((n += 1)).csv"
  done < <(find "$dir/out-$table" -type f -name '*.csv' -print0 | sort -z)
  ((n > 0)) || die "tpchgen-cli wrote no CSV files under $dir/out-$table"
  # The first column of every TPC-H table is its key: <first letter>_<...>key.
  head -c 200 "$dir/$table/$table.1.csv" | head -1 | grep -q "^${table:0:1}_[a-z]*key," ||
    die "the generated $table CSV has no header line"
  rm -rf "$dir/out-$table"
}

# generate_orders SF: sf<SF>/orders/orders.{1,2}.csv, the versioned orders of tpch/run.sh's curate
# workload (see make_orders in tpch/verify.py), and sf<SF>/expected-curate.json, what curate must
# write; unless both are there already. Needs generate SF first (the expected figures join
# lineitem).
generate_orders() {
  local sf=$1 dir=$data/sf$1 tmp
  if [[ -f $dir/expected-curate.json ]] && compgen -G "$dir/orders/*.csv" >/dev/null; then
    log "SF$sf: using the cached versioned orders CSV in $dir/orders"
    return
  fi
  tmp=$data/.generating-sf$sf-orders
  rm -rf "$tmp" "$dir/orders" "$dir/expected-curate.json"
  mkdir -p "$tmp"
  tpchgen_table "$sf" orders "$tmp"
  log "SF$sf: writing two versions of the orders (DuckDB) and what curate must write"
  "$venv/bin/python" "$bench/tpch/verify.py" orders "$tmp/orders" "$dir/lineitem" "$tmp/versioned" \
    "$tmp/expected-curate.json" >&2
  log "SF$sf: versioned orders, $(du -sh "$tmp/versioned" | cut -f1)"
  mv "$tmp/versioned" "$dir/orders"
  mv "$tmp/expected-curate.json" "$dir/expected-curate.json"
  rm -rf "$tmp"
}

# generate_orders_json SF: sf<SF>/orders-json/orders.jsonl, every order as one JSON object with its
# line items nested, the input of tpch/run.sh's flatten workload (see make_orders_json in
# tpch/verify.py), and sf<SF>/expected-flatten.json; unless both are there already. Needs
# generate SF first (the items are lineitem's rows). Takes minutes and 2.3 GiB per scale factor.
generate_orders_json() {
  local sf=$1 dir=$data/sf$1 tmp
  if [[ -f $dir/expected-flatten.json ]] && compgen -G "$dir/orders-json/*.jsonl" >/dev/null; then
    log "SF$sf: using the cached orders JSON lines in $dir/orders-json"
    return
  fi
  tmp=$data/.generating-sf$sf-orders-json
  rm -rf "$tmp" "$dir/orders-json" "$dir/expected-flatten.json"
  mkdir -p "$tmp"
  tpchgen_table "$sf" orders "$tmp"
  log "SF$sf: nesting lineitem into the orders as JSON lines (DuckDB) and counting what flatten must write"
  "$venv/bin/python" "$bench/tpch/verify.py" orders-json "$tmp/orders" "$dir/lineitem" \
    "$tmp/orders-json" "$tmp/expected-flatten.json" >&2
  log "SF$sf: orders JSON lines, $(du -sh "$tmp/orders-json" | cut -f1)"
  mv "$tmp/orders-json" "$dir/orders-json"
  mv "$tmp/expected-flatten.json" "$dir/expected-flatten.json"
  rm -rf "$tmp"
}

# bad_jars CLASSPATH-FILE: the jars of a ':'-separated classpath that are missing or do not match
# the sha1 Maven stored beside them when it checked the download (one a line; none: all good).
bad_jars() {
  local jar
  # (mvn writes the classpath without a final newline: the last jar is read all the same.)
  while IFS= read -r jar || [[ -n $jar ]]; do
    [[ -n $jar ]] || continue
    if [[ ! -f $jar || ! -s $jar.sha1 ]] ||
      [[ $(sha1sum <"$jar" | cut -c1-40) != "$(cut -c1-40 "$jar.sha1")" ]]; then
      echo "$jar"
    fi
  done < <(tr ':' '\n' <"$1")
}

# setup_spark_kafka POM: the runtime jars of the Maven project POM (the Spark Kafka connector for
# PySpark, see streaming/spark-kafka-pom.xml) from Maven Central, resolved by mvn into
# $cache/maven with --strict-checksums; the ':'-separated classpath is kept in the file
# $spark_kafka_classpath under $cache/spark-kafka/<hash of POM>/, so a warm start runs no mvn, and
# every jar is checked against its sha1 on each call. mvn must be on PATH (e2e/kglue-kafka
# installs it when missing: run `e2e/kglue-kafka classpath` first).
spark_kafka_classpath=
setup_spark_kafka() {
  local pom=$1 plugin=org.apache.maven.plugins:maven-dependency-plugin:3.8.1 dir jar t0=$SECONDS
  dir=$cache/spark-kafka/$( (cat "$pom"; echo "$plugin") | sha256sum | cut -c1-12)
  # shellcheck disable=SC2034 # read by the sourcing script
  spark_kafka_classpath=$dir/classpath
  if [[ -s $dir/classpath && -z $(bad_jars "$dir/classpath") ]]; then
    return
  fi
  command -v mvn >/dev/null || die "mvn is required to resolve the Spark Kafka connector (apt-get install maven)"
  mkdir -p "$cache/spark-kafka"
  exec 7>"$cache/spark-kafka.lock"
  flock -w 600 7 || die "another benchmark holds $cache/spark-kafka.lock"
  if [[ -s $dir/classpath && -z $(bad_jars "$dir/classpath") ]]; then
    exec 7>&-
    return
  fi
  # A damaged jar stays in Maven's repository (Maven checks downloads only): remove it first.
  if [[ -s $dir/classpath ]]; then
    while IFS= read -r jar; do
      log "removing $jar from the cache: it is missing, or does not match its sha1"
      rm -f "$jar" "$jar.sha1"
    done < <(bad_jars "$dir/classpath")
  fi
  log "resolving the Spark Kafka connector's jars from Maven Central into $cache/maven"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  cp "$pom" "$dir.tmp/pom.xml"
  local attempt
  for attempt in 1 2; do
    (cd "$dir.tmp" && mvn --batch-mode --strict-checksums -Dstyle.color=never -Dmaven.repo.local="$cache/maven" \
      "$plugin:build-classpath" -Dmdep.includeScope=runtime -Dmdep.outputFile="$dir.tmp/classpath") \
      >"$dir.tmp/mvn.log" 2>&1 </dev/null && break
    # Maven Central answers slowly or drops a connection now and then: say why, try once more.
    log "mvn failed (attempt $attempt); its errors: $(grep -m 5 ERROR "$dir.tmp/mvn.log" | tr '\n' ' ' || echo none)"
    if ((attempt == 2)); then
      tail -n 30 "$dir.tmp/mvn.log" | sed 's/^/    /' >&2
      die "mvn could not resolve the Spark Kafka connector (log: $dir.tmp/mvn.log)"
    fi
  done
  [[ -s $dir.tmp/classpath && -z $(bad_jars "$dir.tmp/classpath") ]] ||
    die "mvn resolved the Spark Kafka connector, but a jar of it is missing or does not match its sha1 ($dir.tmp/classpath)"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  exec 7>&-
  log "resolved $(tr ':' '\n' <"$dir/classpath" | grep -c .) jars in $((SECONDS - t0)) s: $dir/classpath"
}
