#!/usr/bin/env python3
"""moto server for trailkeeper's tests, plus the CloudTrail ListPublicKeys action moto lacks.

Usage: server.py --port-file FILE

Serves every moto service on 127.0.0.1, on a port the OS picks, and writes that port to FILE
(atomically) once the server accepts connections. Runs until SIGTERM or SIGINT.

ListPublicKeys answers from the key files in the directory named by TRAILKEEPER_MOTO_KEYS_DIR:
every `*.json` file there, re-read on each request. A file has the shape that
`aws cloudtrail list-public-keys` prints:

    {"PublicKeyList": [{"Value": "<base64 DER>", "ValidityStartTime": 1700000000,
                        "ValidityEndTime": 1702592000, "Fingerprint": "<hex md5 of DER>",
                        "Regions": ["us-east-1"]}]}

Times may be epoch numbers, numeric strings or ISO-8601 strings. "Regions" is optional and
limits the key to requests signed for those regions; without it the key is served everywhere.
Write files via a temporary name that does not end in `.json`, then rename.

S3's EventBridge events carry the `reason` S3 documents (`PutObject`, `CopyObject`,
`CompleteMultipartUpload`, `PostObject`, `DeleteObject`), not moto's event type
(`ObjectCreated`), so that an event pattern telling copies from deliveries behaves as on AWS
(see s3_eventbridge_message). Their `requester` is the caller's account, or
`cloudtrail.amazonaws.com` for requests signed with the stand-in delivery key
(CLOUDTRAIL_DELIVERY_KEY); `source-ip-address` and `request-id` are the request's; an `Object Deleted` event says its `deletion-type`.

`/moto-api/data.json` leaves out attributes it cannot read instead of failing, and takes
`?service=NAME`. GetBucketVersioning is answered under S3's root element (moto's own answer
cannot be read by the AWS SDK for Rust; see get_bucket_versioning). BatchImportFindings refuses
what Security Hub refuses (see batch_import_findings).

Two per-request costs of moto's server are removed, as they made up about a third of its CPU
time while serving S3 (py-spy, `make bench`): moto lists its own package directory on every
request (`list_of_moto_modules`), and werkzeug logs one line per request. Request lines are
still logged when TRAILKEEPER_MOTO_LOG names a file to keep.

CloudTrail checks the destination as AWS does: CreateTrail, and UpdateTrail to another bucket or
prefix, fail with InsufficientS3BucketPolicyException ("Incorrect S3 bucket policy is detected
for bucket: B") until the bucket policy lets cloudtrail.amazonaws.com, with the trail's
aws:SourceArn, aws:SourceAccount and aws:SourceOrgID, do s3:GetBucketAcl on the bucket and
s3:PutObject (with x-amz-acl bucket-owner-full-control) under [prefix/]AWSLogs/<account>/ (an
organization trail: under the management account's and the organization's trees). moto checks
nothing. PutBucketPolicy and DeleteBucketPolicy honour an explicit Deny of the current bucket
policy for the caller's aws:PrincipalArn (moto applies none); the bucket owner's root user is
exempt, as on S3. Both use the small evaluator below (see policy_decision).

A new trail has CloudTrail's default event selector (every management event, read and write;
moto gives none), and putting basic event selectors removes advanced ones and the other way
round, as on CloudTrail (moto keeps both).
"""

import argparse
import base64
import binascii
import json
import logging
import os
import re
import signal
import sys
import time
import threading
from datetime import datetime, timezone
from pathlib import Path

import moto.backends as moto_backends
from moto.cloudtrail.responses import CloudTrailResponse
from moto.s3.exceptions import S3ClientError
from moto.s3.responses import S3Response
from moto.core.exceptions import JsonRESTError
from moto.moto_api._internal.responses import MotoAPIResponse
from moto.securityhub.responses import SecurityHubResponse
from moto.server import ThreadedMotoServer
from moto.utilities.utils import get_partition

KEYS_DIR_ENV = "TRAILKEEPER_MOTO_KEYS_DIR"


def log(message: str) -> None:
    print(f"server.py: {message}", file=sys.stderr, flush=True)


