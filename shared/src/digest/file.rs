//! The digest file's JSON, parsed from the exact uncompressed bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// What is wrong with a digest's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestFormatError {
    #[error("not valid digest JSON: {0}")]
    Json(String),
    #[error("required field {0} is missing")]
    Missing(&'static str),
    #[error("field {0} is null")]
    Null(&'static str),
    #[error("field {field} is not an RFC 3339 time: {value:?}")]
    Time { field: &'static str, value: String },
}

/// One log file a digest vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFileEntry {
    #[serde(rename = "s3Bucket")]
    pub s3_bucket: String,
    #[serde(rename = "s3Object")]
    pub s3_object: String,
    pub hash_value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_event_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_event_time: Option<String>,
}

/// The link a digest holds to the one before it. Absent on a chain's first digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousDigest {
    pub bucket: Option<String>,
    pub object: Option<String>,
    pub hash_value: Option<String>,
    pub signature: String,
}

/// A digest file. Values are kept as written: the signature covers them verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestFile {
    pub aws_account_id: Option<String>,
    pub digest_start_time: String,
    pub digest_end_time: String,
    pub digest_s3_bucket: String,
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    pub digest_signature_algorithm: Option<String>,
    pub previous: Option<PreviousDigest>,
    pub log_files: Vec<LogFileEntry>,
}

/// `Some(None)` for a field present as null, `None` for a field that is absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// serde rejects repeated keys in a struct, so one digest cannot show two parsers two faces.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    aws_account_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    digest_start_time: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    digest_end_time: Option<Option<String>>,
    #[serde(default, rename = "digestS3Bucket", deserialize_with = "present")]
    digest_s3_bucket: Option<Option<String>>,
    #[serde(default, rename = "digestS3Object", deserialize_with = "present")]
    digest_s3_object: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    digest_public_key_fingerprint: Option<Option<String>>,
    #[serde(default)]
    digest_signature_algorithm: Option<String>,
    #[serde(default, rename = "previousDigestS3Bucket")]
    previous_digest_s3_bucket: Option<String>,
    #[serde(default, rename = "previousDigestS3Object")]
    previous_digest_s3_object: Option<String>,
    #[serde(default)]
    previous_digest_hash_value: Option<String>,
    #[serde(default, deserialize_with = "present")]
    previous_digest_signature: Option<Option<String>>,
    // Absent or null reads as no logs; the signature covers the bytes, so this cannot hide any.
    #[serde(default)]
    log_files: Option<Vec<LogFileEntry>>,
}

fn required<T>(v: Option<Option<T>>, name: &'static str) -> Result<T, DigestFormatError> {
    match v {
        None => Err(DigestFormatError::Missing(name)),
        Some(None) => Err(DigestFormatError::Null(name)),
        Some(Some(t)) => Ok(t),
    }
}

impl DigestFile {
    /// Parses the exact uncompressed bytes. The fields the AWS CLI requires must be present;
    /// only `previousDigestSignature` may be null (a chain's first digest).
    pub fn parse(bytes: &[u8]) -> Result<Self, DigestFormatError> {
        let w: Wire =
            serde_json::from_slice(bytes).map_err(|e| DigestFormatError::Json(e.to_string()))?;
        let previous_signature = w
            .previous_digest_signature
            .ok_or(DigestFormatError::Missing("previousDigestSignature"))?;
        Ok(Self {
            aws_account_id: w.aws_account_id,
            digest_start_time: required(w.digest_start_time, "digestStartTime")?,
            digest_end_time: required(w.digest_end_time, "digestEndTime")?,
            digest_s3_bucket: required(w.digest_s3_bucket, "digestS3Bucket")?,
            digest_s3_object: required(w.digest_s3_object, "digestS3Object")?,
            digest_public_key_fingerprint: required(
                w.digest_public_key_fingerprint,
                "digestPublicKeyFingerprint",
            )?,
            digest_signature_algorithm: w.digest_signature_algorithm,
            previous: previous_signature.map(|signature| PreviousDigest {
                bucket: w.previous_digest_s3_bucket,
                object: w.previous_digest_s3_object,
                hash_value: w.previous_digest_hash_value,
                signature,
            }),
            log_files: w.log_files.unwrap_or_default(),
        })
    }

