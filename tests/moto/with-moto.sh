#!/usr/bin/env bash
# Usage: tests/moto/with-moto.sh CMD [ARGS...]
#        tests/moto/with-moto.sh --venv-only
#
# Runs CMD against a private moto server (tests/moto/server.py) on 127.0.0.1 and a free port,
# then stops the server and exits with CMD's exit code. CMD sees only the local endpoint and
# test credentials; every AWS_* variable from the caller's environment is dropped first.
#
# First ensures the venv <repo>/.venv holds tests/moto/requirements.txt, rebuilding it when
# that file changes. --venv-only stops after that step.
#
# Set TRAILKEEPER_MOTO_LOG=FILE to keep the server's log; otherwise it is printed only when
# the server fails to start.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.venv"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

die() { echo "with-moto: $*" >&2; exit 1; }

[ "$#" -gt 0 ] || die "usage: $0 CMD [ARGS...] | --venv-only"

# (1) The venv. A lock keeps two first runs from building it at once; its name matches the
# /.venv-* line of .gitignore.
ensure_venv() {
  local want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "with-moto: building $venv from $requirements" >&2
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
  echo "$want" >"$stamp"
}
(
  flock 9
  ensure_venv
) 9>"$root/.venv-lock"
if [ "$1" = "--venv-only" ]; then exit 0; fi

# (2) Scratch space: the port file, the server log and the keys dir.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/trailkeeper-moto.XXXXXX")
log=${TRAILKEEPER_MOTO_LOG:-$tmp/server.log}
server_pid=

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do # up to 10 s, then force it
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
cleanup() {
  stop_server
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# (4, before the server starts, so that it shares the keys dir) The environment for CMD.
for name in $(compgen -e); do
  case "$name" in AWS_*) unset "$name" ;; esac
done
export TRAILKEEPER_MOTO_KEYS_DIR="$tmp/keys"
mkdir "$TRAILKEEPER_MOTO_KEYS_DIR"
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 # awscli v1 ignores AWS_REGION
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE=/dev/null
export TRAILKEEPER_AWSCLI="$venv/bin/aws"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

# (3) The server, and a bounded wait until it answers HTTP.
"$venv/bin/python" "$here/server.py" --port-file "$tmp/port" </dev/null >"$log" 2>&1 &
server_pid=$!

answers_http() { # any HTTP status counts; urllib raises only when nothing answered
  "$venv/bin/python" - "$1" <<'EOF'
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    opener.open(sys.argv[1] + "/moto-api/data.json", timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}
startup_failed() {
  echo "with-moto: $*; server log ($log):" >&2
  cat "$log" >&2 || true
  exit 1
}
deadline=$((SECONDS + 30))
until [ -s "$tmp/port" ] && answers_http "http://127.0.0.1:$(cat "$tmp/port")" 2>/dev/null; do
  kill -0 "$server_pid" 2>/dev/null || startup_failed "moto server exited during startup"
  [ "$SECONDS" -lt "$deadline" ] || startup_failed "moto server not answering after 30 s"
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$(cat "$tmp/port")"
export TRAILKEEPER_TEST_ENDPOINT="$AWS_ENDPOINT_URL"
export TRAILKEEPER_MOTO_PID="$server_pid" # for make bench, which reports the server's CPU time

# (5) CMD. (6) The EXIT trap stops the server and removes $tmp.
status=0
"$@" || status=$?
exit "$status"