def epoch_seconds(value: object) -> float:
    """An epoch number, a numeric string or an ISO-8601 string, as epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    try:
        return float(value)
    except ValueError:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()


class KeyFileError(JsonRESTError):
    """A key file that parses but is not in the expected shape: a test bug, so say it loudly."""

    def __init__(self, path: Path, problem: str):
        super().__init__("TrailkeeperMotoKeyFileError", f"{path}: {problem}")


def key_entries(keys_dir: Path) -> list[tuple[Path, dict]]:
    """Every key entry of every complete key file, in file-name order."""
    entries = []
    for path in sorted(keys_dir.glob("*.json")):
        if path.name.startswith("."):  # a temporary name, by convention
            continue
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:  # vanished or half-written: skip it
            log(f"skipping key file {path}: {error}")
            continue
        listed = document.get("PublicKeyList") if isinstance(document, dict) else None
        if not isinstance(listed, list):
            raise KeyFileError(path, 'expected {"PublicKeyList": [...]}')
        entries.extend((path, entry) for entry in listed)
    return entries


def public_key(path: Path, entry: object) -> tuple[dict, list[str] | None]:
    """The entry as the AWS JSON protocol sends it, and its "Regions" (None = all regions)."""
    try:
        base64.b64decode(entry["Value"], validate=True)
        regions = entry.get("Regions")
        if regions is not None and not (
            isinstance(regions, list) and all(isinstance(r, str) for r in regions)
        ):
            raise ValueError("Regions must be a list of region names")
        key = {
            "Value": entry["Value"],
            "ValidityStartTime": epoch_seconds(entry["ValidityStartTime"]),
            "ValidityEndTime": epoch_seconds(entry["ValidityEndTime"]),
            "Fingerprint": str(entry["Fingerprint"]),
        }
        return key, regions
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        raise KeyFileError(path, f"bad key entry {entry!r}: {error!r}") from error


def list_public_keys(self: CloudTrailResponse) -> tuple[str, dict[str, str]]:
    keys_dir = os.environ.get(KEYS_DIR_ENV)
    if not keys_dir:
        raise JsonRESTError("TrailkeeperMotoKeyFileError", f"{KEYS_DIR_ENV} is not set")
    start = self._get_param("StartTime")
    end = self._get_param("EndTime")
    # As AWS documents: an absent bound is the current time (only the current key comes back).
    now = time.time()
    start = now if start is None else epoch_seconds(start)
    end = now if end is None else epoch_seconds(end)
    if start > end:
        raise JsonRESTError(
            "InvalidTimeRangeException", "Start time must be before or equal to end time."
        )
    keys = []
    for path, entry in key_entries(Path(keys_dir)):
        key, regions = public_key(path, entry)
        overlaps = key["ValidityStartTime"] <= end and key["ValidityEndTime"] >= start
        if overlaps and (regions is None or self.region in regions):
            keys.append(key)
    return json.dumps({"PublicKeyList": keys}), {"Content-Type": "application/x-amz-json-1.1"}


def get_bucket_versioning(self: S3Response) -> tuple[int, dict[str, str], str]:
    """GetBucketVersioning as S3 answers it: moto 5.2.5 wraps the answer in a root element
    `GetBucketVersioningResponse`, which the AWS SDK for Rust refuses; S3's root is
    `VersioningConfiguration`, empty for a bucket that was never versioned. moto keeps no MFA
    Delete state, so none is reported."""
    status = self.backend.get_bucket_versioning(self.bucket_name)
    self.data["Action"] = "GetBucketVersioning"
    inner = f"<Status>{status}</Status>" if status else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}'
        "</VersioningConfiguration>"
    )
    return 200, {"Content-Type": "application/xml"}, body


# What Security Hub requires of every imported finding (ASFF), which moto does not check.
ASFF_REQUIRED = (
    "SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "Types", "CreatedAt",
    "UpdatedAt", "Severity", "Title", "Description", "Resources",
)
ASFF_SEVERITY_LABELS = {"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"}
ASFF_LIMITS = {"Id": 512, "GeneratorId": 512, "Title": 256, "Description": 1024}


def asff_problem(finding: dict, account: str, region: str) -> str | None:
    """Why Security Hub would refuse this finding from `account` in `region`, or None."""
    missing = [f for f in ASFF_REQUIRED if not finding.get(f)]
    if missing:
        return f"missing required field(s) {', '.join(missing)}"
    arn = finding["ProductArn"]
    partition = arn.split(":")[1] if arn.count(":") >= 5 else ""
    default = f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"
    if arn != default:
        return f"ProductArn {arn} is not the default product of {account} in {region} ({default})"
    if finding["AwsAccountId"] != account:
        return f"AwsAccountId {finding['AwsAccountId']} is not the importing account {account}"
    for field, limit in ASFF_LIMITS.items():
        if len(finding[field]) > limit:
            return f"{field} is longer than {limit} characters"
    text = ((finding.get("Remediation") or {}).get("Recommendation") or {}).get("Text", "")
    if len(text) > 512:
        return "Remediation.Recommendation.Text is longer than 512 characters"
    if finding["Severity"].get("Label") not in ASFF_SEVERITY_LABELS:
        return f"Severity.Label {finding['Severity'].get('Label')!r} is not an ASFF label"
    if any(not r.get("Type") or not r.get("Id") for r in finding["Resources"]):
        return "every resource needs Type and Id"
    return None


def batch_import_findings(self: SecurityHubResponse) -> str:
    """BatchImportFindings as Security Hub answers it. moto 5.2.5 imports anything with a
    resource, even where Security Hub is not enabled; AWS refuses the call then
    (InvalidAccessException) and refuses, one by one, findings that lack a required ASFF field
    or name another account's product."""
    backend = self.securityhub_backend
    if not backend.enabled:
        raise JsonRESTError(
            "InvalidAccessException",
            f"Account {self.current_account} is not subscribed to AWS Security Hub in {self.region}",
        )
    raw = self.body.decode("utf-8") if isinstance(self.body, bytes) else self.body
    findings = json.loads(raw).get("Findings", [])
    good, refused = [], []
    for finding in findings:
        problem = asff_problem(finding, self.current_account, self.region)
        if problem is None:
            good.append(finding)
        else:
            refused.append({"Id": finding.get("Id", ""), "ErrorCode": "InvalidInput", "ErrorMessage": problem})
    failed, ok, failures = backend.batch_import_findings(findings=good)
    return json.dumps(
        {"FailedCount": failed + len(refused), "SuccessCount": ok, "FailedFindings": refused + failures}
    )
