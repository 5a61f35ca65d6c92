//! Signed CloudTrail history for tests, the demo and the benchmarks: log files and digests as
//! CloudTrail writes them, signed with test keys made on the spot. Nothing here is checked in.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::io::Write;

use crate::digest::file::{DigestFile, LogFileEntry, format_time};
use crate::digest::key::{DigestKey, log_key};
use crate::digest::signature::{SIGNATURE_ALGORITHM, string_to_sign};
use crate::gzip::sha256;
use crate::keys::{PublicKey, fingerprint_of};
use crate::validate::{META_BACKFILL_GENERATED, META_SIGNATURE, META_SIGNATURE_ALGORITHM};

/// An RSA key pair standing in for one of CloudTrail's signing keys.
pub struct TestKey {
    pair: RsaKeyPair,
    pub fingerprint: String,
    /// PKCS#1 `RSAPublicKey`, as `ListPublicKeys` returns it.
    pub der: Vec<u8>,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
}

impl TestKey {
    pub fn generate(valid_from: DateTime<Utc>, valid_until: DateTime<Utc>) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let der = pair.public_key().as_ref().to_vec();
        Self {
            fingerprint: fingerprint_of(&der),
            pair,
            der,
            valid_from,
            valid_until,
        }
    }

    /// The same key in X.509 SubjectPublicKeyInfo form, which AWS has also published.
    pub fn spki_der(&self) -> Vec<u8> {
        self.pair
            .public_key()
            .as_der()
            .expect("SPKI encoding")
            .as_ref()
            .to_vec()
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .expect("RSA signing");
        sig
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_der(
            self.der.clone(),
            self.valid_from,
            self.valid_until,
            Some(&self.fingerprint),
        )
        .expect("own key parses")
    }

    /// One entry of `aws cloudtrail list-public-keys` output.
    pub fn list_entry(&self) -> serde_json::Value {
        serde_json::json!({
            "Value": base64::engine::general_purpose::STANDARD.encode(&self.der),
            "ValidityStartTime": self.valid_from.timestamp(),
            "ValidityEndTime": self.valid_until.timestamp(),
            "Fingerprint": self.fingerprint,
        })
    }
}

/// `aws cloudtrail list-public-keys` output for these keys.
pub fn list_public_keys_json(keys: &[&TestKey]) -> String {
    serde_json::json!({ "PublicKeyList": keys.iter().map(|k| k.list_entry()).collect::<Vec<_>>() })
        .to_string()
}

/// An object as CloudTrail stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub body: Vec<u8>,
    pub metadata: Vec<(String, String)>,
}

/// A digest's JSON, fields in the order CloudTrail writes them; absent values are `null`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestJson {
    pub aws_account_id: String,
    pub digest_start_time: String,
    pub digest_end_time: String,
    #[serde(rename = "digestS3Bucket")]
    pub digest_s3_bucket: String,
    #[serde(rename = "digestS3Object")]
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    pub digest_signature_algorithm: String,
    pub newest_event_time: Option<String>,
    pub oldest_event_time: Option<String>,
    #[serde(rename = "previousDigestS3Bucket")]
    pub previous_digest_s3_bucket: Option<String>,
    #[serde(rename = "previousDigestS3Object")]
    pub previous_digest_s3_object: Option<String>,
    pub previous_digest_hash_value: Option<String>,
    pub previous_digest_hash_algorithm: Option<String>,
    pub previous_digest_signature: Option<String>,
    pub log_files: Vec<LogFileEntry>,
}

/// A digest as generated: the object, and what the next digest must say about it.
#[derive(Debug, Clone)]
pub struct GeneratedDigest {
    pub object: Object,
    pub json: DigestJson,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub signature_hex: String,
    pub sha256_hex: String,
}

/// Logs and digests of one trail in one region.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub digests: Vec<GeneratedDigest>,
    pub logs: Vec<Object>,
}

impl History {
    pub fn extend(&mut self, other: History) {
        self.digests.extend(other.digests);
        self.logs.extend(other.logs);
    }

    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.logs
            .iter()
            .chain(self.digests.iter().map(|d| &d.object))
    }

    /// Edits standard digest `index` and signs it again, then re-links and re-signs the digests
    /// after it: the chain stays authentic everywhere except where the edit itself breaks it.
    pub fn reseal_from(&mut self, index: usize, key: &TestKey, edit: impl FnOnce(&mut DigestJson)) {
        let mut json = self.digests[index].json.clone();
        edit(&mut json);
        self.digests[index] = seal(&json, key, None);
        for i in index + 1..self.digests.len() {
            let mut json = self.digests[i].json.clone();
            if json.previous_digest_signature.is_some() {
                let prev = &self.digests[i - 1];
                json.previous_digest_signature = Some(prev.signature_hex.clone());
                json.previous_digest_hash_value = Some(prev.sha256_hex.clone());
            }
            self.digests[i] = seal(&json, key, None);
        }
    }
}

