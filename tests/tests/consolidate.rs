//! `trailkeeper consolidate` on the emulator, then `trailkeeper validate` of the copies against
//! where CloudTrail delivered them.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectOwnership, OwnershipControls, OwnershipControlsRule, StorageClass};
use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;
use trailkeeper::consolidate::{Consolidator, Location, Options, Outcome, Progress};
use trailkeeper::testdata::{Generator, History, Object, TestKey, TrailLayout, gzip};
use trailkeeper_e2e::*;

const ACCOUNT_A: &str = "111122223333";
const ACCOUNT_B: &str = "444455556666";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T10:05:31Z")
        .unwrap()
        .to_utc()
}

fn test_key() -> TestKey {
    let key = TestKey::generate(t0() - Duration::days(1), t0() + Duration::days(30));
    register_keys(&[&key]);
    key
}

/// A central bucket as `template.yaml` makes it: ACLs off, the bucket owner owns every object.
async fn central_bucket(s3: &aws_sdk_s3::Client, name: &str) -> String {
    let bucket = unique_bucket(name);
    create_bucket(s3, &bucket).await;
    s3.put_bucket_ownership_controls()
        .bucket(&bucket)
        .ownership_controls(
            OwnershipControls::builder()
                .rules(
                    OwnershipControlsRule::builder()
                        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("ownership controls");
    bucket
}

/// An old bucket with `hours` of signed history of one account in one region, under `prefix`.
async fn old_bucket(
    s3: &aws_sdk_s3::Client,
    key: &TestKey,
    account: &str,
    region: &str,
    prefix: Option<&str>,
    hours: usize,
) -> (String, History) {
    let bucket = unique_bucket(&format!("old-{region}"));
    create_bucket(s3, &bucket).await;
    let mut layout = TrailLayout::new(&bucket, account, region);
    layout.prefix = prefix.map(str::to_string);
    let history = Generator::new(layout, key, hours as u64).chain(t0(), hours, None, |i| i % 3);
    upload(s3, &bucket, &history).await;
    (bucket, history)
}

/// Where the copy of an old key is: the same key without the old prefix.
fn central_key(old_key: &str, old_prefix: Option<&str>) -> String {
    match old_prefix {
        Some(p) => old_key
            .strip_prefix(&format!("{p}/"))
            .expect("under the prefix")
            .to_string(),
        None => old_key.to_string(),
    }
}

fn all_keys(history: &History, old_prefix: Option<&str>) -> Vec<String> {
    history
        .objects()
        .map(|o| central_key(&o.key, old_prefix))
        .collect()
}

fn manifest_of(run: &Run) -> String {
    run.summary()["manifest"]
        .as_str()
        .unwrap_or_else(|| panic!("a manifest: {:?}", run.lines))
        .to_string()
}

fn count(statuses: &BTreeMap<String, String>, status: &str) -> usize {
    statuses.values().filter(|s| *s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_old_buckets_in_two_regions_are_consolidated_and_validate_where_they_were_delivered() {
    let s3 = s3().await;
    let key = test_key();
    let (old_a, history_a) = old_bucket(&s3, &key, ACCOUNT_A, "us-east-1", None, 6).await;
    let (old_b, history_b) =
        old_bucket(&s3, &key, ACCOUNT_B, "eu-west-1", Some("legacy/trails"), 5).await;
    // Not CloudTrail's: left where it is.
    let config_log = Object {
        key: format!("AWSLogs/{ACCOUNT_A}/Config/us-east-1/2025/3/1/ConfigSnapshot/x.json.gz"),
        body: gzip(b"{}"),
        metadata: vec![],
    };
    put(&s3, &old_a, &config_log).await;
    let central = central_bucket(&s3, "central").await;

    let from_a = format!("s3://{old_a}");
    let from_b = format!("s3://{old_b}/legacy/trails");
    let to = format!("s3://{central}");
    let run = trailkeeper_consolidate(&[
        "--from",
        &from_a,
        "--from",
        &from_b,
        "--to",
        &to,
        "--storage-class",
        "STANDARD_IA",
    ])
    .await;
    let total = history_a.objects().count() + history_b.objects().count();
    assert_eq!(run.code, 0, "{:?}\n{}", run.lines, run.stderr);
    let summary = run.summary();
    assert_eq!(summary["copied"], total as u64, "{summary}");
    assert_eq!(summary["already_there"], 0);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["not_cloudtrail"], 1);
    let bytes: usize = history_a
        .objects()
        .chain(history_b.objects())
        .map(|o| o.body.len())
        .sum();
    assert_eq!(summary["bytes_copied"], bytes as u64);

    // Every object is there under its AWSLogs/… key, byte for byte, metadata and all; the
    // sources are untouched; nothing else came along.
    let mut want: Vec<String> = all_keys(&history_a, None);
    want.extend(all_keys(&history_b, Some("legacy/trails")));
    want.sort();
    assert_eq!(list_keys(&s3, &central, "AWSLogs/").await, want);
    for (history, prefix) in [(&history_a, None), (&history_b, Some("legacy/trails"))] {
        for d in &history.digests {
            let copy = s3
                .get_object()
                .bucket(&central)
                .key(central_key(&d.object.key, prefix))
                .send()
                .await
                .expect("the copy");
            assert_eq!(copy.storage_class(), Some(&StorageClass::StandardIa));
            let meta = copy.metadata().cloned().unwrap_or_default();
            assert_eq!(meta.get("signature"), Some(&d.signature_hex));
            let body = copy.body.collect().await.unwrap().into_bytes();
            assert_eq!(body.as_ref(), d.object.body.as_slice());
        }
    }
    assert_eq!(
        list_keys(&s3, &old_a, "AWSLogs/").await.len(),
        history_a.objects().count() + 1
    );
    assert_eq!(
        list_keys(&s3, &old_b, "legacy/").await.len(),
        history_b.objects().count()
    );

    // The manifest names the sources and every copy.
    let manifest = manifest_of(&run);
    assert!(
        manifest.starts_with(&format!("s3://{central}/trailkeeper/relocations/")),
        "{manifest}"
    );
    let objects = list_keys(&s3, &central, "trailkeeper/relocations/").await;
    let lines_key = objects
        .iter()
        .find(|k| k.ends_with("objects.jsonl"))
        .expect("the object list");
    let lines = s3
        .get_object()
        .bucket(&central)
        .key(lines_key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&lines)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), total);
    assert!(lines.iter().any(|l| {
        l["source_bucket"] == old_b.as_str()
            && l["source_key"]
                .as_str()
                .unwrap()
                .starts_with("legacy/trails/AWSLogs/")
            && l["kind"] == "digest"
    }));

    // Validated against the manifest, and against the old locations named by hand: all valid.
    let digests = history_a.digests.len() + history_b.digests.len();
    let logs = history_a.logs.len() + history_b.logs.len();
    for args in [
        vec![
            "--bucket",
            central.as_str(),
            "--manifest",
            manifest.as_str(),
        ],
        vec![
            "--bucket",
            central.as_str(),
            "--relocated-from",
            old_a.as_str(),
            "--relocated-from",
            from_b.as_str(),
        ],
    ] {
        let v = trailkeeper_validate(&args).await;
        assert_eq!(v.code, 0, "{args:?}: {:?}\n{}", v.not_valid(), v.stderr);
        assert_eq!(count(&v.statuses("digest"), "valid"), digests);
        assert_eq!(count(&v.statuses("log"), "valid"), logs);
        assert!(v.not_valid().is_empty());
    }
    // Without saying where they came from, every copy is a moved digest, and vouches for nothing.
    let v = trailkeeper_validate(&["--bucket", &central]).await;
    assert_eq!(v.code, 1);
    assert_eq!(count(&v.statuses("digest"), "moved"), digests);
    assert!(v.statuses("log").is_empty());

    // Again: nothing to copy, everything verified in place.
    let again = trailkeeper_consolidate(&["--from", &from_a, "--from", &from_b, "--to", &to]).await;
    assert_eq!(again.code, 0, "{:?}", again.lines);
    assert_eq!(again.summary()["copied"], 0);
    assert_eq!(again.summary()["already_there"], total as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_consolidation_resumes_where_it_stopped() {
    let s3 = s3().await;
    let key = test_key();
    let (old, history) = old_bucket(&s3, &key, ACCOUNT_A, "us-west-2", None, 24).await;
    let central = central_bucket(&s3, "resume").await;
    let total = history.objects().count();

    // Stop the first run half way, as a killed process would.
    let consolidator = Consolidator::new(
        s3.clone(),
        Options {
            concurrency: 2,
            ..Options::default()
        },
    );
    let (tx, mut rx) = mpsc::channel(16);
    let (sources, target) = (
        vec![Location::new(&old, None)],
        Location::new(&central, None),
    );
    let task = tokio::spawn(async move { consolidator.run(&sources, &target, tx).await });
    let mut done = 0;
    while let Some(p) = rx.recv().await {
        if let Progress::Done { outcome, planned } = p {
            assert_eq!(outcome, Outcome::Copied, "{planned:?}");
            done += 1;
            if done == total / 2 {
                break;
            }
        }
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let present = list_keys(&s3, &central, "AWSLogs/").await.len();
    assert!(
        present >= total / 2 && present < total,
        "{present} of {total} copied"
    );
    // No manifest for a run that did not finish: only its plan, written before the first copy.
    let own = list_keys(&s3, &central, "trailkeeper/").await;
    assert!(own.len() == 1 && own[0].ends_with("/plan.jsonl"), "{own:?}");

    let run = trailkeeper_consolidate(&["--from", &old, "--to", &central]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.lines, run.stderr);
    assert_eq!(run.summary()["already_there"], present as u64);
    assert_eq!(run.summary()["copied"], (total - present) as u64);
    assert_eq!(list_keys(&s3, &central, "AWSLogs/").await.len(), total);

    let v = trailkeeper_validate(&["--bucket", &central, "--manifest", &manifest_of(&run)]).await;
    assert_eq!(v.code, 0, "{:?}\n{}", v.not_valid(), v.stderr);
    assert_eq!(count(&v.statuses("digest"), "valid"), history.digests.len());
    assert_eq!(count(&v.statuses("log"), "valid"), history.logs.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_copy_and_a_copy_that_lost_its_metadata_are_reported_and_never_overwritten() {
    let s3 = s3().await;
    let key = test_key();
    let (old, history) = old_bucket(&s3, &key, ACCOUNT_A, "ap-southeast-2", None, 6).await;
    let central = central_bucket(&s3, "tamper").await;
    let run = trailkeeper_consolidate(&["--from", &old, "--to", &central]).await;
    assert_eq!(run.code, 0, "{:?}", run.lines);
    let manifest = manifest_of(&run);

    // A copied log rewritten, and a copied digest that lost its metadata (same bytes).
    let tampered = history.digests[2].json.log_files[0].s3_object.clone();
    put(
        &s3,
        &central,
        &Object {
            key: tampered.clone(),
            body: gzip(b"{\"Records\":[]}"),
            metadata: vec![],
        },
    )
    .await;
    let stripped = history.digests[4].object.key.clone();
    s3.put_object()
        .bucket(&central)
        .key(&stripped)
        .body(ByteStream::from(history.digests[4].object.body.clone()))
        .send()
        .await
        .unwrap();

    let v = trailkeeper_validate(&["--bucket", &central, "--manifest", &manifest]).await;
    assert_eq!(v.code, 1, "{:?}", v.not_valid());
    let digests = v.statuses("digest");
    assert_eq!(digests.get(&stripped).map(String::as_str), Some("unsigned"));
    assert_eq!(count(&digests, "valid"), history.digests.len() - 1);
    let logs = v.statuses("log");
    assert_eq!(
        logs.get(&tampered).map(String::as_str),
        Some("hash_mismatch")
    );
    // The unsigned copy vouches for none of its logs; every other log is valid.
    let unsigned_logs = history.digests[4].json.log_files.len();
    assert_eq!(
        count(&logs, "valid"),
        history.logs.len() - 1 - unsigned_logs
    );
    let not_valid: Vec<_> = v.not_valid();
    assert_eq!(not_valid.len(), 2, "{not_valid:?}");
    assert!(not_valid.iter().any(|l| {
        l["reason"]
            .as_str()
            .unwrap()
            .contains("x-amz-meta-signature")
    }));

    // Consolidating again names both copies and overwrites neither.
    let again = trailkeeper_consolidate(&["--from", &old, "--to", &central]).await;
    assert_eq!(again.code, 2);
    let failed: Vec<String> = again
        .lines
        .iter()
        .filter(|l| l["status"] == "failed")
        .map(|l| format!("{} {}", l["target"], l["reason"]))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().any(|f| f.contains(&stripped)
        && f.contains("x-amz-meta-signature")
        && f.contains("not overwritten")));
    assert!(failed.iter().any(|f| f.contains(&tampered)));
    let still = s3
        .head_object()
        .bucket(&central)
        .key(&stripped)
        .send()
        .await
        .unwrap();
    assert!(still.metadata().is_none_or(|m| m.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_copies_keep_bytes_and_signatures() {
    let s3 = s3().await;
    let key = test_key();
    let (old, history) = old_bucket(&s3, &key, ACCOUNT_B, "eu-central-1", None, 3).await;
    let central = central_bucket(&s3, "multipart").await;
    let consolidator = Consolidator::new(
        s3.clone(),
        Options {
            multipart_threshold: 0,
            ..Options::default()
        },
    );
    let (tx, mut rx) = mpsc::channel(1024);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let report = consolidator
        .run(
            &[Location::new(&old, None)],
            &Location::new(&central, None),
            tx,
        )
        .await
        .expect("consolidate");
    drain.await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.copied, history.objects().count() as u64);
    let etag = s3
        .head_object()
        .bucket(&central)
        .key(&history.digests[0].object.key)
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    assert!(etag.ends_with("-1\""), "a multipart copy: {etag}");
    let manifest = report.manifest.expect("a manifest").to_string();
    let v = trailkeeper_validate(&["--bucket", &central, "--manifest", &manifest]).await;
    assert_eq!(v.code, 0, "{:?}\n{}", v.not_valid(), v.stderr);
    assert_eq!(count(&v.statuses("digest"), "valid"), history.digests.len());
}

// ---------------------------------------------------------------------------------------------
// Attack 6: consolidation's copies are not deliveries

/// Attack 6: `consolidate` copies years of history into `AWSLogs/` with CopyObject, and S3
/// sends an "Object Created" event for each copy. Judged as deliveries, every copied digest is
/// `moved` and alerted. The digest rule (the template's pattern, on the emulator's EventBridge,
/// with S3's real `reason` field) must let none of 100 copied digests through, and the
/// digest-validator must raise no alert; a digest written by PutObject, as CloudTrail delivers,
/// is still judged, and a foreign one alerted.
#[tokio::test(flavor = "multi_thread")]
async fn consolidating_100_digests_raises_no_alert_and_a_digest_put_in_place_still_does() {
    use aws_sdk_s3::types::{EventBridgeConfiguration, NotificationConfiguration};
    let aws = aws_config().await;
    let s3 = s3().await;
    let key = test_key();
    let (old, history) = old_bucket(&s3, &key, ACCOUNT_A, "us-east-1", None, 100).await;
    assert_eq!(history.digests.len(), 100);
    let central = central_bucket(&s3, "quiet").await;
    s3.put_bucket_notification_configuration()
        .bucket(&central)
        .notification_configuration(
            NotificationConfiguration::builder()
                .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                .build(),
        )
        .send()
        .await
        .expect("EventBridge notifications on the central bucket");
    let queue_url = rule_to_queue("digest-rule-pattern.json", &central);
    let topic = create_topic(&unique_bucket("quiet-alerts")).await;
    let deps = digest_validator::Deps::new(
        &aws,
        digest_validator::Config {
            central_bucket: Some(central.clone()),
            alert_topic_arn: Some(topic.clone()),
            security_hub: false,
            concurrency: 4,
            ..Default::default()
        },
        Records::default(),
    );
    let invoke = |event: serde_json::Value| {
        let deps = &deps;
        async move {
            digest_validator::handle(
                deps,
                lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
            )
            .await
            .unwrap_or_else(|e| panic!("the digest-validator failed: {e}"))
        }
    };

    let run = trailkeeper_consolidate(&["--from", &old, "--to", &format!("s3://{central}")]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.lines, run.stderr);
    assert_eq!(run.summary()["copied"], history.objects().count() as u64);
    let events = drain(&queue_url);
    for event in &events {
        invoke(event.clone()).await;
    }
    let alerts = published(&topic);
    assert_eq!(
        events.len(),
        0,
        "copies reached the digest-validator as deliveries, e.g. {:?}",
        events.first().map(|e| &e["detail"])
    );
    assert_eq!(alerts.len(), 0, "{:?}", alerts.first());
    assert!(deps.records.0.lock().unwrap().is_empty());

    // Written in place by PutObject, as CloudTrail delivers, a digest is still judged: this one
    // names the old bucket as where it was delivered, so it is `moved`, and alerted.
    let digest = &history.digests[50].object;
    put(&cloudtrail_delivery().await, &central, digest).await;
    let events = drain(&queue_url);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["object"]["key"], digest.key.as_str());
    assert_eq!(events[0]["detail"]["reason"], "PutObject");
    invoke(events[0].clone()).await;
    let alerts = published(&topic);
    assert!(!alerts.is_empty(), "the digest put in place is alerted");
    assert!(
        alerts.iter().all(|(_, m)| m.contains(&digest.key)),
        "{alerts:?}"
    );
    assert!(
        alerts.iter().any(|(_, m)| m.contains("moved")),
        "{alerts:?}"
    );
}
