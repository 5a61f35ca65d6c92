//! Hostile input (issue 7): each case the unit tests in shared/src do not already cover, with
//! the outcome an operator wants: a finding or an error that names the field, key, bucket or
//! account; no panic; no widened access; nothing dropped.
//!
//! Covered elsewhere, not repeated here:
//! - events: wrong shapes, missing fields, `*`, quotes and full-width digits in a direct
//!   invocation, bidi controls, `requestParameters: "None"` (shared/src/events.rs tests);
//! - policies: `Principal: "*"` reported and not copied, duplicate Sids, conditions as a string
//!   and as a list (shared/src/policy.rs tests);
//! - digests: 10,000-level nesting in `DigestFile::parse`, gzip bombs in `gunzip_all`, and
//!   `AWSLogs/B/AWSLogs/A/...` refused by `DigestKey::parse` (shared/src/digest, gzip.rs tests).

use std::io::Write;
use std::sync::Arc;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};
use trailkeeper::digest::file::LogFileEntry;
use trailkeeper::digest::key::DigestKey;
use trailkeeper::events::{
    AccountEvent, CONTROL_TOWER_SOURCE, EventError, ORGANIZATIONS_SOURCE, Onboarding,
    SERVICE_EVENT_DETAIL_TYPE,
};
use trailkeeper::keys::{KeyRing, KeySource};
use trailkeeper::policy::{
    BUCKET_POLICY_LIMIT_BYTES, BucketName, BucketPolicy, Grant, LogDestination, OrgId, PolicyEdit,
    PolicyError, TrailArn,
};
use trailkeeper::report::{DigestStatus, LogStatus, Status};
use trailkeeper::store::{ObjectRef, Store};
use trailkeeper::validate::{Engine, Limits, META_SIGNATURE, META_SIGNATURE_ALGORITHM, Relocation};

// ---- digests --------------------------------------------------------------------------------

const BUCKET: &str = "central-logs";
const ACCOUNT: &str = "111122223333";
const KEY: &str = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/05/01/111122223333_CloudTrail-Digest_us-east-1_trailkeeper_us-east-1_20260501T000102Z.json.gz";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A digest's JSON as CloudTrail writes it, with the fields under test set by the caller.
fn digest_json(account: &str, bucket: &str, object: &str, log_files: &str) -> String {
    format!(
        r#"{{"awsAccountId":"{account}","digestStartTime":"2026-04-30T23:01:02Z","digestEndTime":"2026-05-01T00:01:02Z","digestS3Bucket":"{bucket}","digestS3Object":"{object}","digestPublicKeyFingerprint":"31e8b5433410dfb61a9dc45cc65b22ff","digestSignatureAlgorithm":"SHA256withRSA","newestEventTime":null,"oldestEventTime":null,"previousDigestS3Bucket":null,"previousDigestS3Object":null,"previousDigestHashValue":null,"previousDigestHashAlgorithm":null,"previousDigestSignature":null,"logFiles":{log_files}}}"#
    )
}

/// Serves `body` as the object `key`, with signature metadata (a signature nobody can verify:
/// every case here must be decided before, or without, a signature check).
fn serve(key: &str, body: Vec<u8>) -> Rule {
    let key = key.to_string();
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(move |r| r.key() == Some(key.as_str()))
        .then_output(move || {
            GetObjectOutput::builder()
                .content_length(body.len() as i64)
                .body(ByteStream::from(body.clone()))
                .metadata(META_SIGNATURE, "00ff".repeat(128))
                .metadata(META_SIGNATURE_ALGORITHM, "SHA256withRSA")
                .build()
        })
}

/// Any read of an object other than `key`: counted, so a test can show nothing else was read.
fn any_other(key: &str) -> Rule {
    let key = key.to_string();
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(move |r| r.key() != Some(key.as_str()))
        .then_output(|| {
            GetObjectOutput::builder()
                .content_length(0)
                .body(ByteStream::from_static(b""))
                .build()
        })
}

fn engine(rules: &[&Rule], limits: Limits) -> Engine {
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules);
    Engine::with(
        Store::new(client),
        // No key at all: nothing here may depend on one.
        KeyRing::new(KeySource::Fixed(Vec::<Arc<_>>::new())),
        2,
        None::<Relocation>,
        limits,
    )
}