    pub fn start_time(&self) -> Result<DateTime<Utc>, DigestFormatError> {
        parse_time("digestStartTime", &self.digest_start_time)
    }

    pub fn end_time(&self) -> Result<DateTime<Utc>, DigestFormatError> {
        parse_time("digestEndTime", &self.digest_end_time)
    }
}

pub fn parse_time(field: &'static str, value: &str) -> Result<DateTime<Utc>, DigestFormatError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .map_err(|_| DigestFormatError::Time {
            field,
            value: value.chars().take(64).collect(),
        })
}

/// CloudTrail's time format in digests and logs: `2015-08-17T15:01:31Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        crate::test_vectors::vector(&format!("cloudtrail-digest/{name}"))
    }

    #[test]
    fn parses_the_documented_sample_digest() {
        let d = DigestFile::parse(&vector("awsdocs_sample_digest_20150817T150131Z.json")).unwrap();
        assert_eq!(d.aws_account_id.as_deref(), Some("111122223333"));
        assert_eq!(
            d.digest_public_key_fingerprint,
            "31e8b5433410dfb61a9dc45cc65b22ff"
        );
        assert_eq!(d.log_files.len(), 1);
        let prev = d.previous.as_ref().unwrap();
        assert!(prev.signature.starts_with("50887ccffad4c002"));
        assert_eq!(
            d.end_time().unwrap().to_rfc3339(),
            "2015-08-17T15:01:31+00:00"
        );
    }

    #[test]
    fn parses_an_empty_hour_and_a_real_digest_with_escaped_slashes() {
        let d = DigestFile::parse(&vector("awsdocs_empty_digest_20150820T180131Z.json")).unwrap();
        assert!(d.log_files.is_empty());
        let real = DigestFile::parse(&vector(
            "llmguard_327878933619_CloudTrail-Digest_ap-northeast-1_llm-guard-trail_us-west-2_20231015T230404Z.json",
        ))
        .unwrap();
        assert_eq!(real.aws_account_id.as_deref(), Some("327878933619"));
        // JSON `\/` decodes to `/`: the string to sign uses the decoded value.
        assert!(real.digest_s3_object.contains("/CloudTrail-Digest/"));
    }

    #[test]
    fn a_null_previous_signature_is_a_chain_start() {
        let d = DigestFile::parse(br#"{"digestStartTime":"a","digestEndTime":"b","digestS3Bucket":"c","digestS3Object":"d","digestPublicKeyFingerprint":"e","previousDigestSignature":null,"logFiles":[]}"#).unwrap();
        assert!(d.previous.is_none());
    }

    #[test]
    fn names_the_field_that_is_missing_null_or_repeated() {
        let missing = br#"{"digestStartTime":"a","digestEndTime":"b","digestS3Bucket":"c","digestS3Object":"d","previousDigestSignature":null,"logFiles":[]}"#;
        assert_eq!(
            DigestFile::parse(missing).unwrap_err(),
            DigestFormatError::Missing("digestPublicKeyFingerprint")
        );
        let no_prev = br#"{"digestStartTime":"a","digestEndTime":"b","digestS3Bucket":"c","digestS3Object":"d","digestPublicKeyFingerprint":"e","logFiles":[]}"#;
        assert_eq!(
            DigestFile::parse(no_prev).unwrap_err(),
            DigestFormatError::Missing("previousDigestSignature")
        );
        let null_bucket = br#"{"digestStartTime":"a","digestEndTime":"b","digestS3Bucket":null,"digestS3Object":"d","digestPublicKeyFingerprint":"e","previousDigestSignature":null,"logFiles":[]}"#;
        assert_eq!(
            DigestFile::parse(null_bucket).unwrap_err(),
            DigestFormatError::Null("digestS3Bucket")
        );
        let repeated = br#"{"digestStartTime":"a","digestStartTime":"z","digestEndTime":"b","digestS3Bucket":"c","digestS3Object":"d","digestPublicKeyFingerprint":"e","previousDigestSignature":null,"logFiles":[]}"#;
        assert!(matches!(
            DigestFile::parse(repeated),
            Err(DigestFormatError::Json(_))
        ));
    }

    #[test]
    fn hostile_json_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(DigestFile::parse(deep.as_bytes()).is_err());
        assert!(DigestFile::parse(b"not json").is_err());
        assert!(DigestFile::parse(b"{\"logFiles\": 5}").is_err());
    }
}
