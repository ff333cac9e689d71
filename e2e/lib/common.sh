# shellcheck shell=bash disable=SC2154 # the sourcing script sets tool, state, components, ...
# Shared by e2e/kglue-cluster and e2e/kglue-s3: logging, building a Go program once into a
# versioned cache directory, and running daemons as local processes (each in its own session, a
# pid file per daemon, ownership checks against pid reuse, TERM→KILL stop, an owner-pid watchdog).
# Sourced, not run. bash only.
#
# The sourcing script sets these before calling the functions below (they are read at call time):
#   tool           name used in messages, e.g. kglue-cluster
#   state          absolute state directory of one running instance (see abs_path)
#   state_marker   file that marks $state as ours, e.g. cluster.env; the script writes it on start
#   components     array of daemon executables' base names, in start order
#   start_timeout  seconds each daemon may take to become healthy
#   instance       what runs, for messages: "the cluster", "the S3 server"
# and may use:
#   cache          $KGLUE_CACHE or ~/.cache/kglue: built binaries (bin/), Go caches (gomod/, gobuild/)
#   starting       set while `start` has processes that must not outlive a failure
#
# The state directory holds logs/<name>.log and pids/<name>.pid for every spawned daemon.
# File descriptors: 8 is the build lock, 9 the start/stop lock; neither is passed to daemons.

cache=${KGLUE_CACHE:-$HOME/.cache/kglue}
starting=

log() { printf '%s: %s\n' "$tool" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# abs_path PATH: PATH made absolute (processes are matched by this path), without a trailing slash.
abs_path() {
  local p=$1
  case $p in /*) ;; *) p=$PWD/$p ;; esac
  echo "${p%/}"
}

# seconds_setting NAME DEFAULT: the value of environment variable NAME (or DEFAULT), checked to be
# a whole number of seconds.
seconds_setting() {
  local value=${!1:-$2}
  [[ $value =~ ^[0-9]+$ ]] || die "$1 must be a number of seconds"
  echo "$value"
}

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
fmt_ms() { printf '%d.%01ds' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# install_packages PACKAGE...: from Debian's packages (root only; says what to run otherwise).
install_packages() {
  if [ "$(id -u)" != 0 ]; then
    die "$* not installed; as root: apt-get install -y $*"
  fi
  log "installing $* from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$cache"
  # One apt at a time: servers of parallel tests may install at once on a fresh machine.
  flock "$cache/apt.lock" apt-get install -y -q --no-install-recommends "$@" >/dev/null ||
    { flock "$cache/apt.lock" apt-get update -q >/dev/null &&
      flock "$cache/apt.lock" apt-get install -y -q --no-install-recommends "$@" >/dev/null; } ||
    die "cannot install $*"
}

# need_commands COMMAND=PACKAGE...: installs the packages of the commands that are missing.
need_commands() {
  local entry missing=()
  for entry in "$@"; do
    command -v "${entry%%=*}" >/dev/null || missing+=("${entry#*=}")
  done
  [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

need_base_tools() {
  command -v curl >/dev/null || die "curl is required (apt-get install curl)"
  command -v setsid >/dev/null && command -v flock >/dev/null || die "setsid and flock (util-linux) are required"
}

# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

# module_key DIR: a short hash of a wrapper module's contents (go.mod, go.sum, *.go), part of the
# cache directory's name, so regenerating a module rebuilds. Contents only, never paths: every
# clone of the repository (CI clones anew each run) must find the same cached binaries.
module_key() { cat "$1/go.mod" "$1/go.sum" "$1"/*.go 2>/dev/null | sha256sum | cut -c1-12; }

go_env() {
  export GOSUMDB=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
  export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gobuild"
}

# One build at a time per cache (several instances may start at once). Call build_unlock after.
build_lock() {
  command -v go >/dev/null || die "Go is required to build $1 (https://go.dev/dl)"
  mkdir -p "$cache"
  exec 8>"$cache/build.lock"
  flock 8
  go_env
}
build_unlock() { exec 8>&-; }

# go_build_into BIN_DIR LABEL MODULE_DIR GO-BUILD-ARGS...: `go build -trimpath ARGS` in the wrapper
# module MODULE_DIR, output into BIN_DIR. Builds into BIN_DIR.tmp and renames it at the end, so an
# interrupted build never leaves a half-filled BIN_DIR behind. Call it between build_lock and
# build_unlock.
go_build_into() {
  local dir=$1 label=$2 module=$3 t0=$SECONDS
  shift 3
  mkdir -p "$dir.tmp"
  (cd "$module" && go build -trimpath -o "$dir.tmp/" "$@")
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  log "built $label in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------------
# Running daemons
# ---------------------------------------------------------------------------------------------

# One start/stop at a time per state directory. The lock file sits next to the state directory
# (which `stop` deletes); fd 9 is closed in every process we spawn so daemons never hold it.
take_lock() {
  mkdir -p "$(dirname "$state")"
  exec 9>"$state.lock"
  flock -w 120 9 || die "another $tool start/stop holds $state.lock"
  trap on_exit EXIT
}

on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$starting" ]; then stop_processes; fi
  [ -d "$state" ] || rm -f "$state.lock"
  return "$rc"
}

# Only a directory this tool created (or an empty one) is ever used or deleted as the state dir.
check_state_dir() {
  [ ! -e "$state" ] || [ -e "$state/$state_marker" ] || [ -z "$(ls -A "$state" 2>/dev/null)" ] ||
    die "$state exists and is not a $tool state directory (no $state_marker); refusing to use or delete it; set $1 elsewhere"
}

# True if $1 is one of our processes for this state directory: its executable is one of the
# components and one of its arguments points into $state/ (guards against pid reuse and against
# processes of another instance).
is_ours() {
  local pid=$1 exe arg
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  case " ${components[*]} " in *" ${exe##*/} "*) ;; *) return 1 ;; esac
  while IFS= read -r -d '' arg; do
    case $arg in "$state/"* | *"=$state/"*) return 0 ;; esac
  done 2>/dev/null <"/proc/$pid/cmdline"
  return 1
}