# S3's EventBridge `detail.reason` per notification event ("EventBridge event message
# structure" in the S3 user guide). moto 5.2.5 sends the middle of the event name instead.
S3_EVENT_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "PostObject",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


# The request S3 is serving on this thread (moto serves each request on a thread of its own):
# who sent it, for the event's `requester`, `source-ip-address` and `request-id`.
S3_REQUEST = threading.local()
# The harness's stand-in for CloudTrail's delivery service: S3 names an AWS service that writes
# by its service principal, so a request signed with this access key id is CloudTrail's
# (`requester` "cloudtrail.amazonaws.com"); any other request's requester is its account, as
# on S3. Tests that play CloudTrail delivering sign with it (tests/src/lib.rs).
CLOUDTRAIL_DELIVERY_KEY = "AKIACLOUDTRAILDELIVER"
CLOUDTRAIL_PRINCIPAL = "cloudtrail.amazonaws.com"


def remember_s3_request(original):
    def setup_class(self: S3Response, request, full_url=None, headers=None):
        original(self, request, full_url, headers)
        auth = request.headers.get("Authorization", "") or ""
        match = re.search(r"Credential=([^/,\s]+)/", auth)
        S3_REQUEST.access_key = match.group(1) if match else None
        S3_REQUEST.source_ip = getattr(request, "remote_addr", None) or "127.0.0.1"
        S3_REQUEST.request_id = binascii.hexlify(os.urandom(8)).decode().upper()
    return setup_class


