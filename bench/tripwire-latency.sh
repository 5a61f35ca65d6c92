#!/usr/bin/env bash
# The tripwire's own time from an S3 event to its alert: the release digest-validator, through a
# minimal Lambda Runtime API (bench/runtime_api.py), judging N `Object Created` events of objects
# an IAM user wrote under AWSLogs/ (each a finding: one ListObjectVersions, one SNS Publish), on
# the local emulator. Prints one JSON line: median, 95th percentile and largest time from the
# event handed to the function to its response (which comes after the alert is published), and
# the function's own CPU per event (what remains of that time is the emulator's).
#
#   tests/moto/with-moto.sh bench/tripwire-latency.sh [N]        (default 50)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
n=${1:-50}
[ -n "${AWS_ENDPOINT_URL:-}" ] || { echo "run me under tests/moto/with-moto.sh" >&2; exit 2; }
cargo build -q --release -p digest-validator -p policy-updater -p trail-enabler -p org-auditor
bin="${CARGO_TARGET_DIR:-$root/target}/release"
python="$(dirname "$TRAILKEEPER_AWSCLI")/python"
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
bucket="tk-tripwire-$$"
# The bucket, the topic, and N injected objects with an event each (the sample's shape).
topic=$("$python" - "$bucket" "$n" "$tmp" <<'PY'
import copy, json, sys
import boto3
bucket, n, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s3, sns = boto3.client("s3"), boto3.client("sns")
s3.create_bucket(Bucket=bucket)
s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
topic = sns.create_topic(Name=bucket)["TopicArn"]
sample = json.load(open("events/digest-validator/tripwire-object-overwritten.json"))
for i in range(n):
    key = ("AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/01/"
           f"111122223333_CloudTrail_us-east-1_20261101T0455Z_injected{i:08d}.json.gz")
    put = s3.put_object(Bucket=bucket, Key=key, Body=b"\x1f\x8b forged")
    event = copy.deepcopy(sample)
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"].update({"key": key, "size": 9, "version-id": put["VersionId"]})
    json.dump(event, open(f"{tmp}/event-{i:04d}.json", "w"))
print(topic)
PY
)
python3 bench/runtime_api.py --port-file "$tmp/port" --out "$tmp/responses.jsonl" "$tmp"/event-*.json &
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
AWS_LAMBDA_RUNTIME_API="127.0.0.1:$(cat "$tmp/port")" \
AWS_LAMBDA_FUNCTION_NAME=digest-validator AWS_LAMBDA_FUNCTION_VERSION='$LATEST' \
AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_LOG_STREAM_NAME=bench \
AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/digest-validator TRAILKEEPER_BUCKET="$bucket" \
TRAILKEEPER_ALERT_TOPIC_ARN="$topic" \
  "$bin/digest-validator" >"$tmp/stdout" 2>"$tmp/stderr" &
fn=$!
for _ in $(seq 600); do
  answered=$(grep -vc first-next "$tmp/responses.jsonl" 2>/dev/null || true)
  [ "${answered:-0}" -ge "$n" ] && break
  sleep 0.1
done
# The function's own CPU (user + system, clock ticks), apart from the emulator's.
awk '{print $14 + $15}' "/proc/$fn/stat" >"$tmp/ticks" 2>/dev/null || echo 0 >"$tmp/ticks"
kill "$fn" 2>/dev/null || true
python3 - "$tmp" "$n" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
tmp, n, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cpu_ms = int(open(f"{tmp}/ticks").read().split()[0]) * 1000 / hz
responses = [r for r in map(json.loads, open(f"{tmp}/responses.jsonl")) if r["kind"] != "first-next"]
if len(responses) < n:
    sys.exit(f"tripwire-latency: {len(responses)} of {n} events answered; stderr in {tmp}/stderr")
kinds = {}
for r in responses:
    if r["kind"] != "response":
        sys.exit(f"tripwire-latency: an invocation failed: {r['payload']}")
    kind = json.loads(r["payload"]).get("tripwire")
    kinds[kind] = kinds.get(kind, 0) + 1
ms = sorted(r["seconds"] * 1000 for r in responses)
print(json.dumps({
    "events": n,
    "verdicts": kinds,
    "median_ms": round(statistics.median(ms), 1),
    "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 1),
    "max_ms": round(ms[-1], 1),
    "first_ms": round(responses[0]["seconds"] * 1000, 1),
    "function_cpu_ms_per_event": round(cpu_ms / n, 2),
}))
PY
