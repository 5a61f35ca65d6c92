#!/usr/bin/env bash
# make fuzz: builds the cargo-fuzz targets and runs each, one at a time, for FUZZ_SECONDS
# (default 600). Installs cargo-fuzz from crates.io when absent. Only the stable toolchain is on
# the machines, so RUSTC_BOOTSTRAP=1 lets it take the nightly flags cargo fuzz passes.
#   fuzz/run.sh [target...]        (default: every target)
# Env: FUZZ_SECONDS, FUZZ_RSS_MB (512), FUZZ_TIMEOUT (10 s per input), FUZZ_SANITIZER (none).
# Logs go to fuzz/logs/<target>.log; a crash leaves its input in fuzz/artifacts/<target>/ and
# makes this script fail. One summary line per target: seconds, executions, outcome.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
seconds="${FUZZ_SECONDS:-600}"
rss="${FUZZ_RSS_MB:-512}"
timeout="${FUZZ_TIMEOUT:-10}"
# The library is safe Rust: libFuzzer itself catches panics (every assert in the targets),
# hangs, and allocations over -rss_limit_mb / -malloc_limit_mb. ASan would add little and
# doubles the build of the AWS SDK crates.
sanitizer="${FUZZ_SANITIZER:-none}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(digest_key digest_file gzip_hash account_event bucket_policy)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
./seed.sh
cargo fuzz build -s "$sanitizer"
mkdir -p logs
status=0
summary=()
for t in "${targets[@]}"; do
  echo "fuzz/run.sh: $t for ${seconds}s"
  set +e
  cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss" -malloc_limit_mb="$rss" \
    -timeout="$timeout" -print_final_stats=1 >"logs/$t.log" 2>&1
  rc=$?
  set -e
  runs="$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "logs/$t.log" | tail -1 || true)"
  execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "logs/$t.log" | grep -oE '[0-9]+$' | tail -1 || true)"
  corpus_n="$(find "corpus/$t" -type f | wc -l)"
  if [ "$rc" -eq 0 ]; then
    outcome="no crash, hang or OOM"
  else
    outcome="FAILED (exit $rc): see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    status=1
  fi
  summary+=("$t: ${runs:-?} (${execs:-?} executions), corpus $corpus_n: $outcome")
done
printf 'fuzz/run.sh: %s\n' "${summary[@]}"
exit "$status"
