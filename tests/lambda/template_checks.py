"""trailkeeper's own rules for template.yaml, which neither cfn-lint nor sam validate knows.

Run by scripts/lint-template.sh with the .venv-sam python (cfn-lint's YAML loader reads the
intrinsic-function tags):  python tests/lambda/template_checks.py template.yaml [--self-test]

1. Every function: provided.al2023 (Globals), Handler bootstrap, BuildMethod rust-cargolambda,
   CodeUri ".", a Binary that is a [[bin]] of a crate under functions/, and every such binary
   deployed by the template.
2. Least privilege: no IAM Allow statement with a "*" (or "service:*") action, and no Allow
   on Resource "*" except the actions that have no resource-level permissions.
3. EventBridge patterns on CloudTrail service events: eventName and the state inside "detail",
   never at the top level (field notes: patterns that silently never match).
4. Environment variables: only the design's configuration table (TRAILKEEPER_*).
5. events/<binary>/ exists for every function binary, and nothing else is there; the two
   onboarding functions take the same events and share events/account-events/ (SHARED_SAMPLES).
6. The policy-updater is serialized (ReservedConcurrentExecutions: 1), and the bucket policy
   lets nobody else change it.
7. Least privilege by the code: each function's role allows exactly the IAM actions its crate
   declares in `pub const CALLS` (functions/<crate>/src/lib.rs, built from the `CALLS`
   constants next to the calls in shared/src, which shared/tests/least_privilege.rs holds to the
   code), plus only the actions AWS itself uses on the function's behalf (IMPLICIT), and no
   managed policy but the basic execution role.
8. The digest rule's and the tripwire's patterns, as deployed without LogPrefix, are
   tests/lambda/digest-rule-pattern.json and tests/lambda/tripwire-rule-pattern.json, the
   patterns the end-to-end tests (tests/tests/consolidate.rs, tests/tests/tripwire.rs) run on the
   emulator's EventBridge.
9. Lose nothing: every function invoked asynchronously (an EventBridge rule, a schedule, S3 or
   SNS) has an SQS OnFailure destination (after Lambda's own retries) with an alarm on the
   queue's depth that notifies someone (AlarmActions), and every EventBridge route to it has a
   DeadLetterConfig (events EventBridge could not deliver after its retry policy).
10. The optional service control policy (TrailGuardPolicy, management half, attached to the
   TrailGuardTargets, off when empty) is tests/lambda/trail-guard-scp.json, the policy that
   shared/tests/trail_guard.rs evaluates with iam-rs.
"""

import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

# Sample folders that several functions share: the onboarding functions take the same events.
SHARED_SAMPLES = {"account-events": ["policy-updater", "trail-enabler"]}
# Organizations events a rule may match on eventName alone (shared/src/events.rs reads the rest).
MEMBERSHIP_EVENTS = {"AccountJoinedOrganization", "AccountDepartedOrganization", "CloseAccountResult"}

