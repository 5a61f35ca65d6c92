//! `trailkeeper validate` on the emulator: one scenario per verdict of the contract, each
//! produced where it should be and nowhere else.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use trailkeeper::testdata::{Generator, History, TestKey, TrailLayout, gzip};
use trailkeeper_e2e::*;

const ACCOUNT: &str = "111122223333";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T10:05:31Z")
        .unwrap()
        .to_utc()
}

struct Scenario {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: TestKey,
}

impl Scenario {
    async fn new(name: &str) -> Self {
        let s3 = s3().await;
        let bucket = unique_bucket(name);
        create_bucket(&s3, &bucket).await;
        let key = TestKey::generate(t0() - Duration::days(1), t0() + Duration::days(30));
        register_keys(&[&key]);
        Self { s3, bucket, key }
    }

    fn layout(&self, region: &str) -> TrailLayout {
        TrailLayout::new(&self.bucket, ACCOUNT, region)
    }

    fn generator(&self, region: &str, seed: u64) -> Generator<'_> {
        Generator::new(self.layout(region), &self.key, seed)
    }

    async fn upload(&self, history: &History) {
        upload(&self.s3, &self.bucket, history).await;
    }

    async fn validate(&self, extra: &[&str]) -> Run {
        let mut args = vec!["--bucket", self.bucket.as_str()];
        args.extend_from_slice(extra);
        trailkeeper_validate(&args).await
    }
}