async fn check(body: Vec<u8>, limits: Limits) -> (DigestStatus, String, usize) {
    let digest = serve(KEY, body);
    let e = engine(&[&digest], limits);
    let c = e
        .check_digest(
            &ObjectRef::new(BUCKET, KEY),
            &DigestKey::parse(KEY).unwrap(),
        )
        .await
        .unwrap();
    (c.status, c.reason.unwrap_or_default(), c.logs.len())
}

#[tokio::test]
async fn a_digest_that_claims_another_bucket_is_moved_and_names_it() {
    let json = digest_json(ACCOUNT, "attacker-bucket", KEY, "[]");
    let (status, reason, logs) = check(gz(json.as_bytes()), Limits::default()).await;
    assert_eq!(status, DigestStatus::Moved, "{reason}");
    assert!(
        reason.contains(&format!("s3://attacker-bucket/{KEY}")),
        "{reason}"
    );
    assert_eq!(logs, 0, "a moved digest vouches for nothing");
}

#[tokio::test]
async fn a_digest_whose_account_differs_from_its_keys_is_malformed_naming_both() {
    let json = digest_json("444455556666", BUCKET, KEY, "[]");
    let (status, reason, logs) = check(gz(json.as_bytes()), Limits::default()).await;
    assert_eq!(status, DigestStatus::Malformed, "{reason}");
    assert!(
        reason.contains("awsAccountId 444455556666") && reason.contains(ACCOUNT),
        "{reason}"
    );
    assert_eq!(logs, 0);
}

