//! Reading the bucket: digests whole, logs streamed, listings paged.
//!
//! Only content decides a verdict. Throttling, network and permission failures are `StoreError`s,
//! which callers retry or surface as "the run could not be completed", never as tampering.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::gzip::{Gunzip, GzipError, Sha256Sink};

/// The IAM actions this module's AWS calls need (`GetObject`; `ListObjectsV2` is
/// `s3:ListBucket`). tests/lambda/template_checks.py holds each function's role to the calls
/// its crate declares; shared/tests/least_privilege.rs holds this list to the code.
pub const CALLS: &[&str] = &["s3:GetObject", "s3:ListBucket"];
/// [`Store::versions_of`]'s IAM action (the tripwire's).
pub const VERSION_CALLS: &[&str] = &["s3:ListBucketVersions"];
/// [`Store::put_small`]'s IAM action (re-verification's state, consolidate's plans and manifests).
pub const WRITE_CALLS: &[&str] = &["s3:PutObject"];

/// Where an object is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading {object}: {message}")]
    Read { object: ObjectRef, message: String },
    /// S3 answered that the bucket does not exist, or that we may not read it: a permission
    /// problem in our own bucket, but what a trail pointed at an attacker's bucket leaves behind.
    #[error("reading {object}: {message}")]
    Refused { object: ObjectRef, message: String },
    #[error("writing {object}: {message}")]
    Write { object: ObjectRef, message: String },
    #[error("listing s3://{bucket}/{prefix}: {message}")]
    List {
        bucket: String,
        prefix: String,
        message: String,
    },
}

/// What an operator needs of an SDK error: the service's code and message (and HTTP status), or
/// the chain of causes of a transport failure; never a dump of the raw response.
pub fn describe_sdk_error<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            format!(
                "{}: {} (HTTP {})",
                err.code().unwrap_or("unknown service error"),
                err.message().unwrap_or("no message"),
                service.raw().status().as_u16()
            )
        }
        other => error_chain(other),
    }
}

/// `outer: cause: root cause`, each level once.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The SDK configuration every trailkeeper program uses: the standard provider chain
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles). Unless the user set `AWS_MAX_ATTEMPTS`, it is
/// more patient with throttling than the SDK's default of 3 attempts: a long validation run
/// should ride out an S3 `SlowDown` rather than end incomplete.
pub async fn load_aws_config() -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let loader = if std::env::var_os("AWS_MAX_ATTEMPTS").is_some() {
        loader
    } else {
        loader.retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(6))
    };
    loader.load().await
}

/// An S3 client; path-style when a custom endpoint (a local emulator) is configured.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A digest as stored: its compressed bytes and its user metadata (lower-case keys).
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub body: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

/// What reading a small object found.
#[derive(Debug, Clone)]
pub enum Fetched {
    Missing,
    /// Larger than the caller's bound (its Content-Length); not read.
    TooLarge(u64),
    Object(StoredObject),
}

/// What hashing a log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogContent {
    Missing,
    Unreadable(GzipError),
    Read {
        sha256: [u8; 32],
        inflated_bytes: u64,
        compressed_bytes: u64,
    },
}

/// A listing: keys, and the common prefixes when a delimiter was given.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    pub keys: Vec<String>,
    /// The size in bytes of each of `keys`, in the same order.
    pub sizes: Vec<u64>,
    pub prefixes: Vec<String>,
}

/// The S3 error codes of [`StoreError::Refused`].
const REFUSED_NO_SUCH_BUCKET: &str = "NoSuchBucket";
const REFUSED_ACCESS_DENIED: &str = "AccessDenied";

/// How many times a body that broke off in transit is read again from the start.
const BODY_ATTEMPTS: u32 = 3;

#[derive(Clone)]
pub struct Store {
    s3: aws_sdk_s3::Client,
}

