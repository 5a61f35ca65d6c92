#!/usr/bin/env bash
# Checks template.yaml offline with both linters; each catches errors the other misses:
#   cfn-lint        the CloudFormation resource specs: property types and values, IAM policy
#                   shapes, intrinsic functions, conditions, after the SAM transform;
#   sam validate    the SAM transform itself (AWS::Serverless::* properties and events, which
#   --lint          cfn-lint only sees once transformed) plus its own cfn-lint pass.
# Both come from .venv-sam (scripts/requirements-sam.txt), never from the moto venv, because
# SAM pins a different boto. Then trailkeeper's own rules, which neither knows
# (tests/lambda/template_checks.py). Fails on any error or warning.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/ensure-venv.sh" "$root/.venv-sam" "$root/scripts/requirements-sam.txt"
bin="$root/.venv-sam/bin"

# Offline and deterministic: a region for the transform, no credentials, no telemetry, no
# update check, nothing from the user's AWS config.
for name in $(compgen -e); do
  case "$name" in AWS_*) unset "$name" ;; esac
done
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0 SAM_CLI_CONTAINER_CONNECTION_TIMEOUT=1
export HOME_SAM_DIR="${TMPDIR:-/tmp}"

status=0
echo "lint-template: cfn-lint $("$bin/cfn-lint" --version | awk '{print $2}') template.yaml"
"$bin/cfn-lint" --format parseable template.yaml || status=1
echo "lint-template: cfn-lint templates/audit-member-role.yaml (the StackSet's member audit role)"
"$bin/cfn-lint" --format parseable templates/audit-member-role.yaml || status=1
echo "lint-template: sam validate --lint ($("$bin/sam" --version))"
"$bin/sam" validate --lint --template-file template.yaml --region us-east-1 || status=1
echo "lint-template: trailkeeper's own rules (tests/lambda/template_checks.py)"
"$bin/python" tests/lambda/template_checks.py template.yaml --self-test || status=1
if [ "$status" -ne 0 ]; then
  echo "lint-template: FAILED" >&2
else
  echo "lint-template: template.yaml passes cfn-lint and sam validate --lint; templates/audit-member-role.yaml passes cfn-lint"
fi
exit "$status"