# Alive and not a zombie.
alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# Any live process left in process group $1?
group_alive() {
  local p
  for p in $(pgrep -g "$1" 2>/dev/null); do alive "$p" && return 0; done
  return 1
}

pid_of() { # pid of a running component of this instance, or failure
  local f=$state/pids/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(<"$f")
  is_ours "$pid" && echo "$pid"
}

# TERM each component's process group (reverse start order), give it up to 10 s, then KILL it.
# Finally KILL anything of ours that the pid files missed.
stop_processes() {
  local i name pid deadline p
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    name=${components[i]}
    pid=$(pid_of "$name") || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while group_alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if group_alive "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for 10s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for p in $(pgrep -f -- "$state/" 2>/dev/null); do
    if is_ours "$p"; then
      log "killing stray process $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80))"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
}

# spawn NAME COMMAND...: start a daemon in its own session and process group, logging to
# logs/NAME.log. Started from a non-interactive shell the child is never a process-group leader,
# so setsid(1) calls setsid() and execs in place: $! is the daemon's pid and its process-group id.
# To give the daemon alone some environment (e.g. secrets that should not show in `ps`), call it
# as `VAR=value spawn NAME ...`: bash exports such assignments to the function's children.
spawn() {
  local name=$1
  shift
  setsid "$@" </dev/null >"$state/logs/$name.log" 2>&1 8>&- 9>&- &
  echo $! >"$state/pids/$name.pid"
}

# Stop the processes started so far, keep the logs, print the failing component's log tail.
start_failed() { # component reason
  log "error: $1 $2; last lines of $state/logs/$1.log:"
  tail -n 30 "$state/logs/$1.log" 2>/dev/null | sed 's/^/    /' >&2 || true
  starting=
  stop_processes
  log "stopped what was started; logs kept in $state/logs (\`$0 stop\` removes them)"
  exit 1
}

# wait_healthy COMPONENT CHECK-COMMAND...: poll CHECK every 0.1 s until it succeeds; fail the start
# if the component exits or start_timeout passes.
wait_healthy() {
  local name=$1 pid t0
  shift
  pid=$(<"$state/pids/$name.pid")
  t0=$(now_ms)
  local deadline=$((SECONDS + start_timeout))
  until "$@"; do
    alive "$pid" || start_failed "$name" "exited during startup"
    [ $SECONDS -lt $deadline ] || start_failed "$name" "was not healthy after ${start_timeout}s"
    sleep 0.1
  done
  log "$name is up ($(fmt_ms $(($(now_ms) - t0))))"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# parse_start_args "$@": sets owner_pid from `--owner-pid PID` (the only option of `start`).
owner_pid=
parse_start_args() {
  while [ $# -gt 0 ]; do
    case $1 in
      --owner-pid) owner_pid=${2:-}; shift 2 ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  [ -z "$owner_pid" ] || [[ $owner_pid =~ ^[0-9]+$ ]] || die "--owner-pid needs a process id"
}

# start_watchdog OWNER-PID [VAR=value...]: tests pass --owner-pid; if that process dies without
# running `stop` (killed, timed out), this watchdog runs `$0 stop` with the given environment (the
# variables that select this instance). It ends by itself once the state directory is gone (a
# normal stop). It logs to logs/watchdog.log.
start_watchdog() {
  local owner=$1 self
  shift
  self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
  env "$@" setsid bash -c '
    while kill -0 "$1" 2>/dev/null && [ -d "$3" ]; do sleep 1; done
    if [ -d "$3" ]; then echo "owner $1 is gone; stopping"; exec "$2" stop; fi
  ' "$tool-watchdog" "$owner" "$self" "$state" </dev/null >>"$state/logs/watchdog.log" 2>&1 8>&- 9>&- &
  log "watching process $owner: $instance stops when it exits"
}
