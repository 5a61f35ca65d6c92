#!/usr/bin/env bash
# End to end through cargo-lambda: the digest-validator binary runs under `cargo lambda watch`
# against the local emulator, and every sample event in events/digest-validator/ is sent to it
# with `cargo lambda invoke --data-file`, rewritten for signed history seeded on the emulator
# (as bench/lambda-memory.sh does). Then a log is altered and a digest deleted, and the same
# events must report findings.
#
#   tests/moto/with-moto.sh tests/lambda/watch-invoke.sh      (make test runs it)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
die() { echo "watch-invoke: FAIL: $*" >&2; exit 1; }
[ -n "${AWS_ENDPOINT_URL:-}" ] && [ -n "${TRAILKEEPER_AWSCLI:-}" ] ||
  die "needs the local emulator: run me under tests/moto/with-moto.sh (make test does)"
. scripts/cargo-lambda-env.sh
cargo lambda --version >/dev/null 2>&1 || die "cargo lambda is not installed"

WATCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trailkeeper-watch.XXXXXX")
. scripts/lambda-watch.sh
trap 'watch_stop_all; rm -rf "$WATCH_DIR"' EXIT

# Build first, so that the first invocation does not wait for the compiler. One binary per
# cargo call: `cargo lambda watch` runs `cargo run --bin NAME`, and building several packages in
# one call would unify their features differently and make it rebuild.
cargo build -q --bin digest-validator
cargo build -q --bin seed-history

bucket="tk-watch-$$"
target/debug/seed-history --bucket "$bucket" --create-bucket --hours 3 >"$WATCH_DIR/keys" 2>"$WATCH_DIR/seed.log" ||
  { cat "$WATCH_DIR/seed.log" >&2; die "seed-history failed"; }
mapfile -t digests <"$WATCH_DIR/keys"
[ "${#digests[@]}" -eq 3 ] || die "seed-history printed ${#digests[@]} digest keys, expected 3"
echo "watch-invoke: seeded 3 signed hours in s3://$bucket"

watch_start validator TRAILKEEPER_BUCKET="$bucket"
echo "watch-invoke: cargo lambda watch on 127.0.0.1:$WATCH_PORT_validator"

sample_key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Records"][0]["s3"]["object"]["key"])' \
  events/digest-validator/s3-object-created.json)

# event SAMPLE KEY: the sample rewritten for KEY in the seeded bucket; prints the file name.
event() {
  local out="$WATCH_DIR/$(basename "$1" .json)-$(basename "$2").json"
  sed "s|$sample_key|$2|g; s|central-logs|$bucket|g" "$1" >"$out"
  echo "$out"
}

# check SAMPLE RESPONSE EXPECT: EXPECT is valid (no finding) or findings (at least one).
check() {
  python3 - "$@" <<'PY'
import json, sys
sample, response, expect = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
name = sample.rsplit("/", 1)[-1]
def fail(why):
    sys.exit(f"watch-invoke: FAIL: {name}: {why}; response: {json.dumps(response)}")
if name == "s3-test-event.json":
    if "ignored" not in response: fail("the S3 test event must be ignored")
elif name.startswith("batch-"):
    results = response.get("results") or fail("no results")
    code, text = results[0]["resultCode"], results[0]["resultString"]
    if expect == "valid" and not (code == "Succeeded" and text.startswith("valid")): fail("expected a valid task")
    if expect == "findings" and code != "PermanentFailure": fail("expected a PermanentFailure task")
elif name in ("s3-object-created.json", "eventbridge-object-created.json"):
    d = (response.get("digests") or fail("no digests"))[0]
    if expect == "valid" and not (d.get("verdict") == "valid" and d.get("findings") == 0): fail("expected valid, no finding")
    if expect == "findings" and not d.get("findings", 0) > 0: fail("expected findings")
elif name.startswith("tripwire-"):
    # Not CloudTrail's writes: the tripwire's findings. The sample's log key is not in the
    # seeded bucket, so the write is an injection, not an overwrite.
    want = {"tripwire-object-deleted.json": "deleted", "tripwire-object-overwritten.json": "injected",
            "tripwire-lifecycle-expiration.json": "expired"}[name]
    if response.get("tripwire") != want: fail(f"expected the tripwire's {want}")
elif name == "scheduled-reverify.json":
    if "reverified" not in response or response.get("errors") != 0: fail("expected a re-verification run without errors")
else:
    fail("a sample this test does not know: teach tests/lambda/watch-invoke.sh what it must answer")
label = "ignored" if name == "s3-test-event.json" else expect
print(f"watch-invoke: ok  {name} ({label}): {json.dumps(response)[:160]}")
PY
}

invoke() { # SAMPLE KEY EXPECT
  local file response
  file=$(event "$1" "$2")
  response=$(watch_invoke validator digest-validator "$file") || die "$(basename "$1"): the invocation failed: $response"
  check "$1" "$response" "$3"
}

samples=(events/digest-validator/*.json)
[ "${#samples[@]}" -ge 5 ] || die "expected the 5 digest-validator samples, found ${#samples[@]}"
for sample in "${samples[@]}"; do
  invoke "$sample" "${digests[2]}" valid
done

# Tamper: alter a log listed by the first digest, delete the second digest.
log_key=$("$TRAILKEEPER_AWSCLI" s3 cp --quiet "s3://$bucket/${digests[0]}" - | gunzip |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["logFiles"][0]["s3Object"])')
printf '{"Records":[]}' | gzip -c >"$WATCH_DIR/forged.json.gz"
"$TRAILKEEPER_AWSCLI" s3 cp --quiet "$WATCH_DIR/forged.json.gz" "s3://$bucket/$log_key"
"$TRAILKEEPER_AWSCLI" s3 rm --quiet "s3://$bucket/${digests[1]}"
echo "watch-invoke: altered s3://$bucket/$log_key, deleted s3://$bucket/${digests[1]}"

invoke events/digest-validator/s3-object-created.json "${digests[0]}" findings
invoke events/digest-validator/eventbridge-object-created.json "${digests[2]}" findings
invoke events/digest-validator/batch-2.0.json "${digests[2]}" findings
echo "watch-invoke: passed"
