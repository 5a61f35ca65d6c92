#!/usr/bin/env bash
# End to end, the operator path as deployed: the central bucket carries template.yaml's base
# policy, whose OnlyPolicyUpdaterChangesPolicy statement lets only the policy-updater's role
# change the policy (tests/moto/server.py enforces that Deny, as S3 does; moto alone does not).
# An operator runs `trailkeeper onboard` from the management account with a role of the
# log-archive account (--archive-role-arn):
#   1. --in-process: the operator's own PutBucketPolicy is refused, and the error says why and
#      what to do;
#   2. --function policy-updater: the CLI invokes the real policy-updater (under
#      `cargo lambda watch`, which serves the Lambda Invoke API, with the policy-updater role's
#      credentials), which admits the account; then the trail is created (the emulator's
#      CloudTrail checks that the policy admits it) and the base policy is still there;
#   3. TRAILKEEPER_POLICY_UPDATER_FUNCTION alone names the function (the deployed default);
#   4. a policy-updater that fails: the error names the account and the function.
#
#   tests/moto/with-moto.sh tests/lambda/operator-path.sh      (make test-lambda runs it)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
die() { echo "operator-path: FAIL: $*" >&2; exit 1; }
[ -n "${AWS_ENDPOINT_URL:-}" ] && [ -n "${TRAILKEEPER_AWSCLI:-}" ] ||
  die "needs the local emulator: run me under tests/moto/with-moto.sh (make test-lambda does)"
. scripts/cargo-lambda-env.sh
cargo lambda --version >/dev/null 2>&1 || die "cargo lambda is not installed"
aws=$TRAILKEEPER_AWSCLI

WATCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trailkeeper-operator.XXXXXX")
. scripts/lambda-watch.sh
trap 'watch_stop_all; rm -rf "$WATCH_DIR"' EXIT

# One binary per cargo call, as watch-invoke.sh explains.
cargo build -q --bin policy-updater
cargo build -q --bin trailkeeper
trailkeeper="$root/target/debug/trailkeeper"

# An organization (one per emulator: another test may have made it), a log-archive account
# and a member account.
"$aws" organizations create-organization --feature-set ALL >/dev/null 2>&1 || true
create_account() {
  "$aws" organizations create-account --account-name "$1" --email "$1-$$@example.com" \
    --query CreateAccountStatus.AccountId --output text
}
log_archive=$(create_account "operator-archive")
member=$(create_account "operator-member")
other=$(create_account "operator-other")
# credentials ACCOUNT ROLE: "AK SK TOKEN" of ROLE in ACCOUNT (moto lets any role be assumed).
credentials() {
  "$aws" sts assume-role --role-arn "arn:aws:iam::$1:role/$2" --role-session-name operator-path \
    --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text
}
updater_role_name=trailkeeper-log-archive-PolicyUpdaterRole-TEST
updater_role="arn:aws:iam::$log_archive:role/$updater_role_name"
operator_role="arn:aws:iam::$log_archive:role/SecurityOperator"
read -r up_ak up_sk up_token < <(credentials "$log_archive" "$updater_role_name")
as_updater() { AWS_ACCESS_KEY_ID=$up_ak AWS_SECRET_ACCESS_KEY=$up_sk AWS_SESSION_TOKEN=$up_token "$@"; }

bucket="tk-operator-$$"
as_updater "$aws" s3api create-bucket --bucket "$bucket" >/dev/null
cat >"$WATCH_DIR/base-policy.json" <<EOF
{"Version":"2012-10-17","Statement":[
 {"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*",
  "Resource":["arn:aws:s3:::$bucket","arn:aws:s3:::$bucket/*"],
  "Condition":{"Bool":{"aws:SecureTransport":"false"}}},
 {"Sid":"OnlyPolicyUpdaterChangesPolicy","Effect":"Deny","Principal":"*",
  "Action":["s3:PutBucketPolicy","s3:DeleteBucketPolicy"],"Resource":"arn:aws:s3:::$bucket",
  "Condition":{"ArnNotEquals":{"aws:PrincipalArn":"$updater_role"}}}]}
EOF
as_updater "$aws" s3api put-bucket-policy --bucket "$bucket" --policy "file://$WATCH_DIR/base-policy.json"
echo "operator-path: s3://$bucket in $log_archive with template.yaml's base policy (policy-updater role $updater_role)"

