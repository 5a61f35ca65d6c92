//! Attacks on completeness, end to end on the emulator: what an admin of a member account, or a
//! writer to the bucket, can do to silence, divert or pad the record, and the exact records,
//! exit codes and alerts each gets from `trailkeeper validate` and the digest-validator.

use chrono::{DateTime, Duration, Utc};
use digest_validator::{Config, Deps, handle};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use trailkeeper::digest::file::format_time;
use trailkeeper::keys::{CloudTrailKeys, KeyRing, KeySource};
use trailkeeper::store::Store;
use trailkeeper::testdata::{Generator, History, TestKey, TrailLayout};
use trailkeeper::validate::{Engine, RegionDir};
use trailkeeper_e2e::*;

const ACCOUNT: &str = "111122223333";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-04-01T08:04:12Z")
        .unwrap()
        .to_utc()
}

struct Scene {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: TestKey,
}

impl Scene {
    async fn new(name: &str) -> Self {
        let s3 = s3().await;
        let bucket = unique_bucket(name);
        create_bucket(&s3, &bucket).await;
        let key = TestKey::generate(t0() - Duration::days(2), t0() + Duration::days(30));
        register_keys(&[&key]);
        Self { s3, bucket, key }
    }

    fn generator(&self, bucket: &str, region: &str, seed: u64) -> Generator<'_> {
        Generator::new(TrailLayout::new(bucket, ACCOUNT, region), &self.key, seed)
    }

    async fn validate(&self, extra: &[&str]) -> Run {
        let mut args = vec!["--bucket", self.bucket.as_str()];
        args.extend_from_slice(extra);
        trailkeeper_validate(&args).await
    }

    /// The digest-validator, configured for this bucket, alerting to a topic of its own.
    async fn lambda(&self) -> (Deps<Records>, String) {
        let topic = create_topic(&format!("{}-alerts", self.bucket)).await;
        let config = Config {
            central_bucket: Some(self.bucket.clone()),
            alert_topic_arn: Some(topic.clone()),
            security_hub: false,
            concurrency: 8,
            ..Default::default()
        };
        (
            Deps::new(&aws_config().await, config, Records::default()),
            topic,
        )
    }
}

/// The EventBridge "Object Created" event for `key` in `bucket`, as the digest rule sends it.
fn object_created(bucket: &str, key: &str) -> Value {
    json!({
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created", "source": "aws.s3", "account": "999988887777",
        "time": "2026-04-01T12:09:48Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": 912}, "reason": "PutObject",
                   "requester": "cloudtrail.amazonaws.com"},
    })
}

async fn invoke(deps: &Deps<Records>, bucket: &str, key: &str) -> Value {
    handle(
        deps,
        LambdaEvent::new(object_created(bucket, key), Context::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("the digest-validator failed on {key}: {e}"))
}

fn lines_of<'r>(run: &'r Run, kind: &str) -> Vec<&'r Value> {
    run.lines.iter().filter(|l| l["type"] == kind).collect()
}

// ---------------------------------------------------------------------------------------------
// Attack 1: StopLogging for three hours, then StartLogging.

/// Three signed hours, logging stopped for three hours, two more; then stopped for four days,
/// and one more hour.
fn stopped_and_started(sc: &Scene) -> History {
    let mut g = sc.generator(&sc.bucket, "us-east-1", 101);
    let mut history = g.chain(t0(), 3, None, |_| 1);
    let restarted = g.restart(&history.digests[2], Duration::hours(3), 2, |_| 1);
    history.extend(restarted);
    let again = g.restart(&history.digests[4], Duration::days(4), 1, |_| 1);
    history.extend(again);
    history
}

const GAP_REASON: &str = "CloudTrail started a new chain (logging or log file validation was off)";

