#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the test vectors (tests/vectors),
# the sample events in events/, and the small seeds committed in fuzz/seeds/. Run by fuzz/run.sh;
# the corpus directories are not committed (libFuzzer grows them while it runs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
vectors="${TRAILKEEPER_VECTORS:-$root/tests/vectors}"
corpus="$here/corpus"
[ -d "$vectors" ] || { echo "fuzz/seed.sh: no vectors at $vectors (set TRAILKEEPER_VECTORS)" >&2; exit 1; }
mkdir -p "$corpus"/{digest_key,digest_file,gzip_hash,account_event,bucket_policy}
python3 - "$vectors" "$root" "$corpus" "$here/seeds" <<'PY'
import gzip, hashlib, json, pathlib, sys

vectors, root, corpus, seeds = map(pathlib.Path, sys.argv[1:])

def put(target, data: bytes):
    name = hashlib.sha1(data).hexdigest()
    (corpus / target / name).write_bytes(data)

def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)

json_files = sorted(p for p in vectors.rglob("*") if p.suffix in (".json", ".jsonc") and p.is_file())
json_files += sorted((root / "events").rglob("*.json"))
for p in json_files:
    raw = p.read_bytes()
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    rel = str(p)
    if "cloudtrail-digest" in rel or p.name == "digest_uncompressed.json":
        put("digest_file", raw)
    if any(s in rel for s in ("eventbridge-organizations", "controltower", "account-events")):
        put("account_event", raw)
    if "cloudtrail-logs" in rel or "cloudtrail-digest" in rel:
        # (chunk size selector, size-limit selector = 1 MiB) + the object as CloudTrail stores it.
        put("gzip_hash", bytes([7, 3]) + gzip.compress(raw, mtime=0))
        put("gzip_hash", bytes([0, 1]) + gzip.compress(raw, mtime=0))
    for s in strings(value):
        if "AWSLogs/" in s:
            put("digest_key", s.encode())
# Layouts the vectors do not show: organization trail, prefix, backfill, nested tree.
for k in [
    "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_your-trail-name_us-east-2_20150817T150131Z.json.gz",
    "logs/central/AWSLogs/o-abc123def4/327878933619/CloudTrail-Digest/ap-northeast-1/2023/10/15/327878933619_CloudTrail-Digest_ap-northeast-1_llm_guard_trail_us-west-2_20231015T230404Z_backfill.json.gz",
    "AWSLogs/444455556666/AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_t_us-east-2_20150817T150131Z.json.gz",
]:
    put("digest_key", k.encode())
# A gzip bomb: 4 MiB of zeros, against the 1 MiB limit.
put("gzip_hash", bytes([63, 3]) + gzip.compress(bytes(4 << 20), mtime=0))
for p in sorted((seeds / "bucket_policy").iterdir()):
    put("bucket_policy", p.read_bytes())
PY
for t in digest_key digest_file gzip_hash account_event bucket_policy; do
  echo "fuzz/seed.sh: $t: $(find "$corpus/$t" -type f | wc -l) inputs in fuzz/corpus/$t"
done
