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
(see s3_eventbridge_message).

`/moto-api/data.json` leaves out attributes it cannot read instead of failing, and takes
`?service=NAME`. GetBucketVersioning is answered under S3's root element (moto's own answer
cannot be read by the AWS SDK for Rust; see get_bucket_versioning).

Two per-request costs of moto's server are removed, as they made up about a third of its CPU
time while serving S3 (py-spy, `make bench`): moto lists its own package directory on every
request (`list_of_moto_modules`), and werkzeug logs one line per request. Request lines are
still logged when TRAILKEEPER_MOTO_LOG names a file to keep.
"""

import argparse
import base64
import binascii
import json
import logging
import os
import signal
import sys
import time
import threading
from datetime import datetime, timezone
from pathlib import Path

import moto.backends as moto_backends
from moto.cloudtrail.responses import CloudTrailResponse
from moto.s3.responses import S3Response
from moto.core.exceptions import JsonRESTError
from moto.moto_api._internal.responses import MotoAPIResponse
from moto.server import ThreadedMotoServer

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


def s3_eventbridge_message(account_id: str, bucket, event_name: str, key) -> None:
    """moto's S3-to-EventBridge sender (moto/s3/notifications.py, 5.2.5), with the `reason` S3
    sends. As in moto (and on AWS, where delivery is asynchronous) a failure never fails the
    S3 call; here it is logged."""
    import copy

    from moto.core.utils import unix_time
    from moto.events.models import events_backends
    from moto.events.utils import _BASE_EVENT_MESSAGE
    from moto.s3.notifications import _detail_type

    try:
        event = copy.deepcopy(_BASE_EVENT_MESSAGE)
        event["detail-type"] = _detail_type(event_name)
        event["source"] = "aws.s3"
        event["account"] = account_id
        event["time"] = unix_time()
        event["region"] = bucket.region_name
        event["resources"] = [bucket.arn]
        event["detail"] = {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": {
                "key": key.name,
                "size": key.size,
                "etag": key.etag.replace('"', ""),
                "version-id": key.version_id,
                "sequencer": "617f08299329d189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": account_id,
            "source-ip-address": "1.2.3.4",
            "reason": S3_EVENT_REASONS.get(event_name, event_name.split(":")[1]),
        }
        backend = events_backends[account_id][bucket.region_name]
        for bus in backend.event_buses.values():
            for rule in bus.rules.values():
                rule.send_to_targets(event, transform_input=False)
    except Exception as error:  # noqa: BLE001 - asynchronous on AWS: never fail the S3 call
        log(f"S3 EventBridge event {event_name} for {bucket.name}: {error!r}")


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
    import moto.s3.notifications as s3_notifications

    s3_notifications._send_event_bridge_message = s3_eventbridge_message
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