/// Where a trail delivers.
#[derive(Debug, Clone)]
pub struct TrailLayout {
    pub bucket: String,
    pub prefix: Option<String>,
    pub org_id: Option<String>,
    pub account: String,
    pub region: String,
    pub trail: String,
    pub home_region: String,
}

impl TrailLayout {
    /// trailkeeper's default trail, homed in us-east-1, with no prefix, outside an organization.
    pub fn new(bucket: &str, account: &str, region: &str) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: None,
            org_id: None,
            account: account.into(),
            region: region.into(),
            trail: "trailkeeper".into(),
            home_region: "us-east-1".into(),
        }
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("in-memory gzip");
    e.finish().expect("in-memory gzip")
}

/// Signs a digest as CloudTrail does, and stores it under the key its JSON names.
pub fn seal(
    json: &DigestJson,
    key: &TestKey,
    backfill_generated: Option<DateTime<Utc>>,
) -> GeneratedDigest {
    let bytes = serde_json::to_vec(json).expect("digest JSON");
    let sha = sha256(&bytes);
    let file = DigestFile::parse(&bytes).expect("generated digest parses");
    let signature_hex = hex::encode(key.sign(string_to_sign(&file, &sha).as_bytes()));
    let mut metadata = vec![
        (META_SIGNATURE.to_string(), signature_hex.clone()),
        (
            META_SIGNATURE_ALGORITHM.to_string(),
            SIGNATURE_ALGORITHM.to_string(),
        ),
    ];
    if let Some(t) = backfill_generated {
        metadata.push((META_BACKFILL_GENERATED.to_string(), format_time(t)));
    }
    let parse =
        |s: &str| crate::digest::file::parse_time("digest time", s).expect("generated time");
    GeneratedDigest {
        object: Object {
            key: json.digest_s3_object.clone(),
            body: gzip(&bytes),
            metadata,
        },
        start: parse(&json.digest_start_time),
        end: parse(&json.digest_end_time),
        json: json.clone(),
        signature_hex,
        sha256_hex: hex::encode(sha),
    }
}

/// Deterministic filler for log content (splitmix64); not for anything secret.
struct Filler(u64);

impl Filler {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }

    fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// How many events each generated log file holds (about 760 bytes of JSON each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSize {
    /// The same number in every file.
    Events(usize),
    /// CloudTrail's spread, for benchmarks: most files hold a handful of events (about 1 KB
    /// gzipped), some a few hundred, and one in fifty thousands (a few MB gzipped). Log-uniform
    /// over 1..=1,000 events for 98% of files, over 1,000..=10,000 for the rest; the mean is
    /// about 220 events. Deterministic in the generator's seed.
    Realistic,
}

/// Makes signed history for one trail in one region.
pub struct Generator<'k> {
    pub layout: TrailLayout,
    key: &'k TestKey,
    filler: Filler,
    pub log_size: LogSize,
}

impl<'k> Generator<'k> {
    pub fn new(layout: TrailLayout, key: &'k TestKey, seed: u64) -> Self {
        Self {
            layout,
            key,
            filler: Filler(seed),
            log_size: LogSize::Events(3),
        }
    }

    fn events_per_log(&mut self) -> usize {
        match self.log_size {
            LogSize::Events(n) => n,
            LogSize::Realistic => {
                let (low, high) = if self.filler.next().is_multiple_of(50) {
                    (1_000f64, 10_000f64)
                } else {
                    (1f64, 1_000f64)
                };
                let u = self.filler.next() as f64 / u64::MAX as f64;
                (low * (high / low).powf(u)).round() as usize
            }
        }
    }

