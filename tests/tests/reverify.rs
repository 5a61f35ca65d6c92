//! Scheduled re-verification on the emulator: the digest-validator's `{"check": "reverify"}`
//! goes through every slice (account, region, day) of two accounts once, resumes after a run
//! that had no time, and finds a log tampered with after its hour was validated.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use digest_validator::{Config, Deps, handle};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use trailkeeper::digest::key::DigestKey;
use trailkeeper::testdata::{Generator, History, TestKey, TrailLayout};
use trailkeeper_e2e::*;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-10T09:05:31Z")
        .unwrap()
        .to_utc()
}

/// A run with `seconds` before Lambda's time limit (the handler keeps a minute in hand).
async fn run(deps: &Deps<Records>, seconds: u64) -> Value {
    let mut context = Context::default();
    context.deadline = (Utc::now().timestamp_millis() as u64) + seconds * 1000;
    handle(
        deps,
        LambdaEvent::new(json!({"check": "reverify"}), context),
    )
    .await
    .unwrap_or_else(|e| panic!("re-verification failed: {e}"))
}

fn slices(history: &History) -> BTreeSet<(String, String, String)> {
    history
        .digests
        .iter()
        .map(|d| {
            let k = DigestKey::parse(&d.object.key).unwrap();
            (k.account, k.region, k.end_time.date_naive().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_accounts_are_reverified_slice_by_slice_and_a_later_tampering_is_found() {
    let s3 = s3().await;
    let key = TestKey::generate(t0() - Duration::days(1), t0() + Duration::days(30));
    register_keys(&[&key]);
    let bucket = unique_bucket("reverify");
    create_bucket(&s3, &bucket).await;
    let mut history = History::default();
    for (i, account) in ["111122223333", "444455556666"].iter().enumerate() {
        let layout = TrailLayout::new(&bucket, account, "us-east-1");
        history.extend(Generator::new(layout, &key, i as u64).chain(t0(), 30, None, |_| 1));
    }
    upload(&cloudtrail_delivery().await, &bucket, &history).await;
    let expected = slices(&history);
    assert!(expected.len() >= 4, "{expected:?}");

    let topic = create_topic(&unique_bucket("reverify-alerts")).await;
    let deps = Deps::new(
        &aws_config().await,
        Config {
            central_bucket: Some(bucket.clone()),
            alert_topic_arn: Some(topic.clone()),
            concurrency: 4,
            reverify_period_days: 30,
            ..Default::default()
        },
        Records::default(),
    );

    // No time left: nothing is started, and the pass is still to do.
    let out = run(&deps, 30).await;
    assert_eq!(out["reverified"], 0, "{out}");
    assert_eq!(out["pass_completed"], false, "{out}");

    let out = run(&deps, 900).await;
    assert_eq!(out["pass_completed"], true, "{out}");
    assert_eq!(out["findings"], 0, "{out}");
    let records = deps.records.0.lock().unwrap().clone();
    let record = records.last().unwrap();
    assert_eq!(
        record["SlicesReverified"].as_u64().unwrap() as usize,
        expected.len(),
        "every slice once: {record}"
    );
    let ages = &record["reverification"]["accounts"];
    for account in ["111122223333", "444455556666"] {
        assert!(ages[account].as_f64().is_some_and(|h| h < 1.0), "{record}");
    }
    assert!(published(&topic).is_empty());

    // A log changed after its hour was judged: the next pass finds it, once.
    let mut tampered = history.logs[5].clone();
    tampered.body = trailkeeper::testdata::gzip(b"{\"Records\":[]}");
    put(&s3, &bucket, &tampered).await;
    let out = run(&deps, 900).await;
    assert_eq!(out["findings"], 1, "{out}");
    let alerts = published(&topic);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].1.contains(&tampered.key), "{}", alerts[0].1);

    // A pass that began 29 days ago has done one slice and gets no time now: it cannot end
    // within its period. The alert says so, and S3 Batch Operations gets what is left.
    let first = expected.iter().next().unwrap();
    let state = json!({
        "trailkeeper_reverification": 1,
        "pass_started": trailkeeper::digest::file::format_time(Utc::now() - Duration::days(29)),
        "cursor": {"account": first.0, "region": first.1, "day": first.2},
        "slices_done": 1,
    });
    put_json(&s3, &bucket, trailkeeper::reverify::STATE_KEY, &state).await;
    let out = run(&deps, 30).await;
    assert_eq!(out["behind"], true, "{out}");
    let alerts = published(&topic);
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let generator_key = trailkeeper::reverify::BATCH_GENERATOR_KEY;
    assert!(alerts[1].1.contains(generator_key), "{}", alerts[1].1);
    let generator: Value = serde_json::from_slice(
        &s3.get_object()
            .bucket(&bucket)
            .key(generator_key)
            .send()
            .await
            .expect("the manifest generator")
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes(),
    )
    .unwrap();
    let g = &generator["S3JobManifestGenerator"];
    assert_eq!(
        g["SourceBucket"],
        format!("arn:aws:s3:::{bucket}"),
        "{generator}"
    );
    let prefixes: Vec<&str> = g["Filter"]["KeyNameConstraint"]["MatchAnyPrefix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        prefixes,
        [
            "AWSLogs/111122223333/CloudTrail-Digest/",
            "AWSLogs/444455556666/CloudTrail-Digest/"
        ],
        "{generator}"
    );
    // The prefixes take every digest of the history, and nothing but digests.
    for d in &history.digests {
        assert!(
            prefixes.iter().any(|p| d.object.key.starts_with(p)),
            "{}",
            d.object.key
        );
    }
    for l in &history.logs {
        assert!(!prefixes.iter().any(|p| l.key.starts_with(p)), "{}", l.key);
    }
}

/// Whoever may write the bucket may write the state too. A state that cannot be read must not
/// stop re-verification for good: it is alerted, and a new pass begins.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_state_is_alerted_and_a_new_pass_begins() {
    let s3 = s3().await;
    let key = TestKey::generate(t0() - Duration::days(1), t0() + Duration::days(30));
    register_keys(&[&key]);
    let bucket = unique_bucket("reverify-state");
    create_bucket(&s3, &bucket).await;
    let layout = TrailLayout::new(&bucket, "111122223333", "us-east-1");
    let history = Generator::new(layout, &key, 7).chain(t0(), 26, None, |_| 1);
    upload(&cloudtrail_delivery().await, &bucket, &history).await;
    let forged = json!({"cursor": "past everything"});
    put_json(&s3, &bucket, trailkeeper::reverify::STATE_KEY, &forged).await;
    let topic = create_topic(&unique_bucket("reverify-state-alerts")).await;
    let deps = Deps::new(
        &aws_config().await,
        Config {
            central_bucket: Some(bucket.clone()),
            alert_topic_arn: Some(topic.clone()),
            ..Default::default()
        },
        Records::default(),
    );
    let out = run(&deps, 900).await;
    assert_eq!(out["pass_completed"], true, "{out}");
    assert_eq!(
        out["reverified"].as_u64().unwrap() as usize,
        slices(&history).len(),
        "{out}"
    );
    let alerts = published(&topic);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let state_object = format!("s3://{bucket}/{}", trailkeeper::reverify::STATE_KEY);
    assert!(alerts[0].1.contains(&state_object), "{}", alerts[0].1);
}
