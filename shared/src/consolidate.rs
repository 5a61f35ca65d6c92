//! Consolidation: old trails' history copied into the central bucket, server-side, verified and
//! resumable, with a manifest that `trailkeeper validate --manifest` reads.
//!
//! Every CloudTrail log and digest under `[prefix/]AWSLogs/` of each source is copied with
//! `CopyObject` (multipart `UploadPartCopy` above 5 GiB) to the same `AWSLogs/...` key under the
//! target prefix, with its user metadata (the digests' signatures live there), owned by the
//! central bucket's owner. A copy already there with the same size, metadata and checksum is
//! skipped; one that differs is never overwritten. Nothing is ever deleted, at the source or at
//! the target.
//!
//! With `all_versions`, the earlier states of those objects (noncurrent versions: an overwritten
//! log's original exists only as one) are copied too, keyed by version id under
//! `[prefix/]trailkeeper-versions/<source bucket>/<version id>/<source key>`, outside `AWSLogs/`
//! so that no validator, digest rule or Athena table takes them for deliveries; delete markers,
//! which have no bytes, are recorded in the manifest. `trailkeeper retire` deletes no earlier
//! state that has no such copy.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, MetadataDirective,
    ObjectCannedAcl, ServerSideEncryption, StorageClass,
};
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::digest::key::{DigestKey, is_log_key, logs_root};
use crate::gzip::Sha256Sink;
use crate::retire::{Inventory, Version};
use crate::store::{Fetched, ObjectRef, Store, StoreError, describe_sdk_error, error_chain};

/// Where manifests go under the target prefix: CloudTrail only ever writes under `AWSLogs/`.
pub const MANIFEST_DIR: &str = "trailkeeper/relocations/";
/// The file in a run's folder (beside its manifest) written before the first copy: one
/// [`PlannedCopy`] per line. The tripwire (`crate::tripwire`) takes a copy under `AWSLogs/` for
/// consolidate's only when a plan lists its key and size; the manifest comes only at the end.
pub const PLAN_FILE: &str = "plan.jsonl";
/// Where `--all-versions` keeps earlier states under the target prefix (see the module doc).
pub const VERSIONS_DIR: &str = "trailkeeper-versions/";
/// The largest object `CopyObject` copies in one request (5 GiB).
pub const COPY_OBJECT_LIMIT: u64 = 5 << 30;
/// The smallest part S3 accepts, but for the last.
const MIN_PART: u64 = 5 << 20;
const MAX_PARTS: u64 = 10_000;
/// A manifest is a small JSON document; the object list is beside it.
const MANIFEST_LIMIT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConsolidateError {
    #[error("{0:?} is not an S3 location: expected s3://BUCKET[/PREFIX]")]
    Location(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the manifest {object}: {message}")]
    Manifest { object: ObjectRef, message: String },
    #[error("the manifest {object} is not a trailkeeper manifest: {message}")]
    BadManifest { object: ObjectRef, message: String },
}

/// A bucket and a key prefix: `s3://BUCKET[/PREFIX]`. The prefix is empty or ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    pub bucket: String,
    pub prefix: String,
}

impl Location {
    /// `s3://BUCKET[/PREFIX]`, or `BUCKET[/PREFIX]`.
    pub fn parse(s: &str) -> Result<Self, ConsolidateError> {
        let rest = s.trim().strip_prefix("s3://").unwrap_or(s.trim());
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = bucket.len() >= 3
            && bucket.len() <= 63
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(ConsolidateError::Location(s.to_string()));
        }
        Ok(Self::new(bucket, Some(prefix)))
    }

    pub fn new(bucket: &str, prefix: Option<&str>) -> Self {
        let prefix = match prefix
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
        {
            Some(p) => format!("{p}/"),
            None => String::new(),
        };
        Self {
            bucket: bucket.to_string(),
            prefix,
        }
    }

    /// `[prefix/]AWSLogs/`: everything CloudTrail writes here.
    pub fn logs_root(&self) -> String {
        logs_root(Some(&self.prefix))
    }

    /// The part of `key` under this prefix.
    pub fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.prefix)
    }

    pub fn object(&self, relative: &str) -> ObjectRef {
        ObjectRef::new(&self.bucket, format!("{}{relative}", self.prefix))
    }

    /// Where the copy of one earlier state (version `version_id` of `source`) goes.
    pub fn version_object(&self, source: &ObjectRef, version_id: &str) -> ObjectRef {
        self.object(&format!(
            "{VERSIONS_DIR}{}/{version_id}/{}",
            source.bucket, source.key
        ))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Log,
    Digest,
    /// A delete marker over a CloudTrail log or digest (`--all-versions`): no bytes to copy, the
    /// manifest line is its record.
    DeleteMarker,
}

