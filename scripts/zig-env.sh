#!/usr/bin/env bash
# Source me: puts zig (PyPI ziglang, pinned in scripts/requirements-zig.txt, in .venv-zig) first on
# PATH for `cargo lambda build`, which links with zig against an older glibc.
#   . scripts/zig-env.sh
_tk_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$_tk_root/scripts/ensure-venv.sh" "$_tk_root/.venv-zig" "$_tk_root/scripts/requirements-zig.txt" || return 1
# ziglang ships the zig binary inside the package; a `zig` next to the venv's python makes it a
# plain command (cargo-zigbuild would also find it through `python3 -m ziglang`).
if [ ! -x "$_tk_root/.venv-zig/bin/zig" ]; then
  _tk_zig=$("$_tk_root/.venv-zig/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))') || return 1
  ln -sf "$_tk_zig" "$_tk_root/.venv-zig/bin/zig"
fi
export PATH="$_tk_root/.venv-zig/bin:$PATH"
unset _tk_root _tk_zig
