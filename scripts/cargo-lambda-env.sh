#!/usr/bin/env bash
# Source me: makes `cargo lambda` a command (cargo-lambda 1.9.2).
#   . scripts/cargo-lambda-env.sh
# An installed cargo-lambda of that version is reused. Otherwise it comes from PyPI's binary
# wheel into .venv-cargo-lambda (scripts/requirements-cargo-lambda.txt, about 20 seconds), which
# goes first on PATH. Only when that fails (no wheel for this platform) is it compiled from
# crates.io with `cargo install --locked` (about 17 minutes on 2 cores, once per machine).
_tk_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_tk_cl_version=1.9.2
_tk_cl_have() { cargo lambda --version 2>/dev/null | grep -q "^cargo-lambda $_tk_cl_version"; }
if ! _tk_cl_have; then
  if "$_tk_root/scripts/ensure-venv.sh" "$_tk_root/.venv-cargo-lambda" "$_tk_root/scripts/requirements-cargo-lambda.txt"; then
    export PATH="$_tk_root/.venv-cargo-lambda/bin:$PATH"
  fi
fi
if ! _tk_cl_have; then
  echo "cargo-lambda-env: no wheel for this machine; compiling cargo-lambda $_tk_cl_version from crates.io (about 17 minutes on 2 cores, once)" >&2
  (
    flock 9
    _tk_cl_have || cargo install cargo-lambda --locked --version "$_tk_cl_version" >&2
  ) 9>"${CARGO_HOME:-$HOME/.cargo}/.trailkeeper-cargo-lambda-install.lock"
fi
if ! _tk_cl_have; then
  echo "cargo-lambda-env: cargo lambda $_tk_cl_version still not found" >&2
  unset -f _tk_cl_have; unset _tk_root _tk_cl_version
  return 1 2>/dev/null || exit 1
fi
unset -f _tk_cl_have
unset _tk_root _tk_cl_version
