//! Faults on a real socket: every program talks to the emulator through tests/faults/fault_proxy.py,
//! which resets connections mid-body, sends bodies shorter than their Content-Length, answers
//! 503 SlowDown, loses the answer to a call that happened, or holds a request while the test
//! acts (a concurrent writer, or a Lambda timeout that kills the handler part-way).
//!
//! What must hold: a cut-off download is never tampering (retried, or the run is incomplete with
//! exit 2 / a failed invocation naming the object); a policy update converges with every
//! account; a trail-enabler re-run converges to the spec; and a handler cut off anywhere and
//! run again ends as a clean run does.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use chrono::{DateTime, Utc};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use trailkeeper::events::AccountId;
use trailkeeper::onboard::{OnboardConfig, PolicyLoop};
use trailkeeper::policy::{BucketPolicy, PolicyEdit};
use trailkeeper::testdata::{Generator, History, TestKey, TrailLayout, gzip};
use trailkeeper::trail::Backoff;
use trailkeeper_e2e::*;

const ACCOUNT: &str = "111122223333";

// ---------------------------------------------------------------------------------------------
// The proxy

static SEQ: AtomicU64 = AtomicU64::new(0);

/// tests/faults/fault_proxy.py in front of the emulator, killed on drop.
struct FaultProxy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl FaultProxy {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "trailkeeper-faults-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir for the fault proxy");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/faults/fault_proxy.py");
        let log = std::fs::File::create(dir.join("proxy.log")).expect("proxy log");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--target")
            .arg(endpoint())
            .arg("--port-file")
            .arg(dir.join("port"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting python3 {script}: {e} (the fault tests need python3)")
            });
        let deadline = Instant::now() + Duration::from_secs(15);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(dir.join("port"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the fault proxy exited ({status}): {}",
                    std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the fault proxy did not start in 15 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }

    /// One request to the control API (`/__faults/…`); the proxy closes after answering.
    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("proxy control");
        write!(
            s,
            "{method} /__faults/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (head, answer) = response.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{method} {path}: {response}"
        );
        serde_json::from_str(answer).expect("JSON from the proxy")
    }

    fn rule(&self, spec: Value) {
        self.control("POST", "rules", Some(&spec));
    }

    /// Kills `invocation` (a Lambda timeout) while the proxy holds its request after the first
    /// `skip` that `matching` selects (a rule named `cut`); the held request goes on after the
    /// handler is gone, as one already sent would.
    async fn cut_off(&self, matching: Value, invocation: impl Future + Send + 'static) {
        let mut rule = json!({"name": "cut", "hold": true, "action": "pass"});
        let fields = matching.as_object().expect("rule fields");
        rule.as_object_mut().unwrap().extend(fields.clone());
        self.rule(rule);
        let task = tokio::spawn(async move {
            let _ = invocation.await;
        });
        self.until_held("cut", 1).await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        self.remove("cut");
    }

    /// Stops the rule and lets any request it holds go on.
    fn remove(&self, name: &str) {
        self.control("DELETE", &format!("rules/{name}"), None);
    }

    fn release(&self, name: &str) {
        self.control("POST", &format!("release/{name}"), None);
    }

    fn stats(&self, name: &str) -> Value {
        self.control("GET", "stats", None)[name].clone()
    }

    /// How many requests the rule acted on.
    fn applied(&self, name: &str) -> u64 {
        self.stats(name)["applied"].as_u64().unwrap_or(0)
    }

    async fn until_held(&self, name: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.stats(name)["held"].as_u64().unwrap_or(0) < n {
            assert!(
                Instant::now() < deadline,
                "rule {name} held no request in 30 s\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The SDK configuration the programs load, with the proxy as endpoint. The SDK's own
    /// retries stay on (4 attempts), with short waits: moto answers in milliseconds.
    /// (The endpoint is given to the loader: one set on a loaded config would lose to
    /// AWS_ENDPOINT_URL, which every service client reads again.)
    async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.url())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(4)
                    .with_initial_backoff(Duration::from_millis(20)),
            )
            .load()
            .await
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn escape(key: &str) -> String {
    // Keys of the generated history are path-safe; this keeps the rule honest if one is not.
    key.replace(' ', "%20")
}

// ---------------------------------------------------------------------------------------------
// `trailkeeper validate` through the proxy, in a child process

const CHILD_ARGS: &str = "TRAILKEEPER_FAULTS_VALIDATE_ARGS";
const CHILD_OUT: &str = "TRAILKEEPER_FAULTS_VALIDATE_OUT";

/// Runs `trailkeeper validate --format json ARGS` as a user would, with the proxy as
/// AWS_ENDPOINT_URL: in a child process (this test binary, running [`validate_child`]), since the
/// CLI reads its endpoint from the environment and this process's environment is shared by
/// every test in it.
async fn validate_through(proxy: &FaultProxy, args: &[&str]) -> Run {
    let out = proxy.dir.join(format!(
        "validate-{}.json",
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let exe = std::env::current_exe().expect("this test binary");
    let (url, args, out_path) = (proxy.url(), json!(args).to_string(), out.clone());
    let child = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(["validate_child", "--exact", "--ignored", "--test-threads=1"])
            .env("AWS_ENDPOINT_URL", url)
            .env(CHILD_ARGS, args)
            .env(CHILD_OUT, out_path)
            .output()
    })
    .await
    .unwrap()
    .expect("running the validate child");
    assert!(
        child.status.success(),
        "validate child failed:\n{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("child output"))
        .expect("child output is JSON");
    Run {
        code: v["code"].as_i64().unwrap() as i32,
        lines: v["lines"].as_array().unwrap().clone(),
        stderr: v["stderr"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "the child process of validate_through, which sets its AWS endpoint; not a test on its own"]
async fn validate_child() {
    let args: Vec<String> = serde_json::from_str(&std::env::var(CHILD_ARGS).unwrap_or_else(|_| {
        panic!("{CHILD_ARGS} is not set: this is the child half of validate_through")
    }))
    .unwrap();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = trailkeeper_validate(&argv).await;
    std::fs::write(
        std::env::var(CHILD_OUT).unwrap(),
        json!({"code": run.code, "lines": run.lines, "stderr": run.stderr}).to_string(),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Signed history

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-03T04:05:06Z")
        .unwrap()
        .to_utc()
}

/// `hours` signed digests of two logs each, uploaded straight to the emulator.
async fn signed_history(name: &str, hours: usize, seed: u64) -> (String, History) {
    let s3 = s3().await;
    let bucket = unique_bucket(name);
    create_bucket(&s3, &bucket).await;
    let key = TestKey::generate(
        t0() - chrono::Duration::days(1),
        t0() + chrono::Duration::days(30),
    );
    register_keys(&[&key]);
    let history = Generator::new(TrailLayout::new(&bucket, ACCOUNT, "us-east-1"), &key, seed)
        .chain(t0(), hours, None, |_| 2);
    upload(&s3, &bucket, &history).await;
    (bucket, history)
}

/// Every digest and log of `history` is `valid`, except the ones that got no verdict at all;
/// and nothing anywhere is a finding.
fn valid_except_unjudged(run: &Run, history: &History, digests: &[&str], logs: &[&str]) {
    let all_valid = |keys: Vec<&String>, unjudged: &[&str]| {
        keys.into_iter()
            .filter(|k| !unjudged.contains(&k.as_str()))
            .map(|k| (k.clone(), "valid".to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        run.statuses("digest"),
        all_valid(
            history.digests.iter().map(|d| &d.object.key).collect(),
            digests
        ),
        "digest verdicts\n{}",
        run.stderr
    );
    assert_eq!(
        run.statuses("log"),
        all_valid(history.logs.iter().map(|l| &l.key).collect(), logs),
        "log verdicts\n{}",
        run.stderr
    );
    assert!(
        run.not_valid().is_empty(),
        "a fault became a verdict: {:#?}",
        run.not_valid()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_resets_short_bodies_and_slowdowns_are_read_again_and_all_valid() {
    let (bucket, history) = signed_history("flt-transient", 4, 71).await;
    let proxy = FaultProxy::start();
    let object = |key: &str| format!("/{bucket}/{}", escape(key));
    let faults = [
        (
            "reset-log",
            object(&history.logs[0].key),
            "reset_mid_body",
            2u64,
        ),
        ("short-log", object(&history.logs[3].key), "short_body", 2),
        (
            "reset-digest",
            object(&history.digests[1].object.key),
            "reset_mid_body",
            1,
        ),
        (
            "short-digest",
            object(&history.digests[2].object.key),
            "short_body",
            2,
        ),
        ("slow-log", object(&history.logs[5].key), "status", 2),
        (
            "slow-digest",
            object(&history.digests[3].object.key),
            "status",
            1,
        ),
    ];
    for (name, path, action, count) in &faults {
        proxy.rule(
            json!({"name": name, "method": "GET", "path": path, "action": action, "count": count}),
        );
    }
    // And the first listing of the bucket is throttled.
    proxy.rule(json!({"name": "slow-list", "method": "GET", "path": "list-type=2", "action": "status", "count": 1}));

    let run = validate_through(&proxy, &["--bucket", &bucket]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, proxy.log());
    valid_except_unjudged(&run, &history, &[], &[]);
    assert_eq!(run.summary()["status"], "valid");
    assert_eq!(run.summary()["errors"], 0);
    assert_eq!(run.summary()["digests"]["valid"], 4);
    assert_eq!(run.summary()["logs"]["valid"], 8);
    for (name, _, _, count) in faults {
        assert_eq!(proxy.applied(name), count, "{name}\n{}", proxy.log());
    }
    assert_eq!(proxy.applied("slow-list"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_or_digest_cut_on_every_read_is_an_error_never_a_verdict() {
    let (bucket, history) = signed_history("flt-always", 4, 72).await;
    let proxy = FaultProxy::start();
    let cut_log = history.logs[1].key.clone();
    let cut_digest = history.digests[2].object.key.clone();
    proxy.rule(json!({"name": "log", "method": "GET", "path": format!("/{bucket}/{cut_log}"), "action": "reset_mid_body"}));
    proxy.rule(json!({"name": "digest", "method": "GET", "path": format!("/{bucket}/{cut_digest}"), "action": "short_body"}));

    let run = validate_through(&proxy, &["--bucket", &bucket]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.summary()["status"], "incomplete");
    assert_eq!(run.summary()["errors"], 2, "{}", run.stderr);
    for key in [&cut_log, &cut_digest] {
        assert!(
            run.stderr.contains(&format!("s3://{bucket}/{key}"))
                && run.stderr.contains("broke off"),
            "the error names {key}: {}",
            run.stderr
        );
    }
    // The cut digest is not judged, nor are the logs only it vouches for, nor the link to it
    // from the next digest; everything else is valid.
    let mut unjudged_logs = logs_of(&history, 2);
    unjudged_logs.push(cut_log.clone());
    let unjudged_logs: Vec<&str> = unjudged_logs.iter().map(String::as_str).collect();
    valid_except_unjudged(&run, &history, &[&cut_digest], &unjudged_logs);
    // Each was read afresh as often as the store tries a body (3), then given up.
    assert_eq!(proxy.applied("log"), 3);
    assert_eq!(proxy.applied("digest"), 3);
}

// ---------------------------------------------------------------------------------------------
// The digest-validator Lambda

const SAMPLE_KEY: &str = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/111122223333_CloudTrail-Digest_us-east-1_trailkeeper_us-east-1_20261101T050412Z.json.gz";

fn digest_event(sample: &str, bucket: &str, key: &str) -> Value {
    let path = format!(
        "{}/../events/digest-validator/{sample}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace(SAMPLE_KEY, key)
        .replace("central-logs", bucket);
    serde_json::from_str(&text).unwrap()
}

fn validator(
    aws: &SdkConfig,
    bucket: &str,
    topic: Option<&str>,
) -> digest_validator::Deps<Records> {
    digest_validator::Deps::new(
        aws,
        digest_validator::Config {
            central_bucket: Some(bucket.to_owned()),
            alert_topic_arn: topic.map(str::to_owned),
            security_hub: false,
            concurrency: 4,
            ..Default::default()
        },
        Records::default(),
    )
}

async fn invoke_validator(
    deps: &digest_validator::Deps<Records>,
    event: Value,
) -> Result<Value, digest_validator::HandlerError> {
    digest_validator::handle(deps, LambdaEvent::new(event, Context::default())).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_digest_validator_fails_the_invocation_when_a_log_is_cut_every_time() {
    let (bucket, history) = signed_history("flt-dv", 3, 73).await;
    let topic = create_topic(&format!("{bucket}-alerts")).await;
    let proxy = FaultProxy::start();
    let digest = history.digests[1].object.key.clone();
    let cut = logs_of(&history, 1)[0].clone();
    proxy.rule(json!({"name": "cut", "method": "GET", "path": format!("/{bucket}/{cut}"), "action": "reset_mid_body"}));
    let deps = validator(&proxy.sdk_config().await, &bucket, Some(&topic));

    let err = invoke_validator(
        &deps,
        digest_event("s3-object-created.json", &bucket, &digest),
    )
    .await
    .expect_err("a log that cannot be read fails the invocation");
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "Retryable");
    assert!(
        diagnostic.error_message.contains(&cut),
        "{}",
        diagnostic.error_message
    );
    assert!(
        deps.records.0.lock().unwrap().is_empty(),
        "no verdict recorded"
    );
    // S3 Batch Operations is told to try again, not that the digest is bad.
    let batch = invoke_validator(&deps, digest_event("batch-2.0.json", &bucket, &digest))
        .await
        .unwrap();
    assert_eq!(
        batch["results"][0]["resultCode"], "TemporaryFailure",
        "{batch}"
    );
    assert!(published(&topic).is_empty(), "an outage raised an alert");
    assert_eq!(
        proxy.applied("cut"),
        6,
        "3 reads per invocation\n{}",
        proxy.log()
    );

    // Lambda's retry, once the network is back, finds the digest valid.
    proxy.remove("cut");
    let out = invoke_validator(
        &deps,
        digest_event("s3-object-created.json", &bucket, &digest),
    )
    .await
    .unwrap();
    assert_eq!(out["digests"][0]["verdict"], "valid", "{out}");
    assert_eq!(out["digests"][0]["findings"], 0, "{out}");
    assert!(published(&topic).is_empty());
}

/// The digest-validator is killed (a Lambda timeout) after each possible number of requests,
/// then invoked again: its answer and record are those of a clean run, and the one finding is
/// alerted exactly once, unless the kill came while the alert itself was in flight (SNS may
/// still deliver it, and the retry sends it again: at least once, never lost).
#[tokio::test(flavor = "multi_thread")]
async fn the_digest_validator_cut_off_anywhere_then_retried_ends_as_a_clean_run() {
    let (bucket, mut history) = signed_history("flt-dv-cut", 3, 74).await;
    // One finding: a log of digest 2 is tampered with.
    let tampered = logs_of(&history, 2)[1].clone();
    let i = history.logs.iter().position(|l| l.key == tampered).unwrap();
    history.logs[i].body = gzip(b"{\"Records\":[]}");
    trailkeeper_e2e::put(&s3().await, &bucket, &history.logs[i]).await;
    let digest = history.digests[2].object.key.clone();
    let event = digest_event("s3-object-created.json", &bucket, &digest);

    let proxy = FaultProxy::start();
    let aws = proxy.sdk_config().await;
    // The clean run, counting its requests.
    let topic = create_topic(&format!("{bucket}-clean")).await;
    proxy.rule(json!({"name": "count", "action": "pass"}));
    let clean = validator(&aws, &bucket, Some(&topic));
    let want = invoke_validator(&clean, event.clone()).await.unwrap();
    assert_eq!(want["digests"][0]["verdict"], "valid", "{want}");
    assert_eq!(want["digests"][0]["findings"], 1, "{want}");
    let requests = proxy.applied("count");
    proxy.remove("count");
    let record = |deps: &digest_validator::Deps<Records>| {
        let mut r = deps
            .records
            .0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a record");
        r.as_object_mut().unwrap().remove("_aws"); // its timestamp
        r
    };
    let want_record = record(&clean);
    assert_eq!(published(&topic).len(), 1);
    let alert = published(&topic).remove(0);

    for k in 0..requests {
        let topic = create_topic(&format!("{bucket}-cut{k}")).await;
        let deps = Arc::new(validator(&aws, &bucket, Some(&topic)));
        proxy
            .cut_off(json!({"skip": k}), {
                let (deps, event) = (deps.clone(), event.clone());
                async move { invoke_validator(&deps, event).await }
            })
            .await;
        let out = invoke_validator(&deps, event.clone()).await.unwrap();
        assert_eq!(out, want, "cut after {k} of {requests} requests");
        assert_eq!(record(&deps), want_record, "cut after {k} requests");
        let alerts = published(&topic);
        assert!(
            alerts.iter().all(|a| *a == alert),
            "cut after {k}: {alerts:#?}"
        );
        let publishing = k == requests - 1;
        assert_eq!(
            alerts.len(),
            if publishing { 2 } else { 1 },
            "cut after {k} of {requests} requests"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The policy-updater

/// Short waits: moto answers in milliseconds. `settle` exceeds `fence` twice over.
const LOOP: PolicyLoop = PolicyLoop {
    attempts: 20,
    fence: Duration::from_millis(500),
    settle: Duration::from_millis(1500),
    backoff: Backoff {
        attempts: 20,
        first: Duration::from_millis(50),
        max: Duration::from_millis(500),
    },
};

fn account_event(account: &str) -> LambdaEvent<Value> {
    LambdaEvent::new(json!({ "accountId": account }), Context::default())
}

/// A bucket of the caller's account with a policy statement of its own, and the configuration
/// that onboards accounts to it.
async fn policy_bucket(name: &str) -> (aws_sdk_s3::Client, String, OnboardConfig) {
    let s3 = s3().await;
    let bucket = unique_bucket(name);
    create_bucket_with_own_policy(&s3, &bucket).await;
    let config = onboard_config(&[("TRAILKEEPER_BUCKET", bucket.clone())]);
    (s3, bucket, config)
}

async fn read_policy(s3: &aws_sdk_s3::Client, bucket: &str) -> BucketPolicy {
    BucketPolicy::parse(&bucket_policy(s3, bucket).await).expect("a policy trailkeeper can read")
}

/// What a concurrent policy-updater for `account` writes on top of `current`.
fn with_account(current: &BucketPolicy, config: &OnboardConfig, account: &str) -> String {
    match current
        .admit(
            &config.destination,
            &config.grant(AccountId::new(account).unwrap()),
        )
        .unwrap()
    {
        PolicyEdit::Changed { policy, .. } => policy.to_json(),
        PolicyEdit::Unchanged => panic!("{account} is already admitted"),
    }
}

/// Our policy-updater admitting `account` through `proxy`, run until the proxy holds its one
/// PutBucketPolicy (the rule `put`, which then answers with `action`). The proxy carries no
/// other PutBucketPolicy.
async fn our_put_held(
    proxy: &FaultProxy,
    config: &OnboardConfig,
    account: &'static str,
    action: &str,
) -> tokio::task::JoinHandle<Result<Value, policy_updater::HandlerError>> {
    proxy.rule(json!({"name": "put", "method": "PUT", "path": "policy",
                      "count": 1, "hold": true, "action": action}));
    let ours = policy_updater::Deps::with_bounds(&proxy.sdk_config().await, config.clone(), LOOP);
    let task =
        tokio::spawn(async move { policy_updater::handle(&ours, account_event(account)).await });
    proxy.until_held("put", 1).await;
    task
}

fn admitted(p: &BucketPolicy, config: &OnboardConfig) -> Vec<String> {
    p.admitted_accounts(&config.destination)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Our PutBucketPolicy is in flight when another policy-updater admits its own account, read
/// back and all; then S3 answers ours with 503 SlowDown. The loop reads again and converges
/// with both accounts.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_refused_after_a_concurrent_writer_changed_the_policy_converges_with_both() {
    let (s3, bucket, config) = policy_bucket("flt-pol-503").await;
    let proxy = FaultProxy::start();
    let task = our_put_held(&proxy, &config, "210000000001", "status").await;
    // The other writer: a whole policy-updater run, straight to the emulator, quick enough to
    // finish while ours waits for its answer (our write gives up after `settle - fence`, and a
    // write with no answer is one of unknown effect, a case of its own below).
    let quick = PolicyLoop {
        fence: Duration::from_millis(100),
        settle: Duration::from_millis(250),
        ..LOOP
    };
    let other = policy_updater::Deps::with_bounds(&aws_config().await, config.clone(), quick);
    let out = policy_updater::handle(&other, account_event("210000000002"))
        .await
        .unwrap();
    assert_eq!(out["policies"][0]["status"], "admitted", "{out}");
    proxy.release("put");
    let out = task.await.unwrap().expect("our update converges");
    assert_eq!(out["policies"][0]["status"], "admitted", "{out}");
    assert_eq!(
        out["policies"][0]["writes"], 1,
        "the refused write did not count: {out}"
    );
    let p = read_policy(&s3, &bucket).await;
    assert_eq!(admitted(&p, &config), ["210000000001", "210000000002"]);
    assert_eq!(p.foreign_statements(), [&foreign_statement(&bucket)]);
    assert_eq!(proxy.applied("put"), 1);
}

/// Our PutBucketPolicy lands, but its answer is lost (the connection is reset). Meanwhile a
/// writer that read the policy before ours landed writes its own account on top of what it
/// read, well within its fence. A loop that took the failed put as "not done" and found its
/// account on the next read would stop there and lose the account a moment later; a failed put
/// whose effect is unknown must be read back after `settle`, like any write.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_whose_answer_is_lost_is_verified_after_settling_and_no_account_is_lost() {
    let (s3, bucket, config) = policy_bucket("flt-pol-lost").await;
    let proxy = FaultProxy::start();
    let task = our_put_held(&proxy, &config, "220000000001", "forward_then_reset").await;
    // The other writer reads now, before our write lands...
    let read_at = Instant::now();
    let theirs = with_account(&read_policy(&s3, &bucket).await, &config, "220000000002");
    proxy.release("put");
    // ...and writes within its fence (it does not know of ours).
    tokio::time::sleep((LOOP.fence / 2).saturating_sub(read_at.elapsed())).await;
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(theirs)
        .send()
        .await
        .unwrap();
    let out = task.await.unwrap().expect("our update converges");
    let p = read_policy(&s3, &bucket).await;
    assert_eq!(
        admitted(&p, &config),
        ["220000000001", "220000000002"],
        "{out}\n{}",
        proxy.log()
    );
    // Our write may have landed: the report does not say nothing was written.
    assert_eq!(out["policies"][0]["status"], "admitted", "{out}");
    assert_eq!(p.foreign_statements(), [&foreign_statement(&bucket)]);
}

/// The policy-updater is killed after each possible number of requests (its write held in
/// flight and landing after it is gone, as a sent request may), then run again: the policy
/// admits exactly the account, keeps the bucket's own statement, and a further run writes
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_policy_updater_cut_off_anywhere_then_retried_admits_exactly_the_account() {
    let proxy = FaultProxy::start();
    let aws = proxy.sdk_config().await;
    let account = "230000000001";
    // A clean run: a read, a write, a read-back.
    let (_, bucket, config) = policy_bucket("flt-pol-clean").await;
    proxy.rule(json!({"name": "count", "path": format!("/{bucket}"), "action": "pass"}));
    let clean = policy_updater::Deps::with_bounds(&aws, config, LOOP);
    policy_updater::handle(&clean, account_event(account))
        .await
        .unwrap();
    let requests = proxy.applied("count");
    assert_eq!(requests, 3);
    for k in 0..requests {
        let (s3, bucket, config) = policy_bucket(&format!("flt-pol-cut{k}")).await;
        let deps = Arc::new(policy_updater::Deps::with_bounds(
            &aws,
            config.clone(),
            LOOP,
        ));
        proxy
            .cut_off(json!({"path": format!("/{bucket}"), "skip": k}), {
                let deps = deps.clone();
                async move { policy_updater::handle(&deps, account_event(account)).await }
            })
            .await;
        let out = policy_updater::handle(&deps, account_event(account))
            .await
            .unwrap_or_else(|e| panic!("cut after {k}: {e}"));
        assert_eq!(out["status"], "admitted", "cut after {k}: {out}");
        let p = read_policy(&s3, &bucket).await;
        assert_eq!(admitted(&p, &config), [account], "cut after {k}");
        assert_eq!(p.foreign_statements(), [&foreign_statement(&bucket)]);
        let again = policy_updater::handle(&deps, account_event(account))
            .await
            .unwrap();
        assert_eq!(
            again["policies"][0]["status"], "already_admitted",
            "{again}"
        );
        assert_eq!(again["policies"][0]["writes"], 0, "{again}");
    }
}

// ---------------------------------------------------------------------------------------------
// The trail-enabler

const STS_THROTTLED: &str = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>";

async fn assert_trail_at_spec(direct: &trail_enabler::Deps, account: &str, bucket: &str) {
    let id = AccountId::new(account).unwrap();
    let (ct, _) = direct.enabler.member_cloudtrail(id).await.unwrap();
    let name = direct.enabler.spec.name.as_str();
    let trails = ct
        .describe_trails()
        .trail_name_list(name)
        .send()
        .await
        .unwrap();
    let t = trails
        .trail_list()
        .iter()
        .find(|t| t.name() == Some(name))
        .unwrap_or_else(|| panic!("no trail {name} in {account}"));
    assert_eq!(t.s3_bucket_name(), Some(bucket));
    assert_eq!(t.is_multi_region_trail(), Some(true));
    assert_eq!(t.include_global_service_events(), Some(true));
    assert_eq!(t.log_file_validation_enabled(), Some(true));
    let status = ct.get_trail_status().name(name).send().await.unwrap();
    assert_eq!(status.is_logging(), Some(true), "{account} is logging");
}

async fn trail_count(direct: &trail_enabler::Deps, account: &str) -> usize {
    let (ct, _) = direct
        .enabler
        .member_cloudtrail(AccountId::new(account).unwrap())
        .await
        .unwrap();
    ct.describe_trails()
        .send()
        .await
        .unwrap()
        .trail_list()
        .len()
}

/// AssumeRole reset on every attempt, then (throttled, then through) CreateTrail whose answer
/// is lost and StartLogging reset on every attempt: each run fails naming the account and the
/// call; the run after converges to the spec, and the one after changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn trail_enabler_runs_failing_part_way_converge_on_the_next_run() {
    let mgmt = aws_config().await;
    let account = create_accounts(&mgmt, "flt-trail", 1).await.remove(0);
    let s3 = s3().await;
    let bucket = unique_bucket("flt-trail");
    create_bucket(&s3, &bucket).await;
    let config = onboard_config(&[
        ("TRAILKEEPER_BUCKET", bucket.clone()),
        ("TRAILKEEPER_TRAIL_NAME", "flt-trail".into()),
    ]);
    // As on AWS, CloudTrail accepts the trail only once the policy admits it.
    admit_accounts(&mgmt, &config, std::slice::from_ref(&account)).await;
    let proxy = FaultProxy::start();
    let deps =
        trail_enabler::Deps::with_backoff(&proxy.sdk_config().await, config.clone(), FAST_BACKOFF);
    let direct = trail_enabler::Deps::with_backoff(&mgmt, config, FAST_BACKOFF);
    let run = || trail_enabler::handle(&deps, account_event(&account));

    proxy.rule(
        json!({"name": "sts", "method": "POST", "body": "Action=AssumeRole", "action": "reset"}),
    );
    let err = run()
        .await
        .expect_err("AssumeRole never answers")
        .to_string();
    assert!(
        err.contains(&format!("account {account}")) && err.contains("sts:AssumeRole"),
        "{err}"
    );
    assert_eq!(proxy.applied("sts"), 4, "every attempt the SDK makes");
    assert_eq!(trail_count(&direct, &account).await, 0);

    proxy.remove("sts");
    proxy.rule(
        json!({"name": "sts-throttled", "method": "POST", "body": "Action=AssumeRole",
                      "action": "status", "status": 400, "body_text": STS_THROTTLED, "count": 2}),
    );
    proxy.rule(
        json!({"name": "create", "method": "POST", "header": "CloudTrail_20131101.CreateTrail",
                      "action": "forward_then_reset", "count": 1}),
    );
    proxy.rule(
        json!({"name": "start", "method": "POST", "header": "CloudTrail_20131101.StartLogging",
                      "action": "reset"}),
    );
    let err = run()
        .await
        .expect_err("StartLogging never answers")
        .to_string();
    assert!(
        err.contains(&format!("account {account}")) && err.contains("cloudtrail:StartLogging"),
        "{err}\n{}",
        proxy.log()
    );
    assert_eq!(proxy.applied("sts-throttled"), 2);
    assert_eq!(proxy.applied("create"), 1);
    assert_eq!(proxy.applied("start"), 4);
    assert_eq!(
        trail_count(&direct, &account).await,
        1,
        "the lost CreateTrail happened"
    );

    proxy.remove("start");
    let out = run().await.expect("the re-run converges");
    assert_eq!(out["action"], "up_to_date", "{out}");
    assert_eq!(out["started_logging"], true, "{out}");
    assert_trail_at_spec(&direct, &account, &bucket).await;
    let out = run().await.unwrap();
    assert_eq!(out["action"], "up_to_date", "{out}");
    assert_eq!(out["started_logging"], false, "{out}");
    assert_eq!(trail_count(&direct, &account).await, 1);
}

/// The trail-enabler is killed after each possible number of requests (the held request goes
/// on after it is gone), then run again: the trail is at spec and logging, and a further run
/// changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_trail_enabler_cut_off_anywhere_then_retried_converges_to_the_spec() {
    let mgmt = aws_config().await;
    let s3 = s3().await;
    let bucket = unique_bucket("flt-trail-cut");
    create_bucket(&s3, &bucket).await;
    let config = onboard_config(&[
        ("TRAILKEEPER_BUCKET", bucket.clone()),
        ("TRAILKEEPER_TRAIL_NAME", "flt-cut".into()),
    ]);
    // As on AWS, CloudTrail accepts a trail only once the policy admits it: the organization's
    // grant admits every account this test creates, with one write.
    admit_organization(&mgmt, &bucket).await;
    let proxy = FaultProxy::start();
    let deps = Arc::new(trail_enabler::Deps::with_backoff(
        &proxy.sdk_config().await,
        config.clone(),
        FAST_BACKOFF,
    ));
    let direct = trail_enabler::Deps::with_backoff(&mgmt, config, FAST_BACKOFF);
    let accounts = create_accounts(&mgmt, "flt-trail-cut", 1).await;
    proxy.rule(json!({"name": "count", "action": "pass"}));
    let out = trail_enabler::handle(&deps, account_event(&accounts[0]))
        .await
        .unwrap();
    assert_eq!(out["action"], "create", "{out}");
    let requests = proxy.applied("count");
    proxy.remove("count");
    let accounts = create_accounts(&mgmt, "flt-trail-cut", requests as usize).await;
    for (k, account) in accounts.iter().enumerate() {
        proxy
            .cut_off(json!({"skip": k}), {
                let (deps, account) = (deps.clone(), account.clone());
                async move { trail_enabler::handle(&deps, account_event(&account)).await }
            })
            .await;
        let out = trail_enabler::handle(&deps, account_event(account))
            .await
            .unwrap_or_else(|e| panic!("cut after {k} of {requests}: {e}"));
        assert_eq!(out["status"], "enabled", "{out}");
        assert_trail_at_spec(&direct, account, &bucket).await;
        let again = trail_enabler::handle(&deps, account_event(account))
            .await
            .unwrap();
        assert_eq!(again["action"], "up_to_date", "cut after {k}: {again}");
        assert_eq!(again["started_logging"], false, "cut after {k}: {again}");
        assert_eq!(trail_count(&direct, account).await, 1);
    }
}
