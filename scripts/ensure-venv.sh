#!/usr/bin/env bash
# Usage: scripts/ensure-venv.sh VENV_DIR REQUIREMENTS_FILE
#
# Makes sure the Python venv VENV_DIR holds exactly REQUIREMENTS_FILE (pinned), building it on
# first use and rebuilding it when that file changes (stamp: its sha256, as tests/moto/with-moto.sh
# does for .venv). A lock (VENV_DIR.lock, ignored by .gitignore's /.venv-*) keeps two first runs
# from building the same venv at once. Prints nothing when the venv is already right.
set -euo pipefail
[ "$#" -eq 2 ] || { echo "usage: $0 VENV_DIR REQUIREMENTS_FILE" >&2; exit 2; }
venv=$1
requirements=$2
stamp="$venv/.requirements.sha256"
[ -r "$requirements" ] || { echo "ensure-venv: no requirements file $requirements" >&2; exit 1; }
command -v python3 >/dev/null || { echo "ensure-venv: python3 is required" >&2; exit 1; }

want=$(sha256sum "$requirements" | cut -d' ' -f1)
(
  flock 9
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
  fi
  echo "ensure-venv: building $venv from $requirements (a few minutes, once)" >&2
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
  echo "$want" >"$stamp"
) 9>"$venv.lock"