#[test]
fn a_key_nested_under_another_accounts_tree_is_nobodys_digest() {
    // B = 444455556666 holds a path that looks like A's tree: it is not A's digest, and the
    // error names the whole key.
    for key in [
        "AWSLogs/444455556666/AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20260501T000102Z.json.gz",
        "AWSLogs/o-aa111bb222/444455556666/AWSLogs/o-aa111bb222/111122223333/CloudTrail-Digest/us-east-1/2026/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20260501T000102Z.json.gz",
        "AWSLogs/444455556666/CloudTrail-Digest/us-east-1/AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20260501T000102Z.json.gz",
    ] {
        let err = DigestKey::parse(key).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
    // The same file one level up, in A's own tree, is A's.
    let own = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20260501T000102Z.json.gz";
    assert_eq!(DigestKey::parse(own).unwrap().account, "111122223333");
}

#[tokio::test]
async fn a_digest_gzip_bomb_is_malformed_at_the_default_bound() {
    // 100 MiB of JSON-looking padding in ~100 KB: over the 64 MiB inflated-digest bound.
    let limits = Limits::default();
    let mut inflated = br#"{"logFiles":["#.to_vec();
    inflated.resize(100 << 20, b' ');
    let bomb = gz(&inflated);
    drop(inflated);
    assert!(bomb.len() < 200 << 10, "{}", bomb.len());
    let (status, reason, _) = check(bomb, limits).await;
    assert_eq!(status, DigestStatus::Malformed, "{reason}");
    assert!(
        reason.contains(&limits.digest_inflated.to_string()),
        "{reason}"
    );
}

#[tokio::test]
async fn a_digest_over_the_compressed_bound_is_malformed_without_being_read() {
    let limits = Limits {
        digest_compressed: 1024,
        ..Limits::default()
    };
    let body = gz(digest_json(ACCOUNT, BUCKET, KEY, "[]")
        .repeat(200)
        .as_bytes());
    assert!(body.len() > 1024);
    let (status, reason, _) = check(body, limits).await;
    assert_eq!(status, DigestStatus::Malformed, "{reason}");
    assert!(reason.contains("1024-byte digest limit"), "{reason}");
}

#[tokio::test]
async fn ten_thousand_levels_of_nesting_are_malformed_not_a_crash() {
    for nested in [
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        digest_json(
            ACCOUNT,
            BUCKET,
            KEY,
            &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
        digest_json(
            ACCOUNT,
            BUCKET,
            KEY,
            &format!("[{}{}]", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)),
        ),
    ] {
        let (status, reason, _) = check(gz(nested.as_bytes()), Limits::default()).await;
        assert_eq!(status, DigestStatus::Malformed, "{reason}");
        assert!(reason.contains("not valid digest JSON"), "{reason}");
    }
}

#[tokio::test]
async fn a_huge_log_files_array_in_an_unverified_digest_reads_no_log() {
    // 100,000 entries (~19 MB inflated, under the 64 MiB bound): parsed, but the digest does
    // not verify (no key), so none of its logs is fetched or reported.
    let entry = |i: usize| {
        format!(
            r#"{{"s3Bucket":"{BUCKET}","s3Object":"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/05/01/{ACCOUNT}_CloudTrail_us-east-1_20260501T0000Z_{i:016}.json.gz","hashValue":"{:064}","hashAlgorithm":"SHA-256"}}"#,
            0
        )
    };
    let logs = format!(
        "[{}]",
        (0..100_000).map(entry).collect::<Vec<_>>().join(",")
    );
    let json = digest_json(ACCOUNT, BUCKET, KEY, &logs);
    assert!(json.len() > 15_000_000 && json.len() < (64 << 20));
    let (digest, others) = (serve(KEY, gz(json.as_bytes())), any_other(KEY));
    let e = engine(&[&digest, &others], Limits::default());
    let loc = ObjectRef::new(BUCKET, KEY);
    let report = e
        .validate_digest(&loc, &DigestKey::parse(KEY).unwrap())
        .await
        .unwrap();
    let verdict = report.digest.unwrap();
    assert_eq!(verdict.status, Status::Digest(DigestStatus::UnknownKey));
    assert!(report.logs.is_empty());
    assert_eq!(
        others.num_calls(),
        0,
        "a log of an unverified digest was read"
    );
}

#[tokio::test]
async fn a_log_gzip_bomb_is_malformed_naming_the_log() {
    let limits = Limits {
        log_inflated: 8 << 20,
        ..Limits::default()
    };
    let log_key = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/05/01/{ACCOUNT}_CloudTrail_us-east-1_20260501T0000Z_bomb.json.gz"
    );
    let bomb = gz(&vec![b'{'; 64 << 20]);
    let log = serve(&log_key, bomb);
    let e = engine(&[&log], limits);
    let c = e
        .check_log(&LogFileEntry {
            s3_bucket: BUCKET.into(),
            s3_object: log_key.clone(),
            hash_value: "0".repeat(64),
            hash_algorithm: Some("SHA-256".into()),
            newest_event_time: None,
            oldest_event_time: None,
        })
        .await
        .unwrap();
    assert_eq!(c.status, LogStatus::Malformed);
    assert_eq!(c.location, ObjectRef::new(BUCKET, &log_key));
    let reason = c.reason.unwrap();
    assert!(reason.contains(&(8u64 << 20).to_string()), "{reason}");
}

// ---- policies -------------------------------------------------------------------------------

fn dest() -> LogDestination {
    LogDestination::new(BucketName::new(BUCKET).unwrap(), None)
}

fn trail(account: &str) -> Grant {
    Grant::Trail(
        TrailArn::parse(&format!(
            "arn:aws:cloudtrail:us-east-1:{account}:trail/trailkeeper"
        ))
        .unwrap(),
    )
}

/// A policy of exactly `bytes` bytes: the TLS-only statement, optionally trailkeeper's own for
/// one account, and a foreign read grant whose principal list pads it out.
fn policy_of(bytes: usize, admitted: Option<&str>) -> BucketPolicy {
    let mut p = BucketPolicy::parse(
        &json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AllowSSLRequestsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [format!("arn:aws:s3:::{BUCKET}"), format!("arn:aws:s3:::{BUCKET}/*")],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})
        .to_string(),
    )
    .unwrap();
    if let Some(a) = admitted {
        p = match p.admit(&dest(), &trail(a)).unwrap() {
            PolicyEdit::Changed { policy, .. } => policy,
            PolicyEdit::Unchanged => unreachable!(),
        };
    }
    let mut v = p.to_value();
    let reader = json!({"Sid": "Readers", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999988887777:role/Reader"},
        "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{BUCKET}/*"),
        "Condition": {"StringEquals": {"aws:PrincipalTag/team": ""}}});
    v["Statement"].as_array_mut().unwrap().insert(1, reader);
    let short = v.to_string().len();
    assert!(short < bytes);
    v["Statement"][1]["Condition"]["StringEquals"]["aws:PrincipalTag/team"] =
        Value::String("x".repeat(bytes - short));
    let p = BucketPolicy::parse(&v.to_string()).unwrap();
    assert_eq!(p.len_bytes(), bytes);
    p
}

