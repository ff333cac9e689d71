# shellcheck shell=bash disable=SC2154 # the sourcing script sets tool, state, server_user, ...
# Shared by e2e/kglue-postgres and e2e/kglue-mysql, on top of lib/common.sh: database servers from
# Debian's packages, run as local processes by an unprivileged user, with TLS from a CA made here.
# Sourced, not run. bash only.
#
# The sourcing script also sets:
#   server_user    the system user a root caller runs the server as (postgres, mysql)

# check_port NAME VALUE: VALUE is a usable loopback port, else name the variable.
check_port() {
  [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge 1024 ] && [ "$2" -le 65535 ] ||
    die "$1 must be a port number between 1024 and 65535"
}

# The state directory: logs/, pids/, data/ and tls/. The server's user must reach its data and
# certificates through it, nothing more: the directory is traversable but not listable by others.
make_state_dir() {
  mkdir -p "$state"/{logs,pids,data,tls}
  chmod 711 "$state"
  chmod 700 "$state/data" "$state/tls"
}

# Whether the server runs as $server_user (a root caller) or as the caller.
as_root() { [ "$(id -u)" = 0 ]; }

# server_owns PATH...: hand paths to the server's user (a root caller only).
server_owns() {
  if as_root; then
    id "$server_user" >/dev/null 2>&1 || die "the system user $server_user does not exist (it comes with the server's package)"
    chown -R "$server_user:" "$@"
  fi
}

# as_server COMMAND...: run a command as the server's user (in place, no extra process).
as_server() {
  if as_root; then
    setpriv --reuid="$server_user" --regid="$server_user" --init-groups -- "$@"
  else
    "$@"
  fi
}

# spawn_as_server NAME COMMAND...: lib/common.sh's spawn, as the server's user.
spawn_as_server() {
  local name=$1
  shift
  if as_root; then
    spawn "$name" setpriv --reuid="$server_user" --regid="$server_user" --init-groups -- "$@"
  else
    spawn "$name" "$@"
  fi
}

# make_certificates: tls/ca.crt (a CA of this state directory only) and tls/server.crt and .key,
# valid for 127.0.0.1 and localhost, so clients can verify the server (verify-full) in tests.
make_certificates() {
  command -v openssl >/dev/null || install_packages openssl
  local dir=$state/tls
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$tool test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/ext.cnf" -out "$dir/server.crt" 2>/dev/null
  rm -f "$dir/server.csr" "$dir/ext.cnf" "$dir/ca.key" "$dir/ca.srl"
  chmod 600 "$dir/server.key"
  chmod 644 "$dir/ca.crt" "$dir/server.crt"
}

# db_stop STATE-VARIABLE: stop the server and remove the state directory.
db_stop() {
  check_state_dir "$1"
  take_lock
  stop_processes
  if [ -d "$state" ]; then
    rm -rf "$state"
    log "stopped; removed $state"
  else
    log "no state directory $state; nothing else to stop"
  fi
}

# db_status: "running: ADDRESS (state DIR)" and success when the server answers (the script's
# `running`), else "stopped" and failure.
db_status() {
  if running; then
    echo "running: 127.0.0.1:$port (state $state)"
  else
    echo "stopped"
    exit 1
  fi
}
