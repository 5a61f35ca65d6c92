//! The digest-validator end to end on the emulator: signed history is uploaded, the handler is
//! invoked with the sample events rewritten for it, and each case gives its verdict, its metrics
//! record and its SNS message.

use std::sync::Mutex;

use chrono::{DateTime, Duration};
use digest_validator::{Config, Deps, RecordSink, handle};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use trailkeeper::testdata::{Generator, History, TestKey, TrailLayout, gzip};
use trailkeeper_e2e::*;

const SAMPLE_KEY: &str = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/111122223333_CloudTrail-Digest_us-east-1_trailkeeper_us-east-1_20261101T050412Z.json.gz";

#[derive(Default)]
struct Records(Mutex<Vec<Value>>);

impl RecordSink for Records {
    fn write(&self, record: &Value) {
        self.0.lock().unwrap().push(record.clone());
    }
}

fn sample(name: &str, bucket: &str, key: &str) -> Value {
    let path = format!(
        "{}/../../events/digest-validator/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(SAMPLE_KEY, key)
        .replace("central-logs", bucket);
    serde_json::from_str(&text).unwrap()
}

async fn invoke(
    deps: &Deps<Records>,
    event: Value,
) -> Result<Value, digest_validator::HandlerError> {
    handle(deps, LambdaEvent::new(event, Context::default())).await
}

struct Setup {
    bucket: String,
    topic: String,
    history: History,
    deps: Deps<Records>,
}

/// Seven signed hours; then: d2 lists a tampered log, d3 a deleted log, d4 a spliced link,
/// d5 is deleted (so d6's previous is missing).
async fn setup(name: &str) -> Setup {
    let t0 = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
        .unwrap()
        .to_utc();
    let s3 = s3().await;
    let bucket = unique_bucket(name);
    create_bucket(&s3, &bucket).await;
    let key = TestKey::generate(t0 - Duration::days(1), t0 + Duration::days(20));
    register_keys(&[&key]);
    let layout = TrailLayout::new(&bucket, "111122223333", "us-east-1");
    let mut history = Generator::new(layout, &key, 21).chain(t0, 7, None, |_| 2);
    history.reseal_from(4, &key, |j| {
        j.previous_digest_signature = Some("00".repeat(256))
    });
    let tampered = history.digests[2].json.log_files[0].s3_object.clone();
    let i = history.logs.iter().position(|l| l.key == tampered).unwrap();
    history.logs[i].body = gzip(b"{\"Records\":[]}");
    upload(&s3, &bucket, &history).await;
    delete(
        &s3,
        &bucket,
        &history.digests[3].json.log_files[1].s3_object,
    )
    .await;
    delete(&s3, &bucket, &history.digests[5].object.key).await;
    let topic = create_topic(&format!("{bucket}-alerts")).await;
    let config = Config {
        central_bucket: Some(bucket.clone()),
        alert_topic_arn: Some(topic.clone()),
        security_hub: false,
        concurrency: 8,
        ..Default::default()
    };
    let deps = Deps::new(&aws_config().await, config, Records::default());
    Setup {
        bucket,
        topic,
        history,
        deps,
    }
}

impl Setup {
    fn digest(&self, i: usize) -> String {
        self.history.digests[i].object.key.clone()
    }

    fn last_record(&self) -> Value {
        self.deps
            .records
            .0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a record")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_case_gives_its_verdict_metrics_and_alert() {
    let s = setup("dv-cases").await;
    let cases = [
        (1, "valid", 0),
        (2, "valid", 1),
        (3, "valid", 1),
        (4, "chain_broken", 1),
        (6, "valid", 1),
    ];
    for (i, verdict, findings) in cases {
        let out = invoke(
            &s.deps,
            sample("s3-object-created.json", &s.bucket, &s.digest(i)),
        )
        .await
        .unwrap();
        assert_eq!(out["digests"][0]["verdict"], verdict, "digest {i}: {out}");
        assert_eq!(out["digests"][0]["findings"], findings, "digest {i}: {out}");
        let r = s.last_record();
        assert_eq!(r["key"], s.digest(i).as_str());
        assert_eq!(r["verdict"], verdict);
        assert_eq!(r["Account"], "111122223333");
        assert_eq!(r["Region"], "us-east-1");
        assert_eq!(
            r["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Trailkeeper"
        );
        assert_eq!(
            r["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[]]),
            "no per-account dimensions: they would make one metric per account and region"
        );
        assert_eq!(r["LogFilesValidated"], 2);
        assert!(r["BytesHashed"].as_u64().unwrap() > 0 || i == 3);
    }
    let r = |i: usize| s.deps.records.0.lock().unwrap()[i].clone();
    assert_eq!(
        (r(0)["DigestsValid"].clone(), r(0)["DigestsInvalid"].clone()),
        (1.into(), 0.into())
    );
    assert_eq!(
        (
            r(1)["LogFilesInvalid"].clone(),
            r(2)["LogFilesInvalid"].clone()
        ),
        (1.into(), 1.into())
    );
    assert_eq!(r(3)["DigestsInvalid"], 1);
    // d6 is valid itself; the previous digest it names is reported missing.
    assert_eq!(r(4)["DigestsValid"], 1);
    assert_eq!(r(4)["DigestsInvalid"], 1);
    assert_eq!(r(4)["findings"][0]["status"], "missing");
    assert_eq!(r(4)["findings"][0]["key"], s.digest(5).as_str());

    let alerts = published(&s.topic);
    assert_eq!(alerts.len(), 4, "{alerts:#?}");
    let tampered = &s.history.digests[2].json.log_files[0].s3_object;
    let (subject, message) = alerts
        .iter()
        .find(|(_, m)| m.contains(tampered.as_str()))
        .expect("an alert for the tampered log");
    assert_eq!(
        subject,
        "trailkeeper: log file hash_mismatch in account 111122223333 us-east-1"
    );
    assert!(
        message.contains("When:   the hour from 2026-03-04T07:06:07Z to 2026-03-04T08:06:07Z"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "trailkeeper validate --bucket {} --account 111122223333",
            s.bucket
        )),
        "{message}"
    );
    assert!(alerts.iter().any(|(s, _)| s.contains("log file missing")));
    assert!(
        alerts
            .iter()
            .any(|(s, _)| s.contains("digest chain_broken"))
    );
    assert!(
        alerts
            .iter()
            .any(|(sub, m)| sub.contains("digest missing") && m.contains(&s.digest(5)))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eventbridge_and_batch_1_0_events_validate_the_same_way() {
    let s = setup("dv-kinds").await;
    let out = invoke(
        &s.deps,
        sample("eventbridge-object-created.json", &s.bucket, &s.digest(1)),
    )
    .await
    .unwrap();
    assert_eq!(out["digests"][0]["verdict"], "valid", "{out}");
    let out = invoke(&s.deps, sample("batch-1.0.json", &s.bucket, &s.digest(4)))
        .await
        .unwrap();
    assert_eq!(out["invocationSchemaVersion"], "1.0");
    assert_eq!(out["results"][0]["resultCode"], "PermanentFailure", "{out}");
    assert!(
        out["results"][0]["resultString"]
            .as_str()
            .unwrap()
            .contains("chain_broken")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_2_0_invocation_over_a_mix_returns_per_task_codes() {
    let s = setup("dv-batch").await;
    let mut event = sample("batch-2.0.json", &s.bucket, &s.digest(1));
    let task = |id: &str, bucket: &str, key: &str| serde_json::json!({"taskId": id, "s3Key": key, "s3VersionId": null, "s3Bucket": bucket});
    let log = s.history.logs[0].key.clone();
    event["tasks"] = serde_json::json!([
        task("valid", &s.bucket, &s.digest(1)),
        task("tampered", &s.bucket, &s.digest(2)),
        task("deleted-log", &s.bucket, &s.digest(3)),
        task("a-log", &s.bucket, &log),
        task("gone", &s.bucket, &s.digest(5)),
        task("other-bucket", "not-the-central-bucket", &s.digest(1)),
    ]);
    let out = invoke(&s.deps, event).await.unwrap();
    assert_eq!(out["invocationSchemaVersion"], "2.0");
    assert_eq!(out["treatMissingKeysAs"], "PermanentFailure");
    let codes: Vec<(String, String)> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["taskId"].as_str().unwrap().into(),
                r["resultCode"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("valid", "Succeeded"),
        ("tampered", "PermanentFailure"),
        ("deleted-log", "PermanentFailure"),
        ("a-log", "Succeeded"),
        ("gone", "PermanentFailure"),
        ("other-bucket", "Succeeded"),
    ];
    assert_eq!(
        codes,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec(),
        "{out:#}"
    );
    assert!(
        out["results"][1]["resultString"]
            .as_str()
            .unwrap()
            .contains("hash_mismatch")
    );
    assert!(
        out["results"][3]["resultString"]
            .as_str()
            .unwrap()
            .starts_with("skipped")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_or_unreachable_store_is_a_retryable_error_not_a_verdict() {
    let s = setup("dv-down").await;
    let aws = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!(
            "http://127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        ))
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::for_tests(),
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    let down = Deps::new(
        &aws,
        Config {
            concurrency: 2,
            ..Config::default()
        },
        Records::default(),
    );
    let err = invoke(
        &down,
        sample("s3-object-created.json", &s.bucket, &s.digest(1)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&s.digest(1)), "{err}");
    assert!(
        down.records.0.lock().unwrap().is_empty(),
        "no verdict is recorded"
    );
    let batch = invoke(&down, sample("batch-2.0.json", &s.bucket, &s.digest(1)))
        .await
        .unwrap();
    assert_eq!(
        batch["results"][0]["resultCode"], "TemporaryFailure",
        "{batch}"
    );
}