impl Store {
    pub fn new(s3: aws_sdk_s3::Client) -> Self {
        Self { s3 }
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<GetObjectOutput>, StoreError> {
        match self
            .s3
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), GetObjectError::NoSuchKey(_)) => {
                Ok(None)
            }
            Err(e)
                if matches!(
                    e.as_service_error().and_then(ProvideErrorMetadata::code),
                    Some(REFUSED_NO_SUCH_BUCKET | REFUSED_ACCESS_DENIED)
                ) =>
            {
                Err(StoreError::Refused {
                    object: object.clone(),
                    message: describe_sdk_error(&e),
                })
            }
            Err(e) => Err(StoreError::Read {
                object: object.clone(),
                message: describe_sdk_error(&e),
            }),
        }
    }

    /// The whole object, when it is at most `max_bytes` long.
    pub async fn get_small(
        &self,
        object: &ObjectRef,
        max_bytes: u64,
    ) -> Result<Fetched, StoreError> {
        let read_err = |message: String| StoreError::Read {
            object: object.clone(),
            message,
        };
        let mut last = String::new();
        for _ in 0..BODY_ATTEMPTS {
            let Some(mut out) = self.get(object).await? else {
                return Ok(Fetched::Missing);
            };
            let expected = out.content_length().unwrap_or(-1);
            if expected > max_bytes as i64 {
                return Ok(Fetched::TooLarge(expected as u64));
            }
            let metadata = out.metadata().cloned().unwrap_or_default();
            let mut body = Vec::with_capacity(expected.max(0) as usize);
            let mut broke = None;
            while let Some(chunk) = out.body.next().await {
                match chunk {
                    Ok(c) => {
                        body.extend_from_slice(&c);
                        if body.len() as u64 > max_bytes {
                            broke = Some("body longer than its Content-Length".to_string());
                            break;
                        }
                    }
                    Err(e) => {
                        broke = Some(error_chain(&e));
                        break;
                    }
                }
            }
            if broke.is_none() && expected >= 0 && body.len() as i64 != expected {
                broke = Some(format!("got {} of {expected} bytes", body.len()));
            }
            match broke {
                None => return Ok(Fetched::Object(StoredObject { body, metadata })),
                Some(why) => last = why,
            }
        }
        Err(read_err(format!(
            "body broke off {BODY_ATTEMPTS} times; last: {last}"
        )))
    }

    /// Streams the object through a single-member gunzip into SHA-256, never holding it whole.
    pub async fn hash_gzip(
        &self,
        object: &ObjectRef,
        inflated_limit: u64,
    ) -> Result<LogContent, StoreError> {
        let mut last = String::new();
        for _ in 0..BODY_ATTEMPTS {
            let Some(mut out) = self.get(object).await? else {
                return Ok(LogContent::Missing);
            };
            let expected = out.content_length().unwrap_or(-1);
            let mut gunzip = Gunzip::new(Sha256Sink::default(), inflated_limit);
            let mut received: u64 = 0;
            let mut broke = None;
            while let Some(chunk) = out.body.next().await {
                match chunk {
                    Ok(c) => {
                        received += c.len() as u64;
                        if let Err(e) = gunzip.update(&c) {
                            // Content is at fault only if what we got so far is what S3 sent.
                            return Ok(LogContent::Unreadable(e));
                        }
                    }
                    Err(e) => {
                        broke = Some(error_chain(&e));
                        break;
                    }
                }
            }
            if broke.is_none() && expected >= 0 && received as i64 != expected {
                broke = Some(format!("got {received} of {expected} bytes"));
            }
            if let Some(why) = broke {
                last = why;
                continue;
            }
            return Ok(match gunzip.finish() {
                Ok(sink) => {
                    use crate::gzip::InflatedSink;
                    let inflated_bytes = sink.inflated_len();
                    LogContent::Read {
                        sha256: sink.finish(),
                        inflated_bytes,
                        compressed_bytes: received,
                    }
                }
                Err(e) => LogContent::Unreadable(e),
            });
        }
        Err(StoreError::Read {
            object: object.clone(),
            message: format!("body broke off {BODY_ATTEMPTS} times; last: {last}"),
        })
    }

    /// Every key under `prefix` after `start_after`, stopping past `until` (keys sort by date).
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        until: Option<&str>,
        delimiter: Option<&str>,
    ) -> Result<Listing, StoreError> {
        let mut listing = Listing::default();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .set_delimiter(delimiter.map(str::to_string))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError::List {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                message: describe_sdk_error(&e),
            })?;
            listing.prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            let mut past_end = false;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if until.is_some_and(|u| key > u) {
                    past_end = true;
                    break;
                }
                listing.keys.push(key.to_string());
                listing
                    .sizes
                    .push(object.size().unwrap_or_default().max(0) as u64);
            }
            if past_end {
                break;
            }
        }
        Ok(listing)
    }

    /// How many versions and delete markers of exactly `object`'s key there are besides
    /// `except` (the version an event is about).
    pub async fn versions_of(
        &self,
        object: &ObjectRef,
        except: Option<&str>,
    ) -> Result<usize, StoreError> {
        let list_err = |message: String| StoreError::List {
            bucket: object.bucket.clone(),
            prefix: object.key.clone(),
            message,
        };
        let mut count = 0;
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .s3
                .list_object_versions()
                .bucket(&object.bucket)
                .prefix(&object.key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| list_err(describe_sdk_error(&e)))?;
            let others = |key: Option<&str>, version: Option<&str>| {
                key == Some(object.key.as_str()) && (except.is_none() || version != except)
            };
            count += page
                .versions()
                .iter()
                .filter(|v| others(v.key(), v.version_id()))
                .count();
            count += page
                .delete_markers()
                .iter()
                .filter(|m| others(m.key(), m.version_id()))
                .count();
            // Keys sort: past our key, nothing more can match.
            let past = page
                .versions()
                .iter()
                .filter_map(|v| v.key())
                .chain(page.delete_markers().iter().filter_map(|m| m.key()))
                .any(|k| k > object.key.as_str());
            if past || page.is_truncated() != Some(true) {
                return Ok(count);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
    }

    /// Writes a small object (a state file of trailkeeper's own, never under `AWSLogs/`).
    pub async fn put_small(
        &self,
        object: &ObjectRef,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.s3
            .put_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .content_type(content_type)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Write {
                object: object.clone(),
                message: describe_sdk_error(&e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn obj() -> ObjectRef {
        ObjectRef::new("central-logs", "AWSLogs/111122223333/CloudTrail/x.json.gz")
    }

    #[tokio::test]
    async fn a_missing_key_is_content_not_an_error() {
        let rule = mock!(aws_sdk_s3::Client::get_object)
            .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
        let store = Store::new(mock_client!(aws_sdk_s3, [&rule]));
        assert_eq!(
            store.hash_gzip(&obj(), 1 << 20).await.unwrap(),
            LogContent::Missing
        );
    }

    #[tokio::test]
    async fn a_throttled_read_is_retried_and_then_succeeds() {
        let body = gz(b"{\"Records\":[]}");
        let rule = mock!(aws_sdk_s3::Client::get_object)
            .sequence()
            .http_status(503, Some("<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".into()))
            .times(2)
            .output(move || {
                GetObjectOutput::builder()
                    .content_length(body.len() as i64)
                    .body(ByteStream::from(body.clone()))
                    .build()
            })
            .build();
        let store = Store::new(mock_client!(
            aws_sdk_s3,
            RuleMode::Sequential,
            [&rule],
            |c| c.retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(3)
            )
        ));
        match store.hash_gzip(&obj(), 1 << 20).await.unwrap() {
            LogContent::Read { sha256, .. } => {
                assert_eq!(sha256, crate::gzip::sha256(b"{\"Records\":[]}"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test]
    async fn persistent_throttling_is_an_error_naming_the_object_never_a_verdict() {
        let rule = mock!(aws_sdk_s3::Client::get_object)
            .sequence()
            .http_status(
                503,
                Some("<Error><Code>SlowDown</Code><Message>slow</Message></Error>".into()),
            )
            .times(10)
            .build();
        let store = Store::new(mock_client!(
            aws_sdk_s3,
            RuleMode::Sequential,
            [&rule],
            |c| c.retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2)
            )
        ));
        let err = store.hash_gzip(&obj(), 1 << 20).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("s3://central-logs/AWSLogs/111122223333/CloudTrail/x.json.gz"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_content_length_is_read_again_not_judged() {
        let full = gz(&[b'a'; 10_000]);
        let cut = full[..full.len() / 2].to_vec();
        let n = full.len() as i64;
        let rule = mock!(aws_sdk_s3::Client::get_object)
            .sequence()
            .output(move || {
                GetObjectOutput::builder()
                    .content_length(n)
                    .body(ByteStream::from(cut.clone()))
                    .build()
            })
            .output(move || {
                GetObjectOutput::builder()
                    .content_length(n)
                    .body(ByteStream::from(full.clone()))
                    .build()
            })
            .build();
        let store = Store::new(mock_client!(aws_sdk_s3, RuleMode::Sequential, [&rule]));
        assert!(matches!(
            store.hash_gzip(&obj(), 1 << 20).await.unwrap(),
            LogContent::Read { .. }
        ));
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_body_that_always_breaks_off_fails_the_read() {
        let full = gz(&[b'a'; 10_000]);
        let cut = full[..full.len() / 2].to_vec();
        let n = full.len() as i64;
        let rule = mock!(aws_sdk_s3::Client::get_object)
            .sequence()
            .output(move || {
                GetObjectOutput::builder()
                    .content_length(n)
                    .body(ByteStream::from(cut.clone()))
                    .build()
            })
            .times(BODY_ATTEMPTS as usize)
            .build();
        let store = Store::new(mock_client!(aws_sdk_s3, RuleMode::Sequential, [&rule]));
        let err = store.hash_gzip(&obj(), 1 << 20).await.unwrap_err();
        assert!(err.to_string().contains("broke off"), "{err}");
    }
}
