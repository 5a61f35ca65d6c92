//! The tripwire on the emulator: the template's own rule pattern on moto's EventBridge (with the
//! requester, deletion type and delete events S3 sends, tests/moto/server.py), the events it
//! passes on, and the digest-validator's alerts for them.

use chrono::{DateTime, Duration, Utc};
use digest_validator::{Config, Deps, handle};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use trailkeeper::testdata::{Generator, TestKey, TrailLayout};
use trailkeeper_e2e::*;

const ACCOUNT: &str = "111122223333";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-01T10:05:31Z")
        .unwrap()
        .to_utc()
}

async fn central(s3: &aws_sdk_s3::Client) -> String {
    use aws_sdk_s3::types::{EventBridgeConfiguration, NotificationConfiguration};
    let bucket = unique_bucket("tripwire");
    create_bucket(s3, &bucket).await;
    enable_versioning(s3, &bucket).await;
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                .build(),
        )
        .send()
        .await
        .expect("EventBridge notifications");
    bucket
}

async fn invoke(deps: &Deps<Records>, event: Value) -> Value {
    handle(deps, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap_or_else(|e| panic!("the digest-validator failed: {e}"))
}

/// CloudTrail's deliveries reach the digest rule and not the tripwire; a deleted log, an
/// overwritten digest and an injected object each give exactly one alert naming the key, the
/// requester and S3's request id; `consolidate`'s copies and a configured lifecycle expiration
/// give none, and an expiration the template does not configure gives one.
#[tokio::test(flavor = "multi_thread")]
async fn each_change_cloudtrail_did_not_make_is_one_alert_and_deliveries_copies_and_expirations_none()
 {
    let s3 = s3().await;
    let key = TestKey::generate(t0() - Duration::days(1), t0() + Duration::days(30));
    register_keys(&[&key]);
    let bucket = central(&s3).await;
    let tripwire = rule_to_queue("tripwire-rule-pattern.json", &bucket);
    let digests = rule_to_queue("digest-rule-pattern.json", &bucket);
    let topic = create_topic(&unique_bucket("tripwire-alerts")).await;
    let history = Generator::new(TrailLayout::new(&bucket, ACCOUNT, "us-east-1"), &key, 7).chain(
        t0(),
        3,
        None,
        |_| 2,
    );
    upload(&cloudtrail_delivery().await, &bucket, &history).await;
    assert!(
        drain(&tripwire).is_empty(),
        "deliveries reached the tripwire"
    );
    assert_eq!(drain(&digests).len(), history.digests.len());

    let config = |expire_after_days| Config {
        central_bucket: Some(bucket.clone()),
        alert_topic_arn: Some(topic.clone()),
        security_hub: false,
        concurrency: 4,
        prefix: None,
        expire_after_days,
        reverify_period_days: 30,
    };
    let deps = Deps::new(&aws_config().await, config(Some(2555)), Records::default());
    let mut alerts_seen = 0;
    let mut one_alert = |what: &str, key: &str, events: Vec<Value>| {
        assert_eq!(events.len(), 1, "{what}: {events:?}");
        let alerts = published(&topic);
        let new: Vec<_> = alerts[alerts_seen..].to_vec();
        alerts_seen = alerts.len();
        assert_eq!(new.len(), 1, "{what}: {new:?}");
        let (subject, message) = &new[0];
        assert!(subject.contains(what), "{subject}");
        for part in [
            key,
            "Requester:  123456789012",
            "Request id: ",
            "Source IP:  127.0.0.1",
        ] {
            assert!(message.contains(part), "{what}: {part}\n{message}");
        }
        events[0]["detail"]["request-id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // A log deleted: S3 hides it behind a delete marker.
    let log = &history.logs[1];
    delete(&s3, &bucket, &log.key).await;
    let events = drain(&tripwire);
    for e in &events {
        invoke(&deps, e.clone()).await;
    }
    let request = one_alert("log file deleted", &log.key, events.clone());
    assert!(
        published(&topic).last().unwrap().1.contains(&request),
        "the alert names S3's request id {request}"
    );
    assert_eq!(
        events[0]["detail"]["deletion-type"],
        "Delete Marker Created"
    );

    // A digest overwritten in place by the bucket's account.
    let digest = &history.digests[2].object;
    put(&s3, &bucket, digest).await;
    let events = drain(&tripwire);
    for e in &events {
        invoke(&deps, e.clone()).await;
    }
    one_alert("digest overwritten", &digest.key, events);
    assert!(
        drain(&digests).is_empty(),
        "a write by anyone but CloudTrail is the tripwire's, not a delivery"
    );

    // An object CloudTrail never wrote, with a CloudTrail-like name.
    let forged = history.logs[0].key.replace(".json.gz", "x.json.gz");
    s3.put_object()
        .bucket(&bucket)
        .key(&forged)
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
    let events = drain(&tripwire);
    for e in &events {
        invoke(&deps, e.clone()).await;
    }
    one_alert("injected", &forged, events);

    // consolidate's copies from an old bucket: every one reaches the tripwire, none alerts.
    let old = unique_bucket("tripwire-old");
    create_bucket(&s3, &old).await;
    let older = Generator::new(TrailLayout::new(&old, "444455556666", "eu-west-1"), &key, 9).chain(
        t0(),
        3,
        None,
        |_| 2,
    );
    upload(&s3, &old, &older).await;
    let run = trailkeeper_consolidate(&["--from", &old, "--to", &format!("s3://{bucket}")]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.lines, run.stderr);
    let events = drain(&tripwire);
    assert_eq!(events.len(), older.objects().count(), "one event per copy");
    for e in &events {
        assert_eq!(e["detail"]["reason"], "CopyObject");
        let out = invoke(&deps, e.clone()).await;
        assert_eq!(out["tripwire"], "expected", "{out}");
    }
    assert_eq!(published(&topic).len(), alerts_seen, "copies alerted");
    // The same copy event with a size the plan does not list is not consolidate's.
    let mut forged_copy = events[0].clone();
    forged_copy["detail"]["object"]["size"] = json!(1);
    invoke(&deps, forged_copy).await;
    assert_eq!(published(&topic).len(), alerts_seen + 1);
    alerts_seen += 1;

    // A lifecycle expiration (moto runs no lifecycle: S3's documented event, the key of a
    // delivered log): seven years on, as the template configures it, is no finding; a week on,
    // or with no expiration configured, it is.
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../events/digest-validator/tripwire-lifecycle-expiration.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let expired = |at: DateTime<Utc>| {
        let mut e = sample.clone();
        e["detail"]["bucket"]["name"] = json!(bucket);
        e["detail"]["object"]["key"] = json!(history.logs[3].key);
        e["time"] = json!(trailkeeper::digest::file::format_time(at));
        e
    };
    let out = invoke(&deps, expired(t0() + Duration::days(2556))).await;
    assert_eq!(out["tripwire"], "expected", "{out}");
    assert_eq!(published(&topic).len(), alerts_seen);
    invoke(&deps, expired(t0() + Duration::days(7))).await;
    let never = Deps::new(&aws_config().await, config(None), Records::default());
    invoke(&never, expired(t0() + Duration::days(2556))).await;
    let alerts = published(&topic);
    assert_eq!(
        alerts.len(),
        alerts_seen + 2,
        "{:?}",
        &alerts[alerts_seen..]
    );
    assert!(
        alerts[alerts_seen..]
            .iter()
            .all(|(s, m)| s.contains("expired")
                && m.contains("s3.amazonaws.com")
                && m.contains("lifecycle"))
    );
}