def s3_requester(account_id: str) -> tuple[str, str, str]:
    """(requester, source-ip-address, request-id) of the request being served."""
    key = getattr(S3_REQUEST, "access_key", None)
    ip = getattr(S3_REQUEST, "source_ip", None) or "127.0.0.1"
    request_id = getattr(S3_REQUEST, "request_id", None) or "N4N7GDK58NMKJ12R"
    if key == CLOUDTRAIL_DELIVERY_KEY:
        return CLOUDTRAIL_PRINCIPAL, CLOUDTRAIL_PRINCIPAL, request_id
    return account_id, ip, request_id


def s3_eventbridge_message(account_id: str, bucket, event_name: str, key) -> None:
    """moto's S3-to-EventBridge sender (moto/s3/notifications.py, 5.2.5), with the `reason` S3
    sends. Removals are sent by s3_delete_as_aws instead, which knows what a delete did."""
    if "ObjectRemoved" in event_name or "LifecycleExpiration" in event_name:
        return
    from moto.s3.notifications import _detail_type

    send_s3_event(account_id, bucket, _detail_type(event_name),
                  S3_EVENT_REASONS.get(event_name, event_name.split(":")[1]),
                  {"key": key.name, "size": key.size, "etag": key.etag.replace('"', ""),
                   "version-id": key.version_id})


def send_s3_event(account_id: str, bucket, detail_type: str, reason: str, obj: dict,
                  deletion_type: str | None = None) -> None:
    """One S3 event to every rule, shaped as S3's (S3 user guide, "EventBridge event message
    structure"). As on AWS, where delivery is asynchronous, a failure never fails the S3 call;
    here it is logged."""
    import copy

    from moto.events.models import events_backends
    from moto.events.utils import _BASE_EVENT_MESSAGE

    try:
        requester, source_ip, request_id = s3_requester(account_id)
        event = copy.deepcopy(_BASE_EVENT_MESSAGE)
        event.update({
            "detail-type": detail_type, "source": "aws.s3", "account": account_id,
            # Epoch seconds: moto's targets write it as RFC 3339, as EventBridge sends it.
            "time": time.time(),
            "region": bucket.region_name, "resources": [bucket.arn],
        })
        event["detail"] = {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": {**obj, "sequencer": binascii.hexlify(os.urandom(8)).decode().upper()},
            "request-id": request_id,
            "requester": requester,
            "source-ip-address": source_ip,
            "reason": reason,
        }
        if deletion_type:
            event["detail"]["deletion-type"] = deletion_type
        backend = events_backends[account_id][bucket.region_name]
        for bus in backend.event_buses.values():
            for rule in bus.rules.values():
                rule.send_to_targets(event, transform_input=False)
    except Exception as error:  # noqa: BLE001
        log(f"S3 EventBridge event {detail_type} for {bucket.name}: {error!r}")


def s3_delete_as_aws(original):
    """DeleteObject sends the "Object Deleted" event S3 sends for every delete: `Delete Marker
    Created` when a versioned bucket's current object is hidden, `Permanently Deleted` when a
    version (or an unversioned object) is gone. moto 5.2.5 sends nothing for the first, and for
    the second only when the key's last version goes: a tripwire would see no deletes."""
    def delete_object(self, bucket_name: str, key_name: str, version_id: str | None = None,
                      bypass: bool = False):
        bucket = self.get_bucket(bucket_name)
        existed = key_name in bucket.keys
        ok, meta = original(self, bucket_name, key_name, version_id, bypass)
        if ok and (existed or bucket.is_versioned):
            marker = version_id is None and bucket.is_versioned
            obj = {"key": key_name}
            if meta.get("version-id"):
                obj["version-id"] = meta["version-id"]
            send_s3_event(self.account_id, bucket, "Object Deleted", "DeleteObject", obj,
                          "Delete Marker Created" if marker else "Permanently Deleted")
        return ok, meta
    return delete_object