/// Every digest and log of `history` is valid except the ones named.
fn assert_only(run: &Run, history: &History, digests: &[(&str, &str)], logs: &[(&str, &str)]) {
    let expected = |all: Vec<&String>, odd: &[(&str, &str)]| -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = all
            .into_iter()
            .map(|k| (k.clone(), "valid".to_string()))
            .collect();
        for (k, s) in odd {
            m.insert(k.to_string(), s.to_string());
        }
        m
    };
    let want_digests = expected(
        history.digests.iter().map(|d| &d.object.key).collect(),
        digests,
    );
    assert_eq!(
        run.statuses("digest"),
        want_digests,
        "digest verdicts\n{}",
        run.stderr
    );
    let mut want_logs = expected(history.logs.iter().map(|l| &l.key).collect(), logs);
    // Logs of a digest that is not authentic are not reported at all.
    want_logs.retain(|_, s| s != "unreported");
    assert_eq!(
        run.statuses("log"),
        want_logs,
        "log verdicts\n{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_multi_day_chain_with_empty_hours_is_valid_everywhere() {
    let sc = Scenario::new("valid").await;
    let history = sc
        .generator("us-east-1", 1)
        .chain(t0(), 30, None, |i| if i % 7 == 3 { 0 } else { 2 });
    sc.upload(&history).await;
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.not_valid(), run.stderr);
    assert_only(&run, &history, &[], &[]);
    assert_eq!(run.summary()["digests"]["valid"], 30);
    assert_eq!(run.summary()["status"], "valid");
    assert!(run.summary()["bytes"].as_u64().unwrap() > 0);
    assert!(run.not_valid().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_log_and_a_deleted_log_are_found() {
    let sc = Scenario::new("logs").await;
    let mut history = sc.generator("us-east-1", 2).chain(t0(), 4, None, |_| 2);
    let tampered = history.logs[1].key.clone();
    history.logs[1].body = gzip(b"{\"Records\":[{\"eventName\":\"Nothing to see here\"}]}");
    let deleted = history.logs[2].key.clone();
    sc.upload(&history).await;
    delete(&sc.s3, &sc.bucket, &deleted).await;
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1);
    assert_only(
        &run,
        &history,
        &[],
        &[(&tampered, "hash_mismatch"), (&deleted, "missing")],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_digest_and_two_consecutive_deleted_digests_are_all_reported() {
    let sc = Scenario::new("deleted").await;
    let history = sc.generator("us-east-1", 3).chain(t0(), 8, None, |_| 1);
    sc.upload(&history).await;
    let key = |i: usize| history.digests[i].object.key.clone();
    for i in [2, 5, 6] {
        delete(&sc.s3, &sc.bucket, &key(i)).await;
    }
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1);
    let mut statuses = run.statuses("digest");
    assert_eq!(statuses.remove(&key(2)).as_deref(), Some("missing"));
    assert_eq!(statuses.remove(&key(6)).as_deref(), Some("missing"));
    assert!(statuses.values().all(|s| s == "valid"), "{statuses:?}");
    assert_eq!(statuses.len(), 5);
    // The first of the two is known only by its hour, which is reported too.
    let unnamed: Vec<_> = run
        .lines
        .iter()
        .filter(|l| l["type"] == "digest" && l["key"].is_null())
        .collect();
    assert_eq!(unnamed.len(), 1, "{unnamed:?}");
    assert_eq!(unnamed[0]["status"], "missing");
    assert_eq!(
        unnamed[0]["start"],
        history.digests[5].json.digest_start_time
    );
    assert_eq!(unnamed[0]["end"], history.digests[5].json.digest_end_time);
    assert_eq!(run.summary()["digests"]["missing"], 3);
    // Their logs are never reported valid by a digest that is gone; the rest are.
    assert_eq!(run.statuses("log").len(), history.logs.len() - 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_digest_and_an_unsigned_digest_vouch_for_nothing() {
    let sc = Scenario::new("edited").await;
    let mut history = sc.generator("us-east-1", 4).chain(t0(), 5, None, |_| 2);
    let edited = history.digests[1].object.key.clone();
    let inflated = trailkeeper::gzip::gunzip_all(&history.digests[1].object.body, 1 << 20).unwrap();
    let text = String::from_utf8(inflated).unwrap();
    let first_hash = &history.digests[1].json.log_files[0].hash_value;
    history.digests[1].object.body = gzip(
        text.replace(first_hash.as_str(), &"0".repeat(64))
            .as_bytes(),
    );
    let unsigned = history.digests[3].object.key.clone();
    history.digests[3].object.metadata.clear();
    sc.upload(&history).await;
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1);
    let unreported: Vec<(String, &str)> = logs_of(&history, 1)
        .into_iter()
        .chain(logs_of(&history, 3))
        .map(|k| (k, "unreported"))
        .collect();
    let unreported: Vec<(&str, &str)> = unreported.iter().map(|(k, s)| (k.as_str(), *s)).collect();
    assert_only(
        &run,
        &history,
        &[(&edited, "invalid_signature"), (&unsigned, "unsigned")],
        &unreported,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_copied_over_another_is_moved() {
    let sc = Scenario::new("moved").await;
    let mut history = sc.generator("us-east-1", 5).chain(t0(), 4, None, |_| 1);
    let target = history.digests[2].object.key.clone();
    history.digests[2].object.body = history.digests[1].object.body.clone();
    history.digests[2].object.metadata = history.digests[1].object.metadata.clone();
    sc.upload(&history).await;
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1);
    let logs: Vec<String> = logs_of(&history, 2);
    assert_only(
        &run,
        &history,
        &[(&target, "moved")],
        &[(&logs[0], "unreported")],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_fingerprint_and_a_key_outside_its_window_are_unknown_keys() {
    let sc = Scenario::new("keys").await;
    let unregistered = TestKey::generate(t0() - Duration::days(1), t0() + Duration::days(30));
    let later = TestKey::generate(t0() + Duration::days(10), t0() + Duration::days(40));
    register_keys(&[&later]);
    let a = Generator::new(sc.layout("us-west-1"), &unregistered, 6).chain(t0(), 2, None, |_| 1);
    let b = Generator::new(sc.layout("eu-west-1"), &later, 7).chain(t0(), 2, None, |_| 1);
    let mut history = a;
    history.extend(b);
    sc.upload(&history).await;
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1);
    let digests: Vec<(String, &str)> = history
        .digests
        .iter()
        .map(|d| (d.object.key.clone(), "unknown_key"))
        .collect();
    let logs: Vec<(String, &str)> = history
        .logs
        .iter()
        .map(|l| (l.key.clone(), "unreported"))
        .collect();
    let digests: Vec<(&str, &str)> = digests.iter().map(|(k, s)| (k.as_str(), *s)).collect();
    let logs: Vec<(&str, &str)> = logs.iter().map(|(k, s)| (k.as_str(), *s)).collect();
    assert_only(&run, &history, &digests, &logs);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spliced_chain_and_a_wrong_previous_hash_are_broken_links() {
    let sc = Scenario::new("spliced").await;
    let mut spliced = sc.generator("us-east-1", 8).chain(t0(), 4, None, |_| 1);
    spliced.reseal_from(2, &sc.key, |j| {
        j.previous_digest_signature = Some("ab".repeat(256))
    });
    let mut rehashed = sc.generator("eu-west-1", 9).chain(t0(), 4, None, |_| 1);
    rehashed.reseal_from(1, &sc.key, |j| {
        j.previous_digest_hash_value = Some("cd".repeat(32))
    });
    let broken = [
        spliced.digests[2].object.key.clone(),
        rehashed.digests[1].object.key.clone(),
    ];
    let mut history = spliced;
    history.extend(rehashed);
    sc.upload(&history).await;
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1);
    assert_only(
        &run,
        &history,
        &[(&broken[0], "chain_broken"), (&broken[1], "chain_broken")],
        &[],
    );
    let reasons: Vec<_> = run
        .lines
        .iter()
        .filter(|l| l["status"] == "chain_broken")
        .map(|l| l["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("previousDigestSignature")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("previousDigestHashValue")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trailing_gzip_data_a_truncated_log_and_a_digest_that_is_not_json_are_malformed() {
    let sc = Scenario::new("malformed").await;
    let mut history = sc.generator("us-east-1", 10).chain(t0(), 4, None, |_| 2);
    let appended = history.logs[0].key.clone();
    let extra = gzip(b"{\"Records\":[{\"eventName\":\"Hidden\"}]}");
    history.logs[0].body.extend(extra);
    let truncated = history.logs[3].key.clone();
    let n = history.logs[3].body.len();
    history.logs[3].body.truncate(n - 9);
    let not_json = history.digests[2].object.key.clone();
    history.digests[2].object.body = gzip(b"<html>this is not a digest</html>");
    sc.upload(&history).await;
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 1);
    let hidden: Vec<String> = logs_of(&history, 2);
    assert_only(
        &run,
        &history,
        &[(&not_json, "malformed")],
        &[
            (&appended, "malformed"),
            (&truncated, "malformed"),
            (&hidden[0], "unreported"),
            (&hidden[1], "unreported"),
        ],
    );
    let reasons: Vec<_> = run
        .lines
        .iter()
        .filter(|l| l["key"] == appended.as_str())
        .map(|l| l["reason"].clone())
        .collect();
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .contains("after the end of the gzip stream"),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legitimate_chain_restart_is_a_gap_not_a_finding() {
    let sc = Scenario::new("restart").await;
    let mut g = sc.generator("us-east-1", 11);
    let mut history = g.chain(t0(), 3, None, |_| 1);
    history.extend(g.chain(t0() + Duration::hours(5), 3, None, |_| 1));
    sc.upload(&history).await;
    let run = sc.validate(&[]).await;
    assert_eq!(run.code, 0, "{:?}", run.not_valid());
    assert_only(&run, &history, &[], &[]);
    let gaps: Vec<_> = run.lines.iter().filter(|l| l["type"] == "gap").collect();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0]["start"], history.digests[2].json.digest_end_time);
    assert_eq!(gaps[0]["end"], history.digests[3].json.digest_start_time);
    assert_eq!(run.summary()["gaps"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn org_trail_layout_backfill_and_two_regions_validate_and_filter() {
    let sc = Scenario::new("org").await;
    let layout = |region: &str| TrailLayout {
        prefix: Some("central/logs".into()),
        org_id: Some("o-a1b2c3d4e5".into()),
        ..sc.layout(region)
    };
    let mut east = Generator::new(layout("us-east-1"), &sc.key, 12);
    let mut history = east.chain(t0(), 3, None, |_| 2);
    history.extend(east.backfill(t0(), t0() + Duration::hours(20), 2));
    history.extend(Generator::new(layout("eu-west-1"), &sc.key, 13).chain(t0(), 3, None, |_| 1));
    sc.upload(&history).await;
    let run = sc.validate(&["--prefix", "central/logs"]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.not_valid(), run.stderr);
    assert_only(&run, &history, &[], &[]);
    assert!(
        run.statuses("digest")
            .keys()
            .any(|k| k.ends_with("_backfill.json.gz"))
    );

    let only_eu = sc
        .validate(&[
            "--prefix",
            "central/logs",
            "--org-id",
            "o-a1b2c3d4e5",
            "--region",
            "eu-west-1",
            "--account",
            ACCOUNT,
        ])
        .await;
    assert_eq!(only_eu.code, 0);
    assert_eq!(only_eu.summary()["digests"]["valid"], 3);
    assert!(
        only_eu
            .statuses("digest")
            .keys()
            .all(|k| k.contains("/eu-west-1/"))
    );
    let other_org = sc
        .validate(&["--prefix", "central/logs", "--org-id", "o-zzzzzzzzzz"])
        .await;
    assert_eq!(other_org.summary()["digests"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_checks_its_first_digest_link_across_its_start() {
    let sc = Scenario::new("window").await;
    let history = sc.generator("us-east-1", 14).chain(t0(), 10, None, |_| 1);
    sc.upload(&history).await;
    let before_window = history.digests[4].object.key.clone();
    delete(&sc.s3, &sc.bucket, &before_window).await;
    let start = history.digests[5].json.digest_end_time.clone();
    let end = history.digests[7].json.digest_start_time.clone();
    let run = sc.validate(&["--start", &start, "--end", &end]).await;
    let statuses = run.statuses("digest");
    assert_eq!(
        statuses.get(&before_window).map(String::as_str),
        Some("missing"),
        "{statuses:?}"
    );
    let in_window: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| *s == "valid")
        .map(|(k, _)| k.clone())
        .collect();
    let want: Vec<String> = (5..=7)
        .map(|i| history.digests[i].object.key.clone())
        .collect();
    assert_eq!(in_window, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_keys_file_replaces_list_public_keys() {
    let sc = Scenario::new("keysfile").await;
    let private = TestKey::generate(t0() - Duration::days(1), t0() + Duration::days(30));
    let history = Generator::new(sc.layout("us-east-1"), &private, 15).chain(t0(), 3, None, |_| 1);
    sc.upload(&history).await;
    // Not served by the emulator: without the file every digest has an unknown key.
    let without = sc.validate(&[]).await;
    assert_eq!(without.summary()["digests"]["unknown_key"], 3);
    let path = std::env::temp_dir().join(format!("{}-keys.json", sc.bucket));
    std::fs::write(
        &path,
        trailkeeper::testdata::list_public_keys_json(&[&private]),
    )
    .unwrap();
    let with = sc
        .validate(&["--public-keys", path.to_str().unwrap()])
        .await;
    assert_eq!(with.code, 0, "{:?}", with.not_valid());
    assert_only(&with, &history, &[], &[]);
}
