//! CloudTrail's public keys: where they come from, and which one signed a digest.
//!
//! Keys come from `ListPublicKeys` in the digest's own region, or from a file in the format that
//! `aws cloudtrail list-public-keys` prints. A key is identified by its fingerprint, which is the
//! MD5 of its DER bytes; we compute it ourselves rather than trust the one we were handed.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use md5::{Digest as _, Md5};
use serde::Deserialize;

/// The IAM actions this module's AWS calls need (see `crate::store::CALLS`).
pub const CALLS: &[&str] = &["cloudtrail:ListPublicKeys"];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("public key {fingerprint}: {why}")]
    Invalid { fingerprint: String, why: String },
    #[error("could not list CloudTrail public keys in {region}: {message}")]
    Api { region: String, message: String },
    #[error("public keys file {path}: {why}")]
    File { path: String, why: String },
}

/// One CloudTrail public key and its validity window.
pub struct PublicKey {
    pub fingerprint: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    der: Vec<u8>,
    parsed: ParsedPublicKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("fingerprint", &self.fingerprint)
            .field("valid_from", &self.valid_from)
            .field("valid_until", &self.valid_until)
            .finish()
    }
}

/// MD5 hex of the DER bytes: how CloudTrail names its keys.
pub fn fingerprint_of(der: &[u8]) -> String {
    hex::encode(Md5::digest(der))
}

impl PublicKey {
    /// Accepts PKCS#1 `RSAPublicKey` or X.509 `SubjectPublicKeyInfo` DER: AWS has published both.
    /// A `claimed` fingerprint that is not the MD5 of `der` is refused.
    pub fn from_der(
        der: Vec<u8>,
        valid_from: DateTime<Utc>,
        valid_until: DateTime<Utc>,
        claimed: Option<&str>,
    ) -> Result<Self, KeyError> {
        let fingerprint = fingerprint_of(&der);
        if let Some(claimed) = claimed
            && !claimed.eq_ignore_ascii_case(&fingerprint)
        {
            return Err(KeyError::Invalid {
                fingerprint: claimed.to_string(),
                why: format!("its DER has fingerprint {fingerprint}"),
            });
        }
        let parsed = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_slice())
            .parse()
            .map_err(|e| KeyError::Invalid {
                fingerprint: fingerprint.clone(),
                why: format!("not an RSA public key in PKCS#1 or SPKI DER ({e})"),
            })?;
        Ok(Self {
            fingerprint,
            valid_from,
            valid_until,
            der,
            parsed,
        })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256, nothing else: the hash is pinned, not read from the
    /// signature (python-rsa, under AWS CLI v1, would accept any hash the signature names).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }

    /// Whether this key was valid at some moment of `[from, until]`.
    pub fn overlaps(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> bool {
        self.valid_from <= until && from <= self.valid_until
    }

    #[cfg(test)]
    pub(crate) fn verify_sha256_prehashed(&self, sha256: &[u8], signature: &[u8]) -> bool {
        let Ok(digest) =
            aws_lc_rs::digest::Digest::import_less_safe(sha256, &aws_lc_rs::digest::SHA256)
        else {
            return false;
        };
        self.parsed.verify_digest_sig(&digest, signature).is_ok()
    }
}

/// When a digest may have been signed: the key that signed it was valid then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningWindow {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl SigningWindow {
    /// A digest is signed when it is delivered, shortly after its end time. The AWS CLI pads its
    /// key query by two hours for the same reason (aws-cli PR #10072).
    pub fn for_digest(end_time: DateTime<Utc>) -> Self {
        Self {
            from: end_time,
            until: end_time + Duration::hours(2),
        }
    }

    /// Backfill digests are signed at their generation time; the AWS CLI allows an hour either way.
    pub fn for_backfill(generated: DateTime<Utc>) -> Self {
        Self {
            from: generated - Duration::hours(1),
            until: generated + Duration::hours(1),
        }
    }
}

// `aws cloudtrail list-public-keys` output. Times are epoch numbers (CLI v1), or ISO strings
// (CLI v2); AWS documentation also shows numbers in strings and a lower-case list name.
#[derive(Deserialize)]
struct KeysFile {
    #[serde(rename = "PublicKeyList", alias = "publicKeyList")]
    public_key_list: Vec<KeysFileEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeysFileEntry {
    value: String,
    validity_start_time: serde_json::Value,
    validity_end_time: serde_json::Value,
    fingerprint: String,
}

fn file_time(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    let epoch = |secs: f64| DateTime::from_timestamp(secs.trunc() as i64, 0);
    match v {
        serde_json::Value::Number(n) => n.as_f64().and_then(epoch),
        serde_json::Value::String(s) => s
            .parse::<f64>()
            .ok()
            .and_then(epoch)
            .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc())),
        _ => None,
    }
}