def model_data(self: MotoAPIResponse, request, full_url: str, headers) -> tuple[int, dict, str]:
    """moto's `/moto-api/data.json` (how tests read what SNS published), robust and narrow.
    moto's own version lets any exception other than TypeError/AttributeError/ValueError from an
    attribute escape, and an S3 object whose body is gone (deleted, copied in parts) turns the
    whole answer into a 500 for every later test. Here an attribute that cannot be read is left
    out, and `?service=sns` limits the walk to one service."""
    from urllib.parse import parse_qs, urlparse

    from moto.core.model_instances import model_data as tracked

    wanted = parse_qs(urlparse(full_url).query).get("service")
    results: dict[str, dict[str, list]] = {}
    for service in sorted(tracked):
        if wanted and service not in wanted:
            continue
        results[service] = {}
        for name in sorted(tracked[service]):
            instances = []
            for instance in tracked[service][name].instances_tracked:
                fields = {}
                for attr in dir(instance):
                    if attr.startswith("_"):
                        continue
                    try:
                        value = getattr(instance, attr)
                        json.dumps(value)
                    except Exception:  # noqa: BLE001 - any unreadable attribute is left out
                        continue
                    fields[attr] = value
                instances.append(fields)
            results[service][name] = instances
    return 200, {"Content-Type": "application/javascript"}, json.dumps(results)


# ---------------------------------------------------------------------------------------------
# A small IAM evaluator for resource policies: what AWS checks where moto checks nothing.
# Explicit Deny wins, then an Allow is needed. A condition this evaluator cannot read makes an
# Allow grant nothing and a Deny apply: the harness errs on AWS's strict side, never moto's.

CLOUDTRAIL = "cloudtrail.amazonaws.com"
NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


class Unreadable(Exception):
    """A policy element this evaluator does not understand."""


def as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def glob(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IAM wildcards: `*` any run, `?` one character; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE | re.DOTALL) is not None


def substitute(pattern: str, context: dict[str, str]) -> str | None:
    """Policy variables (`${aws:SourceAccount}`) replaced from the request context; None when a
    variable's key is absent (the element then matches nothing). `${*}`, `${?}`, `${$}` are the
    literal characters, kept as wildcards-free escapes."""
    missing = False

    def one(m: re.Match) -> str:
        nonlocal missing
        name = m.group(1).strip()
        if name in ("*", "?", "$"):
            return "\0" + name  # a literal, not a wildcard (undone by the glob's caller)
        default = None
        if "," in name:
            name, default = (part.strip() for part in name.split(",", 1))
            default = default.strip("'")
        value = context.get(name, default)
        if value is None:
            missing = True
            return ""
        return value

    out = re.sub(r"\$\{([^}]*)\}", one, pattern)
    return None if missing else out


def resource_matches(pattern: str, resource: str, context: dict[str, str]) -> bool:
    pattern = substitute(pattern, context)
    if pattern is None:
        return False
    regex = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\0":
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.fullmatch("".join(regex), resource, re.DOTALL) is not None


def principal_matches(statement: dict, principal: dict[str, str]) -> bool:
    """`principal` is {"Service": name} or {"AWS": arn}."""
    def listed(element: object) -> bool:
        if element == "*":
            return True
        if not isinstance(element, dict):
            raise Unreadable(f"Principal {element!r}")
        for kind, values in element.items():
            for v in as_list(values):
                if v == "*" and kind in ("AWS", "Service"):
                    return True
                if kind in principal and v == principal[kind]:
                    return True
                # An account's id or root ARN names every principal of the account.
                account = principal.get("account")
                if kind == "AWS" and account and (v == account or re.fullmatch(
                        rf"arn:[a-z-]+:iam::{account}:root", str(v))):
                    return True
        return False

    if "Principal" in statement:
        return listed(statement["Principal"])
    if "NotPrincipal" in statement:
        return not listed(statement["NotPrincipal"])
    raise Unreadable("a statement without Principal")


def condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        if not isinstance(tests, dict):
            raise Unreadable(f"Condition {operator}")
        op = operator
        if_exists = op.endswith("IfExists")
        if if_exists:
            op = op[: -len("IfExists")]
        if ":" in op:  # ForAnyValue:/ForAllValues: over single-valued keys is the plain test
            qualifier, op = op.split(":", 1)
            if qualifier not in ("ForAnyValue", "ForAllValues"):
                raise Unreadable(f"Condition {operator}")
        for key, wanted in tests.items():
            present = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            wanted = [str(w).lower() if isinstance(w, bool) else str(w) for w in as_list(wanted)]
            if op == "Null":
                if (present is None) != (wanted[0].lower() == "true"):
                    return False
                continue
            if present is None:
                if if_exists or op in NEGATED:
                    continue
                return False
            if op in ("StringEquals", "StringNotEquals"):
                hit = present in wanted
            elif op in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
                hit = present.lower() in (w.lower() for w in wanted)
            elif op in ("StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"):
                hit = any(resource_matches(w, present, context) for w in wanted)
            elif op == "Bool":
                hit = present.lower() in (w.lower() for w in wanted)
            else:
                raise Unreadable(f"Condition operator {operator}")
            if hit == (op in NEGATED):
                return False
    return True


def policy_decision(policy_text: str | bytes | None, principal: dict[str, str], action: str,
                    resource: str, context: dict[str, str]) -> tuple[str, str]:
    """("Deny" | "Allow" | "ImplicitDeny", the Sid or reason that decided)."""
    if not policy_text:
        return "ImplicitDeny", "no bucket policy"
    try:
        document = json.loads(policy_text)
    except ValueError:
        return "ImplicitDeny", "a bucket policy that is not JSON"
    allowed_by = None
    for index, statement in enumerate(as_list(document.get("Statement", []))):
        sid = statement.get("Sid", f"statement #{index}") if isinstance(statement, dict) else f"#{index}"
        effect = statement.get("Effect") if isinstance(statement, dict) else None
        try:
            applies = (
                principal_matches(statement, principal)
                and (any(glob(a, action, False) for a in as_list(statement["Action"]))
                     if "Action" in statement
                     else not any(glob(a, action, False) for a in as_list(statement["NotAction"])))
                and (any(resource_matches(r, resource, context) for r in as_list(statement["Resource"]))
                     if "Resource" in statement
                     else not any(resource_matches(r, resource, context) for r in as_list(statement["NotResource"])))
                and condition_holds(statement.get("Condition", {}), context)
            )
        except (Unreadable, KeyError, TypeError, AttributeError) as error:
            log(f"policy evaluation: {sid}: cannot read {error!r}; a Deny applies, an Allow grants nothing")
            applies = effect == "Deny"
        if applies and effect == "Deny":
            return "Deny", sid
        if applies and effect == "Allow":
            allowed_by = sid
    return ("Allow", allowed_by) if allowed_by else ("ImplicitDeny", "no statement allows it")


# ---------------------------------------------------------------------------------------------
# CloudTrail's destination check

def organization_of(account: str, partition: str):
    """The moto organization `account` belongs to, or None."""
    from moto.organizations.models import organizations_backends

    own = organizations_backends[account][partition].org
    if own is not None:
        return own
    management = organizations_backends.master_accounts.get(account)
    if management is None:
        return None
    return organizations_backends[management[0]][management[1]].org


def destination_refusal(trail_arn: str, bucket_name: str, prefix: str | None,
                        organization_trail: bool) -> str | None:
    """Why CloudTrail would refuse `bucket_name`/`prefix` for the trail; None if admitted."""
    from moto.s3.models import s3_backends

    _, partition, _, region, account, _ = trail_arn.split(":", 5)
    try:
        bucket = s3_backends[account][partition].get_bucket(bucket_name)
    except Exception:  # noqa: BLE001 - moto's own check reports a missing bucket
        return None
    org = organization_of(account, partition)
    context = {
        "aws:SourceArn": trail_arn,
        "aws:SourceAccount": account,
        "aws:SecureTransport": "true",
        "aws:PrincipalServiceName": CLOUDTRAIL,
        "aws:PrincipalIsAWSService": "true",
    }
    if org is not None:
        context["aws:SourceOrgID"] = org.id
    principal = {"Service": CLOUDTRAIL}
    base = f"arn:{partition}:s3:::{bucket_name}"
    logs = f"{base}/{prefix}/AWSLogs" if prefix else f"{base}/AWSLogs"
    trees = [f"{logs}/{account}"]
    if organization_trail:
        if org is None:
            return f"the trail's account {account} is in no organization"
        trees = [f"{logs}/{org.master_account_id}", f"{logs}/{org.id}/{account}"]
    checks = [("s3:GetBucketAcl", base, {})]
    for tree in trees:
        for folder in ("CloudTrail", "CloudTrail-Digest"):
            key = f"{tree}/{folder}/{region}/trailkeeper-harness-probe.json.gz"
            checks.append(("s3:PutObject", key, {"s3:x-amz-acl": "bucket-owner-full-control"}))
    for action, resource, extra in checks:
        decision, why = policy_decision(bucket.policy, principal, action, resource, {**context, **extra})
        if decision != "Allow":
            return f"{action} on {resource} for {trail_arn}: {decision} ({why})"
    return None


