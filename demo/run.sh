#!/usr/bin/env bash
# `make demo`: the trailkeeper story on a local AWS emulator, end to end.
#
# On a fresh machine it first sets up what it needs (the moto venv, cargo-lambda, the debug
# builds), then runs demo/story.sh under tests/moto/with-moto.sh, which starts a private moto
# server and stops it afterwards, on failure too. The transcript and every artifact stay in
# target/demo/ (the path is printed at the end).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
started=$SECONDS
out="$root/target/demo/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
ln -sfn "$out" "$root/target/demo/latest"

step() { printf '\n### %s\n' "$*"; }
set +e
{
  set -e
  step "Setting up (the first run on a fresh machine takes a while; later runs reuse everything)"
  echo "- Python venv with moto and the AWS CLI (.venv)"
  tests/moto/with-moto.sh --venv-only
  echo "- cargo-lambda (reused when installed; otherwise the PyPI wheel, about 20 seconds once)"
  . scripts/cargo-lambda-env.sh
  echo "  $(cargo lambda --version)"
  # One binary per cargo call: `cargo lambda watch` runs `cargo run --bin NAME`, which then
  # finds it up to date (several packages in one call would unify features differently).
  bins=(digest-validator trailkeeper seed-history)
  for f in policy-updater trail-enabler; do
    if [ -f "functions/$f/Cargo.toml" ]; then bins+=("$f"); fi
  done
  echo "- debug builds of ${bins[*]}"
  for b in "${bins[@]}"; do cargo build -q --bin "$b"; done

  DEMO_OUT="$out" tests/moto/with-moto.sh demo/story.sh
} 2>&1 | tee "$out/transcript.txt"
status=${PIPESTATUS[0]}
set -e
elapsed=$((SECONDS - started))
if [ "$status" -eq 0 ]; then
  printf '\nThe demo finished in %dm%02ds. Transcript and artifacts: %s\n' $((elapsed / 60)) $((elapsed % 60)) "$out"
else
  printf '\nThe demo FAILED (exit %d) after %dm%02ds. Transcript and artifacts: %s\n' "$status" $((elapsed / 60)) $((elapsed % 60)) "$out" >&2
fi
exit "$status"
