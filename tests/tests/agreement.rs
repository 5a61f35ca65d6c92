//! Agreement with the reference peer, `aws cloudtrail validate-logs` (awscli from the test venv),
//! on the same generated history served by the emulator: wherever the AWS CLI gives a verdict on
//! a file, trailkeeper gives the same one; where the AWS CLI misses a finding, trailkeeper has it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration};
use trailkeeper::testdata::{Generator, TestKey, TrailLayout, gzip};
use trailkeeper_e2e::*;

const ACCOUNT: &str = "210987654321";

#[tokio::test(flavor = "multi_thread")]
async fn verdicts_agree_with_aws_cloudtrail_validate_logs_and_go_further() {
    let t0 = DateTime::parse_from_rfc3339("2026-02-03T04:05:06Z")
        .unwrap()
        .to_utc();
    let s3 = s3().await;
    let bucket = unique_bucket("agree");
    create_bucket(&s3, &bucket).await;
    let key = TestKey::generate(t0 - Duration::days(2), t0 + Duration::days(28));
    register_keys(&[&key]);
    let layout = TrailLayout::new(&bucket, ACCOUNT, "us-east-1");
    let mut h = Generator::new(layout, &key, 42).chain(t0, 20, None, |_| 2);
    // Validly signed, wrongly linked: invisible to a checker that does not follow links.
    h.reseal_from(3, &key, |j| {
        j.previous_digest_signature = Some("ab".repeat(256))
    });
    h.reseal_from(7, &key, |j| {
        j.previous_digest_hash_value = Some("cd".repeat(32))
    });
    let digest_keys: Vec<String> = h.digests.iter().map(|d| d.object.key.clone()).collect();
    let log_keys: Vec<Vec<String>> = (0..h.digests.len()).map(|i| logs_of(&h, i)).collect();
    let digest = |i: usize| digest_keys[i].clone();
    let log = |i: usize, j: usize| log_keys[i][j].clone();
    fn log_index(h: &trailkeeper::testdata::History, k: &str) -> usize {
        h.logs.iter().position(|l| l.key == k).unwrap()
    }

    let tampered = log(1, 0);
    let i = log_index(&h, &tampered);
    h.logs[i].body = gzip(b"{\"Records\":[]}");
    let deleted_log = log(2, 1);
    let appended = log(13, 0);
    let i = log_index(&h, &appended);
    h.logs[i]
        .body
        .extend(gzip(b"{\"Records\":[{\"eventName\":\"DeleteTrail\"}]}"));
    let truncated = log(14, 1);
    let i = log_index(&h, &truncated);
    let n = h.logs[i].body.len();
    h.logs[i].body.truncate(n / 2);
    let edited = digest(12);
    let inflated = trailkeeper::gzip::gunzip_all(&h.digests[12].object.body, 1 << 20).unwrap();
    let text = String::from_utf8(inflated)
        .unwrap()
        .replacen("\"SHA-256\"", "\"SHA-256\" ", 1);
    h.digests[12].object.body = gzip(text.as_bytes());
    let unsigned = digest(16);
    h.digests[16].object.metadata.clear();
    let moved = digest(17);
    h.digests[17].object = trailkeeper::testdata::Object {
        key: moved.clone(),
        ..h.digests[15].object.clone()
    };
    upload(&s3, &bucket, &h).await;
    delete(&s3, &bucket, &deleted_log).await;
    for i in [5, 9, 10] {
        delete(&s3, &bucket, &digest(i)).await;
    }

    let ours = trailkeeper_validate(&["--bucket", &bucket]).await;
    let start = (t0 - Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let end = (t0 + Duration::hours(21))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let theirs = awscli_validate_logs(&[
        "--trail-arn",
        &format!("arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/trailkeeper"),
        "--s3-bucket",
        &bucket,
        "--start-time",
        &start,
        "--end-time",
        &end,
        "--region",
        "us-east-1",
    ]);

    let mut ours_by_uri: BTreeMap<String, String> = BTreeMap::new();
    for kind in ["digest", "log"] {
        for (k, s) in ours.statuses(kind) {
            ours_by_uri.insert(format!("s3://{bucket}/{k}"), s);
        }
    }
    // Findings that need the chain checks the AWS CLI does not make.
    let beyond_awscli = [digest(3), digest(7)];
    let mut table = Vec::new();
    for (uri, verdict) in &theirs.files {
        let mine = ours_by_uri
            .get(uri)
            .cloned()
            .unwrap_or_else(|| "(none)".into());
        table.push(format!(
            "{uri}\n    aws-cli: {verdict}\n    trailkeeper: {mine}"
        ));
        if verdict == "valid" {
            let key = uri
                .trim_start_matches(&format!("s3://{bucket}/"))
                .to_string();
            if beyond_awscli.contains(&key) {
                assert_eq!(mine, "chain_broken", "{uri}");
            } else {
                assert_eq!(
                    mine, "valid",
                    "{uri}: aws-cli says valid\n{}",
                    theirs.output
                );
            }
        } else {
            assert!(verdict.starts_with("INVALID"), "{uri}: {verdict}");
            assert!(
                mine != "valid" && mine != "(none)",
                "{uri}: aws-cli says {verdict}, trailkeeper {mine}"
            );
        }
    }
    println!("{}", table.join("\n"));

    // The comparison covers every kind of damage the AWS CLI can see.
    let awscli_invalid: Vec<_> = theirs
        .files
        .iter()
        .filter(|(_, v)| v.starts_with("INVALID"))
        .collect();
    let uri = |k: &str| format!("s3://{bucket}/{k}");
    for k in [
        &tampered,
        &deleted_log,
        &appended,
        &truncated,
        &edited,
        &unsigned,
        &moved,
        &digest(5),
        &digest(10),
    ] {
        assert!(
            theirs
                .files
                .get(&uri(k))
                .is_some_and(|v| v.starts_with("INVALID")),
            "aws-cli on {k}:\n{}",
            theirs.output
        );
    }
    assert_eq!(awscli_invalid.len(), 9, "{awscli_invalid:?}");
    assert_eq!(theirs.code, 1);
    assert_eq!(ours.code, 1);

    // And what it misses: the broken links, and the first of two consecutive deleted digests.
    assert!(!theirs.files.contains_key(&uri(&digest(9))));
    assert_eq!(
        ours.statuses("digest").get(&digest(3)).map(String::as_str),
        Some("chain_broken")
    );
    assert_eq!(
        ours.statuses("digest").get(&digest(7)).map(String::as_str),
        Some("chain_broken")
    );
    let unnamed: Vec<_> = ours
        .lines
        .iter()
        .filter(|l| l["status"] == "missing" && l["key"].is_null())
        .collect();
    assert_eq!(unnamed.len(), 1);
    assert_eq!(unnamed[0]["start"], h.digests[9].json.digest_start_time);
}