class InsufficientS3BucketPolicy(JsonRESTError):
    def __init__(self, bucket: str):
        super().__init__(
            "InsufficientS3BucketPolicyException",
            f"Incorrect S3 bucket policy is detected for bucket: {bucket}",
        )


def check_destination(self: CloudTrailResponse, trail_name: str, bucket: str, prefix: str | None,
                      organization_trail: bool) -> None:
    partition = get_partition(self.region)
    arn = f"arn:{partition}:cloudtrail:{self.region}:{self.current_account}:trail/{trail_name}"
    refusal = destination_refusal(arn, bucket, prefix or None, organization_trail)
    if refusal:
        log(f"CloudTrail refuses s3://{bucket}/{prefix or ''}: {refusal}")
        raise InsufficientS3BucketPolicy(bucket)


def strict_create_trail(original):
    def create_trail(self: CloudTrailResponse) -> str:
        check_destination(self, self._get_param("Name"), self._get_param("S3BucketName"),
                          self._get_param("S3KeyPrefix"), self._get_bool_param("IsOrganizationTrail", False))
        return original(self)
    return create_trail


def strict_update_trail(original):
    def update_trail(self: CloudTrailResponse) -> str:
        bucket, prefix = self._get_param("S3BucketName"), self._get_param("S3KeyPrefix")
        if bucket is not None or prefix is not None:
            trail = self.cloudtrail_backend.get_trail(self._get_param("Name"))
            new_bucket = bucket if bucket is not None else trail.bucket_name
            new_prefix = prefix if prefix is not None else trail.s3_key_prefix
            organization = self._get_param("IsOrganizationTrail")
            organization = trail.is_org_trail if organization is None else organization
            if (new_bucket, new_prefix or None) != (trail.bucket_name, trail.s3_key_prefix or None):
                check_destination(self, trail.trail_name, new_bucket, new_prefix, bool(organization))
        return original(self)
    return update_trail


# ---------------------------------------------------------------------------------------------
# Event selectors as CloudTrail keeps them

# A new trail records every management event, read and write (CloudTrail's default event
# selector); moto gives it none, which trailkeeper would read as a trail that records nothing.
DEFAULT_EVENT_SELECTOR = {"ReadWriteType": "All", "IncludeManagementEvents": True,
                          "DataResources": [], "ExcludeManagementEventSources": []}


def trail_with_default_selectors(original):
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.event_selectors = [dict(DEFAULT_EVENT_SELECTOR)]
        self.advanced_event_selectors = []
    return init


def put_event_selectors_replacing(original):
    """A trail has basic or advanced selectors, never both: putting one kind removes the other
    (moto keeps the advanced ones when basic ones are put)."""
    def put_event_selectors(self, event_selectors, advanced_event_selectors):
        original(self, event_selectors, advanced_event_selectors)
        if event_selectors:
            self.advanced_event_selectors = []
        elif advanced_event_selectors:
            self.event_selectors = []
    return put_event_selectors


# ---------------------------------------------------------------------------------------------
# PutBucketPolicy / DeleteBucketPolicy under the current policy's explicit Deny

class PolicyChangeDenied(S3ClientError):
    code = "AccessDenied"

    def __init__(self, message: str):
        super().__init__("AccessDenied", message)


