#!/usr/bin/env bash
# The trailkeeper story on the local emulator; demo/run.sh (make demo) runs it under
# tests/moto/with-moto.sh after building what it needs. Every AWS call below goes to that
# private moto server; the Lambda functions are the real binaries under `cargo lambda watch`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
die() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }
[ -n "${AWS_ENDPOINT_URL:-}" ] && [ -n "${TRAILKEEPER_AWSCLI:-}" ] ||
  die "run me through demo/run.sh (make demo): I need the emulator that tests/moto/with-moto.sh starts"
out=${DEMO_OUT:?set DEMO_OUT to the artifacts directory}
mkdir -p "$out"
aws=$TRAILKEEPER_AWSCLI
bin="$root/target/debug"

WATCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trailkeeper-demo.XXXXXX")
. scripts/lambda-watch.sh
finish() {
  watch_stop_all
  cp "$WATCH_DIR"/*.log "$out/" 2>/dev/null || true
  rm -rf "$WATCH_DIR"
}
trap finish EXIT

step() { printf '\n=== Step %s\n' "$*"; }
say() { printf '  %s\n' "$*"; }
# show CMD...: prints the command as a person would type it (on fd 3, the script's stderr, so
# that neither $(show ...) nor the command's own redirections capture it), then runs it.
exec 3>&2
show() {
  local shown=() a
  for a in "$@"; do
    case "$a" in "$aws") shown+=(aws) ;; "$bin"/*) shown+=("${a#"$root"/}") ;; *) shown+=("$a") ;; esac
  done
  printf '  $ %s\n' "${shown[*]}" >&3
  "$@"
}
indent() { sed 's/^/    /'; }

# create_account NAME EMAIL: an Organizations account; prints its id once it is SUCCEEDED.
create_account() {
  local request state id
  request=$(show "$aws" organizations create-account --account-name "$1" --email "$2" \
    --query CreateAccountStatus.Id --output text)
  for _ in $(seq 30); do
    read -r state id < <("$aws" organizations describe-create-account-status \
      --create-account-request-id "$request" --query 'CreateAccountStatus.[State,AccountId]' --output text)
    [ "$state" = SUCCEEDED ] && { echo "$id"; return; }
    [ "$state" = FAILED ] && die "CreateAccount $1 FAILED"
    sleep 1
  done
  die "CreateAccount $1 still $state"
}
# assume ACCOUNT: credentials of OrganizationAccountAccessRole in ACCOUNT, as "AK SK TOKEN".
assume() {
  "$aws" sts assume-role --role-arn "arn:aws:iam::$1:role/OrganizationAccountAccessRole" \
    --role-session-name trailkeeper-demo --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text
}

# ----------------------------------------------------------------------------------------------
step "1: an organization with a management account and a log-archive account; the central bucket"
management=$("$aws" sts get-caller-identity --query Account --output text)
org_id=$(show "$aws" organizations create-organization --feature-set ALL --query Organization.Id --output text)
say "organization $org_id, management account $management"
log_archive=$(create_account log-archive log-archive@example.com)
say "log-archive account $log_archive"
read -r la_ak la_sk la_token < <(assume "$log_archive")
as_log_archive() { AWS_ACCESS_KEY_ID=$la_ak AWS_SECRET_ACCESS_KEY=$la_sk AWS_SESSION_TOKEN=$la_token "$@"; }
bucket="trailkeeper-central-logs-$log_archive"
say "In the log-archive account, the central bucket as template.yaml sets it up:"
as_log_archive show "$aws" s3api create-bucket --bucket "$bucket" --output text >/dev/null
as_log_archive show "$aws" s3api put-bucket-versioning --bucket "$bucket" --versioning-configuration Status=Enabled
as_log_archive show "$aws" s3api put-bucket-encryption --bucket "$bucket" \
  --server-side-encryption-configuration '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
as_log_archive show "$aws" s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
as_log_archive show "$aws" s3api put-bucket-ownership-controls --bucket "$bucket" \
  --ownership-controls 'Rules=[{ObjectOwnership=BucketOwnerEnforced}]'
as_log_archive show "$aws" s3api put-bucket-lifecycle-configuration --bucket "$bucket" --lifecycle-configuration \
  '{"Rules":[{"ID":"trailkeeper-archive","Status":"Enabled","Filter":{"Prefix":"AWSLogs/"},"Transitions":[{"Days":90,"StorageClass":"GLACIER_IR"}],"NoncurrentVersionTransitions":[{"NoncurrentDays":90,"StorageClass":"GLACIER_IR"}]}]}'
# The demo's policy-updater runs as the log-archive session's role; in AWS it is its own role.
updater_role="arn:aws:iam::$log_archive:role/OrganizationAccountAccessRole"
tls_statement='{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*",
  "Resource":["arn:aws:s3:::'"$bucket"'","arn:aws:s3:::'"$bucket"'/*"],
  "Condition":{"Bool":{"aws:SecureTransport":"false"}}}'
lock_statement='{"Sid":"OnlyPolicyUpdaterChangesPolicy","Effect":"Deny","Principal":"*",
  "Action":["s3:PutBucketPolicy","s3:DeleteBucketPolicy"],"Resource":"arn:aws:s3:::'"$bucket"'",
  "Condition":{"ArnNotEquals":{"aws:PrincipalArn":"'"$updater_role"'"}}}'
printf '{"Version":"2012-10-17","Statement":[\n %s,\n %s]}\n' "$tls_statement" "$lock_statement" >"$out/bucket-policy-template.json"
as_log_archive show "$aws" s3api put-bucket-policy --bucket "$bucket" --policy "file://$out/bucket-policy-template.json"
say "the policy of template.yaml ($out/bucket-policy-template.json): TLS only, and only the"
say "policy-updater may change the policy. The emulator speaks plain HTTP and enforces the first"
say "statement, so an upload to it is refused:"
printf 'x' >"$out/probe.txt"
if as_log_archive show "$aws" s3api put-object --bucket "$bucket" --key probe.txt --body "$out/probe.txt" >/dev/null 2>"$out/probe-denied.txt"; then
  die "an upload over plain HTTP was accepted despite DenyInsecureTransport"
fi
grep . "$out/probe-denied.txt" | indent
say "so the rest of the demo runs with the second statement only:"
printf '{"Version":"2012-10-17","Statement":[\n %s]}\n' "$lock_statement" >"$out/bucket-policy-initial.json"
as_log_archive show "$aws" s3api put-bucket-policy --bucket "$bucket" --policy "file://$out/bucket-policy-initial.json"
say "bucket s3://$bucket: versioned, SSE-S3, public access blocked, BucketOwnerEnforced, to Glacier IR after 90 days"

# ----------------------------------------------------------------------------------------------
step "2: a new account is created; its CreateAccountResult event goes to the real functions"
missing=()
for f in policy-updater trail-enabler; do
  [ -f "functions/$f/Cargo.toml" ] && [ -x "$bin/$f" ] || missing+=("$f")
done
if [ "${#missing[@]}" -gt 0 ]; then
  die "step 2 needs the onboarding functions policy-updater and trail-enabler (functions/, issue 4), and these are missing or not built: ${missing[*]}. Nothing is faked: the story stops here."
fi
say "cargo lambda watch, once per account, each with that account's credentials and configuration:"
watch_start log-archive \
  AWS_ACCESS_KEY_ID="$la_ak" AWS_SECRET_ACCESS_KEY="$la_sk" AWS_SESSION_TOKEN="$la_token" \
  TRAILKEEPER_BUCKET="$bucket" TRAILKEEPER_TRAIL_NAME=trailkeeper TRAILKEEPER_HOME_REGION=us-east-1 \
  TRAILKEEPER_POLICY_MODE=per-account
say "log-archive (policy-updater, digest-validator): 127.0.0.1:$WATCH_PORT_log_archive, log $out/log-archive.log"
watch_start management \
  TRAILKEEPER_BUCKET="$bucket" TRAILKEEPER_TRAIL_NAME=trailkeeper TRAILKEEPER_HOME_REGION=us-east-1 \
  TRAILKEEPER_MEMBER_ROLE=OrganizationAccountAccessRole
say "management (trail-enabler): 127.0.0.1:$WATCH_PORT_management, log $out/management.log"

new_account=$(create_account workload-dev workload-dev@example.com)
say "Organizations created account $new_account"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
stamp=$(date -u '+%b %-d, %Y %-I:%M:%S %p')
sed "s/MANAGEMENT_ACCOUNT/$management/g; s/NEW_ACCOUNT/$new_account/g; s/EVENT_TIME/$now/g;
     s/REQUESTED_TIMESTAMP/$stamp/; s/COMPLETED_TIMESTAMP/$stamp/; s/ACCOUNT_NAME/workload-dev/;
     s/CREATE_REQUEST_ID/car-$(date +%s%N | sha1sum | cut -c1-32)/" demo/create-account-result.json >"$out/create-account-result.json"
say "its CreateAccountResult event (EventBridge): $out/create-account-result.json"
say "the log-archive bus delivers it to the policy-updater:"
response=$(show cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT_log_archive" policy-updater \
  --data-file "$out/create-account-result.json") || die "the policy-updater failed: $response"
echo "$response" | indent
say "the management account's rule delivers it to the trail-enabler:"
response=$(show cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT_management" trail-enabler \
  --data-file "$out/create-account-result.json") || die "the trail-enabler failed: $response"
echo "$response" | indent

as_log_archive "$aws" s3api get-bucket-policy --bucket "$bucket" --query Policy --output text >"$out/bucket-policy-after-onboarding.json"
say "the bucket policy now admits the account ($out/bucket-policy-after-onboarding.json):"
python3 - "$out/bucket-policy-after-onboarding.json" "$new_account" <<'PY' | indent || die "the bucket policy does not admit account $new_account"
import json, sys
policy, account = json.load(open(sys.argv[1])), sys.argv[2]
mine = [s for s in policy["Statement"] if account in json.dumps(s)]
for s in mine:
    print(json.dumps(s, indent=1).replace("\n", "\n"))
kept = [s.get("Sid") for s in policy["Statement"] if s.get("Sid") == "OnlyPolicyUpdaterChangesPolicy"]
writes = [s for s in mine if s.get("Action") in ("s3:PutObject", ["s3:PutObject"])]
if not writes or len(kept) != 1:
    sys.exit(1)
print(f"(the statement trailkeeper did not write is still there, unchanged: {', '.join(kept)})")
PY

read -r new_ak new_sk new_token < <(assume "$new_account")
as_new() { AWS_ACCESS_KEY_ID=$new_ak AWS_SECRET_ACCESS_KEY=$new_sk AWS_SESSION_TOKEN=$new_token "$@"; }
say "in account $new_account, the trail:"
as_new show "$aws" cloudtrail describe-trails --trail-name-list trailkeeper --output json >"$out/trail.json"
as_new show "$aws" cloudtrail get-trail-status --name trailkeeper --output json >"$out/trail-status.json"
python3 - "$out/trail.json" "$out/trail-status.json" "$bucket" <<'PY' | indent || die "the trail of account $new_account is not as the trail spec says"
import json, sys
trails = json.load(open(sys.argv[1]))["trailList"]
status = json.load(open(sys.argv[2]))
if len(trails) != 1:
    sys.exit(f"expected one trail named trailkeeper, found {len(trails)}")
t = trails[0]
facts = {
    "S3BucketName": t.get("S3BucketName") == sys.argv[3],
    "IsMultiRegionTrail": t.get("IsMultiRegionTrail") is True,
    "IncludeGlobalServiceEvents": t.get("IncludeGlobalServiceEvents") is True,
    "LogFileValidationEnabled": t.get("LogFileValidationEnabled") is True,
    "IsLogging": status.get("IsLogging") is True,
}
for name, ok in facts.items():
    value = status.get(name) if name == "IsLogging" else t.get(name)
    print(f"{name:28} {value}  {'ok' if ok else 'WRONG'}")
print(f"TrailARN                     {t.get('TrailARN')}")
sys.exit(0 if all(facts.values()) else 1)
PY
say "the same event again changes nothing (idempotent):"
response=$(cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT_log_archive" policy-updater \
  --data-file "$out/create-account-result.json") || die "the policy-updater failed the second time: $response"
echo "$response" | indent
as_log_archive "$aws" s3api get-bucket-policy --bucket "$bucket" --query Policy --output text >"$out/bucket-policy-again.json"
cmp -s "$out/bucket-policy-after-onboarding.json" "$out/bucket-policy-again.json" ||
  die "the second onboarding changed the bucket policy (see $out/bucket-policy-again.json)"
say "bucket policy unchanged"

# ----------------------------------------------------------------------------------------------
step "3: three hours of history; each digest's S3 event goes to the digest-validator"
say "moto never delivers logs, so seed-history writes what CloudTrail would: CloudTrail-format logs"
say "and digests signed with a test key that the emulator's ListPublicKeys serves. It writes with the"
say "log-archive account's credentials: moto applies the bucket policy to other accounts, and its"
say "statements admit CloudTrail, which moto cannot impersonate. Steps 3 and 4 all run as that account."
start=$(date -u -d '-4 hours' +%Y-%m-%dT%H:04:12Z)
window_start=$(date -u -d '-5 hours' +%Y-%m-%dT%H:00:00Z)
as_log_archive show "$bin/seed-history" --bucket "$bucket" --account "$new_account" --start "$start" --hours 3 \
  >"$out/digest-keys.txt" 2>"$out/seed-history.log" || { cat "$out/seed-history.log" >&2; die "seed-history failed"; }
sed 's/^seed-history: //' "$out/seed-history.log" | indent
mapfile -t digests <"$out/digest-keys.txt"
[ "${#digests[@]}" -eq 3 ] || die "expected 3 digests, seed-history wrote ${#digests[@]}"
sample_key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Records"][0]["s3"]["object"]["key"])' \
  events/digest-validator/s3-object-created.json)
# validate KEY: the digest's S3 ObjectCreated event to the digest-validator; prints the answer.
validate() {
  local file="$out/s3-event-$(basename "$1" .json.gz).json"
  sed "s|$sample_key|$1|g; s|central-logs|$bucket|g" events/digest-validator/s3-object-created.json >"$file"
  cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT_log_archive" digest-validator --data-file "$file"
}
# verdict RESPONSE: "verdict findings" of the one digest in a response.
verdict() { python3 -c 'import json,sys; d=json.loads(sys.argv[1])["digests"][0]; print(d["verdict"], d["findings"])' "$1"; }
say "cargo lambda invoke digest-validator --data-file <the S3 event of each digest>:"
for key in "${digests[@]}"; do
  response=$(validate "$key") || die "the digest-validator failed on $key: $response"
  read -r v n < <(verdict "$response")
  hour=$(sed 's/.*_\([0-9]\{4\}\)\([0-9][0-9]\)\([0-9][0-9]\)T\([0-9][0-9]\)\([0-9][0-9]\)[0-9][0-9]Z\.json\.gz$/\1-\2-\3 \4:\5Z/' <<<"$key")
  say "  the hour ending $hour: $v, findings: $n"
  [ "$v" = valid ] && [ "$n" = 0 ] || die "expected the untouched hour $hour to be valid: $response"
done
say "every hour is valid"

# ----------------------------------------------------------------------------------------------
step "4: a log is altered and a digest deleted; who notices"
log_key=$(as_log_archive "$aws" s3 cp --quiet "s3://$bucket/${digests[0]}" - | gunzip |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["logFiles"][0]["s3Object"])')
printf '{"Records":[]}' | gzip -c >"$out/forged-log.json.gz"
as_log_archive show "$aws" s3 cp --quiet "$out/forged-log.json.gz" "s3://$bucket/$log_key"
as_log_archive show "$aws" s3 rm --quiet "s3://$bucket/${digests[1]}"
say "altered: $log_key"
say "deleted: ${digests[1]}"

say "the digest-validator, on the first and the last digest's events:"
for key in "${digests[0]}" "${digests[2]}"; do
  response=$(validate "$key") || die "the digest-validator failed on $key: $response"
  read -r v n < <(verdict "$response")
  say "  $(basename "$key"): verdict of the digest itself: $v, findings: $n"
  [ "$n" -gt 0 ] || die "the digest-validator found nothing wrong with $key"
done
python3 - "$WATCH_DIR/log-archive.log" "$log_key" "${digests[1]}" <<'PY' | indent || die "the digest-validator did not report both the altered log and the deleted digest"
import json, sys
_, log, altered, deleted = sys.argv
found = []
for line in open(log, errors="replace"):
    at = line.find('{"_aws"')
    if at < 0:
        continue
    try:
        record = json.loads(line[at:])
    except ValueError:
        continue
    for f in record.get("findings", []):
        found.append((f["type"], f["status"], f["key"]))
        print(f"{f['type']:6} {f['status']:14} {f['key']}")
ok = any(k == altered and s == "hash_mismatch" for _, s, k in found) and any(k == deleted and s == "missing" for _, s, k in found)
sys.exit(0 if ok else 1)
PY

say "trailkeeper validate, over the whole bucket:"
set +e
as_log_archive show "$bin/trailkeeper" validate --bucket "$bucket" --format text >"$out/trailkeeper-validate.txt" 2>&1
code=$?
set -e
indent <"$out/trailkeeper-validate.txt"
say "exit code $code ($out/trailkeeper-validate.txt)"
[ "$code" -eq 1 ] || die "trailkeeper validate should exit 1 (findings), exited $code"
grep -q "HASH_MISMATCH.*$log_key" "$out/trailkeeper-validate.txt" || die "trailkeeper validate did not report the altered log"
grep -q "MISSING.*${digests[1]}" "$out/trailkeeper-validate.txt" || die "trailkeeper validate did not report the deleted digest"

say "aws cloudtrail validate-logs (the AWS CLI), where it can:"
end=$(date -u +%Y-%m-%dT%H:%M:%SZ)
set +e
as_log_archive show "$aws" cloudtrail validate-logs --trail-arn "arn:aws:cloudtrail:us-east-1:$new_account:trail/trailkeeper" \
  --s3-bucket "$bucket" --start-time "$window_start" --end-time "$end" \
  --region us-east-1 --verbose >"$out/aws-validate-logs.txt" 2>&1
code=$?
set -e
grep -v '	valid$' "$out/aws-validate-logs.txt" | grep -v '^$' | indent
say "exit code $code ($out/aws-validate-logs.txt)"
grep -q "$log_key.*INVALID" "$out/aws-validate-logs.txt" || die "aws cloudtrail validate-logs did not report the altered log"
grep -q "${digests[1]}.*INVALID" "$out/aws-validate-logs.txt" || die "aws cloudtrail validate-logs did not report the deleted digest"
say "the AWS CLI reports both too (it follows the chain but does not check its links; trailkeeper does)"

# ----------------------------------------------------------------------------------------------
step "5: everything is stopped and cleaned up"
watch_stop_all
say "both cargo lambda watch emulators stopped; the moto server stops when this script returns"
say "artifacts in $out:"
for f in "$out"/*; do say "  $(basename "$f")"; done
say "(the watch logs log-archive.log and management.log are copied there on exit)"
