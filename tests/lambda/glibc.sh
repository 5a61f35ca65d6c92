#!/usr/bin/env bash
# The Lambda binaries run on provided.al2023, whose glibc is 2.34: builds every function with
# cargo-lambda (scripts/build-lambdas.sh) and fails if any bootstrap is not an x86-64 ELF
# executable, or needs a GLIBC symbol version newer than 2.34 (objdump -T, the dynamic symbol
# table the loader resolves).
#
#   tests/lambda/glibc.sh              build, then check
#   tests/lambda/glibc.sh --no-build   check the binaries already in target/lambda
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
max=2.34
command -v objdump >/dev/null || { echo "glibc: objdump (binutils) is required" >&2; exit 1; }

# newest_glibc FILE: the highest GLIBC_x.y[.z] version FILE's dynamic symbols need.
newest_glibc() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -u -V | tail -1
}
# at_most A B: version A <= version B.
at_most() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$2" ]; }

# The comparison itself, on versions that must pass and fail, so the check cannot pass vacuously.
at_most 2.34 "$max" && at_most 2.17 "$max" && at_most 2.2.5 "$max" || { echo "glibc: self-test failed (<=)" >&2; exit 1; }
! at_most 2.35 "$max" && ! at_most 2.39 "$max" && ! at_most 2.100 "$max" || { echo "glibc: self-test failed (>)" >&2; exit 1; }

if [ "${1:-}" != "--no-build" ]; then
  scripts/build-lambdas.sh
fi

status=0
checked=0
for manifest in functions/*/Cargo.toml; do
  bins=$(awk '/^\[\[bin\]\]/{b=1} b && /^name *=/{gsub(/.*= *"|".*/,""); print; b=0}' "$manifest")
  [ -n "$bins" ] || bins=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)
  for bin in $bins; do
    file="target/lambda/$bin/bootstrap"
    if [ ! -f "$file" ]; then
      echo "glibc: $file is missing (cargo lambda build did not produce it)" >&2
      status=1
      continue
    fi
    header=$(readelf -h "$file")
    if ! grep -q 'Machine: *Advanced Micro Devices X86-64' <<<"$header" || ! grep -q 'Type: *\(EXEC\|DYN\)' <<<"$header"; then
      echo "glibc: $file is not an x86-64 ELF executable" >&2
      status=1
      continue
    fi
    newest=$(newest_glibc "$file")
    if [ -z "$newest" ]; then
      echo "glibc: $file has no GLIBC symbol versions at all (static or not a glibc build?)" >&2
      status=1
    elif at_most "$newest" "$max"; then
      echo "glibc: ok   $file needs GLIBC $newest at most (<= $max), $(stat -c %s "$file") bytes"
    else
      echo "glibc: FAIL $file needs GLIBC_$newest (> $max): $(objdump -T "$file" | grep -o "GLIBC_$newest.*" | head -3 | tr '\n' ' ')" >&2
      status=1
    fi
    checked=$((checked + 1))
  done
done
[ "$checked" -gt 0 ] || { echo "glibc: no function binary was checked" >&2; exit 1; }
exit "$status"