impl Kind {
    /// A log or a digest, by its key; None for anything else.
    pub fn of_key(key: &str) -> Option<Self> {
        if DigestKey::parse(key).is_ok() {
            Some(Self::Digest)
        } else if is_log_key(key) {
            Some(Self::Log)
        } else {
            None
        }
    }
}

/// How to copy.
#[derive(Debug, Clone)]
pub struct Options {
    /// The copies' storage class; default: the target bucket's default (STANDARD).
    pub storage_class: Option<StorageClass>,
    /// List and compare only; copy nothing and write no manifest.
    pub dry_run: bool,
    /// Objects copied at once.
    pub concurrency: usize,
    /// Also copy every earlier state (noncurrent version) and record every delete marker.
    pub all_versions: bool,
    /// Objects larger than this are copied in parts.
    pub multipart_threshold: u64,
    /// The part size of multipart copies (raised when an object would need more than 10,000).
    pub part_size: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            storage_class: None,
            dry_run: false,
            concurrency: 32,
            all_versions: false,
            multipart_threshold: COPY_OBJECT_LIMIT,
            part_size: 512 << 20,
        }
    }
}

/// One object to bring over.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: Kind,
    pub source: ObjectRef,
    /// The source's version, for an earlier state; None: its current version.
    pub source_version: Option<String>,
    pub target: ObjectRef,
    pub size: u64,
}

/// What a run will look at.
#[derive(Debug, Default)]
pub struct Plan {
    pub objects: Vec<Planned>,
    /// Delete markers over CloudTrail objects, recorded as they are (`all_versions`).
    pub delete_markers: Vec<Relocated>,
    /// Objects under `AWSLogs/` that are not CloudTrail logs or digests.
    pub not_cloudtrail: u64,
}

/// One line of a run's plan: a copy it is about to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCopy {
    pub key: String,
    pub size: u64,
}

/// A run's folder under the target: its plan, then its manifest and object list.
fn run_dir(target: &Location, started: DateTime<Utc>) -> String {
    format!(
        "{}{MANIFEST_DIR}{}/",
        target.prefix,
        started.format("%Y%m%dT%H%M%S%.3fZ")
    )
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Copied,
    /// An identical copy was already there (an earlier or interrupted run).
    AlreadyThere,
    /// `--dry-run`: it would be copied.
    WouldCopy,
    Failed(String),
}

/// One line of the manifest's object list: where a copy came from and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relocated {
    pub kind: Kind,
    pub source_bucket: String,
    pub source_key: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// How the copy was verified: `crc32:…`, `crc64nvme:…`, `md5:…` (ETag) or `sha256:…`;
    /// `none` for a delete marker.
    pub checksum: String,
    /// The version of the source that was copied, for an earlier state (`--all-versions`);
    /// absent for a current object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version_id: Option<String>,
    /// When that version or delete marker was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DateTime<Utc>>,
}

/// What the run sends as it goes.
#[derive(Debug)]
pub enum Progress {
    /// The plan: objects and bytes to look at.
    Listed { objects: u64, bytes: u64 },
    /// One object is done.
    Done { planned: Planned, outcome: Outcome },
}

/// The end of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub copied: u64,
    pub already_there: u64,
    pub would_copy: u64,
    pub bytes_copied: u64,
    /// Objects under `AWSLogs/` that are not CloudTrail logs or digests (Config, ELB, …).
    pub not_cloudtrail: u64,
    /// Delete markers over CloudTrail objects recorded in the manifest (`--all-versions`).
    pub delete_markers: u64,
    /// Every object that could not be copied or verified, and why.
    pub failed: Vec<(ObjectRef, String)>,
    /// The manifest's location (not for a dry run).
    pub manifest: Option<ObjectRef>,
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        if self.failed.is_empty() { 0 } else { 2 }
    }
}

/// The manifest: which locations the copies came from. Its object list is `objects.jsonl`
/// beside it, one [`Relocated`] per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub trailkeeper_manifest: u32,
    pub created: DateTime<Utc>,
    pub target: Location,
    pub sources: Vec<Location>,
    pub objects_key: String,
    pub objects: u64,
    pub bytes: u64,
    pub failed: Vec<String>,
}