settings=(TRAILKEEPER_BUCKET="$bucket" TRAILKEEPER_TRAIL_NAME=trailkeeper TRAILKEEPER_HOME_REGION=us-east-1)
watch_start updater AWS_ACCESS_KEY_ID="$up_ak" AWS_SECRET_ACCESS_KEY="$up_sk" AWS_SESSION_TOKEN="$up_token" \
  "${settings[@]}"
echo "operator-path: the policy-updater under cargo lambda watch on 127.0.0.1:$WATCH_PORT_updater"

# onboard ARGS...: the CLI as the management account's operator, the policy step with the
# log-archive SecurityOperator role; prints stdout+stderr, returns the exit code.
onboard() {
  env "${settings[@]}" AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$WATCH_PORT_updater" \
    "$trailkeeper" onboard --archive-role-arn "$operator_role" "$@" 2>&1
}
policy() { as_updater "$aws" s3api get-bucket-policy --bucket "$bucket" --query Policy --output text; }

# 1. In-process, as the operator: S3 refuses the write.
set +e
out=$(onboard --account "$member" --in-process)
code=$?
set -e
echo "$out" | sed 's/^/    /'
[ "$code" -eq 1 ] || die "--in-process as the operator: expected exit 1, got $code"
grep -q "AccessDenied" <<<"$out" || die "--in-process: the refusal does not say AccessDenied"
grep -q "account $member" <<<"$out" || die "--in-process: the refusal does not name account $member"
grep -q -- "--function" <<<"$out" || die "--in-process: the refusal does not point to --function"
grep -q "in this process" <<<"$out" || die "--in-process: the output does not say the edit runs in this process"
policy | grep -q "TrailkeeperWrite$member" && die "the operator's in-process edit reached the policy"
echo "operator-path: ok  --in-process as the operator is refused by the base policy"

# 2. Through the deployed policy-updater.
out=$(onboard --account "$member" --function policy-updater) || die "--function policy-updater failed: $out"
echo "$out" | sed 's/^/    /'
grep -q "invoking the policy-updater policy-updater" <<<"$out" || die "--function: the output does not name the function"
grep -q "bucket policy of s3://$bucket: admitted" <<<"$out" || die "--function: no admission reported"
grep -q "trail/trailkeeper: created; logging started" <<<"$out" || die "--function: the trail was not created"
policy >"$WATCH_DIR/after.json"
python3 - "$WATCH_DIR/after.json" "$member" <<'PY' || die "the bucket policy after --function is wrong: $(cat "$WATCH_DIR/after.json")"
import json, sys
p = json.load(open(sys.argv[1]))
sids = [s.get("Sid") for s in p["Statement"]]
assert f"TrailkeeperWrite{sys.argv[2]}" in sids, sids
assert "OnlyPolicyUpdaterChangesPolicy" in sids and "DenyInsecureTransport" in sids, sids
PY
echo "operator-path: ok  --function: the policy-updater admitted $member, the base policy kept, the trail created"

# 3. The environment variable alone (a deployed stack's default).
out=$(TRAILKEEPER_POLICY_UPDATER_FUNCTION=policy-updater onboard --account "$other") ||
  die "TRAILKEEPER_POLICY_UPDATER_FUNCTION: onboarding failed: $out"
grep -q "invoking the policy-updater policy-updater" <<<"$out" || die "the environment variable was not used: $out"
policy | grep -q "TrailkeeperWrite$other" || die "TRAILKEEPER_POLICY_UPDATER_FUNCTION: $other not admitted"
echo "operator-path: ok  TRAILKEEPER_POLICY_UPDATER_FUNCTION names the function"

# 4. A policy-updater that fails (its bucket does not exist): the error names account and function.
watch_start broken AWS_ACCESS_KEY_ID="$up_ak" AWS_SECRET_ACCESS_KEY="$up_sk" AWS_SESSION_TOKEN="$up_token" \
  TRAILKEEPER_BUCKET="$bucket-missing" TRAILKEEPER_TRAIL_NAME=trailkeeper TRAILKEEPER_HOME_REGION=us-east-1
set +e
out=$(env "${settings[@]}" AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$WATCH_PORT_broken" \
  "$trailkeeper" onboard --archive-role-arn "$operator_role" --account "$member" --function policy-updater 2>&1)
code=$?
set -e
echo "$out" | sed 's/^/    /'
[ "$code" -eq 1 ] || die "a failing policy-updater: expected exit 1, got $code"
grep -q "account $member: the policy-updater policy-updater failed" <<<"$out" ||
  die "a failing policy-updater: the error does not name the account and the function"
echo "operator-path: ok  a failing policy-updater is an error naming the account and the function"
echo "operator-path: passed"
