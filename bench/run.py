#!/usr/bin/env python3
"""`make bench`: every benchmark of issue 8 in one run, written to bench/RESULTS.md.

Runs under tests/moto/with-moto.sh (the emulator's endpoint is in AWS_ENDPOINT_URL, the AWS
CLI in TRAILKEEPER_AWSCLI). Each figure is a median of BENCH_REPS runs (default 3); the two
tools being compared run alternately, in the same run, on the same data.

Environment knobs (defaults in brackets): BENCH_REPS [3], BENCH_HOURS [1000] digests, with
BENCH_LOGS_PER_HOUR [10] log files each, BENCH_LATENCY_MS [20], BENCH_MEMORY_MB [1000].
"""
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
RELEASE = TARGET / "release"
WORK = TARGET / "bench"
REPS = int(os.environ.get("BENCH_REPS", "3"))
HOURS = int(os.environ.get("BENCH_HOURS", "1000"))
LOGS_PER_HOUR = int(os.environ.get("BENCH_LOGS_PER_HOUR", "10"))
LATENCY_MS = float(os.environ.get("BENCH_LATENCY_MS", "20"))
MEMORY_MB = int(os.environ.get("BENCH_MEMORY_MB", "1000"))
START = datetime(2026, 9, 1, 0, 4, 12, tzinfo=timezone.utc)
BUCKET = "tk-bench-corpus"
ACCOUNT = "111122223333"
FUNCTIONS = ["digest-validator", "policy-updater", "trail-enabler", "org-auditor"]
LOAD_AT_START = "?"

commands = []  # every command whose output fed the table, for RESULTS.md
FAILURES = []  # steps that failed; their figures are missing from the table, and the run exits 1


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, env=None, record=True, **kw):
    """Runs cmd (a list, or a shell string), returns (seconds, CompletedProcess)."""
    if record:
        commands.append(cmd if isinstance(cmd, str) else shlex.join(str(c) for c in cmd))
    t = time.monotonic()
    p = subprocess.run(cmd, env=env, shell=isinstance(cmd, str), capture_output=True, text=True, **kw)
    return time.monotonic() - t, p


def must(cmd, **kw):
    seconds, p = run(cmd, **kw)
    if p.returncode != 0:
        sys.exit(f"bench: {cmd} exited {p.returncode}\n{failure_text(p.stdout)}\n{failure_text(p.stderr)}")
    return seconds, p


def failure_text(text):
    """The end of a failed command's output, and its panic message, which a long backtrace
    after it would otherwise push out of the tail."""
    at = text.find("panicked at")
    if at < 0 or at >= len(text) - 3000:
        return text[-3000:]
    return f"{text[max(0, at - 300):at + 1500]}\n[...]\n{text[-3000:]}"


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def median(xs):
    return statistics.median(xs)


def build():
    log("building release binaries")
    # Separate invocations: features unify across the packages of one build, and neither the seed
    # tool's `testdata` nor the CLI's SSO support may reach the measured Lambda binaries.
    # The functions as scripts/build-lambdas.sh builds them (together, without the CLI's SSO).
    must(["cargo", "build", "--release"] + [a for f in FUNCTIONS for a in ("-p", f)], cwd=ROOT)
    must(["cargo", "build", "--release", "-p", "trailkeeper-cli", "-p", "trailkeeper-bench"], cwd=ROOT)
    must(["cargo", "build", "--release", "-p", "trailkeeper-e2e", "--bin", "seed-history"], cwd=ROOT)