#[test]
fn a_policy_at_19_9_kb_is_not_written_and_loses_nothing() {
    let bytes = 20_377; // 19.9 KiB of the 20 KiB (20,480-byte) limit.
    let p = policy_of(bytes, Some("111111111111"));
    // The account it admits already: nothing to write.
    assert_eq!(
        p.admit(&dest(), &trail("111111111111")).unwrap(),
        PolicyEdit::Unchanged
    );
    // A new account does not fit: refused, naming the account, the limit and the way out.
    // Foreign statements fill this policy, so organization mode would not fit either: the way
    // out says to make room first (it used to say only "switch to organization mode").
    let err = p.admit(&dest(), &trail("222222222222")).unwrap_err();
    assert!(
        matches!(err, PolicyError::TooLarge { limit, current, .. }
            if limit == BUCKET_POLICY_LIMIT_BYTES && current == bytes),
        "{err:?}"
    );
    let message = err.to_string();
    for needle in [
        "222222222222",
        "20480",
        "nothing was written",
        "nothing was dropped",
        "remove statements that are no longer needed, then set TRAILKEEPER_POLICY_MODE=organization",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // Organization mode does not fit either: the way out is to make room first.
    let org = OrgId::new("o-aa111bb222").unwrap();
    let err = p.admit(&dest(), &Grant::Organization(org)).unwrap_err();
    assert!(err.to_string().contains("Make room first"), "{err}");
    // Still readable and complete: the admitted account and the foreign statement are there.
    assert_eq!(
        p.admitted_accounts(&dest()).unwrap()[0].as_str(),
        "111111111111"
    );
    assert_eq!(p.foreign_statements().len(), 2);
}

#[test]
fn a_policy_just_under_the_limit_admits_up_to_the_last_byte() {
    // Room for exactly one more account (and the organization reserve): admitted, at most
    // 20,480 bytes, with every earlier statement kept.
    let probe = policy_of(2_000, None);
    let grown = match probe.admit(&dest(), &trail("222222222222")).unwrap() {
        PolicyEdit::Changed { bytes, .. } => bytes,
        PolicyEdit::Unchanged => unreachable!(),
    };
    let added = grown - 2_000;
    let mut fits = None;
    for size in (18_000..=BUCKET_POLICY_LIMIT_BYTES - added)
        .rev()
        .step_by(7)
    {
        if let Ok(PolicyEdit::Changed { policy, bytes }) =
            policy_of(size, None).admit(&dest(), &trail("222222222222"))
        {
            fits = Some((size, policy, bytes));
            break;
        }
    }
    let (size, policy, bytes) = fits.expect("some size near the limit fits one more account");
    assert!(size > 19_000, "{size}");
    // Seven bytes more (the size tried before) and the same account is refused, with the
    // organization way out (the reserve still holds), and nothing written.
    match policy_of(size + 7, None).admit(&dest(), &trail("222222222222")) {
        Err(e @ PolicyError::TooLarge { .. }) => assert!(
            e.to_string()
                .contains("Set TRAILKEEPER_POLICY_MODE=organization"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(bytes <= BUCKET_POLICY_LIMIT_BYTES);
    assert_eq!(policy.foreign_statements().len(), 2);
    assert!(policy.admits(&dest(), &trail("222222222222")).unwrap());
}

// ---- events ---------------------------------------------------------------------------------

fn envelope(source: &str, detail: Value) -> Value {
    json!({"version": "0", "id": "6f87d04b-9f74-4f04-a780-7acf4b0a9b38",
           "detail-type": SERVICE_EVENT_DETAIL_TYPE, "source": source,
           "account": "123456789012", "time": "2026-05-01T00:00:00Z", "region": "us-east-1",
           "resources": [], "detail": detail})
}

/// The three accepted inputs, each with `id` where it carries the account, and that path.
fn carriers(id: Value) -> Vec<(Value, &'static str)> {
    vec![
        (json!({"accountId": id}), "accountId"),
        (
            envelope(
                ORGANIZATIONS_SOURCE,
                json!({"eventName": "CreateAccountResult", "requestParameters": "None",
                   "serviceEventDetails": {"createAccountStatus": {"state": "SUCCEEDED", "accountId": id}}}),
            ),
            "detail.serviceEventDetails.createAccountStatus.accountId",
        ),
        (
            envelope(
                CONTROL_TOWER_SOURCE,
                json!({"eventName": "CreateManagedAccount", "requestParameters": "None",
                   "serviceEventDetails": {"createManagedAccountStatus": {"state": "SUCCEEDED",
                     "account": {"accountName": "x", "accountId": id}}}}),
            ),
            "detail.serviceEventDetails.createManagedAccountStatus.account.accountId",
        ),
        (
            envelope(
                CONTROL_TOWER_SOURCE,
                json!({"eventName": "UpdateManagedAccount", "requestParameters": "None",
                   "serviceEventDetails": {"updateManagedAccountStatus": {"state": "SUCCEEDED",
                     "account": {"accountName": "x", "accountId": id}}}}),
            ),
            "detail.serviceEventDetails.updateManagedAccountStatus.account.accountId",
        ),
    ]
}

#[test]
fn hostile_account_ids_are_refused_in_every_accepted_event_naming_the_field() {
    for id in [
        json!("*"),
        json!("12345678901*"),
        json!("1234567890\"2"),
        json!("{\"accountId\":\"123456789012\"}"),
        json!("１２３４５６７８９０１２"),
        json!("12345678901٣"),
        json!("123456789012\n"),
        json!(" 123456789012"),
        json!("\u{202e}210987654321"),
        json!("12345678901"),
        json!("1234567890123"),
        json!(""),
        json!(123456789012u64),
        json!(null),
        json!(["123456789012"]),
        json!({"accountId": "123456789012"}),
        json!("x".repeat(100_000)),
    ] {
        for (event, path) in carriers(id.clone()) {
            match AccountEvent::parse(&event) {
                Err(e @ EventError::Malformed { .. }) => {
                    let message = e.to_string();
                    assert!(
                        matches!(&e, EventError::Malformed { path: p, .. } if p == path),
                        "{id}: {message}"
                    );
                    assert!(
                        !message.chars().any(char::is_control) && !message.contains('\u{202e}'),
                        "{message:?}"
                    );
                    assert!(message.len() < 600, "{} bytes: {message}", message.len());
                }
                other => panic!("{id} at {path}: {other:?}"),
            }
        }
    }
    // The same events with a real id onboard that account and only it.
    for (event, _) in carriers(json!("012345678901")) {
        match AccountEvent::parse(&event) {
            Ok(Onboarding::Account { account, .. }) => assert_eq!(account.as_str(), "012345678901"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn control_tower_none_strings_where_objects_belong_name_the_field() {
    // Real captures carry `"requestParameters": "None"`; the same in the member we read is
    // malformed, and says where.
    let event = envelope(
        CONTROL_TOWER_SOURCE,
        json!({"eventName": "CreateManagedAccount", "requestParameters": "None",
               "responseElements": "None", "serviceEventDetails": "None"}),
    );
    match AccountEvent::parse(&event) {
        Err(EventError::Malformed { path, .. }) => assert_eq!(path, "detail.serviceEventDetails"),
        other => panic!("{other:?}"),
    }
    let event = envelope(
        CONTROL_TOWER_SOURCE,
        json!({"eventName": "UpdateManagedAccount", "requestParameters": "None",
               "serviceEventDetails": {"updateManagedAccountStatus": {"state": "SUCCEEDED", "account": "None"}}}),
    );
    match AccountEvent::parse(&event) {
        Err(EventError::Malformed { path, .. }) => assert_eq!(
            path,
            "detail.serviceEventDetails.updateManagedAccountStatus.account"
        ),
        other => panic!("{other:?}"),
    }
}