fn gap_line(sc: &Scene, h: &History, before: usize, hours: f64) -> Value {
    json!({
        "type": "gap", "status": "gap", "bucket": sc.bucket, "key": null, "account": ACCOUNT,
        "region": "us-east-1", "trail": "trailkeeper",
        "reason": format!("no digest chain for {hours:.1} hours: {GAP_REASON}"),
        "start": h.digests[before].json.digest_end_time,
        "end": h.digests[before + 1].json.digest_start_time,
        "hours": hours,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn attack_1_a_chain_restart_is_a_gap_record_and_fail_on_gap_makes_it_exit_1() {
    let sc = Scene::new("stop-logging").await;
    let history = stopped_and_started(&sc);
    upload(&sc.s3, &sc.bucket, &history).await;

    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.not_valid(), run.stderr);
    assert_eq!(
        lines_of(&run, "gap"),
        vec![
            &gap_line(&sc, &history, 2, 3.0),
            &gap_line(&sc, &history, 4, 96.0)
        ]
    );
    assert_eq!(run.summary()["gaps"], 2);
    assert_eq!(run.summary()["status"], "valid");

    let strict = sc.validate(&["--fail-on-gap"]).await;
    assert_eq!(strict.code, 1, "{}", strict.stderr);
    assert_eq!(strict.summary()["status"], "findings");
    assert_eq!(strict.summary()["gaps"], 2);
    assert_eq!(lines_of(&strict, "gap").len(), 2);
    assert_eq!(strict.summary()["digests"], json!({"valid": 6}));
}

#[tokio::test(flavor = "multi_thread")]
async fn attack_1_the_digest_validator_looks_back_and_alerts_the_hours_without_a_chain() {
    let sc = Scene::new("stop-logging-dv").await;
    let history = stopped_and_started(&sc);
    upload(&sc.s3, &sc.bucket, &history).await;
    let (deps, topic) = sc.lambda().await;
    let key = |i: usize| history.digests[i].object.key.clone();

    // The first digest ever of the stream is a start; a digest in mid-chain is nothing new.
    for i in [0, 1] {
        let out = invoke(&deps, &sc.bucket, &key(i)).await;
        assert_eq!(
            out["digests"][0],
            json!({"key": key(i), "verdict": "valid", "findings": 0, "gaps": 0})
        );
    }
    assert!(published(&topic).is_empty(), "{:?}", published(&topic));

    // The restart after three hours: found by a listing of the same day; after four days, by
    // looking further back.
    for (i, hours) in [(3, 3.0), (5, 96.0)] {
        let out = invoke(&deps, &sc.bucket, &key(i)).await;
        assert_eq!(
            out["digests"][0],
            json!({"key": key(i), "verdict": "valid", "findings": 0, "gaps": 1})
        );
        let record = deps.records.0.lock().unwrap().last().cloned().unwrap();
        assert_eq!(record["key"], key(i).as_str());
        assert_eq!(record["verdict"], "valid");
        assert_eq!(record["DigestsValid"], 1);
        assert_eq!(record["DigestsInvalid"], 0);
        assert_eq!(record["ChainGaps"], 1);
        assert_eq!(record["HoursWithoutChain"], hours);
        let metrics: Vec<&str> = record["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(metrics.contains(&"ChainGaps"), "{metrics:?}");
        assert!(metrics.contains(&"HoursWithoutChain"), "{metrics:?}");
        assert_eq!(
            record["gaps"],
            json!([{
                "start": history.digests[i - 1].json.digest_end_time,
                "end": history.digests[i].json.digest_start_time,
                "hours": hours,
                "reason": format!("no digest chain for {hours:.1} hours: {GAP_REASON}"),
            }])
        );
    }

    let alerts = published(&topic);
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    for ((subject, message), (i, hours)) in alerts.iter().zip([(3, 3.0), (5, 96.0)]) {
        assert_eq!(
            subject,
            &format!(
                "trailkeeper: digest chain gap of {hours:.1} hours in account {ACCOUNT} us-east-1"
            )
        );
        for part in [
            format!("account {ACCOUNT}, region us-east-1 (trail trailkeeper)"),
            format!("What:   no digest chain for {hours:.1} hours: {GAP_REASON}"),
            format!(
                "When:   from {} to {}",
                history.digests[i - 1].json.digest_end_time,
                history.digests[i].json.digest_start_time
            ),
            format!("Digest: s3://{}/{}", sc.bucket, key(i)),
            format!(
                "trailkeeper validate --bucket {} --account {ACCOUNT} --region us-east-1 --trail trailkeeper --start {} --end {} --fail-on-gap",
                sc.bucket,
                history.digests[i - 1].json.digest_end_time,
                history.digests[i].json.digest_end_time,
            ),
        ] {
            assert!(message.contains(&part), "{part}\n{message}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Attack 2: UpdateTrail to a bucket of the attacker's for two hours, then back.

/// Three hours delivered centrally, two to `foreign`, three centrally again: the first digest
/// back names its previous digest in `foreign`.
fn diverted(sc: &Scene, foreign: &str, region: &str, seed: u64) -> (History, History) {
    let mut central = sc.generator(&sc.bucket, region, seed);
    let mut history = central.chain(t0(), 3, None, |_| 1);
    let away = sc.generator(foreign, region, seed + 1).chain(
        t0() + Duration::hours(3),
        2,
        history.digests.last(),
        |_| 1,
    );
    let back = central.chain(t0() + Duration::hours(5), 3, away.digests.last(), |_| 1);
    history.extend(back);
    (history, away)
}

#[tokio::test(flavor = "multi_thread")]
async fn attack_2_a_previous_digest_in_a_readable_foreign_bucket_is_checked_and_named() {
    let sc = Scene::new("diverted").await;
    let foreign = unique_bucket("attacker");
    create_bucket(&sc.s3, &foreign).await;
    let (history, away) = diverted(&sc, &foreign, "us-east-1", 201);
    upload(&sc.s3, &sc.bucket, &history).await;
    upload(&sc.s3, &foreign, &away).await;
    let back = &history.digests[3].object.key;
    let named = &away.digests[1].object.key;

    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.not_valid(), run.stderr);
    let foreign_lines: Vec<&Value> = run
        .lines
        .iter()
        .filter(|l| l["bucket"] == foreign.as_str())
        .collect();
    assert_eq!(
        foreign_lines,
        vec![&json!({
            "type": "digest", "status": "valid", "bucket": foreign, "key": named,
            "account": ACCOUNT, "region": "us-east-1", "trail": "trailkeeper",
            "reason": format!("outside the validated bucket {}: the previous digest of {back}", sc.bucket),
        })]
    );
    assert_eq!(run.summary()["digests"], json!({"valid": 7}));

    // The digest-validator checks the same link, and finds nothing to alert.
    let (deps, topic) = sc.lambda().await;
    let out = invoke(&deps, &sc.bucket, back).await;
    assert_eq!(
        out["digests"][0],
        json!({"key": back, "verdict": "valid", "findings": 0, "gaps": 0})
    );
    assert!(published(&topic).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn attack_2_a_previous_digest_that_cannot_be_read_is_missing_never_incomplete() {
    let sc = Scene::new("diverted-gone").await;
    // us-east-1: the attacker deleted the bucket (NoSuchBucket); eu-west-1: the bucket is there
    // but the digests are gone (NoSuchKey).
    let deleted = unique_bucket("attacker-deleted");
    let emptied = unique_bucket("attacker-emptied");
    create_bucket(&sc.s3, &emptied).await;
    let (east, east_away) = diverted(&sc, &deleted, "us-east-1", 301);
    let (west, west_away) = diverted(&sc, &emptied, "eu-west-1", 311);
    upload(&sc.s3, &sc.bucket, &east).await;
    upload(&sc.s3, &sc.bucket, &west).await;

    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1, "{:?}\n{}", run.not_valid(), run.stderr);
    assert_eq!(run.summary()["errors"], 0, "{}", run.stderr);
    let missing = |h: &History, away: &History, bucket: &str, region: &str, why: &str| {
        json!({
            "type": "digest", "status": "missing", "bucket": bucket,
            "key": away.digests[1].object.key, "account": ACCOUNT, "region": region,
            "trail": "trailkeeper",
            "reason": format!(
                "named as the previous digest by {}; it is outside the validated bucket {} and cannot be read: {why}",
                h.digests[3].object.key, sc.bucket
            ),
            "start": away.digests[1].json.digest_start_time,
            "end": away.digests[1].json.digest_end_time,
        })
    };
    // Regions are validated concurrently: compare in region order.
    let mut named: Vec<&Value> = run
        .lines
        .iter()
        .filter(|l| l["status"] == "missing" && l["key"].is_string())
        .collect();
    named.sort_by_key(|l| l["region"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        named,
        vec![
            &missing(
                &west,
                &west_away,
                &emptied,
                "eu-west-1",
                "NoSuchKey: the object does not exist"
            ),
            &missing(
                &east,
                &east_away,
                &deleted,
                "us-east-1",
                "NoSuchBucket: The specified bucket does not exist (HTTP 404)"
            ),
        ]
    );
    // The hour before it, in the foreign bucket too, is known only by its time.
    assert_eq!(run.summary()["digests"]["missing"], 4);
    assert_eq!(run.summary()["digests"]["valid"], 12);

    // The Lambda judges the digest and alerts; it does not fail into a retry loop.
    let (deps, topic) = sc.lambda().await;
    let back = &east.digests[3].object.key;
    let out = invoke(&deps, &sc.bucket, back).await;
    assert_eq!(
        out["digests"][0],
        json!({"key": back, "verdict": "valid", "findings": 1, "gaps": 0})
    );
    let alerts = published(&topic);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        alerts[0].0,
        format!("trailkeeper: digest missing in account {ACCOUNT} us-east-1")
    );
    for part in [
        format!("Where:  s3://{deleted}/{}", east_away.digests[1].object.key),
        "NoSuchBucket".to_string(),
        format!("outside the validated bucket {}", sc.bucket),
    ] {
        assert!(alerts[0].1.contains(&part), "{part}\n{}", alerts[0].1);
    }
}

// ---------------------------------------------------------------------------------------------
// Attack 3: a forged log file dropped into a log folder.

#[tokio::test(flavor = "multi_thread")]
async fn attack_3_a_log_no_digest_lists_is_unreferenced_unless_too_recent_to_judge() {
    let sc = Scene::new("forged-log").await;
    let mut g = sc.generator(&sc.bucket, "us-east-1", 401);
    let history = g.chain(t0(), 4, None, |_| 2);
    // In the second hour, which an authentic digest covers: a finding.
    let (forged, _) = g.log(t0() + Duration::minutes(80), 3);
    // After the newest digest's end, and before the first digest: not judged.
    let (recent, _) = g.log(t0() + Duration::hours(4) + Duration::minutes(10), 3);
    let (before, _) = g.log(t0() - Duration::minutes(30), 3);
    upload(&sc.s3, &sc.bucket, &history).await;
    for log in [&forged, &recent, &before] {
        put(&sc.s3, &sc.bucket, log).await;
    }

    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1, "{:?}\n{}", run.not_valid(), run.stderr);
    let minute = format_time(
        DateTime::parse_from_rfc3339("2026-04-01T09:24:00Z")
            .unwrap()
            .to_utc(),
    );
    let finding = json!({
        "type": "log", "status": "unreferenced", "bucket": sc.bucket, "key": forged.key,
        "account": ACCOUNT, "region": "us-east-1", "trail": "trailkeeper",
        "reason": format!(
            "no digest lists it, yet {} covers its delivery minute {minute}",
            history.digests[1].object.key
        ),
    });
    assert_eq!(run.not_valid(), vec![&finding]);
    assert_eq!(
        run.summary()["logs"],
        json!({"unreferenced": 1, "valid": 8})
    );
    assert_eq!(run.summary()["findings"], 1);

    // The entry point of a scheduled sweep of the day before: digests read, logs listed, the
    // same finding.
    let config = aws_config().await;
    let engine = Engine::new(
        Store::new(trailkeeper::store::s3_client(&config)),
        KeyRing::new(KeySource::Api(Box::new(CloudTrailKeys::new(&config)))),
        8,
    );
    let dir = RegionDir {
        org_id: None,
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
    };
    let sweep = engine
        .unreferenced_logs(&sc.bucket, None, &dir, t0().date_naive())
        .await;
    assert!(sweep.errors.is_empty(), "{:?}", sweep.errors);
    let found: Vec<Value> = sweep
        .unreferenced
        .iter()
        .map(|v| serde_json::from_str(&v.to_json_line()).unwrap())
        .collect();
    assert_eq!(found, vec![finding]);
}

/// Attack 3, in the Lambda: the digest that spans midnight sweeps the day before for logs no
/// digest lists, so a forged log raises an alert within about an hour of its day's end; the
/// other digests of the day sweep nothing.
#[tokio::test]
async fn attack_3_the_digest_validator_sweeps_the_day_before_for_unreferenced_logs() {
    let sc = Scene::new("forged-log-lambda").await;
    let mut g = sc.generator(&sc.bucket, "eu-west-1", 403);
    // Digests end at 22:04, 23:04, 00:04 and 01:04: the third one's window holds midnight.
    let start = t0() + Duration::hours(13);
    let history = g.chain(start, 4, None, |_| 2);
    let (forged, _) = g.log(start + Duration::minutes(75), 3);
    upload(&sc.s3, &sc.bucket, &history).await;
    put(&sc.s3, &sc.bucket, &forged).await;
    let (deps, topic) = sc.lambda().await;

    // Hours within the day: no sweep.
    for d in &history.digests[..2] {
        invoke(&deps, &sc.bucket, &d.object.key).await;
    }
    assert!(published(&topic).is_empty(), "{:?}", published(&topic));
    let swept = |deps: &Deps<Records>| {
        deps.records
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.get("sweep").is_some())
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(swept(&deps).is_empty());

    let midnight = &history.digests[2];
    invoke(&deps, &sc.bucket, &midnight.object.key).await;
    let sweeps = swept(&deps);
    assert_eq!(sweeps.len(), 1, "{sweeps:?}");
    assert_eq!(sweeps[0]["sweep"], "2026-04-01");
    assert_eq!(sweeps[0]["region"], "eu-west-1");
    let found = sweeps[0]["unreferenced"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["key"], forged.key.as_str());
    assert_eq!(found[0]["status"], "unreferenced");
    let alerts = published(&topic);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        alerts[0].0,
        format!("trailkeeper: log file unreferenced in account {ACCOUNT} eu-west-1")
    );
    assert!(alerts[0].1.contains(&forged.key), "{}", alerts[0].1);
    assert!(
        alerts[0]
            .1
            .contains("--start 2026-04-01T00:00:00Z --end 2026-04-02T00:00:00Z"),
        "{}",
        alerts[0].1
    );
    // The next hour sweeps nothing more.
    invoke(&deps, &sc.bucket, &history.digests[3].object.key).await;
    assert_eq!(swept(&deps).len(), 1);
    assert_eq!(published(&topic).len(), 1);
}