impl Manifest {
    /// Reads a manifest that `trailkeeper consolidate` wrote.
    pub async fn load(store: &Store, object: &ObjectRef) -> Result<Self, ConsolidateError> {
        let bad = |message: String| ConsolidateError::BadManifest {
            object: object.clone(),
            message,
        };
        let body = match store.get_small(object, MANIFEST_LIMIT).await? {
            Fetched::Object(o) => o.body,
            Fetched::Missing => return Err(bad("it does not exist".into())),
            Fetched::TooLarge(n) => return Err(bad(format!("{n} bytes is too large"))),
        };
        let m: Manifest = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        if m.trailkeeper_manifest != 1 {
            return Err(bad(format!("version {}", m.trailkeeper_manifest)));
        }
        Ok(m)
    }
}

/// The S3 `x-amz-copy-source` of an object (or of one version of it): bucket and URL-encoded
/// key.
fn copy_source(o: &ObjectRef, version: Option<&str>) -> String {
    let mut s = format!("{}/", o.bucket);
    for b in o.key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if let Some(v) = version {
        s.push_str("?versionId=");
        s.push_str(
            &v.replace('+', "%2B")
                .replace('=', "%3D")
                .replace('/', "%2F"),
        );
    }
    s
}

/// An object, or one version of it, as messages name it.
pub fn versioned(o: &ObjectRef, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{o} (version {v})"),
        None => o.to_string(),
    }
}

/// The object's full-object checksum, if S3 keeps one (a multipart object's composite
/// checksum, `…-N`, says nothing about a copy made with other parts).
fn full_checksum(h: &HeadObjectOutput) -> Option<(ChecksumAlgorithm, &str)> {
    [
        (ChecksumAlgorithm::Crc64Nvme, h.checksum_crc64_nvme()),
        (ChecksumAlgorithm::Crc32C, h.checksum_crc32_c()),
        (ChecksumAlgorithm::Crc32, h.checksum_crc32()),
        (ChecksumAlgorithm::Sha256, h.checksum_sha256()),
        (ChecksumAlgorithm::Sha1, h.checksum_sha1()),
    ]
    .into_iter()
    .find_map(|(a, v)| {
        v.filter(|v| !v.is_empty() && !v.contains('-'))
            .map(|v| (a, v))
    })
}

fn checksum_of(h: &HeadObjectOutput, algorithm: &ChecksumAlgorithm) -> Option<String> {
    match algorithm {
        ChecksumAlgorithm::Crc64Nvme => h.checksum_crc64_nvme(),
        ChecksumAlgorithm::Crc32C => h.checksum_crc32_c(),
        ChecksumAlgorithm::Crc32 => h.checksum_crc32(),
        ChecksumAlgorithm::Sha256 => h.checksum_sha256(),
        ChecksumAlgorithm::Sha1 => h.checksum_sha1(),
        _ => None,
    }
    .map(str::to_string)
}

