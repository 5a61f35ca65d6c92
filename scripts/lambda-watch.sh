# Source me. Helpers to run the functions under `cargo lambda watch` and invoke them, for the
# end-to-end test (tests/lambda/watch-invoke.sh) and the demo (demo/run.sh).
#
#   watch_start NAME [KEY=VALUE...]   starts an emulator named NAME on a free 127.0.0.1 port, the
#                                     functions seeing this shell's environment plus KEY=VALUEs;
#                                     sets WATCH_PORT_<NAME>; its log is $WATCH_DIR/<NAME>.log
#   watch_invoke NAME FUNCTION FILE   cargo lambda invoke FUNCTION --data-file FILE on it; prints
#                                     the function's response; fails when the function fails
#   watch_stop_all                    stops every emulator started here (also on EXIT if you
#                                     call it from your trap)
# WATCH_DIR must be set to a scratch directory first.

_watch_pids=()

_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

watch_start() {
  local name=$1
  shift
  local port log env_args=() kv
  port=$(_free_port)
  log="$WATCH_DIR/$name.log"
  for kv in "$@"; do env_args+=(--env-var "$kv"); done
  # Its own process group (setsid), so that stopping it also stops the functions it started.
  # --wait: start a function on its first invocation only (without it, watch would try to run
  # a default function, which a workspace of several binaries does not have).
  setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" --ignore-changes --wait \
    "${env_args[@]}" </dev/null >"$log" 2>&1 &
  local pid=$!
  _watch_pids+=("$pid")
  local deadline=$((SECONDS + 120))
  until python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$port" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "cargo lambda watch ($name) exited during startup; its log ($log):" >&2
      cat "$log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "cargo lambda watch ($name) not listening on 127.0.0.1:$port after 120 s; its log ($log):" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.3
  done
  printf -v "WATCH_PORT_${name//-/_}" '%s' "$port"
}

watch_invoke() {
  local name=$1 function=$2 file=$3 port_var
  port_var="WATCH_PORT_${name//-/_}"
  cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "${!port_var}" "$function" --data-file "$file"
}

watch_stop_all() {
  local pid
  for pid in "${_watch_pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${_watch_pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  _watch_pids=()
}