/// Parses `aws cloudtrail list-public-keys` output.
pub fn parse_keys_file(path: &str, text: &str) -> Result<Vec<PublicKey>, KeyError> {
    let file_err = |why: String| KeyError::File {
        path: path.to_string(),
        why,
    };
    let parsed: KeysFile = serde_json::from_str(text).map_err(|e| file_err(e.to_string()))?;
    parsed
        .public_key_list
        .into_iter()
        .map(|e| {
            let der = base64::engine::general_purpose::STANDARD
                .decode(e.value.trim())
                .map_err(|err| {
                    file_err(format!("key {}: Value is not base64: {err}", e.fingerprint))
                })?;
            let (Some(from), Some(until)) = (
                file_time(&e.validity_start_time),
                file_time(&e.validity_end_time),
            ) else {
                return Err(file_err(format!(
                    "key {}: unreadable validity times",
                    e.fingerprint
                )));
            };
            PublicKey::from_der(der, from, until, Some(&e.fingerprint))
        })
        .collect()
}

/// Where keys come from.
pub enum KeySource {
    /// `cloudtrail:ListPublicKeys` in each digest's region.
    Api(Box<CloudTrailKeys>),
    /// A fixed set, from a file; it applies to every region.
    Fixed(Vec<Arc<PublicKey>>),
}

/// `ListPublicKeys` callers, one client per region, made when first needed.
pub struct CloudTrailKeys {
    config: aws_config::SdkConfig,
    clients: std::sync::Mutex<HashMap<String, aws_sdk_cloudtrail::Client>>,
}

