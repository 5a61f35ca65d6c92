#!/usr/bin/env bash
# Builds every function under functions/ for Lambda's provided.al2023 on x86_64:
#   cargo lambda build --release --target x86_64-unknown-linux-gnu.2.34
# (zig links against glibc 2.34, the glibc of Amazon Linux 2023). The binaries land in
# target/lambda/<binary>/bootstrap. Users deploying arm64 (the template's default) build with
# `cargo lambda build --release --arm64` or `sam build`; only the x86_64 Rust target is
# installed on the CI machine, so this is the build the tests check.
#
#   scripts/build-lambdas.sh            all functions
#   scripts/build-lambdas.sh NAME...    those packages only
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. "$root/scripts/cargo-lambda-env.sh"
. "$root/scripts/zig-env.sh"
if [ "$#" -gt 0 ]; then
  packages=("$@")
else
  packages=()
  for manifest in functions/*/Cargo.toml; do
    packages+=("$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)")
  done
fi
args=()
for p in "${packages[@]}"; do args+=(--package "$p"); done
echo "build-lambdas: cargo lambda build --release --target x86_64-unknown-linux-gnu.2.34 ${args[*]}" >&2
cargo lambda build --release --target x86_64-unknown-linux-gnu.2.34 "${args[@]}"