ROOT = Path(__file__).resolve().parents[2]
CONFIG_TABLE = {
    "TRAILKEEPER_BUCKET", "TRAILKEEPER_PREFIX", "TRAILKEEPER_TRAIL_NAME", "TRAILKEEPER_MEMBER_ROLE",
    "TRAILKEEPER_HOME_REGION", "TRAILKEEPER_KMS_KEY_ARN", "TRAILKEEPER_POLICY_MODE",
    "TRAILKEEPER_ORG_ID", "TRAILKEEPER_ALERT_TOPIC_ARN",
    # The Athena tables whose account projection the policy-updater extends (README).
    "TRAILKEEPER_ATHENA_DATABASE", "TRAILKEEPER_ATHENA_TABLES",
    # The org-auditor's role in the log-archive account that may read the policies (README).
    "TRAILKEEPER_ARCHIVE_ROLE_ARN",
    # Findings also imported into Security Hub (README, "Findings in Security Hub").
    "TRAILKEEPER_SECURITY_HUB",
    # The read-only role the org-auditor assumes in member accounts (README).
    "TRAILKEEPER_AUDIT_ROLE",
    # The tripwire's configured expiration, and the re-verification period (README).
    "TRAILKEEPER_EXPIRE_AFTER_DAYS", "TRAILKEEPER_REVERIFY_DAYS",
}
# Actions that support no resource-level permissions: "*" is the only resource AWS accepts.
STAR_RESOURCE_OK = {"cloudtrail:ListPublicKeys", "cloudtrail:DescribeTrails", "organizations:ListAccounts"}
# Actions a function's role needs that no code of ours calls, and when they are allowed.
IMPLICIT = {
    # Lambda itself sends a failed asynchronous event to the OnFailure SQS destination, with the
    # function's execution role.
    "sqs:SendMessage": lambda fn_props, granted: (
        ((fn_props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {})
        .get("OnFailure", {}).get("Type") == "SQS"),
    # S3 decrypts SSE-KMS objects for GetObject with the caller's kms:Decrypt.
    "kms:Decrypt": lambda fn_props, granted: "s3:GetObject" in granted,
}
# Roles of this template that a function assumes (not its execution role), and the list of its
# crate that names the calls made through them.
ASSUMED_ROLES = {"AuditReaderRole": ("org-auditor", "ARCHIVE_READER_CALLS")}
TRAIL_GUARD_SCP = ROOT / "tests" / "lambda" / "trail-guard-scp.json"
DIGEST_RULE_PATTERN = ROOT / "tests" / "lambda" / "digest-rule-pattern.json"
TRIPWIRE_RULE_PATTERN = ROOT / "tests" / "lambda" / "tripwire-rule-pattern.json"
MANAGED_OK = {"arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}


def function_binaries() -> set[str]:
    bins = set()
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        text = manifest.read_text()
        found = re.findall(r'\[\[bin\]\]\s*\n(?:[^\[]*?\n)?\s*name\s*=\s*"([^"]+)"', text)
        if not found:
            found = re.findall(r'^name\s*=\s*"([^"]+)"', text, re.M)[:1]
        bins.update(found)
    return bins


def function_crates() -> dict[str, Path]:
    """Binary name -> its crate's directory under functions/."""
    crates = {}
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        text = manifest.read_text()
        found = re.findall(r'\[\[bin\]\]\s*\n(?:[^\[]*?\n)?\s*name\s*=\s*"([^"]+)"', text)
        if not found:
            found = re.findall(r'^name\s*=\s*"([^"]+)"', text, re.M)[:1]
        for b in found:
            crates[b] = manifest.parent
    return crates


def rust_const_list(text: str, name: str):
    m = re.search(r"pub const " + re.escape(name) + r"\s*:\s*&\[&(\[&)?str\]?\]\s*=\s*&\[(.*?)\];", text, re.S)
    return None if m is None else m.group(2)


def declared_calls(crate: Path, const_name: str = "CALLS") -> tuple[set[str], list[str]]:
    """The IAM actions a function crate declares in `pub const CALLS: &[&[&str]]` (or another
    such list) of its lib.rs, each list resolved from the `pub const` it names in shared/src."""
    errors, calls = [], set()
    body = rust_const_list((crate / "src" / "lib.rs").read_text(), const_name)
    if body is None:
        return calls, [f"{crate.name}: no `pub const {const_name}: &[&[&str]]` in src/lib.rs"]
    for path, const in re.findall(r"trailkeeper::((?:\w+::)*\w+)::([A-Z_]+)", body):
        source = ROOT / "shared" / "src" / (path.replace("::", "/") + ".rs")
        items = rust_const_list(source.read_text(), const) if source.exists() else None
        if items is None:
            errors.append(f"{crate.name}: CALLS names trailkeeper::{path}::{const}, which shared/src does not define")
            continue
        calls.update(re.findall(r'"([^"]+)"', items))
    if not calls and not errors:
        errors.append(f"{crate.name}: CALLS lists no action")
    return calls, errors


def role_name(role):
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        att = role["Fn::GetAtt"]
        return (att if isinstance(att, list) else att.split("."))[0]
    return None


def least_privilege(template) -> list[str]:
    errors = []
    res = template["Resources"]
    crates = function_crates()
    for name, r in res.items():
        if r.get("Type") != "AWS::Serverless::Function":
            continue
        props = r.get("Properties", {})
        binary = ((r.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        role = role_name(props.get("Role"))
        if role is None or role not in res:
            errors.append(f"{name}: Role must be !GetAtt <a role of this template>.Arn")
            continue
        if binary not in crates:
            continue  # reported by the binary rule
        declared, errs = declared_calls(crates[binary])
        errors.extend(f"{name}: {e}" for e in errs)
        role_props = res[role].get("Properties", {})
        for arn in role_props.get("ManagedPolicyArns", []) or []:
            text = arn.get("Fn::Sub") if isinstance(arn, dict) else arn
            if text not in MANAGED_OK:
                errors.append(f"{role}: managed policy {arn!r}: only the basic execution role is allowed")
        granted = set()
        for s in statements(role_props):
            if s.get("Effect") == "Allow":
                granted.update(a for a in as_list(s.get("Action", [])) if isinstance(a, str))
        for a in sorted(granted - declared):
            allowed = IMPLICIT.get(a)
            if allowed is None or not allowed(props, granted):
                errors.append(f"{role}: allows {a}, which the code of {binary} never calls (functions/{crates[binary].name}/src/lib.rs CALLS)")
        for a in sorted(declared - granted):
            errors.append(f"{role}: does not allow {a}, which {binary} calls (functions/{crates[binary].name}/src/lib.rs CALLS)")
    # Roles that a function assumes in another account: exactly the calls made through them.
    for role, (binary, const) in ASSUMED_ROLES.items():
        if role not in res or binary not in crates:
            errors.append(f"{role}: expected in the template, assumed by {binary}")
            continue
        declared, errs = declared_calls(crates[binary], const)
        errors.extend(f"{role}: {e}" for e in errs)
        granted = {a for s in statements(res[role].get("Properties", {})) if s.get("Effect") == "Allow"
                   for a in as_list(s.get("Action", [])) if isinstance(a, str)}
        if granted != declared:
            errors.append(f"{role}: allows {sorted(granted)}, but {binary} calls {sorted(declared)} through it "
                          f"(functions/{crates[binary].name}/src/lib.rs {const})")
    return errors


def as_list(v):
    return v if isinstance(v, list) else [v]


def statements(resource_props):
    """IAM policy statements of a role, with Fn::If branches flattened."""
    for policy in resource_props.get("Policies", []) or []:
        doc = policy.get("PolicyDocument", {})
        for s in as_list(doc.get("Statement", [])):
            yield from flatten_if(s)


def flatten_if(s):
    if isinstance(s, dict) and "Fn::If" in s:
        for branch in s["Fn::If"][1:]:
            yield from flatten_if(branch)
    elif isinstance(s, dict) and "Ref" not in s:
        yield s


def patterns(template):
    for name, r in template["Resources"].items():
        props = r.get("Properties", {})
        if r.get("Type") == "AWS::Events::Rule" and "EventPattern" in props:
            yield name, props["EventPattern"]
        if r.get("Type") == "AWS::Serverless::Function":
            for ev_name, ev in (props.get("Events") or {}).items():
                if ev.get("Type") == "EventBridgeRule":
                    yield f"{name}.{ev_name}", ev["Properties"]["Pattern"]


def without_prefix(node):
    """A template value as deployed without LogPrefix: Ref X is "${X}", and
    Fn::If [HasPrefix, a, b] is b."""
    if isinstance(node, dict):
        if list(node) == ["Ref"]:
            return "${" + node["Ref"] + "}"
        if list(node) == ["Fn::If"] and node["Fn::If"][0] == "HasPrefix":
            return without_prefix(node["Fn::If"][2])
        return {k: without_prefix(v) for k, v in node.items()}
    if isinstance(node, list):
        return [without_prefix(v) for v in node]
    return node


def digest_rule(template) -> list[str]:
    events = template["Resources"].get("DigestValidatorFunction", {}).get("Properties", {}).get("Events") or {}
    errors = []
    for event, path in [("DigestDelivered", DIGEST_RULE_PATTERN), ("Tripwire", TRIPWIRE_RULE_PATTERN)]:
        pattern = (events.get(event) or {}).get("Properties", {}).get("Pattern")
        if pattern is None:
            errors.append(f"DigestValidatorFunction: no {event} EventBridgeRule event")
            continue
        want = json.loads(path.read_text())
        got = without_prefix(pattern)
        if json.loads(json.dumps(got)) != want:
            errors.append(f"DigestValidatorFunction.{event}: the pattern {json.dumps(got)} is not "
                          f"{path.relative_to(ROOT)} ({json.dumps(want)}), which the end-to-end tests run")
    return errors


ASYNC_EVENTS = {"EventBridgeRule", "Schedule", "ScheduleV2", "CloudWatchEvent", "S3", "SNS"}
RULE_EVENTS = {"EventBridgeRule", "Schedule", "CloudWatchEvent"}


def depth_alarms(res) -> set[str]:
    """The queues whose ApproximateNumberOfMessagesVisible raises an alarm with an action."""
    queues = set()
    for r in res.values():
        p = r.get("Properties", {})
        if (r.get("Type") != "AWS::CloudWatch::Alarm" or p.get("Namespace") != "AWS/SQS"
                or p.get("MetricName") != "ApproximateNumberOfMessagesVisible" or not p.get("AlarmActions")):
            continue
        for d in p.get("Dimensions", []) or []:
            if d.get("Name") == "QueueName":
                queues.add(role_name(d.get("Value")))
    return queues


def lose_nothing(template) -> list[str]:
    errors = []
    res = template["Resources"]
    alarmed = depth_alarms(res)
    targeted = {}
    for name, r in res.items():
        if r.get("Type") == "AWS::Events::Rule":
            for t in r.get("Properties", {}).get("Targets", []) or []:
                fn = role_name(t.get("Arn"))
                if fn in res and res[fn].get("Type") == "AWS::Serverless::Function":
                    targeted.setdefault(fn, []).append(name)
                if not t.get("DeadLetterConfig"):
                    errors.append(f"{name}: target {t.get('Id')} has no DeadLetterConfig: an event EventBridge "
                                  "cannot deliver after its retry policy would be dropped")
    for name, r in res.items():
        if r.get("Type") != "AWS::Serverless::Function":
            continue
        props = r.get("Properties", {})
        events = props.get("Events") or {}
        if name not in targeted and not any(e.get("Type") in ASYNC_EVENTS for e in events.values()):
            continue
        for ev_name, ev in events.items():
            if ev.get("Type") in RULE_EVENTS and not (ev.get("Properties") or {}).get("DeadLetterConfig"):
                errors.append(f"{name}.{ev_name}: no DeadLetterConfig: an event EventBridge cannot deliver "
                              "after its retry policy would be dropped")
        on_failure = ((props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure") or {}
        queue = role_name(on_failure.get("Destination"))
        if on_failure.get("Type") != "SQS" or queue not in res or res[queue].get("Type") != "AWS::SQS::Queue":
            errors.append(f"{name}: invoked asynchronously without an SQS OnFailure destination: "
                          "an event that fails Lambda's retries is dropped")
        elif queue not in alarmed:
            errors.append(f"{name}: its failure queue {queue} has no alarm on ApproximateNumberOfMessagesVisible "
                          "with AlarmActions: a failed event would wait unseen")
    return errors


def trail_guard(template) -> list[str]:
    r = template["Resources"].get("TrailGuardPolicy")
    if r is None or r.get("Type") != "AWS::Organizations::Policy":
        return ["TrailGuardPolicy: no AWS::Organizations::Policy: nothing prevents a member admin from "
                "stopping, deleting or diverting the trail"]
    errors, props = [], r.get("Properties", {})
    if r.get("Condition") != "GuardsTrail":
        errors.append("TrailGuardPolicy: must have Condition GuardsTrail (management half, TrailGuardTargets set)")
    if props.get("Type") != "SERVICE_CONTROL_POLICY":
        errors.append("TrailGuardPolicy: Type must be SERVICE_CONTROL_POLICY")
    if props.get("TargetIds") != {"Ref": "TrailGuardTargets"}:
        errors.append("TrailGuardPolicy: TargetIds must be !Ref TrailGuardTargets")
    content = props.get("Content")
    text = content.get("Fn::Sub") if isinstance(content, dict) else None
    try:
        same = isinstance(text, str) and json.loads(text) == json.loads(TRAIL_GUARD_SCP.read_text())
    except ValueError as e:
        same = False
        errors.append(f"TrailGuardPolicy: Content is not JSON: {e}")
    if not same:
        errors.append(f"TrailGuardPolicy: Content must be !Sub of {TRAIL_GUARD_SCP.relative_to(ROOT)}, "
                      "the policy shared/tests/trail_guard.rs evaluates")
    return errors


def check(template) -> list[str]:
    errors = []
    res = template["Resources"]
    glob = template.get("Globals", {}).get("Function", {})
    bins = function_binaries()
    deployed = set()
    for name, r in res.items():
        if r.get("Type") != "AWS::Serverless::Function":
            continue
        p, meta = r.get("Properties", {}), r.get("Metadata", {})
        for key, want in (("Runtime", "provided.al2023"), ("Handler", "bootstrap"), ("CodeUri", ".")):
            if p.get(key, glob.get(key)) != want:
                errors.append(f"{name}: {key} must be {want!r}")
        if meta.get("BuildMethod") != "rust-cargolambda":
            errors.append(f"{name}: Metadata.BuildMethod must be rust-cargolambda")
        binary = (meta.get("BuildProperties") or {}).get("Binary")
        deployed.add(binary)
        if binary not in bins:
            errors.append(f"{name}: Binary {binary!r} is not a binary of a crate under functions/ ({sorted(bins)})")
        for var in ((p.get("Environment") or {}).get("Variables") or {}):
            if var not in CONFIG_TABLE:
                errors.append(f"{name}: environment variable {var} is not in the design's configuration table")
    for b in sorted(bins - deployed):
        errors.append(f"function binary {b} (functions/) is not deployed by the template")
    # events/<binary>/: the sample inputs of each function (its own tests deserialize them).
    samples = {d.name for d in (ROOT / "events").iterdir() if d.is_dir()}
    covered = {b for d in samples for b in SHARED_SAMPLES.get(d, [d])}
    for b in sorted(bins - covered):
        errors.append(f"function {b} has no sample events in events/{b}/")
    for d in sorted(samples):
        for b in SHARED_SAMPLES.get(d, [d]):
            if b not in bins:
                errors.append(f"events/{d}/ belongs to no function binary ({b})")
    for d in sorted(samples):
        if not list((ROOT / "events" / d).glob("*.json")):
            errors.append(f"events/{d}/ holds no sample (*.json)")
        for f in sorted((ROOT / "events" / d).glob("*.json")):
            try:
                json.loads(f.read_text())
            except ValueError as e:
                errors.append(f"events/{d}/{f.name} is not JSON: {e}")

    for name, r in res.items():
        if r.get("Type") != "AWS::IAM::Role":
            continue
        for s in statements(r.get("Properties", {})):
            if s.get("Effect") != "Allow":
                continue
            actions = [a for a in as_list(s.get("Action", [])) if isinstance(a, str)]
            for a in actions:
                if a == "*" or a.endswith(":*"):
                    errors.append(f"{name}: Allow of action {a!r}")
            if "*" in as_list(s.get("Resource", [])):
                for a in actions:
                    if a not in STAR_RESOURCE_OK:
                        errors.append(f"{name}: Allow of {a} on Resource '*'")

    for name, pattern in patterns(template):
        if pattern.get("detail-type") == ["AWS Service Event via CloudTrail"]:
            for key in ("eventName", "eventSource", "serviceEventDetails", "state"):
                if key in pattern:
                    errors.append(f"{name}: top-level {key!r} in an event pattern never matches; it belongs in 'detail'")
            detail = pattern.get("detail", {})
            if not detail.get("eventName"):
                errors.append(f"{name}: pattern on CloudTrail service events without detail.eventName")
            # Membership events carry no state (CloseAccountResult's is read by the function).
            names = set(as_list(detail.get("eventName", [])))
            if names - MEMBERSHIP_EVENTS and "SUCCEEDED" not in json.dumps(detail.get("serviceEventDetails", {})):
                errors.append(f"{name}: pattern does not require state SUCCEEDED")

    updater = res.get("PolicyUpdaterFunction", {}).get("Properties", {})
    if updater.get("ReservedConcurrentExecutions") != 1:
        errors.append("PolicyUpdaterFunction: ReservedConcurrentExecutions must be 1 (serialized policy writes)")
    policy = res.get("CentralBucketPolicy", {}).get("Properties", {}).get("PolicyDocument", {})
    lock = [s for s in as_list(policy.get("Statement", [])) if s.get("Effect") == "Deny"
            and "s3:PutBucketPolicy" in as_list(s.get("Action", []))]
    if not lock or "PolicyUpdaterRole" not in json.dumps(lock):
        errors.append("CentralBucketPolicy: no Deny of s3:PutBucketPolicy to everyone but PolicyUpdaterRole")
    if any(str(s.get("Sid", "")).startswith("Trailkeeper") for s in as_list(policy.get("Statement", []))):
        errors.append("CentralBucketPolicy: Sids starting with 'Trailkeeper' belong to the policy-updater")
    # The daily audit reads member accounts through the read-only audit role only: its role may
    # not assume the administrator member role (templates/audit-member-role.yaml).
    auditor = res.get("OrgAuditorRole", {}).get("Properties", {})
    assumable = json.dumps([s.get("Resource") for s in statements(auditor)
                            if "sts:AssumeRole" in as_list(s.get("Action", []))])
    if "MemberRoleName" in assumable or "${AuditRoleName}" not in assumable:
        errors.append("OrgAuditorRole: must assume role/${AuditRoleName} in member accounts, never ${MemberRoleName}")
    errors.extend(least_privilege(template))
    errors.extend(digest_rule(template))
    errors.extend(lose_nothing(template))
    errors.extend(trail_guard(template))
    return errors


def self_test(template):
    """Each rule must reject a broken copy of the real template."""
    import copy
    broken = []
    t = copy.deepcopy(template)
    t["Resources"]["TrailEnablerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    broken.append(("IAM wildcard", t))
    t = copy.deepcopy(template)
    p = t["Resources"]["OrganizationsAccountCreatedRule"]["Properties"]["EventPattern"]
    p["eventName"] = p["detail"].pop("eventName")
    broken.append(("top-level eventName", t))
    t = copy.deepcopy(template)
    t["Resources"]["DigestValidatorFunction"]["Metadata"]["BuildProperties"]["Binary"] = "digest_validator"
    broken.append(("unknown binary", t))
    t = copy.deepcopy(template)
    t["Resources"]["PolicyUpdaterFunction"]["Properties"]["ReservedConcurrentExecutions"] = 2
    broken.append(("unserialized policy-updater", t))
    t = copy.deepcopy(template)
    t["Resources"]["DigestValidatorFunction"]["Properties"]["Environment"]["Variables"]["BUCKET"] = "x"
    broken.append(("stray environment variable", t))
    t = copy.deepcopy(template)
    t["Resources"]["DigestValidatorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::central-logs/AWSLogs/*"})
    broken.append(("an action the code never calls", t))
    t = copy.deepcopy(template)
    t["Resources"]["PolicyUpdaterRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].pop(0)
    broken.append(("a call the role does not allow", t))
    t = copy.deepcopy(template)
    del t["Resources"]["TrailEnablerFunction"]["Properties"]["EventInvokeConfig"]
    broken.append(("sqs:SendMessage without an SQS failure destination", t))
    t = copy.deepcopy(template)
    t["Resources"]["TrailEnablerRole"]["Properties"]["ManagedPolicyArns"].append("arn:aws:iam::aws:policy/ReadOnlyAccess")
    broken.append(("a managed policy", t))
    t = copy.deepcopy(template)
    t["Resources"]["OrgAuditorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1]["Resource"][0] = \
        {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"}
    broken.append(("the org-auditor assuming the member role", t))
    t = copy.deepcopy(template)
    t["Resources"]["DigestValidatorFunction"]["Properties"]["Events"]["DigestDelivered"]["Properties"]["Pattern"][
        "detail"]["object"]["key"] = [{"prefix": "AWSLogs/"}]
    broken.append(("a digest rule other than the tested one", t))
    t = copy.deepcopy(template)
    del t["Resources"]["DigestValidatorFunction"]["Properties"]["EventInvokeConfig"]
    broken.append(("an asynchronous function without a failure destination", t))
    t = copy.deepcopy(template)
    for n in [n for n, r in t["Resources"].items() if r.get("Type") == "AWS::CloudWatch::Alarm"]:
        del t["Resources"][n]
    broken.append(("failure queues without alarms", t))
    t = copy.deepcopy(template)
    del t["Resources"]["OrganizationsAccountCreatedRule"]["Properties"]["Targets"][0]["DeadLetterConfig"]
    broken.append(("an EventBridge target without a dead-letter queue", t))
    base = len(check(template))
    failed = [what for what, t in broken if len(check(t)) <= base]
    if failed:
        sys.exit(f"template_checks: self-test: these broken templates passed: {failed}")


def main():
    path = sys.argv[1]
    template, matches = decode(path)
    if matches:
        sys.exit(f"template_checks: cannot read {path}: {matches}")
    if "--self-test" in sys.argv:
        self_test(template)
    errors = check(template)
    for e in errors:
        print(f"template_checks: {path}: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"template_checks: {path} follows trailkeeper's rules (functions, IAM, event patterns, configuration, bucket policy)")


if __name__ == "__main__":
    main()