impl CloudTrailKeys {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            config: config.clone(),
            clients: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let conf = aws_sdk_cloudtrail::config::Builder::from(&self.config)
                    .region(aws_sdk_cloudtrail::config::Region::new(region.to_string()))
                    .build();
                aws_sdk_cloudtrail::Client::from_conf(conf)
            })
            .clone()
    }

    async fn list(
        &self,
        region: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<PublicKey>, KeyError> {
        use aws_sdk_cloudtrail::primitives::DateTime as SmithyTime;
        let api_err = |message: String| KeyError::Api {
            region: region.to_string(),
            message,
        };
        let client = self.client(region);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = client
                .list_public_keys()
                .start_time(SmithyTime::from_secs(from.timestamp()))
                .end_time(SmithyTime::from_secs(until.timestamp()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| api_err(crate::store::describe_sdk_error(&e)))?;
            for k in out.public_key_list() {
                let fingerprint = k.fingerprint().unwrap_or_default();
                let (Some(value), Some(start), Some(end)) =
                    (k.value(), k.validity_start_time(), k.validity_end_time())
                else {
                    return Err(api_err(format!(
                        "key {fingerprint} lacks its value or validity times"
                    )));
                };
                let time =
                    |t: &SmithyTime| DateTime::from_timestamp(t.secs(), 0).unwrap_or_default();
                keys.push(PublicKey::from_der(
                    value.as_ref().to_vec(),
                    time(start),
                    time(end),
                    k.fingerprint(),
                )?);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(keys)
    }
}

#[derive(Default)]
struct RegionKeys {
    keys: Vec<Arc<PublicKey>>,
    fetched: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Keys found so far, by region, fetched on demand and kept (across Lambda invocations too).
pub struct KeyRing {
    source: KeySource,
    regions: tokio::sync::Mutex<HashMap<String, RegionKeys>>,
}

impl KeyRing {
    pub fn new(source: KeySource) -> Self {
        Self {
            source,
            regions: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Fetches every key of `region` valid at some time in `[from, until]`, padded as for a
    /// digest's signing window, so that a history needs one call per region.
    pub async fn prefetch(
        &self,
        region: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), KeyError> {
        let window = SigningWindow {
            from,
            until: SigningWindow::for_digest(until).until,
        };
        self.fetch(region, window).await
    }

    async fn fetch(&self, region: &str, window: SigningWindow) -> Result<(), KeyError> {
        let KeySource::Api(api) = &self.source else {
            return Ok(());
        };
        let mut regions = self.regions.lock().await;
        let entry = regions.entry(region.to_string()).or_default();
        if entry
            .fetched
            .iter()
            .any(|(f, u)| *f <= window.from && window.until <= *u)
        {
            return Ok(());
        }
        let found = api.list(region, window.from, window.until).await?;
        for key in found {
            if !entry
                .keys
                .iter()
                .any(|k| k.fingerprint == key.fingerprint && k.valid_from == key.valid_from)
            {
                entry.keys.push(Arc::new(key));
            }
        }
        entry.fetched.push((window.from, window.until));
        Ok(())
    }

    /// The key with this fingerprint that was valid when the digest was signed, if any.
    pub async fn find(
        &self,
        region: &str,
        fingerprint: &str,
        window: SigningWindow,
    ) -> Result<Option<Arc<PublicKey>>, KeyError> {
        let pick = |keys: &[Arc<PublicKey>]| {
            keys.iter()
                .find(|k| {
                    k.fingerprint.eq_ignore_ascii_case(fingerprint)
                        && k.overlaps(window.from, window.until)
                })
                .cloned()
        };
        if let KeySource::Fixed(keys) = &self.source {
            return Ok(pick(keys));
        }
        if let Some(found) = self
            .regions
            .lock()
            .await
            .get(region)
            .and_then(|r| pick(&r.keys))
        {
            return Ok(Some(found));
        }
        // Unknown here: ask the region about this digest's own window (a new key, or one
        // outside what was prefetched), once per window.
        self.fetch(region, window).await?;
        Ok(self
            .regions
            .lock()
            .await
            .get(region)
            .and_then(|r| pick(&r.keys)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::vector;

    #[test]
    fn the_four_real_keys_parse_and_their_fingerprint_is_the_md5_of_their_der() {
        let docs = String::from_utf8(vector(
            "cloudtrail-public-keys/awsdocs_list-public-keys_sample_2015.json",
        ))
        .unwrap();
        let keys = parse_keys_file("docs", &docs).unwrap();
        let cli = String::from_utf8(vector(
            "cloudtrail-public-keys/awscli_example_list-public-keys_2016.json",
        ))
        .unwrap();
        let keys: Vec<_> = keys
            .into_iter()
            .chain(parse_keys_file("cli", &cli).unwrap())
            .collect();
        let fps: Vec<_> = keys.iter().map(|k| k.fingerprint.as_str()).collect();
        assert_eq!(
            fps,
            [
                "8eba5db5bea9b640d1c96a77256fe7f2",
                "8933b39ddc64d26d8e14ffbf6566fee4",
                "31e8b5433410dfb61a9dc45cc65b22ff",
                "7f3f401420072e50a65a141430817ab3"
            ]
        );
        // One of them is published as SubjectPublicKeyInfo, the others as PKCS#1.
        let spki: Vec<_> = keys
            .iter()
            .filter(|k| k.der().starts_with(&[0x30, 0x82, 0x01, 0x22, 0x30, 0x0d]))
            .collect();
        assert_eq!(spki.len(), 1);
        assert_eq!(spki[0].fingerprint, "31e8b5433410dfb61a9dc45cc65b22ff");
        assert_eq!(keys[3].valid_from.timestamp(), 1453076702);
    }

    #[test]
    fn three_real_aws_signatures_verify_at_the_prehash_level() {
        let v: serde_json::Value = serde_json::from_slice(&vector(
            "cloudtrail-digest/REAL_aws_signatures_prehash_vectors.json",
        ))
        .unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(v["key_value_b64_as_published"].as_str().unwrap())
            .unwrap();
        let key = PublicKey::from_der(
            der,
            DateTime::UNIX_EPOCH,
            DateTime::<Utc>::MAX_UTC,
            v["key_fingerprint"].as_str(),
        )
        .unwrap();
        let vectors = v["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 3);
        for t in vectors {
            let sig = hex::decode(t["signature_hex"].as_str().unwrap()).unwrap();
            let hash =
                hex::decode(t["embedded_sha256_of_string_to_sign"].as_str().unwrap()).unwrap();
            assert!(key.verify_sha256_prehashed(&hash, &sig));
            let mut flipped = sig.clone();
            flipped[17] ^= 0x10;
            assert!(!key.verify_sha256_prehashed(&hash, &flipped));
            let mut other = hash.clone();
            other[0] ^= 1;
            assert!(!key.verify_sha256_prehashed(&other, &sig));
        }
    }

    #[test]
    fn a_claimed_fingerprint_that_is_not_the_md5_is_refused() {
        let text = String::from_utf8(vector(
            "cloudtrail-public-keys/awscli_example_list-public-keys_2016.json",
        ))
        .unwrap()
        .replace(
            "7f3f401420072e50a65a141430817ab3",
            "00000000000000000000000000000000",
        );
        assert!(matches!(
            parse_keys_file("f", &text),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[tokio::test]
    async fn a_fixed_ring_finds_keys_by_fingerprint_and_signing_time() {
        let text = String::from_utf8(vector(
            "cloudtrail-public-keys/awscli_example_list-public-keys_2016.json",
        ))
        .unwrap();
        let ring = KeyRing::new(KeySource::Fixed(
            parse_keys_file("f", &text)
                .unwrap()
                .into_iter()
                .map(Arc::new)
                .collect(),
        ));
        let inside = DateTime::from_timestamp(1454000000, 0).unwrap();
        let after = DateTime::from_timestamp(1455668702 + 10, 0).unwrap();
        let fp = "7f3f401420072e50a65a141430817ab3";
        assert!(
            ring.find("us-east-1", fp, SigningWindow::for_digest(inside))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            ring.find(
                "us-east-1",
                &fp.to_uppercase(),
                SigningWindow::for_digest(inside)
            )
            .await
            .unwrap()
            .is_some()
        );
        assert!(
            ring.find("us-east-1", fp, SigningWindow::for_digest(after))
                .await
                .unwrap()
                .is_none()
        );
        // Signed up to two hours after the digest ends: a key that starts within that is found.
        let just_before = DateTime::from_timestamp(1453076702 - 3600, 0).unwrap();
        assert!(
            ring.find("us-east-1", fp, SigningWindow::for_digest(just_before))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            ring.find("us-east-1", "ffff", SigningWindow::for_digest(inside))
                .await
                .unwrap()
                .is_none()
        );
    }
}