def caller_arns(self: S3Response) -> tuple[str, str | None]:
    """(the caller's account, its aws:PrincipalArn); None for the account's root user, which is
    what moto makes of keys it did not issue (`testing`)."""
    from moto.sts.models import sts_backends
    from moto.iam.models import iam_backends

    key = self.get_access_key()
    for account in list(sts_backends):
        for partition in list(sts_backends[account]):
            role = sts_backends[account][partition].get_assumed_role_from_access_key(key)
            if role is not None:
                return role.account_id, role.role_arn
    for account in list(iam_backends):
        for partition in list(iam_backends[account]):
            user = iam_backends[account][partition].get_user_from_access_key_id(key)
            if user is not None:
                return user.account_id, user.arn
    return self.get_current_account(), None


def guard_policy_change(self: S3Response, bucket_name: str, action: str) -> None:
    bucket = self.backend.get_bucket(bucket_name)
    account, principal_arn = caller_arns(self)
    if principal_arn is None and account == bucket.account_id:
        return  # the bucket owner's root user may always change the policy (S3)
    if principal_arn is None:
        principal_arn = f"arn:aws:iam::{account}:root"
    partition = principal_arn.split(":")[1]
    context = {"aws:PrincipalArn": principal_arn, "aws:PrincipalAccount": account,
               # Every trailkeeper program speaks TLS to AWS; the harness judges who, not how.
               "aws:SecureTransport": "true"}
    decision, why = policy_decision(bucket.policy, {"AWS": principal_arn, "account": account},
                                    action, f"arn:{partition}:s3:::{bucket_name}", context)
    if decision == "Deny":
        raise PolicyChangeDenied(
            f"User: {principal_arn} is not authorized to perform: {action} on resource: "
            f"\"arn:{partition}:s3:::{bucket_name}\" with an explicit deny in a resource-based "
            f"policy (statement {why})")


def strict_bucket_put(original):
    def _bucket_response_put(self: S3Response, request, bucket_name: str, querystring: dict):
        if "policy" in querystring:
            guard_policy_change(self, bucket_name, "s3:PutBucketPolicy")
        return original(self, request, bucket_name, querystring)
    return _bucket_response_put


def strict_bucket_delete(original):
    def _bucket_response_delete(self: S3Response, bucket_name: str, querystring: dict):
        if "policy" in querystring:
            guard_policy_change(self, bucket_name, "s3:DeleteBucketPolicy")
        return original(self, bucket_name, querystring)
    return _bucket_response_delete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, type=Path)
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    # The installed package does not change while the server runs.
    modules = tuple(moto_backends.list_of_moto_modules())
    moto_backends.list_of_moto_modules = lambda: modules
    if not os.environ.get("TRAILKEEPER_MOTO_LOG"):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    CloudTrailResponse.list_public_keys = list_public_keys
    S3Response.get_bucket_versioning = get_bucket_versioning
    MotoAPIResponse.model_data = model_data
    SecurityHubResponse.batch_import_findings = batch_import_findings
    CloudTrailResponse.create_trail = strict_create_trail(CloudTrailResponse.create_trail)
    CloudTrailResponse.update_trail = strict_update_trail(CloudTrailResponse.update_trail)
    from moto.cloudtrail.models import Trail

    Trail.__init__ = trail_with_default_selectors(Trail.__init__)
    Trail.put_event_selectors = put_event_selectors_replacing(Trail.put_event_selectors)
    S3Response._bucket_response_put = strict_bucket_put(S3Response._bucket_response_put)
    S3Response._bucket_response_delete = strict_bucket_delete(S3Response._bucket_response_delete)
    import moto.s3.notifications as s3_notifications

    s3_notifications._send_event_bridge_message = s3_eventbridge_message
    S3Response.setup_class = remember_s3_request(S3Response.setup_class)
    from moto.s3.models import S3Backend

    S3Backend.delete_object = s3_delete_as_aws(S3Backend.delete_object)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    os.environ["MOTO_PORT"] = str(port)  # what moto puts in URLs it hands out

    partial = args.port_file.with_name(f".{args.port_file.name}.{os.getpid()}")
    partial.write_text(f"{port}\n")
    partial.replace(args.port_file)
    log(f"moto listening on http://127.0.0.1:{port}")

    stop.wait()
    log("stopping")
    server.stop()


if __name__ == "__main__":
    main()
