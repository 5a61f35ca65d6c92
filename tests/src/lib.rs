//! The harness of the end-to-end tests: the moto server that `make test` started, buckets, signed
//! history uploads, test keys served by the ListPublicKeys shim, and both validators to run.
//!
//! Tests that need the emulator fail, loudly, when it is not there; they never skip.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use trailkeeper::onboard::{OnboardConfig, PolicyLoop};
use trailkeeper::testdata::{History, Object, TestKey, list_public_keys_json};
use trailkeeper::trail::Backoff;

/// The emulator's address, from `tests/moto/with-moto.sh` (run by `make test`).
pub fn endpoint() -> String {
    std::env::var("TRAILKEEPER_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "TRAILKEEPER_TEST_ENDPOINT is not set: these tests need the local AWS emulator. \
             Run them with `make test` (or tests/moto/with-moto.sh cargo test)."
        )
    })
}

/// SDK configuration pointing at the emulator; the same loader the programs use.
pub async fn aws_config() -> aws_config::SdkConfig {
    let endpoint = endpoint();
    assert_eq!(
        std::env::var("AWS_ENDPOINT_URL").ok().as_deref(),
        Some(endpoint.as_str()),
        "AWS_ENDPOINT_URL must point at the emulator"
    );
    trailkeeper::store::load_aws_config().await
}

pub async fn s3() -> aws_sdk_s3::Client {
    trailkeeper::store::s3_client(&aws_config().await)
}

/// The functions' records, kept for the test.
pub use trailkeeper::report::Collected as Records;

/// A rule pattern of template.yaml as deployed without a prefix (tests/lambda/FILE, which
/// tests/lambda/template_checks.py holds to the template), for `bucket`.
pub fn rule_pattern(file: &str, bucket: &str) -> String {
    let path = format!("{}/lambda/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("${BucketName}", bucket)
}

/// A rule on the emulator's EventBridge with the pattern of tests/lambda/FILE, sending what it
/// matches to a new queue; returns the queue's URL.
pub fn rule_to_queue(file: &str, bucket: &str) -> String {
    let queue = unique_bucket("rule");
    let url = moto_json(
        "sqs",
        "AmazonSQS.CreateQueue",
        &serde_json::json!({"QueueName": queue}),
    )["QueueUrl"]
        .as_str()
        .expect("a queue URL")
        .to_string();
    let rule = unique_bucket("rule");
    moto_json(
        "events",
        "AWSEvents.PutRule",
        &serde_json::json!({"Name": rule, "EventPattern": rule_pattern(file, bucket)}),
    );
    moto_json(
        "events",
        "AWSEvents.PutTargets",
        &serde_json::json!({"Rule": rule, "Targets": [{"Id": "queue",
            "Arn": format!("arn:aws:sqs:us-east-1:123456789012:{queue}")}]}),
    );
    url
}

/// Every event the rule put on its queue so far, removed from it.
pub fn drain(queue_url: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let got = moto_json(
            "sqs",
            "AmazonSQS.ReceiveMessage",
            &serde_json::json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10}),
        );
        let messages = got["Messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return events;
        }
        for m in messages {
            moto_json(
                "sqs",
                "AmazonSQS.DeleteMessage",
                &serde_json::json!({"QueueUrl": queue_url, "ReceiptHandle": m["ReceiptHandle"]}),
            );
            events.push(serde_json::from_str(m["Body"].as_str().unwrap()).unwrap());
        }
    }
}

/// The access key id the harness takes for CloudTrail's delivery service (tests/moto/server.py,
/// CLOUDTRAIL_DELIVERY_KEY): S3 events for its writes name `cloudtrail.amazonaws.com` as their
/// requester, as S3 names CloudTrail's deliveries.
pub const CLOUDTRAIL_DELIVERY_KEY: &str = "AKIACLOUDTRAILDELIVER";

/// An S3 client that writes as CloudTrail delivers (see [`CLOUDTRAIL_DELIVERY_KEY`]).
pub async fn cloudtrail_delivery() -> aws_sdk_s3::Client {
    let aws = aws_config().await;
    let conf = aws_sdk_s3::config::Builder::from(&aws)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            CLOUDTRAIL_DELIVERY_KEY,
            "cloudtrail-delivery",
            None,
            None,
            "trailkeeper-e2e",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A bucket name no other test uses.
pub fn unique_bucket(name: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!("tk-{name}-{pid}-{n}")
        .to_lowercase()
        .replace('_', "-")
}

pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create bucket {bucket} on the emulator at {}: {e:?}",
                endpoint()
            )
        });
}