/// A plain MD5 ETag: a single-part object without SSE-KMS.
fn md5_etag(h: &HeadObjectOutput) -> Option<String> {
    let kms = matches!(
        h.server_side_encryption(),
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    );
    let etag = h.e_tag()?.trim_matches('"').to_ascii_lowercase();
    (!kms && etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(etag)
}

#[derive(Clone)]
pub struct Consolidator {
    s3: aws_sdk_s3::Client,
    store: Store,
    options: Options,
}

impl Consolidator {
    pub fn new(s3: aws_sdk_s3::Client, options: Options) -> Self {
        Self {
            store: Store::new(s3.clone()),
            s3,
            options,
        }
    }

    /// Lists every CloudTrail log and digest of the sources and where each goes (with
    /// `all_versions`, also every earlier state, and the delete markers to record).
    pub async fn plan(
        &self,
        sources: &[Location],
        target: &Location,
    ) -> Result<Plan, ConsolidateError> {
        let mut plan = Plan::default();
        let mut seen: HashMap<String, ObjectRef> = HashMap::new();
        for source in sources {
            if source == target {
                return Err(ConsolidateError::Refused(format!(
                    "{source} is the target itself"
                )));
            }
            let root = source.logs_root();
            let inventory = if self.options.all_versions {
                Inventory::list(&self.s3, &source.bucket, &root)
                    .await?
                    .unwrap_or_default()
            } else {
                let listing = self
                    .store
                    .list(&source.bucket, &root, None, None, None)
                    .await?;
                Inventory {
                    current: listing
                        .keys
                        .into_iter()
                        .zip(listing.sizes)
                        .map(|(key, size)| Version {
                            key,
                            version_id: String::new(),
                            etag: None,
                            size,
                            last_modified: None,
                        })
                        .collect(),
                    ..Inventory::default()
                }
            };
            for v in &inventory.current {
                let Some(kind) = Kind::of_key(&v.key) else {
                    plan.not_cloudtrail += 1;
                    continue;
                };
                let Some(relative) = source.relative(&v.key) else {
                    continue;
                };
                let target_object = target.object(relative);
                let source_object = ObjectRef::new(&source.bucket, &v.key);
                if source.bucket == target.bucket && target_object.key == v.key {
                    continue;
                }
                if let Some(first) = seen.get(&target_object.key) {
                    return Err(ConsolidateError::Refused(format!(
                        "{source_object} and {first} would both be copied to {target_object}; \
                         consolidate them into different target prefixes"
                    )));
                }
                seen.insert(target_object.key.clone(), source_object.clone());
                plan.objects.push(Planned {
                    kind,
                    source: source_object,
                    source_version: None,
                    target: target_object,
                    size: v.size,
                });
            }
            // Earlier states are keyed by source bucket and version id: they cannot collide.
            for v in &inventory.noncurrent {
                let Some(kind) = Kind::of_key(&v.key) else {
                    continue;
                };
                let source_object = ObjectRef::new(&source.bucket, &v.key);
                plan.objects.push(Planned {
                    kind,
                    target: target.version_object(&source_object, &v.version_id),
                    source: source_object,
                    source_version: Some(v.version_id.clone()),
                    size: v.size,
                });
            }
            for m in &inventory.delete_markers {
                if Kind::of_key(&m.key).is_none() {
                    continue;
                }
                let source_object = ObjectRef::new(&source.bucket, &m.key);
                let at = target.version_object(&source_object, &m.version_id);
                plan.delete_markers.push(Relocated {
                    kind: Kind::DeleteMarker,
                    source_bucket: source.bucket.clone(),
                    source_key: m.key.clone(),
                    bucket: at.bucket,
                    key: at.key,
                    size: 0,
                    checksum: "none".into(),
                    source_version_id: Some(m.version_id.clone()),
                    last_modified: m.last_modified,
                });
            }
        }
        Ok(plan)
    }
    /// Copies, verifies and records every planned object; the manifest is written at the end
    /// (not for a dry run). Only a failure to list a source, or to write the manifest, is an
    /// error; each object that fails is in the report, by name, and the others go on.
    pub async fn run(
        &self,
        sources: &[Location],
        target: &Location,
        progress: mpsc::Sender<Progress>,
    ) -> Result<Report, ConsolidateError> {
        let started = Utc::now();
        let plan = self.plan(sources, target).await?;
        let _ = progress
            .send(Progress::Listed {
                objects: plan.objects.len() as u64,
                bytes: plan.objects.iter().map(|p| p.size).sum(),
            })
            .await;
        if !self.options.dry_run {
            self.write_plan(started, target, &plan.objects).await?;
        }
        let mut report = Report {
            not_cloudtrail: plan.not_cloudtrail,
            delete_markers: plan.delete_markers.len() as u64,
            ..Report::default()
        };
        let mut relocated: Vec<Relocated> = plan.delete_markers;
        let mut results = stream::iter(plan.objects)
            .map(|planned| async move {
                let (outcome, record) = self.relocate(&planned).await;
                (planned, outcome, record)
            })
            .buffer_unordered(self.options.concurrency.max(1));
        while let Some((planned, outcome, record)) = results.next().await {
            match &outcome {
                Outcome::Copied => {
                    report.copied += 1;
                    report.bytes_copied += planned.size;
                }
                Outcome::AlreadyThere => report.already_there += 1,
                Outcome::WouldCopy => report.would_copy += 1,
                Outcome::Failed(why) => report.failed.push((planned.source.clone(), why.clone())),
            }
            relocated.extend(record);
            let _ = progress.send(Progress::Done { planned, outcome }).await;
        }
        drop(results);
        if !self.options.dry_run {
            report.manifest = Some(
                self.write_manifest(started, sources, target, relocated, &report.failed)
                    .await?,
            );
        }
        Ok(report)
    }

    /// `HeadObject` of the current version, or of `version`.
    async fn head(
        &self,
        o: &ObjectRef,
        version: Option<&str>,
    ) -> Result<Option<HeadObjectOutput>, String> {
        match self
            .s3
            .head_object()
            .bucket(&o.bucket)
            .key(&o.key)
            .set_version_id(version.map(str::to_string))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(h) => Ok(Some(h)),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), HeadObjectError::NotFound(_)) => {
                Ok(None)
            }
            Err(e) => Err(format!(
                "HeadObject {}: {}",
                versioned(o, version),
                describe_sdk_error(&e)
            )),
        }
    }

    /// Reads `source` and `copy` now and holds them to the check every copy gets (size, user
    /// metadata, checksum): `Ok` with the checksum that matched and the source's ETag, or what
    /// differs, is missing or could not be read. `trailkeeper retire` deletes nothing that
    /// fails it.
    pub async fn verify_copy(
        &self,
        kind: Kind,
        source: &ObjectRef,
        version: Option<&str>,
        copy: &ObjectRef,
    ) -> Result<(String, Option<String>), String> {
        let Some(source_head) = self.head(source, version).await? else {
            return Err(format!("{} does not exist", versioned(source, version)));
        };
        let Some(copy_head) = self.head(copy, None).await? else {
            return Err(format!("its copy {copy} does not exist"));
        };
        let p = Planned {
            kind,
            source: source.clone(),
            source_version: version.map(str::to_string),
            target: copy.clone(),
            size: source_head.content_length().unwrap_or_default().max(0) as u64,
        };
        match self.verify(&p, &source_head, &copy_head).await? {
            Ok(checksum) => Ok((checksum, source_head.e_tag().map(str::to_string))),
            Err(why) => Err(format!("its copy {copy} differs: {why}")),
        }
    }

    /// One object: skip it if an identical copy is there, copy it otherwise, and verify.
    async fn relocate(&self, p: &Planned) -> (Outcome, Option<Relocated>) {
        match self.relocate_inner(p).await {
            Ok((outcome, checksum)) => {
                let record = checksum.map(|(checksum, last_modified)| Relocated {
                    kind: p.kind,
                    source_bucket: p.source.bucket.clone(),
                    source_key: p.source.key.clone(),
                    bucket: p.target.bucket.clone(),
                    key: p.target.key.clone(),
                    size: p.size,
                    checksum,
                    source_version_id: p.source_version.clone(),
                    last_modified: p.source_version.as_ref().and(last_modified),
                });
                (outcome, record)
            }
            Err(why) => (Outcome::Failed(why), None),
        }
    }

    /// The outcome, and for a verified copy its checksum and the source's last-modified time.
    async fn relocate_inner(
        &self,
        p: &Planned,
    ) -> Result<(Outcome, Option<(String, Option<DateTime<Utc>>)>), String> {
        let version = p.source_version.as_deref();
        let from = versioned(&p.source, version);
        let Some(source) = self.head(&p.source, version).await? else {
            return Err(format!("{from} vanished since it was listed"));
        };
        let written = source
            .last_modified()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
        if let Some(existing) = self.head(&p.target, None).await? {
            return match self.verify(p, &source, &existing).await? {
                Ok(checksum) => Ok((Outcome::AlreadyThere, Some((checksum, written)))),
                Err(why) => Err(format!(
                    "{} already exists and is not a copy of {from}: {why}; it is not overwritten",
                    p.target
                )),
            };
        }
        if self.options.dry_run {
            return Ok((Outcome::WouldCopy, None));
        }
        let size = source.content_length().unwrap_or_default().max(0) as u64;
        let etag = source.e_tag().unwrap_or_default().to_string();
        if size > self.options.multipart_threshold {
            self.copy_in_parts(p, &source, size, &etag).await?;
        } else {
            self.s3
                .copy_object()
                .bucket(&p.target.bucket)
                .key(&p.target.key)
                .copy_source(copy_source(&p.source, version))
                .copy_source_if_match(&etag)
                .metadata_directive(MetadataDirective::Copy)
                .acl(ObjectCannedAcl::BucketOwnerFullControl)
                .set_storage_class(self.options.storage_class.clone())
                .set_checksum_algorithm(full_checksum(&source).map(|(a, _)| a))
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "CopyObject {from} to {}: {}",
                        p.target,
                        describe_sdk_error(&e)
                    )
                })?;
        }
        let Some(copy) = self.head(&p.target, None).await? else {
            return Err(format!("{} is not there after copying", p.target));
        };
        match self.verify(p, &source, &copy).await? {
            Ok(checksum) => Ok((Outcome::Copied, Some((checksum, written)))),
            Err(why) => Err(format!("the copy {} differs from {from}: {why}", p.target)),
        }
    }

    /// Multipart copy of an object too large for `CopyObject`; aborted on any failure.
    async fn copy_in_parts(
        &self,
        p: &Planned,
        source: &HeadObjectOutput,
        size: u64,
        etag: &str,
    ) -> Result<(), String> {
        let fail = |what: &str, e: String| format!("{what} {} to {}: {e}", p.source, p.target);
        let upload = self
            .s3
            .create_multipart_upload()
            .bucket(&p.target.bucket)
            .key(&p.target.key)
            .set_metadata(source.metadata().cloned())
            .set_content_type(source.content_type().map(str::to_string))
            .set_content_encoding(source.content_encoding().map(str::to_string))
            .acl(ObjectCannedAcl::BucketOwnerFullControl)
            .set_storage_class(self.options.storage_class.clone())
            .send()
            .await
            .map_err(|e| fail("CreateMultipartUpload", describe_sdk_error(&e)))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let part_size = self
            .options
            .part_size
            .max(MIN_PART)
            .max(size.div_ceil(MAX_PARTS));
        let mut parts = Vec::new();
        let mut result = Ok(());
        for (i, start) in (0..size).step_by(part_size as usize).enumerate() {
            let end = (start + part_size).min(size) - 1;
            let number = i as i32 + 1;
            match self
                .s3
                .upload_part_copy()
                .bucket(&p.target.bucket)
                .key(&p.target.key)
                .upload_id(&upload_id)
                .part_number(number)
                .copy_source(copy_source(&p.source, p.source_version.as_deref()))
                .copy_source_if_match(etag)
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
            {
                Ok(out) => parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(
                            out.copy_part_result()
                                .and_then(|r| r.e_tag())
                                .map(str::to_string),
                        )
                        .build(),
                ),
                Err(e) => {
                    result = Err(fail(
                        &format!("UploadPartCopy (part {number})"),
                        describe_sdk_error(&e),
                    ));
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self
                .s3
                .complete_multipart_upload()
                .bucket(&p.target.bucket)
                .key(&p.target.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| fail("CompleteMultipartUpload", describe_sdk_error(&e)));
        }
        if result.is_err() {
            // Parts left behind cost money; the object itself never appeared.
            let _ = self
                .s3
                .abort_multipart_upload()
                .bucket(&p.target.bucket)
                .key(&p.target.key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// Whether `copy` is `source`: size, user metadata, and the strongest checksum both sides
    /// have (S3's full-object checksum, else the MD5 ETag, else SHA-256 of both, read).
    /// The outer error is a failure to read; the inner one is a difference.
    async fn verify(
        &self,
        p: &Planned,
        source: &HeadObjectOutput,
        copy: &HeadObjectOutput,
    ) -> Result<Result<String, String>, String> {
        let (a, b) = (source.content_length(), copy.content_length());
        if a != b {
            return Ok(Err(format!(
                "{} bytes, the source has {}",
                b.unwrap_or(-1),
                a.unwrap_or(-1)
            )));
        }
        let empty = HashMap::new();
        let (ma, mb) = (
            source.metadata().unwrap_or(&empty),
            copy.metadata().unwrap_or(&empty),
        );
        if ma != mb {
            let mut lost: Vec<&String> = ma
                .iter()
                .filter(|(k, v)| mb.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            lost.sort();
            return Ok(Err(format!(
                "user metadata differs (x-amz-meta-{})",
                if lost.is_empty() {
                    "… added".to_string()
                } else {
                    lost.iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", x-amz-meta-")
                }
            )));
        }
        if let Some((algorithm, want)) = full_checksum(source)
            && let Some(got) = checksum_of(copy, &algorithm)
        {
            let name = algorithm.as_str().to_ascii_lowercase();
            return Ok(if got == want {
                Ok(format!("{name}:{got}"))
            } else {
                Err(format!("{name} is {got}, the source's is {want}"))
            });
        }
        if let (Some(want), Some(got)) = (md5_etag(source), md5_etag(copy)) {
            return Ok(if got == want {
                Ok(format!("md5:{got}"))
            } else {
                Err(format!("MD5 is {got}, the source's is {want}"))
            });
        }
        let (want, got) = (
            self.sha256(&p.source, p.source_version.as_deref()).await?,
            self.sha256(&p.target, None).await?,
        );
        Ok(if got == want {
            Ok(format!("sha256:{got}"))
        } else {
            Err(format!("SHA-256 is {got}, the source's is {want}"))
        })
    }

    /// SHA-256 of an object's bytes, streamed.
    async fn sha256(&self, o: &ObjectRef, version: Option<&str>) -> Result<String, String> {
        let out = self
            .s3
            .get_object()
            .bucket(&o.bucket)
            .key(&o.key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "GetObject {}: {}",
                    versioned(o, version),
                    describe_sdk_error(&e)
                )
            })?;
        let mut body = out.body;
        let mut sink = Sha256Sink::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("reading {o}: {}", error_chain(&e)))?;
            let _ = sink.write_all(&chunk);
        }
        Ok(hex::encode(sink.finish()))
    }

    /// The plan, before any copy is made, so that the tripwire knows each copy for what it is.
    async fn write_plan(
        &self,
        started: DateTime<Utc>,
        target: &Location,
        planned: &[Planned],
    ) -> Result<(), ConsolidateError> {
        let mut lines = Vec::new();
        for p in planned {
            let line = PlannedCopy {
                key: p.target.key.clone(),
                size: p.size,
            };
            let _ = serde_json::to_writer(&mut lines, &line);
            lines.push(b'\n');
        }
        let at = ObjectRef::new(
            &target.bucket,
            format!("{}{PLAN_FILE}", run_dir(target, started)),
        );
        self.put(&at, lines, "application/x-ndjson").await
    }

    async fn write_manifest(
        &self,
        started: DateTime<Utc>,
        sources: &[Location],
        target: &Location,
        mut relocated: Vec<Relocated>,
        failed: &[(ObjectRef, String)],
    ) -> Result<ObjectRef, ConsolidateError> {
        relocated.sort_by(|a, b| a.key.cmp(&b.key));
        let dir = run_dir(target, started);
        let objects_key = format!("{dir}objects.jsonl");
        let mut lines = Vec::new();
        for r in &relocated {
            let _ = serde_json::to_writer(&mut lines, r);
            lines.push(b'\n');
        }
        let manifest = Manifest {
            trailkeeper_manifest: 1,
            created: started,
            target: target.clone(),
            sources: sources.to_vec(),
            objects_key: objects_key.clone(),
            objects: relocated.len() as u64,
            bytes: relocated.iter().map(|r| r.size).sum(),
            failed: failed
                .iter()
                .map(|(o, why)| format!("{o}: {why}"))
                .collect(),
        };
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        self.put(
            &ObjectRef::new(&target.bucket, objects_key),
            lines,
            "application/x-ndjson",
        )
        .await?;
        let at = ObjectRef::new(&target.bucket, format!("{dir}manifest.json"));
        self.put(&at, body, "application/json").await?;
        Ok(at)
    }

    async fn put(
        &self,
        at: &ObjectRef,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ConsolidateError> {
        Store::new(self.s3.clone())
            .put_small(at, body, content_type)
            .await
            .map_err(|e| ConsolidateError::Manifest {
                object: at.clone(),
                message: match e {
                    StoreError::Write { message, .. } => message,
                    other => other.to_string(),
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::copy_object::CopyObjectOutput;
    use aws_sdk_s3::types::error::NotFound;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    const KEY: &str = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/01/01/111122223333_CloudTrail-Digest_us-east-1_trailkeeper_us-east-1_20260101T010203Z.json.gz";

    fn planned() -> Planned {
        Planned {
            kind: Kind::Digest,
            source: ObjectRef::new("old-logs", KEY),
            source_version: None,
            target: ObjectRef::new("central-logs", KEY),
            size: 10,
        }
    }

    fn head(bucket: &'static str, signature: Option<&'static str>) -> Rule {
        mock!(aws_sdk_s3::Client::head_object)
            .match_requests(move |r| r.bucket() == Some(bucket))
            .then_output(move || {
                let out = HeadObjectOutput::builder()
                    .content_length(10)
                    .e_tag("\"5d41402abc4b2a76b9719d911017c592\"");
                match signature {
                    Some(s) => out.metadata("signature", s),
                    None => out,
                }
                .build()
            })
    }

    #[tokio::test]
    async fn a_copy_that_lost_its_signature_is_a_failure_naming_both_objects() {
        let source = head("old-logs", Some("abc"));
        let target = mock!(aws_sdk_s3::Client::head_object)
            .match_requests(|r| r.bucket() == Some("central-logs"))
            .sequence()
            .error(|| HeadObjectError::NotFound(NotFound::builder().build()))
            .output(|| {
                HeadObjectOutput::builder()
                    .content_length(10)
                    .e_tag("\"5d41402abc4b2a76b9719d911017c592\"")
                    .build()
            })
            .build();
        let copy = mock!(aws_sdk_s3::Client::copy_object)
            .then_output(|| CopyObjectOutput::builder().build());
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&source, &target, &copy]);
        let c = Consolidator::new(s3, Options::default());
        let (outcome, record) = c.relocate(&planned()).await;
        let Outcome::Failed(why) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(copy.num_calls(), 1);
        assert!(record.is_none());
        assert!(
            why.contains(&format!(
                "the copy s3://central-logs/{KEY} differs from s3://old-logs/{KEY}"
            )),
            "{why}"
        );
        assert!(why.contains("x-amz-meta-signature"), "{why}");
    }

    #[tokio::test]
    async fn an_identical_copy_is_not_copied_again_and_a_dry_run_copies_nothing() {
        let source = head("old-logs", Some("abc"));
        let target = head("central-logs", Some("abc"));
        let copy = mock!(aws_sdk_s3::Client::copy_object)
            .then_output(|| CopyObjectOutput::builder().build());
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&source, &target, &copy]);
        let (outcome, record) = Consolidator::new(s3, Options::default())
            .relocate(&planned())
            .await;
        assert_eq!(outcome, Outcome::AlreadyThere);
        assert_eq!(
            record.map(|r| r.checksum).as_deref(),
            Some("md5:5d41402abc4b2a76b9719d911017c592")
        );
        assert_eq!(copy.num_calls(), 0);

        let absent = mock!(aws_sdk_s3::Client::head_object)
            .match_requests(|r| r.bucket() == Some("central-logs"))
            .then_error(|| HeadObjectError::NotFound(NotFound::builder().build()));
        let source = head("old-logs", Some("abc"));
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&source, &absent, &copy]);
        let dry = Options {
            dry_run: true,
            ..Options::default()
        };
        let (outcome, _) = Consolidator::new(s3, dry).relocate(&planned()).await;
        assert_eq!(outcome, Outcome::WouldCopy);
        assert_eq!(copy.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_throttled_source_is_retried_then_reported_by_name_never_copied() {
        let slow = mock!(aws_sdk_s3::Client::head_object)
            .sequence()
            .http_status(503, None)
            .times(10)
            .build();
        let copy = mock!(aws_sdk_s3::Client::copy_object)
            .then_output(|| CopyObjectOutput::builder().build());
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&slow, &copy], |c| c
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2)
            ));
        let (outcome, _) = Consolidator::new(s3, Options::default())
            .relocate(&planned())
            .await;
        let Outcome::Failed(why) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(slow.num_calls(), 2, "retried");
        assert!(
            why.contains(&format!("HeadObject s3://old-logs/{KEY}")),
            "{why}"
        );
        assert_eq!(copy.num_calls(), 0);
    }

    #[test]
    fn locations_parse_with_and_without_scheme_and_prefix() {
        let l = Location::parse("s3://old-logs/a/b/").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("old-logs", "a/b/"));
        assert_eq!(l.logs_root(), "a/b/AWSLogs/");
        let l = Location::parse("old-logs").unwrap();
        assert_eq!(l.prefix, "");
        assert_eq!(l.logs_root(), "AWSLogs/");
        assert_eq!(
            l.object("AWSLogs/x"),
            ObjectRef::new("old-logs", "AWSLogs/x")
        );
        for bad in ["s3://", "s3://Upper", "", "s3://ab"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn copy_sources_encode_what_is_not_safe_in_a_url() {
        assert_eq!(
            copy_source(&ObjectRef::new("b", "AWSLogs/a b+c/x_y.json.gz"), None),
            "b/AWSLogs/a%20b%2Bc/x_y.json.gz"
        );
        assert_eq!(
            copy_source(&ObjectRef::new("b", "k"), Some("3HL4+kq/t=")),
            "b/k?versionId=3HL4%2Bkq%2Ft%3D"
        );
    }

    #[test]
    fn composite_checksums_are_not_compared() {
        let h = HeadObjectOutput::builder()
            .checksum_crc32("abc=-3")
            .checksum_sha256("def=")
            .build();
        assert_eq!(full_checksum(&h), Some((ChecksumAlgorithm::Sha256, "def=")));
        let kms = HeadObjectOutput::builder()
            .e_tag("\"5d41402abc4b2a76b9719d911017c592\"")
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .build();
        assert_eq!(md5_etag(&kms), None);
    }
}
