#!/usr/bin/env bash
# Peak memory of the digest-validator Lambda binary (release build) validating ONE digest that
# lists about MB megabytes of uncompressed logs, on the local emulator, through a minimal
# Lambda Runtime API (bench/runtime_api.py). Prints one JSON line with the figures.
#
#   tests/moto/with-moto.sh bench/lambda-memory.sh [MB]        (default 200)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mb=${1:-200}
logs=40
events=$((mb * 1000000 / logs / 760)) # a generated event is about 760 bytes of JSON
[ -n "${AWS_ENDPOINT_URL:-}" ] || { echo "run me under tests/moto/with-moto.sh" >&2; exit 2; }
# Two builds: the seed tool's `testdata` feature must not reach the measured binary, which is
# built as scripts/build-lambdas.sh builds it, with the other functions.
cargo build -q --release -p digest-validator -p policy-updater -p trail-enabler -p org-auditor
cargo build -q --release -p trailkeeper-e2e --bin seed-history
bin="${CARGO_TARGET_DIR:-$root/target}/release"
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
bucket="tk-memory-$$"
sample_key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Records"][0]["s3"]["object"]["key"])' \
  events/digest-validator/s3-object-created.json)
key=$("$bin/seed-history" --bucket "$bucket" --create-bucket --hours 1 --logs-per-hour "$logs" \
  --events-per-log "$events" 2>"$tmp/seed.log")
sed "s|$sample_key|$key|; s|central-logs|$bucket|g" events/digest-validator/s3-object-created.json >"$tmp/event.json"
python3 bench/runtime_api.py --port-file "$tmp/port" --out "$tmp/responses.jsonl" "$tmp/event.json" &
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
AWS_LAMBDA_RUNTIME_API="127.0.0.1:$(cat "$tmp/port")" \
AWS_LAMBDA_FUNCTION_NAME=digest-validator AWS_LAMBDA_FUNCTION_VERSION='$LATEST' \
AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_LOG_STREAM_NAME=bench \
AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/digest-validator TRAILKEEPER_BUCKET="$bucket" \
  /usr/bin/time -v -o "$tmp/time.txt" "$bin/digest-validator" >"$tmp/stdout" 2>"$tmp/stderr" &
timer=$!
for _ in $(seq 6000); do grep -qv first-next "$tmp/responses.jsonl" 2>/dev/null && break; sleep 0.1; done
pkill -TERM -P "$timer" || true # the function itself; time then reports on it
wait "$timer" || true
python3 - "$tmp" "$mb" <<'PY'
import json, re, sys
tmp, mb = sys.argv[1], sys.argv[2]
time_txt = open(f"{tmp}/time.txt").read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_txt).group(1))
response = next(r for r in map(json.loads, open(f"{tmp}/responses.jsonl")) if r["kind"] != "first-next")
record = next(json.loads(l) for l in open(f"{tmp}/stdout") if l.startswith('{"_aws"'))
print(json.dumps({
    "requested_mb": int(mb),
    "verdict": record["verdict"],
    "log_files": record["logFiles"],
    "uncompressed_bytes": record["bytes"],
    "compressed_bytes": record["compressedBytes"],
    "invocation_seconds": response["seconds"],
    "peak_rss_mib": round(rss_kb / 1024, 1),
    "response": json.loads(response["payload"]),
}))
PY