    fn event(&mut self, time: DateTime<Utc>) -> serde_json::Value {
        let l = &self.layout;
        let f = &mut self.filler;
        let (source, name) = *[
            ("s3.amazonaws.com", "GetBucketAcl"),
            ("ec2.amazonaws.com", "DescribeInstances"),
            ("iam.amazonaws.com", "ListRoles"),
            ("sts.amazonaws.com", "AssumeRole"),
            ("kms.amazonaws.com", "Decrypt"),
        ]
        .get((f.next() % 5) as usize)
        .expect("in range");
        let session = f.token(12);
        serde_json::json!({
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "AssumedRole",
                "principalId": format!("AROA{}:{session}", f.token(16)),
                "arn": format!("arn:aws:sts::{}:assumed-role/{}/{session}", l.account, f.pick(&["Admin", "Deployer", "ReadOnly"])),
                "accountId": l.account,
                "accessKeyId": format!("ASIA{}", f.token(16)),
            },
            "eventTime": format_time(time),
            "eventSource": source,
            "eventName": name,
            "awsRegion": l.region,
            "sourceIPAddress": format!("203.0.113.{}", f.next() % 250),
            "userAgent": f.pick(&["aws-cli/2.31.1 md/awscrt#0.27.6", "Boto3/1.40.1 md/Botocore#1.40.1", "console.amazonaws.com"]),
            "requestParameters": {"maxResults": f.next() % 1000, "filter": f.token(24)},
            "responseElements": null,
            "requestID": f.token(32),
            "eventID": format!("{}-{}-{}-{}", f.token(8), f.token(4), f.token(4), f.token(12)),
            "readOnly": true,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": l.account,
            "eventCategory": "Management",
        })
    }

    /// One log file with `events` records around `time`.
    pub fn log(&mut self, time: DateTime<Utc>, events: usize) -> (Object, LogFileEntry) {
        let records: Vec<_> = (0..events)
            .map(|i| self.event(time + Duration::seconds(i as i64 % 300)))
            .collect();
        let raw = serde_json::to_vec(&serde_json::json!({ "Records": records })).expect("log JSON");
        let l = &self.layout;
        let key = log_key(
            l.prefix.as_deref(),
            l.org_id.as_deref(),
            &l.account,
            &l.region,
            time,
            &self.filler.token(16),
        );
        let entry = LogFileEntry {
            s3_bucket: l.bucket.clone(),
            s3_object: key.clone(),
            hash_value: hex::encode(sha256(&raw)),
            hash_algorithm: Some("SHA-256".into()),
            newest_event_time: Some(format_time(
                time + Duration::seconds((events.max(1) as i64 - 1) % 300),
            )),
            oldest_event_time: Some(format_time(time)),
        };
        (
            Object {
                key,
                body: gzip(&raw),
                metadata: Vec::new(),
            },
            entry,
        )
    }

    fn digest_json(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        backfill: bool,
        previous: Option<&GeneratedDigest>,
        log_files: Vec<LogFileEntry>,
    ) -> DigestJson {
        let l = &self.layout;
        let key = DigestKey {
            prefix: l.prefix.clone(),
            org_id: l.org_id.clone(),
            account: l.account.clone(),
            region: l.region.clone(),
            trail: l.trail.clone(),
            home_region: l.home_region.clone(),
            end_time: end,
            backfill,
        };
        DigestJson {
            aws_account_id: l.account.clone(),
            digest_start_time: format_time(start),
            digest_end_time: format_time(end),
            digest_s3_bucket: l.bucket.clone(),
            digest_s3_object: key.to_key(),
            digest_public_key_fingerprint: self.key.fingerprint.clone(),
            digest_signature_algorithm: SIGNATURE_ALGORITHM.into(),
            newest_event_time: log_files
                .iter()
                .filter_map(|f| f.newest_event_time.clone())
                .max(),
            oldest_event_time: log_files
                .iter()
                .filter_map(|f| f.oldest_event_time.clone())
                .min(),
            // The previous digest's own bucket: a trail pointed elsewhere for a while links across.
            previous_digest_s3_bucket: previous.map(|p| p.json.digest_s3_bucket.clone()),
            previous_digest_s3_object: previous.map(|p| p.object.key.clone()),
            previous_digest_hash_value: previous.map(|p| p.sha256_hex.clone()),
            previous_digest_hash_algorithm: previous.map(|_| "SHA-256".into()),
            previous_digest_signature: previous.map(|p| p.signature_hex.clone()),
            log_files,
        }
    }

    /// `hours` consecutive hourly digests from `start`, hour `i` listing `logs(i)` log files
    /// (0 makes an empty hour). The first digest starts a chain unless `after` continues one.
    pub fn chain(
        &mut self,
        start: DateTime<Utc>,
        hours: usize,
        after: Option<&GeneratedDigest>,
        logs: impl Fn(usize) -> usize,
    ) -> History {
        let mut history = History::default();
        let mut previous = after.cloned();
        for i in 0..hours {
            let from = start + Duration::hours(i as i64);
            let until = from + Duration::hours(1);
            let mut entries = Vec::new();
            let n = logs(i);
            for j in 0..n {
                let t = from + Duration::seconds(((j as i64) * 3600 / n.max(1) as i64).min(3599));
                let events = self.events_per_log();
                let (object, entry) = self.log(t, events);
                history.logs.push(object);
                entries.push(entry);
            }
            let json = self.digest_json(from, until, false, previous.as_ref(), entries);
            let digest = seal(&json, self.key, None);
            previous = Some(digest.clone());
            history.digests.push(digest);
        }
        history
    }

    /// What CloudTrail writes after `StopLogging` for `stopped` and `StartLogging`: a new chain
    /// (its first digest has a null previous digest) that starts `stopped` after `last` ended.
    pub fn restart(
        &mut self,
        last: &GeneratedDigest,
        stopped: Duration,
        hours: usize,
        logs: impl Fn(usize) -> usize,
    ) -> History {
        self.chain(last.end + stopped, hours, None, logs)
    }

    /// A backfill digest for logs delivered late, generated at `generated`.
    pub fn backfill(
        &mut self,
        start: DateTime<Utc>,
        generated: DateTime<Utc>,
        logs: usize,
    ) -> History {
        let mut history = History::default();
        let mut entries = Vec::new();
        for j in 0..logs {
            let events = self.events_per_log();
            let (object, entry) = self.log(start + Duration::minutes(j as i64 * 5), events);
            history.logs.push(object);
            entries.push(entry);
        }
        let json = self.digest_json(start, start + Duration::hours(1), true, None, entries);
        history.digests.push(seal(&json, self.key, Some(generated)));
        history
    }
}