def seed_corpus():
    corpus = WORK / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    log(f"seeding {HOURS} digests x {LOGS_PER_HOUR} logs into s3://{BUCKET} and {corpus}")
    seconds, p = must([RELEASE / "seed-history", "--bucket", BUCKET, "--create-bucket",
                       "--account", ACCOUNT, "--start", iso(START), "--hours", str(HOURS),
                       "--logs-per-hour", str(LOGS_PER_HOUR), "--realistic-sizes",
                       "--tamper-logs", "1", "--local-dir", corpus])
    tampered = re.findall(r"tampered (s3://\S+)", p.stderr)
    logs = sorted(corpus.glob(f"AWSLogs/{ACCOUNT}/CloudTrail/**/*.json.gz"))
    sizes = sorted(f.stat().st_size for f in logs)
    return {
        "dir": corpus,
        "digests": len(list(corpus.glob(f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/**/*.json.gz"))),
        "logs": len(logs),
        "bytes": sum(sizes),
        "smallest": sizes[0],
        "median": sizes[len(sizes) // 2],
        "p99": sizes[int(len(sizes) * 0.99)],
        "largest": sizes[-1],
        "tampered": tampered,
        "seed_seconds": seconds,
    }


def window():
    return START - timedelta(hours=1), START + timedelta(hours=HOURS + 2)


def moto_cpu_seconds():
    """CPU seconds the emulator's process has used so far (user + system)."""
    fields = Path(f"/proc/{os.environ['TRAILKEEPER_MOTO_PID']}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_cpu_seconds():
    """CPU seconds (user + system) of this script's finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_with_moto(tool, endpoint):
    """tool(endpoint), the share of one core the emulator was busy meanwhile, and the client's
    own CPU seconds: the cost that remains where the server is not a floor, as against S3."""
    before, client_before = moto_cpu_seconds(), client_cpu_seconds()
    seconds, verdict = tool(endpoint)
    busy = (moto_cpu_seconds() - before) / seconds
    return seconds, verdict, busy, client_cpu_seconds() - client_before


def trailkeeper_validate(endpoint):
    start, end = window()
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint)
    seconds, p = run([RELEASE / "trailkeeper", "validate", "--bucket", BUCKET, "--account", ACCOUNT,
                      "--start", iso(start), "--end", iso(end), "--format", "json"], env=env)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    summary = next((v for v in lines if v.get("type") == "summary"), None)
    if summary is None:
        sys.exit(f"bench: trailkeeper validate printed no summary (exit {p.returncode}):\n{p.stderr[-3000:]}")
    invalid = sorted(v["key"] for v in lines if v.get("type") == "log" and v.get("status") != "valid")
    return seconds, {
        "exit": p.returncode,
        "digests_valid": summary["digests"].get("valid", 0),
        "digests": sum(summary["digests"].values()),
        "logs_valid": summary["logs"].get("valid", 0),
        "logs": sum(summary["logs"].values()),
        "invalid_logs": invalid,
    }


def awscli_validate(endpoint):
    start, end = window()
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint)
    seconds, p = run([os.environ["TRAILKEEPER_AWSCLI"], "cloudtrail", "validate-logs", "--verbose",
                      "--trail-arn", f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/trailkeeper",
                      "--s3-bucket", BUCKET, "--start-time", iso(start), "--end-time", iso(end),
                      "--region", "us-east-1"], env=env)
    out = p.stdout + p.stderr
    d = re.search(r"(\d+)/(\d+) digest files valid", out)
    l = re.search(r"(\d+)/(\d+) log files valid", out)
    if not d or not l:
        sys.exit(f"bench: aws cloudtrail validate-logs printed no summary (exit {p.returncode}):\n{out[-3000:]}")
    invalid = sorted(line.split("\t")[1].split("/", 3)[3] for line in out.splitlines()
                     if line.startswith("Log file\t") and "INVALID" in line)
    return seconds, {
        "exit": p.returncode,
        "digests_valid": int(d.group(1)),
        "digests": int(d.group(2)),
        "logs_valid": int(l.group(1)),
        "logs": int(l.group(2)),
        "invalid_logs": invalid,
    }


def start_proxy(target, delay_ms, tmp):
    port_file = Path(tmp) / "proxy.port"
    proc = subprocess.Popen([sys.executable, ROOT / "bench/latency_proxy.py", "--target", target,
                             "--delay-ms", str(delay_ms), "--port-file", port_file])
    for _ in range(100):
        if port_file.exists():
            return proc, f"http://127.0.0.1:{port_file.read_text()}"
        time.sleep(0.1)
    proc.kill()
    sys.exit("bench: latency proxy did not start")


def against_awscli(corpus, tmp):
    moto = os.environ["AWS_ENDPOINT_URL"]
    results = {}
    for label, delay in (("no added latency", 0), (f"+{LATENCY_MS:g} ms per request", LATENCY_MS)):
        proxy = None
        endpoint = moto
        if delay:
            proxy, endpoint = start_proxy(moto.removeprefix("http://"), delay, tmp)
        try:
            ours, theirs, busy_ours, busy_theirs, cpu_ours, cpu_theirs = [], [], [], [], [], []
            for rep in range(REPS):
                log(f"{label}: repetition {rep + 1}/{REPS}: trailkeeper validate")
                s, v_ours, busy, cpu = timed_with_moto(trailkeeper_validate, endpoint)
                ours.append(s)
                busy_ours.append(busy)
                cpu_ours.append(cpu)
                log(f"  {s:.1f} s, moto busy {busy:.0%}, client CPU {cpu:.1f} s; aws cloudtrail validate-logs")
                s, v_theirs, busy, cpu = timed_with_moto(awscli_validate, endpoint)
                theirs.append(s)
                busy_theirs.append(busy)
                cpu_theirs.append(cpu)
                log(f"  {s:.1f} s, moto busy {busy:.0%}, client CPU {cpu:.1f} s")
            agree = (v_ours["digests_valid"], v_ours["logs_valid"], v_ours["invalid_logs"]) == (
                v_theirs["digests_valid"], v_theirs["logs_valid"], v_theirs["invalid_logs"])
            results[label] = {"ours": ours, "theirs": theirs, "busy_ours": median(busy_ours),
                              "busy_theirs": median(busy_theirs), "cpu_ours": median(cpu_ours),
                              "cpu_theirs": median(cpu_theirs), "verdict_ours": v_ours,
                              "verdict_theirs": v_theirs, "agree": agree}
        finally:
            if proxy:
                proxy.terminate()
                proxy.wait()
    return results


def per_core(corpus):
    d = str(corpus["dir"])
    engine = str(RELEASE / "engine-throughput")
    pipeline = (f"find {shlex.quote(d)} -path '*/CloudTrail/*' -name '*.json.gz' -print0 | sort -z "
                f"| xargs -0 gzip -dc | sha256sum")
    rows = {}

    def engine_mode(name, args, pin=True):
        cmd = (["taskset", "-c", "0"] if pin else []) + [engine, d] + args
        runs = []
        for _ in range(REPS):
            _, p = must(cmd)
            runs.append(json.loads(p.stdout))
        best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        rows[name] = best
        log(f"{name}: {best['inflated_mb_per_s']:.0f} MB/s")

    log("per-core: warming the page cache")
    must(f"find {shlex.quote(d)} -type f -print0 | xargs -0 cat > /dev/null")
    engine_mode("engine, 1 thread, core 0", ["--threads", "1"])
    times = []
    for _ in range(REPS):
        s, _ = must(["taskset", "-c", "0", "sh", "-c", pipeline])
        times.append(s)
    inflated = rows["engine, 1 thread, core 0"]["inflated_bytes"]
    rows["gzip -dc | sha256sum, core 0"] = {"seconds": median(times), "inflated_bytes": inflated,
                                            "inflated_mb_per_s": inflated / 1e6 / median(times)}
    engine_mode("engine, 2 threads, unpinned", ["--threads", "2"], pin=False)
    for mode in ("inflate-zlib-rs", "inflate-miniz-oxide", "sha256-aws-lc-rs", "sha256-ring",
                 "sha256-sha2"):
        engine_mode(f"{mode}, core 0", ["--mode", mode, "--threads", "1"])
    # CPython's zlib and hashlib (OpenSSL, SHA-NI where the CPU has it), the "best single
    # process" reference the issue names.
    py = r"""
import hashlib, json, pathlib, sys, time, zlib
files = sorted(p for p in pathlib.Path(sys.argv[1]).rglob('*.json.gz') if '/CloudTrail/' in str(p))
data = [p.read_bytes() for p in files]
t = time.perf_counter(); n = 0
for gz in data:
    n += len(zlib.decompressobj(31).decompress(gz))
inflate = n / 1e6 / (time.perf_counter() - t)
sample, held = [], 0
for gz in data:
    if held > 512 << 20: break
    raw = zlib.decompress(gz, 31); sample.append(raw); held += len(raw)
t = time.perf_counter()
for raw in sample: hashlib.sha256(raw).digest()
print(json.dumps({'inflate': inflate, 'sha256': held / 1e6 / (time.perf_counter() - t)}))
"""
    pys = []
    for _ in range(REPS):
        _, p = must(["taskset", "-c", "0", sys.executable, "-c", py, d])
        pys.append(json.loads(p.stdout))
    rows["python zlib inflate, core 0"] = {"inflated_mb_per_s": median(r["inflate"] for r in pys)}
    rows["python hashlib sha256, core 0"] = {"inflated_mb_per_s": median(r["sha256"] for r in pys)}
    return rows


def lambda_memory():
    log(f"Lambda memory: one digest listing about {MEMORY_MB} MB of logs")
    _, p = must(["bash", ROOT / "bench/lambda-memory.sh", str(MEMORY_MB)], cwd=ROOT)
    return json.loads(p.stdout.strip().splitlines()[-1])


def tripwire_latency():
    log("tripwire: event to alert, 50 injected objects")
    _, p = must(["bash", ROOT / "bench/tripwire-latency.sh", "50"], cwd=ROOT)
    return json.loads(p.stdout.strip().splitlines()[-1])


def tripwire_section(t):
    """Section 6 of RESULTS.md, from bench/tripwire-latency.sh's line."""
    return [
        "## 6. Tripwire: event to alert\n",
        f"The release digest-validator, through a minimal Runtime API (bench/runtime_api.py), judging "
        f"{t['events']} `Object Created` events of objects an IAM user wrote under `AWSLogs/` (verdicts: "
        + ", ".join(f"{n} {k}" for k, n in t["verdicts"].items())
        + f"), each with one `ListObjectVersions` and one SNS `Publish` on moto: from the event handed "
        f"to the function to its response, after the alert, median **{t['median_ms']:.0f} ms**, 95th "
        f"percentile {t['p95_ms']:.0f} ms, largest {t['max_ms']:.0f} ms; the function's own CPU "
        f"{t['function_cpu_ms_per_event']:.1f} ms per event (the rest is the emulator's). On AWS, add "
        "the two calls' latency and EventBridge's delivery of the S3 event.\n",
    ]


def cold_start(tmp):
    events = {
        "digest-validator": ROOT / "events/digest-validator/s3-test-event.json",
        "policy-updater": ROOT / "events/account-events/organizations-create-account-result-failed.json",
        "trail-enabler": ROOT / "events/account-events/organizations-create-account-result-failed.json",
        "org-auditor": ROOT / "events/org-auditor/scheduled-event.json",
    }
    results = {}
    for name in FUNCTIONS:
        binary = RELEASE / name
        startups = []
        for i in range(max(REPS, 10)):
            port_file = Path(tmp) / f"rt-{name}-{i}.port"
            out = Path(tmp) / f"rt-{name}-{i}.jsonl"
            api = subprocess.Popen([sys.executable, ROOT / "bench/runtime_api.py", "--port-file", port_file,
                                    "--out", out, events[name]])
            for _ in range(100):
                if port_file.exists():
                    break
                time.sleep(0.05)
            env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port_file.read_text()}",
                       AWS_LAMBDA_FUNCTION_NAME=name, AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
                       AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128", AWS_LAMBDA_LOG_STREAM_NAME="bench",
                       AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{name}", TRAILKEEPER_BUCKET="central-logs",
                       TRAILKEEPER_MEMBER_ROLE="OrganizationAccountAccessRole")
            spawned = time.monotonic_ns()
            fn = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            first = None
            for _ in range(200):
                if out.exists():
                    for line in out.read_text().splitlines():
                        r = json.loads(line)
                        if r["kind"] == "first-next":
                            first = r["monotonic_ns"]
                if first:
                    break
                time.sleep(0.01)
            fn.send_signal(signal.SIGKILL)
            fn.wait()
            api.terminate()
            api.wait()
            if first is None:
                sys.exit(f"bench: {name} never asked the Runtime API for an event")
            startups.append((first - spawned) / 1e6)
        results[name] = {"size": binary.stat().st_size, "startup_ms": median(startups)}
        log(f"{name}: {results[name]}")
    commands.append("bench/runtime_api.py + target/release/<function> (time from spawn to the first GET .../invocation/next)")
    return results


def onboarding_capacity():
    log("policy capacity and 100 concurrent onboardings")
    # Test builds (the dev profile `make test` already built): these count bytes and accounts,
    # and time moto's answers more than our code.
    _, p = must(["cargo", "test", "-p", "trailkeeper", "--test", "policy_properties", "capacity",
                 "--", "--nocapture"], cwd=ROOT)
    capacity = [l for l in p.stderr.splitlines() if re.match(r"(per-account|organization|KMS)", l)]
    # A failure here is a finding, recorded in RESULTS.md with the figures measured before it
    # (the run still exits non-zero); the CLI comparison must not be lost to it.
    cmd = ["cargo", "test", "-p", "trailkeeper-e2e", "--test", "onboarding",
           "hundred_concurrent", "--", "--ignored", "--nocapture"]
    _, p = run(cmd, cwd=ROOT, env={**os.environ, "RUST_BACKTRACE": "0"})
    hundred = [l for l in p.stderr.splitlines() if "concurrent onboardings" in l]
    if p.returncode != 0:
        out = p.stdout + p.stderr
        FAILURES.append(f"{' '.join(cmd)} exited {p.returncode}\n{failure_text(out)}")
        lines = out.splitlines()
        at = next((i for i, l in enumerate(lines) if "panicked at" in l), None)
        detail = " ".join(lines[at + 1:at + 4]) if at is not None else "see the log"
        hundred.append(f"100 concurrent onboardings: **FAILED**: {detail}")
    return capacity, hundred


def load():
    return Path("/proc/loadavg").read_text().split()[0]


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    flags = Path("/proc/cpuinfo").read_text()
    return (f"{cpu}, {os.cpu_count()} cores ({'SHA-NI' if ' sha_ni' in flags else 'no SHA-NI'}), "
            f"{int(mem) // 1024 // 1024} GiB, Linux {platform.release()}")


def ratio(a, b):
    return a / b if b else float("inf")


def write_results(corpus, cli, cores, memory, cold, capacity, hundred, tripwire, started):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    L = []
    L.append("# Benchmark results\n")
    L.append(f"Written by `make bench` (bench/run.py) on {started:%Y-%m-%d %H:%M} UTC at commit `{commit}`, "
             f"{REPS} repetitions per figure (medians), in {time.time() - started.timestamp():.0f} s.\n")
    L.append(f"Machine: {machine()}. Load average (1 min) {LOAD_AT_START} at the start, {load()} at the end: "
             f"other work on the machine slows both sides of a comparison, but trailkeeper's parallel side more.\n")
    L.append("## 1. Against the AWS CLI (`aws cloudtrail validate-logs`, awscli 1.x from tests/moto/requirements.txt)\n")
    L.append(f"Corpus, served by moto: {corpus['digests']} digests and {corpus['logs']} log files in one chain, "
             f"{corpus['bytes'] / 1e6:.0f} MB gzipped; log files from {corpus['smallest']} B to "
             f"{corpus['largest'] / 1e6:.1f} MB gzipped (median {corpus['median'] / 1e3:.1f} KB, "
             f"99th percentile {corpus['p99'] / 1e6:.2f} MB). One log file is tampered with after signing: "
             f"both tools must name it.\n")
    L.append("| latency | trailkeeper validate | aws cloudtrail validate-logs | speed-up | target | moto busy (ours / CLI) | client CPU (ours / CLI) | verdicts agree |")
    L.append("|---|---|---|---|---|---|---|---|")
    for (label, r), target in zip(cli.items(), (3, 20)):
        o, t = median(r["ours"]), median(r["theirs"])
        L.append(f"| {label} | {o:.1f} s | {t:.1f} s | **{ratio(t, o):.1f}x** | {target}x "
                 f"{'met' if ratio(t, o) >= target else 'MISSED'} | {r['busy_ours']:.0%} / {r['busy_theirs']:.0%} | "
                 f"{r['cpu_ours']:.1f} s / {r['cpu_theirs']:.1f} s ({ratio(r['cpu_theirs'], r['cpu_ours']):.0f}x) | "
                 f"{'yes' if r['agree'] else 'NO'}: {r['verdict_ours']['digests_valid']}/{r['verdict_ours']['digests']} digests, "
                 f"{r['verdict_ours']['logs_valid']}/{r['verdict_ours']['logs']} logs valid; CLI "
                 f"{r['verdict_theirs']['digests_valid']}/{r['verdict_theirs']['digests']}, "
                 f"{r['verdict_theirs']['logs_valid']}/{r['verdict_theirs']['logs']} |")
    L.append("")
    L.append("Every repetition, seconds: " + "; ".join(
        f"{label}: trailkeeper {', '.join(f'{s:.1f}' for s in r['ours'])}, CLI {', '.join(f'{s:.1f}' for s in r['theirs'])}"
        for label, r in cli.items()) + ".\n")
    L.append("\"moto busy\" is the emulator's CPU time over the run's wall time: near 100% means the one "
             "Python process serving S3 was the limit, not the client. \"client CPU\" is the validating "
             "process's own CPU time (user + system): what each tool costs where the server is not the "
             "floor, as with S3 itself.\n")
    L.append("## 2. Against the per-core limit (the corpus's log files on local disk)\n")
    pipe = cores["gzip -dc | sha256sum, core 0"]["inflated_mb_per_s"]
    one = cores["engine, 1 thread, core 0"]["inflated_mb_per_s"]
    two = cores["engine, 2 threads, unpinned"]["inflated_mb_per_s"]
    L.append("| what | uncompressed MB/s | vs the pipeline |")
    L.append("|---|---|---|")
    for name, r in cores.items():
        L.append(f"| {name} | {r['inflated_mb_per_s']:.0f} | {r['inflated_mb_per_s'] / pipe:.2f}x |")
    L.append("")
    L.append(f"- Engine on one core vs `gzip -dc | sha256sum` on the same core: **{one / pipe:.2f}x** "
             f"(target 2x: {'met' if one / pipe >= 2 else 'MISSED'}).")
    L.append(f"- Engine on 2 cores vs 1: **{two / one:.2f}x** (target 1.8x: {'met' if two / one >= 1.8 else 'MISSED'}).")
    best = lambda kind: max(((k.split(",")[0], r["inflated_mb_per_s"]) for k, r in cores.items()
                             if k.startswith(kind)), key=lambda kr: kr[1])
    (inflate_name, inflate), (sha_name, sha) = best("inflate-"), best("sha256-")
    limit = 1 / (1 / inflate + 1 / sha)
    L.append(f"- The single-process limit from the best inflate ({inflate_name}, {inflate:.0f} MB/s) and "
             f"SHA-256 ({sha_name}, {sha:.0f} MB/s) "
             f"measured: 1/(1/{inflate:.0f} + 1/{sha:.0f}) = {limit:.0f} MB/s; the engine reaches "
             f"{one / limit:.0%} of it.\n")
    L.append("## 3. Lambda memory\n")
    L.append(f"The release digest-validator, through a minimal Runtime API (bench/runtime_api.py), validating "
             f"one digest that lists {memory['log_files']} log files, {memory['uncompressed_bytes'] / 1e9:.2f} GB "
             f"uncompressed (verdict {memory['verdict']}): peak RSS **{memory['peak_rss_mib']:.1f} MiB** "
             f"(target 64 MiB: {'met' if memory['peak_rss_mib'] <= 64 else 'MISSED'}), "
             f"{memory['invocation_seconds']:.1f} s.\n")
    L.append("## 4. Cold start\n")
    L.append("| function | release binary (host target, stripped) | spawn to first Runtime API request |")
    L.append("|---|---|---|")
    for name, r in cold.items():
        L.append(f"| {name} | {r['size'] / 1e6:.1f} MB ({'met' if r['size'] <= 10e6 else 'over'} 10 MB) | "
                 f"{r['startup_ms']:.1f} ms ({'met' if r['startup_ms'] <= 20 else 'over'} 20 ms) |")
    L.append("")
    L.append("## 5. Policy capacity\n")
    for line in capacity + hundred:
        L.append(f"- {line}")
    L.append("")
    L.extend(tripwire_section(tripwire))
    L.append("## Commands\n")
    L.append("```")
    L.extend(dict.fromkeys(commands))
    L.append("```")
    (ROOT / "bench/RESULTS.md").write_text("\n".join(L) + "\n")
    log("wrote bench/RESULTS.md")


def main():
    if "AWS_ENDPOINT_URL" not in os.environ:
        sys.exit("bench: run me as `make bench` (under tests/moto/with-moto.sh)")
    for tool in ("taskset", "gzip", "sha256sum"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is required")
    started = datetime.now(timezone.utc)
    global LOAD_AT_START
    LOAD_AT_START = load()
    WORK.mkdir(parents=True, exist_ok=True)
    build()
    with tempfile.TemporaryDirectory() as tmp:
        cold = cold_start(tmp)
        corpus = seed_corpus()
        cores = per_core(corpus)
        cli = against_awscli(corpus, tmp)
        memory = lambda_memory()
        capacity, hundred = onboarding_capacity()
        tripwire = tripwire_latency()
    write_results(corpus, cli, cores, memory, cold, capacity, hundred, tripwire, started)
    print((ROOT / "bench/RESULTS.md").read_text())
    if FAILURES:
        sys.exit("bench: failed (recorded in bench/RESULTS.md):\n" + "\n".join(FAILURES))


if __name__ == "__main__":
    main()
