#!/usr/bin/env bash
# Makes `cargo lambda` available. An installed cargo-lambda is reused; otherwise the pinned
# version is installed from crates.io with `cargo install --locked` (about 17 minutes on 2 cores,
# once per machine; it lands in ~/.cargo/bin like any cargo subcommand). A lock keeps two
# runs of this script from installing it twice at once.
set -euo pipefail
version=1.9.2
have() { cargo lambda --version >/dev/null 2>&1; }
if have; then exit 0; fi
command -v cargo >/dev/null || { echo "ensure-cargo-lambda: cargo is required" >&2; exit 1; }
lock="${CARGO_HOME:-$HOME/.cargo}/.trailkeeper-cargo-lambda-install.lock"
mkdir -p "$(dirname "$lock")"
(
  flock 9
  have && exit 0
  echo "ensure-cargo-lambda: installing cargo-lambda $version from crates.io (about 17 minutes on 2 cores, once)" >&2
  cargo install cargo-lambda --locked --version "$version" >&2
) 9>"$lock"
have || { echo "ensure-cargo-lambda: cargo lambda still not found after installing it (is ~/.cargo/bin on PATH?)" >&2; exit 1; }