/// The sample-event tests of an onboarding function (`policy_updater`, `trail_enabler`): every
/// file in `events/<dir>/` is read by the function's own parser with the outcome its SOURCES.md
/// states, events that are not for us succeed without touching AWS, and a malformed event of a
/// known kind is an `InvalidEvent` naming the field. Both functions take the same events.
#[macro_export]
macro_rules! account_event_sample_tests {
    ($function:ident, $dir:literal, offboarding: $offboarding:literal) => {
        use lambda_runtime::{Context, Diagnostic, LambdaEvent};
        use serde_json::{Value, json};
        use trailkeeper::events::{AccountId, Onboarding};
        use trailkeeper::onboard::OnboardConfig;
        use $function::{Deps, HandlerError, handle, parse_event};

        const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/", $dir);

        fn sample(name: &str) -> Value {
            let path = format!("{DIR}/{name}");
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{path}: {e}"))
        }

        /// File → the account it onboards (`None`: ignored, or offboarded when listed in
        /// `OFFBOARDS`).
        const EXPECTED: &[(&str, Option<&str>)] = &[
            (
                "organizations-create-account-result.json",
                Some("444455556666"),
            ),
            ("organizations-create-account-result-failed.json", None),
            (
                "controltower-create-managed-account.json",
                Some("444455556666"),
            ),
            (
                "controltower-update-managed-account.json",
                Some("444455556666"),
            ),
            ("direct-invoke.json", Some("444455556666")),
            (
                "organizations-account-joined-created.json",
                Some("444455556666"),
            ),
            (
                "organizations-account-joined-invited.json",
                Some("444455556666"),
            ),
            ("organizations-close-account-result.json", None),
            ("organizations-account-departed-left.json", None),
            ("organizations-account-departed-removed.json", None),
        ];
        /// The samples that offboard 444455556666 (an account that left or was closed).
        const OFFBOARDS: &[&str] = &[
            "organizations-close-account-result.json",
            "organizations-account-departed-left.json",
            "organizations-account-departed-removed.json",
        ];

        #[test]
        fn every_sample_has_its_outcome() {
            let mut names: Vec<String> = std::fs::read_dir(DIR)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".json"))
                .collect();
            names.sort();
            let mut listed: Vec<String> = EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect();
            listed.sort();
            assert_eq!(names, listed, "every sample needs an expected outcome");
            for (name, want) in EXPECTED {
                let got = parse_event(&sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    got.account(),
                    want.map(|a| AccountId::new(a).unwrap()),
                    "{name}: {got:?}"
                );
                if OFFBOARDS.contains(name) {
                    assert_eq!(
                        got.departed(),
                        Some(AccountId::new("444455556666").unwrap()),
                        "{name}: {got:?}"
                    );
                } else if want.is_none() {
                    assert!(matches!(got, Onboarding::Ignored { .. }), "{name}");
                }
            }
        }

        /// The trail-enabler has nothing to do for an account that left: it says so and
        /// touches no AWS; the policy-updater offboards (tests/tests/onboarding.rs, on moto).
        #[tokio::test]
        async fn offboarding_samples_are_handled_as_the_function_should() {
            let deps = deps().await;
            for name in OFFBOARDS {
                if $offboarding != "ignored" {
                    continue;
                }
                let out = handle(&deps, LambdaEvent::new(sample(name), Context::default()))
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(out["status"], "ignored", "{name}");
                assert_eq!(out["account"], "444455556666", "{name}");
            }
        }

        async fn deps() -> Deps {
            let aws = aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .build();
            let config = OnboardConfig::from_vars(|v| match v {
                "TRAILKEEPER_BUCKET" => Some("central-logs".into()),
                "AWS_REGION" => Some("us-east-1".into()),
                _ => None,
            })
            .unwrap();
            Deps::new(&aws, config)
        }

        #[tokio::test]
        async fn ignored_samples_succeed_without_aws() {
            let deps = deps().await;
            for (name, want) in EXPECTED {
                if want.is_some() || OFFBOARDS.contains(name) {
                    continue;
                }
                let out = handle(&deps, LambdaEvent::new(sample(name), Context::default()))
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(out["status"], "ignored", "{name}");
                assert!(
                    out["reason"].as_str().is_some_and(|r| !r.is_empty()),
                    "{name}"
                );
            }
        }

        #[tokio::test]
        async fn a_malformed_event_is_an_error_naming_the_field() {
            let deps = deps().await;
            let mut event = sample("controltower-create-managed-account.json");
            event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"] =
                json!("4444-5555-6666");
            let err = handle(&deps, LambdaEvent::new(event, Context::default()))
                .await
                .unwrap_err();
            assert!(matches!(err, HandlerError::Event(_)));
            let diagnostic = Diagnostic::from(err);
            assert_eq!(diagnostic.error_type, "InvalidEvent");
            assert!(
                diagnostic
                    .error_message
                    .contains("detail.serviceEventDetails.createManagedAccountStatus.account.accountId"),
                "{}",
                diagnostic.error_message
            );
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningWindow;

    fn layout() -> TrailLayout {
        TrailLayout {
            bucket: "central".into(),
            prefix: Some("org".into()),
            org_id: Some("o-abcdef1234".into()),
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            trail: "trailkeeper".into(),
            home_region: "us-east-1".into(),
        }
    }

    #[test]
    fn generated_digests_verify_under_the_test_key_in_both_der_forms() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:05:31Z")
            .unwrap()
            .to_utc();
        let key = TestKey::generate(t0 - Duration::days(1), t0 + Duration::days(30));
        let mut g = Generator::new(layout(), &key, 7);
        let h = g.chain(t0, 3, None, |i| i);
        assert_eq!(h.digests.len(), 3);
        assert_eq!(h.logs.len(), 3);
        let spki =
            PublicKey::from_der(key.spki_der(), key.valid_from, key.valid_until, None).unwrap();
        assert_eq!(spki.fingerprint, fingerprint_of(&key.spki_der()));
        for d in &h.digests {
            let parsed = DigestKey::parse(&d.object.key).unwrap();
            assert_eq!(parsed.org_id.as_deref(), Some("o-abcdef1234"));
            assert_eq!(parsed.end_time, d.end);
            let inflated = crate::gzip::gunzip_all(&d.object.body, 1 << 20).unwrap();
            let file = DigestFile::parse(&inflated).unwrap();
            let msg = string_to_sign(&file, &sha256(&inflated));
            let sig = hex::decode(&d.signature_hex).unwrap();
            assert!(key.public_key().verify(msg.as_bytes(), &sig));
            assert!(spki.verify(msg.as_bytes(), &sig));
            assert!(key.public_key().overlaps(
                SigningWindow::for_digest(d.end).from,
                SigningWindow::for_digest(d.end).until
            ));
        }
        // The chain: each names the previous one's location, signature and hash.
        assert!(h.digests[0].json.previous_digest_signature.is_none());
        assert_eq!(
            h.digests[2].json.previous_digest_signature.as_deref(),
            Some(h.digests[1].signature_hex.as_str())
        );
        assert_eq!(
            h.digests[2].json.previous_digest_hash_value.as_deref(),
            Some(h.digests[1].sha256_hex.as_str())
        );
        assert_eq!(h.digests[2].start, h.digests[1].end);
    }
}