pub async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("enable versioning of {bucket}: {e:?}"));
}

/// A statement of the log-archive account's own, which every edit must keep byte for byte.
pub fn foreign_statement(bucket: &str) -> Value {
    json!({"Sid": "AllowSSLRequestsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
           "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
           "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
}

/// Creates `bucket` with a policy of its own: [`foreign_statement`].
pub async fn create_bucket_with_own_policy(s3: &aws_sdk_s3::Client, bucket: &str) {
    create_bucket(s3, bucket).await;
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(
            json!({"Version": "2012-10-17", "Statement": [foreign_statement(bucket)]}).to_string(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("put the own policy of {bucket}: {e:?}"));
}

/// The policy text of `bucket`, which must have one.
pub async fn bucket_policy(s3: &aws_sdk_s3::Client, bucket: &str) -> String {
    s3.get_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get the policy of {bucket}: {e:?}"))
        .policy()
        .unwrap_or_else(|| panic!("{bucket} has no policy"))
        .to_owned()
}

/// The configuration from these variables, in `us-east-1` unless `AWS_REGION` is among them.
pub fn onboard_config(vars: &[(&'static str, String)]) -> OnboardConfig {
    OnboardConfig::from_vars(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| (name == "AWS_REGION").then(|| "us-east-1".to_owned()))
    })
    .expect("configuration")
}

/// Retries that give up quickly: moto answers in milliseconds.
pub const FAST_BACKOFF: Backoff = Backoff {
    attempts: 3,
    first: Duration::from_millis(10),
    max: Duration::from_millis(50),
};

/// A policy loop for a few writers at a time on moto. `settle` still exceeds `fence` plus a call.
pub const FAST_LOOP: PolicyLoop = PolicyLoop {
    attempts: 10,
    fence: Duration::from_millis(800),
    settle: Duration::from_millis(1500),
    backoff: Backoff {
        attempts: 10,
        first: Duration::from_millis(100),
        max: Duration::from_millis(1000),
    },
};

/// The log keys that digest number `digest` of `history` names.
pub fn logs_of(history: &History, digest: usize) -> Vec<String> {
    history.digests[digest]
        .json
        .log_files
        .iter()
        .map(|l| l.s3_object.clone())
        .collect()
}

/// Writes `value` as the object `key` (a state or configuration object of trailkeeper's own).
pub async fn put_json(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, value: &serde_json::Value) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(value.to_string().into_bytes()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put s3://{bucket}/{key}: {e:?}"));
}

pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, object: &Object) {
    let mut req = s3
        .put_object()
        .bucket(bucket)
        .key(&object.key)
        .body(ByteStream::from(object.body.clone()));
    for (k, v) in &object.metadata {
        req = req.metadata(k, v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("put {}: {e:?}", object.key));
}

/// Uploads every log and digest of `history`.
pub async fn upload(s3: &aws_sdk_s3::Client, bucket: &str, history: &History) {
    stream::iter(history.objects())
        .map(|o| put(s3, bucket, o))
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

pub async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("delete object");
}

/// Serves these keys from the emulator's ListPublicKeys (the shim reads the directory).
pub fn register_keys(keys: &[&TestKey]) {
    let dir = PathBuf::from(std::env::var("TRAILKEEPER_MOTO_KEYS_DIR").expect(
        "TRAILKEEPER_MOTO_KEYS_DIR is not set: run the tests with `make test` so the emulator serves test keys",
    ));
    let name = keys
        .iter()
        .map(|k| &k.fingerprint[..8])
        .collect::<Vec<_>>()
        .join("-");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, list_public_keys_json(keys)).expect("write test keys");
    std::fs::rename(&tmp, dir.join(format!("{name}.json"))).expect("publish test keys");
}

/// What `trailkeeper validate --format json` said.
#[derive(Debug, Default)]
pub struct Run {
    pub code: i32,
    pub lines: Vec<serde_json::Value>,
    pub stderr: String,
}

impl Run {
    pub fn summary(&self) -> &serde_json::Value {
        self.lines
            .iter()
            .find(|l| l["type"] == "summary")
            .expect("a summary line")
    }

    /// `key -> status` for files of this type (`digest` or `log`).
    pub fn statuses(&self, kind: &str) -> BTreeMap<String, String> {
        self.lines
            .iter()
            .filter(|l| l["type"] == kind && l["key"].is_string())
            .map(|l| {
                (
                    l["key"].as_str().unwrap_or_default().to_string(),
                    l["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Lines that are neither valid files nor the summary.
    pub fn not_valid(&self) -> Vec<&serde_json::Value> {
        self.lines
            .iter()
            .filter(|l| l["type"] != "summary" && l["status"] != "valid")
            .collect()
    }
}

/// Runs `trailkeeper validate` in-process with JSON output.
pub async fn trailkeeper_validate(args: &[&str]) -> Run {
    trailkeeper_json("validate", args).await
}

/// Runs `trailkeeper consolidate` in-process with JSON output.
pub async fn trailkeeper_consolidate(args: &[&str]) -> Run {
    trailkeeper_json("consolidate", args).await
}

/// Runs a `trailkeeper` command in-process with `--format json`; every line must be JSON.
pub async fn trailkeeper_json(command: &str, args: &[&str]) -> Run {
    use clap::Parser;
    use trailkeeper_cli::Command;
    let mut argv = vec!["trailkeeper", command, "--format", "json"];
    argv.extend_from_slice(args);
    let cli =
        trailkeeper_cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = match cli.command {
        Command::Validate(a) => trailkeeper_cli::validate::run(a, &mut out, &mut err).await,
        Command::Consolidate(a) => trailkeeper_cli::consolidate::run(a, &mut out, &mut err).await,
        other => panic!("{argv:?}: {other:?} has no JSON output"),
    };
    let lines = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    Run {
        code,
        lines,
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// Creates `n` accounts with Organizations (the organization is created once per server) and
/// returns their ids.
pub async fn create_accounts(mgmt: &aws_config::SdkConfig, tag: &str, n: usize) -> Vec<String> {
    let org = aws_sdk_organizations::Client::new(mgmt);
    if let Err(e) = org
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
    {
        let code = aws_sdk_organizations::error::ProvideErrorMetadata::code(&e);
        assert_eq!(code, Some("AlreadyInOrganizationException"), "{e:?}");
    }
    let mut ids = Vec::new();
    for i in 0..n {
        let out = org
            .create_account()
            .account_name(format!("{tag}-{i}"))
            .email(format!("{tag}-{i}-{}@example.com", std::process::id()))
            .send()
            .await
            .expect("create account");
        let status = out.create_account_status().expect("status");
        assert_eq!(
            status.state(),
            Some(&aws_sdk_organizations::types::CreateAccountState::Succeeded)
        );
        ids.push(status.account_id().expect("account id").to_owned());
    }
    ids
}

/// Every key under `prefix` in `bucket`.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    trailkeeper::store::Store::new(s3.clone())
        .list(bucket, prefix, None, None, None)
        .await
        .unwrap_or_else(|e| panic!("list s3://{bucket}/{prefix}: {e}"))
        .keys
}

/// What `aws cloudtrail validate-logs --verbose` said about each file, and its exit code.
#[derive(Debug, Default)]
pub struct AwsCliRun {
    pub code: i32,
    /// `s3://bucket/key -> "valid" | "INVALID: …"`, digests and logs alike.
    pub files: HashMap<String, String>,
    pub output: String,
}

/// Runs the reference peer, the AWS CLI (from the test venv), against the emulator.
pub fn awscli_validate_logs(args: &[&str]) -> AwsCliRun {
    let aws = std::env::var("TRAILKEEPER_AWSCLI")
        .expect("TRAILKEEPER_AWSCLI is not set: run with `make test`");
    let out = std::process::Command::new(&aws)
        .args(["cloudtrail", "validate-logs", "--verbose"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {aws}: {e}"));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let files = output
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let (kind, uri, verdict) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "Digest file" || kind == "Log file")
                .then(|| (uri.to_string(), verdict.trim().to_string()))
        })
        .collect();
    AwsCliRun {
        code: out.status.code().unwrap_or(-1),
        files,
        output,
    }
}

/// Creates an SNS topic on the emulator and returns its ARN.
pub async fn create_topic(name: &str) -> String {
    let sns = aws_sdk_sns::Client::new(&aws_config().await);
    let out = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("create SNS topic on the emulator");
    out.topic_arn().expect("topic ARN").to_string()
}

/// `(subject, message)` of everything published to `topic_arn`, read from moto's state
/// (`/moto-api/data.json`): the SDK cannot read SNS messages back.
pub fn published(topic_arn: &str) -> Vec<(String, String)> {
    use std::io::{Read, Write};
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the emulator");
    write!(
        stream,
        "GET /moto-api/data.json?service=sns HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let state: serde_json::Value = serde_json::from_str(&body).expect("moto state is JSON");
    // A repeated CreateTopic leaves a phantom entry with the same ARN: merge entries by ARN.
    state["sns"]["Topic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t.to_string().contains(topic_arn))
        .flat_map(|t| {
            t["sent_notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|n| {
            (
                n[2].as_str().unwrap_or_default().to_string(),
                n[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Admits each account to `config`'s central bucket (and key) policy with the policy-updater's
/// code, as `archive` (the bucket's owner). On AWS, and on this emulator
/// (tests/moto/server.py), CloudTrail refuses a trail into the bucket until then.
pub async fn admit_accounts(
    archive: &aws_config::SdkConfig,
    config: &OnboardConfig,
    accounts: &[String],
) {
    let updater = trailkeeper::onboard::PolicyUpdater::new(archive, config.clone(), FAST_LOOP);
    for account in accounts {
        let id = trailkeeper::events::AccountId::new(account).expect("an account id");
        updater
            .admit(id)
            .await
            .unwrap_or_else(|e| panic!("admit {account} to {}: {e}", config.destination.bucket));
    }
}

/// Admits every account of the emulator's organization to `bucket` in organization mode
/// (`aws:SourceOrgID`), with one write: for tests that create many trails into one bucket.
/// `mgmt` is the organization's management account; it must own `bucket`.
pub async fn admit_organization(mgmt: &aws_config::SdkConfig, bucket: &str) {
    // The organization may not exist yet when this test runs first on its server.
    create_accounts(mgmt, "org", 0).await;
    let org = aws_sdk_organizations::Client::new(mgmt)
        .describe_organization()
        .send()
        .await
        .expect("describe the emulator's organization");
    let org = org
        .organization()
        .and_then(|o| o.id())
        .expect("an organization id");
    let config = onboard_config(&[
        ("TRAILKEEPER_BUCKET", bucket.to_owned()),
        ("TRAILKEEPER_POLICY_MODE", "organization".into()),
        ("TRAILKEEPER_ORG_ID", org.to_owned()),
    ]);
    let any = org_management_account(mgmt).await;
    admit_accounts(mgmt, &config, &[any]).await;
}

async fn org_management_account(mgmt: &aws_config::SdkConfig) -> String {
    aws_sdk_organizations::Client::new(mgmt)
        .describe_organization()
        .send()
        .await
        .expect("describe the emulator's organization")
        .organization()
        .and_then(|o| o.master_account_id())
        .expect("the management account")
        .to_owned()
}

/// Lets CloudTrail deliver any account's trail into `bucket`, with a policy of the shape old,
/// pre-trailkeeper buckets often have (AWS's documented statements, `AWSLogs/*`). CloudTrail
/// (and this emulator) refuses a trail into a bucket without one.
pub async fn let_cloudtrail_deliver(s3: &aws_sdk_s3::Client, bucket: &str) {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AWSCloudTrailAclCheck", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:GetBucketAcl", "Resource": format!("arn:aws:s3:::{bucket}")},
        {"Sid": "AWSCloudTrailWrite", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": format!("arn:aws:s3:::{bucket}/*AWSLogs/*"),
         "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}}]});
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put CloudTrail's delivery policy on {bucket}: {e:?}"));
}
/// One call of an AWS JSON-protocol API on the emulator, for services the harness has no SDK
/// client of (EventBridge, SQS): `service` is the signing name moto routes by (`events`,
/// `sqs`), `target` the `X-Amz-Target` (`AWSEvents.PutRule`). moto checks no signature. Any
/// answer but 200 fails the test, naming the call.
pub fn moto_json(service: &str, target: &str, body: &Value) -> Value {
    use std::io::{Read, Write};
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let body = body.to_string();
    let content_type = match service {
        "sqs" => "application/x-amz-json-1.0",
        _ => "application/x-amz-json-1.1",
    };
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the emulator");
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         X-Amz-Target: {target}\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, \
         Signature=0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    assert!(
        head.split_whitespace().nth(1) == Some("200"),
        "{target}: {head}\n{body}"
    );
    if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
    }
}
