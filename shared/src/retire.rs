//! Retirement: an old trail bucket and the trails that wrote to it are deleted, but only after
//! every object in it has a verified copy in the central bucket.
//!
//! The proof is the consolidation manifests under the central bucket's
//! `[prefix/]trailkeeper/relocations/` that name the old bucket as a source: every current
//! object of the old bucket (the whole bucket, not only `AWSLogs/`) must be listed there, and
//! its copy must pass, now, the check `trailkeeper consolidate` made (size, user metadata,
//! checksum). Noncurrent versions and delete markers need no copy: they are history of objects
//! whose current state was copied, and they go with the bucket. Under `AWSLogs/` they are
//! evidence: an overwritten log's original exists only as a noncurrent version. So each one there
//! must have a verified copy (`trailkeeper consolidate --all-versions`, by version id, under
//! `trailkeeper-versions/`), each delete marker there a record in a manifest, and a clean
//! `trailkeeper validate --manifest` of the copied history must be shown (its JSON Lines): the
//! checksums prove the copies are the old bytes, the validation that those bytes are what
//! CloudTrail signed.
//!
//! The order is what keeps the record whole: the trails are stopped and deleted first, so that
//! nothing new lands; then the bucket is listed again, and any object that appeared or changed
//! since the check stops the retirement before anything is deleted; then every version and
//! delete marker that listing found is deleted by version id (never by key alone, so an object
//! that lands meanwhile survives and keeps the bucket); then the bucket. Each step converges:
//! a trail or bucket already gone counts as done, so a run that failed half-way can be run again.

use std::collections::{HashMap, HashSet};
use std::fmt;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};

use crate::consolidate::{
    Consolidator, Kind, Location, MANIFEST_DIR, Manifest, Options, Relocated, versioned,
};
use crate::events::AccountId;
use crate::policy::TrailArn;
use crate::store::{Fetched, ObjectRef, Store, StoreError, describe_sdk_error};
use crate::trail::{Backoff, RoleName, TrailEnabler, TrailSpec};

/// The IAM actions retirement needs. The caller: `s3:GetObject`/`s3:ListBucket` on the central
/// bucket (manifests, and `HeadObject` of each copy) and on the old bucket, with
/// `s3:ListBucketVersions`, `s3:DeleteObjectVersion` (every delete names a version, `null` in
/// an unversioned bucket) and `s3:DeleteBucket` there. The CloudTrail actions are made as the
/// trail's account: the caller's own, or the member role (with `sts:AssumeRole`, see
/// `crate::trail::CALLS`).
pub const CALLS: &[&str] = &[
    "s3:GetObject",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:DeleteObjectVersion",
    "s3:DeleteBucket",
    "cloudtrail:DescribeTrails",
    "cloudtrail:StopLogging",
    "cloudtrail:DeleteTrail",
];

/// `DeleteObjects` takes at most 1,000 keys (versions) per request.
pub const DELETE_BATCH: usize = 1000;
/// The largest object list of one manifest read (about 10 million copies).
const OBJECT_LIST_LIMIT: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error("{0}")]
    Refused(String),
    #[error("listing the versions of s3://{bucket}: {message}")]
    List { bucket: String, message: String },
    #[error("{0}")]
    Manifest(String),
    #[error("trail {arn}: {message}")]
    Trail { arn: String, message: String },
    #[error("deleting the bucket s3://{bucket}: {message}")]
    DeleteBucket { bucket: String, message: String },
    #[error("the validation {name}: {message}")]
    Validation { name: String, message: String },
}

/// One version (or delete marker) of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    /// `null` for objects written while versioning was off.
    pub version_id: String,
    pub etag: Option<String>,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// Every version of the objects under a prefix of a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The current version of each object.
    pub current: Vec<Version>,
    pub noncurrent: Vec<Version>,
    pub delete_markers: Vec<Version>,
}

impl Inventory {
    /// Every version and delete marker, as `DeleteObjects` names them.
    pub fn all(&self) -> impl Iterator<Item = &Version> {
        self.current
            .iter()
            .chain(&self.noncurrent)
            .chain(&self.delete_markers)
    }

    pub fn versions(&self) -> usize {
        self.current.len() + self.noncurrent.len() + self.delete_markers.len()
    }

    /// Lists every version and delete marker under `prefix` (`ListObjectVersions`); None when
    /// the bucket does not exist.
    pub async fn list(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<Self>, StoreError> {
        let mut inventory = Self::default();
        let failed = |message: String| StoreError::List {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            message,
        };
        let time = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
            t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        };
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = match s3
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) if e.code() == Some("NoSuchBucket") => return Ok(None),
                Err(e) => return Err(failed(describe_sdk_error(&e))),
            };
            for v in page.versions() {
                let version = Version {
                    key: v.key().unwrap_or_default().to_string(),
                    version_id: v.version_id().unwrap_or("null").to_string(),
                    etag: v.e_tag().map(str::to_string),
                    size: v.size().unwrap_or_default().max(0) as u64,
                    last_modified: time(v.last_modified()),
                };
                if v.is_latest() == Some(true) {
                    inventory.current.push(version);
                } else {
                    inventory.noncurrent.push(version);
                }
            }
            for m in page.delete_markers() {
                inventory.delete_markers.push(Version {
                    key: m.key().unwrap_or_default().to_string(),
                    version_id: m.version_id().unwrap_or("null").to_string(),
                    etag: None,
                    size: 0,
                    last_modified: time(m.last_modified()),
                });
            }
            if page.is_truncated() != Some(true) {
                return Ok(Some(inventory));
            }
            let next = (
                page.next_key_marker().map(str::to_string),
                page.next_version_id_marker().map(str::to_string),
            );
            if next.0.is_none() || next == (key_marker.clone(), version_marker.clone()) {
                return Err(failed("a truncated page without a new marker".into()));
            }
            (key_marker, version_marker) = next;
        }
    }
}

/// A current object without a verified copy, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    pub object: ObjectRef,
    /// For an earlier state (noncurrent version or delete marker): its version id.
    pub version_id: Option<String>,
    pub reason: String,
}

/// Whether a key is in a CloudTrail tree (`[prefix/]AWSLogs/…`), where earlier states are
/// evidence.
pub fn under_logs(key: &str) -> bool {
    key.starts_with("AWSLogs/") || key.contains("/AWSLogs/")
}

/// What `trailkeeper validate --manifest … --format json` printed for the copied history.
#[derive(Debug, Clone, Default)]
pub struct ValidationReport {
    /// Where it was read from (a path), for messages.
    pub name: String,
    /// `(bucket, key)` -> status, for every digest and log verdict.
    verdicts: HashMap<(String, String), String>,
    /// The summary's status; None: the output ends without one (it was cut short).
    pub status: Option<String>,
    /// Each verdict that is not valid: `status s3://bucket/key`.
    pub findings: Vec<String>,
}

impl ValidationReport {
    /// Reads the JSON Lines; a line that is not JSON is an error naming it.
    pub fn parse(name: &str, text: &str) -> Result<Self, RetireError> {
        let mut report = Self {
            name: name.to_string(),
            ..Self::default()
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| RetireError::Validation {
                    name: name.to_string(),
                    message: format!(
                        "line {}: not the JSON Lines of trailkeeper validate --format json: {e}",
                        n + 1
                    ),
                })?;
            let field = |f: &str| v[f].as_str().unwrap_or_default().to_string();
            match v["type"].as_str() {
                Some("summary") => report.status = Some(field("status")),
                Some("digest" | "log") => {
                    let (status, bucket) = (field("status"), field("bucket"));
                    let key = v["key"].as_str();
                    if status != "valid" {
                        report.findings.push(match key {
                            Some(k) => format!("{status} s3://{bucket}/{k}"),
                            None => format!("{status} {} {}", field("account"), field("region")),
                        });
                    }
                    if let Some(k) = key {
                        report.verdicts.insert((bucket, k.to_string()), status);
                    }
                }
                _ => {}
            }
        }
        Ok(report)
    }

    /// The verdict on one object; None when the validation did not judge it.
    pub fn status(&self, object: &ObjectRef) -> Option<&str> {
        self.verdicts
            .get(&(object.bucket.clone(), object.key.clone()))
            .map(String::as_str)
    }

    /// Why it does not show the history clean; None when it does.
    pub fn not_clean(&self) -> Option<String> {
        let ended = match self.status.as_deref() {
            Some("valid") if self.findings.is_empty() => return None,
            Some(s) => format!("it ended {s}"),
            None => "it ends without a summary (cut short)".to_string(),
        };
        let mut shown: Vec<&str> = self.findings.iter().take(10).map(String::as_str).collect();
        if self.findings.len() > shown.len() {
            shown.push("…");
        }
        Some(format!(
            "{ended}, with {} finding(s){}{}: the copied history is not clean; keep the old bucket as evidence",
            self.findings.len(),
            if shown.is_empty() { "" } else { ": " },
            shown.join(", ")
        ))
    }
}

/// Why the validation the retirement needs is missing or not clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationProblem {
    /// `missing` or `not_clean`.
    pub status: &'static str,
    pub reason: String,
}

/// What a named trail is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailState {
    Gone,
    /// It exists and writes to `location` (a location in the old bucket).
    Present {
        location: String,
    },
}

/// A trail to retire: its ARN and a CloudTrail client acting as its account in its region.
#[derive(Debug, Clone)]
pub struct TrailTarget {
    pub arn: TrailArn,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
}

impl TrailTarget {
    /// A client as the trail's account, in its region: the caller's own credentials when the
    /// account is the caller's, else the member role, assumed as the trail-enabler does.
    pub async fn new(
        base: &aws_config::SdkConfig,
        spec: &TrailSpec,
        member_role: &RoleName,
        caller: Option<AccountId>,
        arn: TrailArn,
        backoff: Backoff,
    ) -> Result<Self, RetireError> {
        let spec = TrailSpec {
            home_region: arn.region().clone(),
            ..spec.clone()
        };
        let enabler = TrailEnabler::new(base, spec, member_role.clone(), backoff);
        let cloudtrail = if Some(arn.account()) == caller {
            enabler.own_cloudtrail()
        } else {
            enabler
                .member_cloudtrail(arn.account())
                .await
                .map_err(|e| RetireError::Trail {
                    arn: arn.to_string(),
                    message: e.to_string(),
                })?
                .0
        };
        Ok(Self { arn, cloudtrail })
    }

    fn error(&self, message: String) -> RetireError {
        RetireError::Trail {
            arn: self.arn.to_string(),
            message,
        }
    }

    /// Whether the trail exists, and where it writes.
    pub async fn observe(&self) -> Result<TrailState, RetireError> {
        let arn = self.arn.to_string();
        let out = match self
            .cloudtrail
            .describe_trails()
            .trail_name_list(self.arn.name().to_string())
            .include_shadow_trails(false)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("TrailNotFoundException") => return Ok(TrailState::Gone),
            Err(e) => {
                return Err(self.error(format!(
                    "cloudtrail:DescribeTrails: {}",
                    describe_sdk_error(&e)
                )));
            }
        };
        Ok(
            match out
                .trail_list()
                .iter()
                .find(|t| t.trail_arn() == Some(arn.as_str()))
            {
                None => TrailState::Gone,
                Some(t) => {
                    let location =
                        Location::new(t.s3_bucket_name().unwrap_or_default(), t.s3_key_prefix());
                    TrailState::Present {
                        location: location.to_string(),
                    }
                }
            },
        )
    }

    /// Stops logging and deletes the trail (by name, as its account, in its home region), then
    /// checks that it is gone. A trail already gone is done.
    pub async fn delete(&self) -> Result<(), RetireError> {
        let name = self.arn.name().to_string();
        let gone = |e: &dyn ProvideErrorMetadata| e.code() == Some("TrailNotFoundException");
        if let Err(e) = self.cloudtrail.stop_logging().name(&name).send().await
            && !gone(&e)
        {
            return Err(self.error(format!(
                "cloudtrail:StopLogging: {}",
                describe_sdk_error(&e)
            )));
        }
        if let Err(e) = self.cloudtrail.delete_trail().name(&name).send().await
            && !gone(&e)
        {
            return Err(self.error(format!(
                "cloudtrail:DeleteTrail: {}",
                describe_sdk_error(&e)
            )));
        }
        match self.observe().await? {
            TrailState::Gone => Ok(()),
            TrailState::Present { .. } => Err(self
                .error("still exists after DeleteTrail; nothing in the bucket was deleted".into())),
        }
    }
}

/// What retiring would do; computed without changing anything.
#[derive(Debug, Clone)]
pub struct Plan {
    pub bucket: String,
    pub central: Location,
    /// The manifests that name the old bucket as a source, oldest first.
    pub manifests: Vec<ObjectRef>,
    /// None: the bucket no longer exists.
    pub inventory: Option<Inventory>,
    /// Current objects with a verified copy: key -> the ETag that was checked.
    pub verified: HashMap<String, Option<String>>,
    /// Earlier states under `AWSLogs/` with a verified copy (or, for delete markers, a record):
    /// `(key, version id)`.
    pub verified_versions: HashSet<(String, String)>,
    pub unverified: Vec<Unverified>,
    /// The validation of the copied history that was given, by name.
    pub validation: Option<String>,
    pub validation_problems: Vec<ValidationProblem>,
    pub trails: Vec<(String, TrailState)>,
}

impl Plan {
    pub fn refused(&self) -> bool {
        !self.unverified.is_empty() || !self.validation_problems.is_empty()
    }
}

/// What retiring did.
#[derive(Debug, Default)]
pub struct Retired {
    pub trails_deleted: Vec<String>,
    /// Objects that appeared or changed after the check (found on the second listing):
    /// nothing was deleted.
    pub landed: Vec<Unverified>,
    /// Versions and delete markers deleted.
    pub deleted: u64,
    /// Each version that `DeleteObjects` did not delete, and why.
    pub failed: Vec<(ObjectRef, String, String)>,
    pub bucket_gone: bool,
}

impl fmt::Display for TrailState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gone => write!(f, "already gone"),
            Self::Present { location } => write!(f, "writes to {location}"),
        }
    }
}

#[derive(Clone)]
pub struct Retirer {
    s3: aws_sdk_s3::Client,
    store: Store,
    consolidator: Consolidator,
    concurrency: usize,
}

impl Retirer {
    pub fn new(s3: aws_sdk_s3::Client, concurrency: usize) -> Self {
        Self {
            store: Store::new(s3.clone()),
            consolidator: Consolidator::new(s3.clone(), Options::default()),
            s3,
            concurrency: concurrency.max(1),
        }
    }

    /// Lists the bucket, finds the manifests, checks every current object's copy (and every
    /// earlier state's under `AWSLogs/`), holds the copies to `validation`, and looks at the
    /// trails. Changes nothing.
    pub async fn plan(
        &self,
        bucket: &str,
        central: &Location,
        trails: &[TrailTarget],
        validation: Option<&ValidationReport>,
    ) -> Result<Plan, RetireError> {
        if bucket == central.bucket {
            return Err(RetireError::Refused(format!(
                "s3://{bucket} is the central bucket: retire deletes old buckets, never the one the history was consolidated into"
            )));
        }
        let mut trail_states = Vec::new();
        for t in trails {
            let state = t.observe().await?;
            if let TrailState::Present { location } = &state
                && Location::parse(location).map(|l| l.bucket).ok().as_deref() != Some(bucket)
            {
                return Err(t.error(format!(
                    "writes to {location}, not to s3://{bucket}: retire deletes only the trails of the bucket it retires"
                )));
            }
            trail_states.push((t.arn.to_string(), state));
        }
        let inventory = self.inventory(bucket).await?;
        let (manifests, copies) = self.copies(bucket, central).await?;
        let (verified, verified_versions, unverified) = match &inventory {
            Some(inventory) => {
                self.check(bucket, central, inventory, &copies, validation)
                    .await
            }
            None => Default::default(),
        };
        let cloudtrail = inventory
            .as_ref()
            .is_some_and(|i| i.current.iter().any(|v| Kind::of_key(&v.key).is_some()));
        let mut validation_problems = Vec::new();
        match validation {
            None if cloudtrail => validation_problems.push(ValidationProblem {
                status: "missing",
                reason: format!(
                    "nothing shows that the copies of s3://{bucket} in {central} are what CloudTrail signed: run {} and give --validation FILE",
                    validate_command(central, manifests.last())
                ),
            }),
            Some(report) if cloudtrail => {
                if let Some(why) = report.not_clean() {
                    validation_problems.push(ValidationProblem {
                        status: "not_clean",
                        reason: format!("{}: {why}", report.name),
                    });
                }
            }
            _ => {}
        }
        Ok(Plan {
            bucket: bucket.to_string(),
            central: central.clone(),
            manifests,
            inventory,
            verified,
            verified_versions,
            unverified,
            validation: validation.map(|v| v.name.clone()),
            validation_problems,
            trails: trail_states,
        })
    }

    /// Carries out a plan that was not refused: trails, then the second listing, then the
    /// versions, then the bucket.
    pub async fn retire(
        &self,
        plan: &Plan,
        trails: &[TrailTarget],
    ) -> Result<Retired, RetireError> {
        if plan.refused() {
            return Err(RetireError::Refused(format!(
                "{} objects of s3://{} have no verified copy, {} problem(s) with the validation",
                plan.unverified.len(),
                plan.bucket,
                plan.validation_problems.len()
            )));
        }
        let mut retired = Retired::default();
        for t in trails {
            let arn = t.arn.to_string();
            let planned_gone = plan
                .trails
                .iter()
                .any(|(a, state)| *a == arn && *state == TrailState::Gone);
            if !planned_gone {
                t.delete().await?;
                retired.trails_deleted.push(arn);
            }
        }
        let Some(inventory) = self.inventory(&plan.bucket).await? else {
            retired.bucket_gone = true;
            return Ok(retired);
        };
        retired.landed = inventory
            .current
            .iter()
            .filter_map(|v| {
                let object = ObjectRef::new(&plan.bucket, &v.key);
                let reason = match plan.verified.get(&v.key) {
                    Some(etag) if *etag == v.etag => return None,
                    Some(_) => "changed after its copy was checked",
                    None => "appeared after the bucket was checked",
                };
                Some(Unverified {
                    object,
                    version_id: None,
                    reason: reason.into(),
                })
            })
            .collect();
        // Earlier states under AWSLogs/ that were not checked: an overwrite or a delete since.
        let checked = |v: &Version| {
            plan.verified_versions
                .contains(&(v.key.clone(), v.version_id.clone()))
        };
        for (states, what) in [
            (&inventory.noncurrent, "a noncurrent version"),
            (&inventory.delete_markers, "a delete marker"),
        ] {
            for v in states.iter().filter(|v| under_logs(&v.key)) {
                let was_current = what == "a noncurrent version"
                    && plan
                        .verified
                        .get(&v.key)
                        .is_some_and(|etag| *etag == v.etag);
                if !checked(v) && !was_current {
                    retired.landed.push(Unverified {
                        object: ObjectRef::new(&plan.bucket, &v.key),
                        version_id: Some(v.version_id.clone()),
                        reason: format!(
                            "{what} that appeared after the bucket was checked (the object was overwritten or deleted)"
                        ),
                    });
                }
            }
        }
        if !retired.landed.is_empty() {
            return Ok(retired);
        }
        let versions: Vec<&Version> = inventory.all().collect();
        let mut batches = stream::iter(versions.chunks(DELETE_BATCH))
            .map(|batch| self.delete_batch(&plan.bucket, batch))
            .buffer_unordered(self.concurrency.min(8));
        while let Some((deleted, failed)) = batches.next().await {
            retired.deleted += deleted;
            retired.failed.extend(failed);
        }
        drop(batches);
        if !retired.failed.is_empty() {
            return Ok(retired);
        }
        match self.s3.delete_bucket().bucket(&plan.bucket).send().await {
            Ok(_) => retired.bucket_gone = true,
            Err(e) if e.code() == Some("NoSuchBucket") => retired.bucket_gone = true,
            Err(e) => {
                let hint = if e.code() == Some("BucketNotEmpty") {
                    "; something wrote to it during the retirement, and was not deleted: \
                     consolidate it and run again"
                } else {
                    ""
                };
                return Err(RetireError::DeleteBucket {
                    bucket: plan.bucket.clone(),
                    message: format!("{}{hint}", describe_sdk_error(&e)),
                });
            }
        }
        Ok(retired)
    }

    /// One `DeleteObjects` request: how many were deleted, and each one that was not.
    async fn delete_batch(
        &self,
        bucket: &str,
        batch: &[&Version],
    ) -> (u64, Vec<(ObjectRef, String, String)>) {
        let objects = batch
            .iter()
            .map(|v| {
                ObjectIdentifier::builder()
                    .key(&v.key)
                    .version_id(&v.version_id)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>();
        let delete =
            objects.and_then(|o| Delete::builder().set_objects(Some(o)).quiet(true).build());
        let every = |why: String| {
            batch
                .iter()
                .map(|v| {
                    (
                        ObjectRef::new(bucket, &v.key),
                        v.version_id.clone(),
                        why.clone(),
                    )
                })
                .collect()
        };
        let delete = match delete {
            Ok(d) => d,
            Err(e) => return (0, every(e.to_string())),
        };
        match self
            .s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
        {
            Ok(out) => {
                let failed: Vec<_> = out
                    .errors()
                    .iter()
                    .map(|e| {
                        (
                            ObjectRef::new(bucket, e.key().unwrap_or_default()),
                            e.version_id().unwrap_or_default().to_string(),
                            format!(
                                "{}: {}",
                                e.code().unwrap_or("unknown error"),
                                e.message().unwrap_or("no message")
                            ),
                        )
                    })
                    .collect();
                (batch.len() as u64 - failed.len() as u64, failed)
            }
            Err(e) => (
                0,
                every(format!("DeleteObjects: {}", describe_sdk_error(&e))),
            ),
        }
    }

    /// Every version and delete marker of the bucket; None when the bucket does not exist.
    pub async fn inventory(&self, bucket: &str) -> Result<Option<Inventory>, RetireError> {
        Inventory::list(&self.s3, bucket, "")
            .await
            .map_err(|e| RetireError::List {
                bucket: bucket.to_string(),
                message: match e {
                    StoreError::List { message, .. } => message,
                    other => other.to_string(),
                },
            })
    }

    /// The manifests under the central location that name `bucket` as a source, and what they
    /// say each of its objects (and earlier states) was copied to; a later manifest's word wins.
    async fn copies(
        &self,
        bucket: &str,
        central: &Location,
    ) -> Result<(Vec<ObjectRef>, Copies), RetireError> {
        let dir = format!("{}{MANIFEST_DIR}", central.prefix);
        let listing = self
            .store
            .list(&central.bucket, &dir, None, None, None)
            .await
            .map_err(|e| RetireError::Manifest(e.to_string()))?;
        // Keys carry the run's start time: listing order is chronological.
        let mut manifests = Vec::new();
        let mut copies = Copies::default();
        for key in listing
            .keys
            .iter()
            .filter(|k| k.ends_with("/manifest.json"))
        {
            let at = ObjectRef::new(&central.bucket, key);
            let manifest = Manifest::load(&self.store, &at)
                .await
                .map_err(|e| RetireError::Manifest(e.to_string()))?;
            if manifest.target != *central || !manifest.sources.iter().any(|s| s.bucket == bucket) {
                continue;
            }
            let list = ObjectRef::new(&central.bucket, &manifest.objects_key);
            let bad = |why: String| RetireError::Manifest(format!("{list} (of {at}): {why}"));
            let body = match self
                .store
                .get_small(&list, OBJECT_LIST_LIMIT)
                .await
                .map_err(|e| RetireError::Manifest(e.to_string()))?
            {
                Fetched::Object(o) => o.body,
                Fetched::Missing => return Err(bad("it does not exist".into())),
                Fetched::TooLarge(n) => return Err(bad(format!("{n} bytes is too large"))),
            };
            for (n, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let r: Relocated = serde_json::from_slice(line)
                    .map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
                if r.source_bucket != bucket || r.bucket != central.bucket {
                    continue;
                }
                match r.source_version_id.clone() {
                    Some(version) => {
                        copies.earlier.insert((r.source_key.clone(), version), r);
                    }
                    None => {
                        copies.current.insert(r.source_key.clone(), r);
                    }
                }
            }
            manifests.push(at);
        }
        Ok((manifests, copies))
    }

    /// Holds each current object, and each earlier state under `AWSLogs/`, to its copy as
    /// consolidate verified it (and, given a validation, each copied log and digest to its
    /// verdict): the verified current keys with their ETags, the verified earlier states, and
    /// the rest with the reason.
    async fn check(
        &self,
        bucket: &str,
        central: &Location,
        inventory: &Inventory,
        copies: &Copies,
        validation: Option<&ValidationReport>,
    ) -> (
        HashMap<String, Option<String>>,
        HashSet<(String, String)>,
        Vec<Unverified>,
    ) {
        let states = inventory
            .current
            .iter()
            .map(|v| (v, State::Current))
            .chain(
                inventory
                    .noncurrent
                    .iter()
                    .filter(|v| under_logs(&v.key))
                    .map(|v| (v, State::Noncurrent)),
            )
            .chain(
                inventory
                    .delete_markers
                    .iter()
                    .filter(|v| under_logs(&v.key))
                    .map(|v| (v, State::DeleteMarker)),
            );
        let mut results = stream::iter(states)
            .map(|(v, state)| async move {
                let object = ObjectRef::new(bucket, &v.key);
                let verdict = match state {
                    State::Current => {
                        self.check_one(v, &object, central, copies, validation)
                            .await
                    }
                    _ => self.check_earlier(v, state, &object, central, copies).await,
                };
                (v, state, object, verdict)
            })
            .buffer_unordered(self.concurrency);
        let (mut verified, mut earlier, mut unverified) =
            (HashMap::new(), HashSet::new(), Vec::new());
        while let Some((v, state, object, verdict)) = results.next().await {
            match (verdict, state) {
                (Ok(()), State::Current) => {
                    verified.insert(v.key.clone(), v.etag.clone());
                }
                (Ok(()), _) => {
                    earlier.insert((v.key.clone(), v.version_id.clone()));
                }
                (Err(reason), state) => unverified.push(Unverified {
                    object,
                    version_id: (state != State::Current).then(|| v.version_id.clone()),
                    reason,
                }),
            }
        }
        unverified.sort_by(|a, b| (&a.object, &a.version_id).cmp(&(&b.object, &b.version_id)));
        (verified, earlier, unverified)
    }

    async fn check_one(
        &self,
        v: &Version,
        object: &ObjectRef,
        central: &Location,
        copies: &Copies,
        validation: Option<&ValidationReport>,
    ) -> Result<(), String> {
        let Some(r) = copies.current.get(&v.key) else {
            let what = if Kind::of_key(&v.key).is_some() {
                "run trailkeeper consolidate for it"
            } else {
                "it is not a CloudTrail log or digest, which consolidate does not copy: \
                 move or delete it yourself"
            };
            return Err(format!(
                "no consolidation manifest in {central} lists it; {what}"
            ));
        };
        let copy = ObjectRef::new(&r.bucket, &r.key);
        let etag = self.held_to_record(r, object, None, &copy, v.size).await?;
        if etag != v.etag {
            return Err("changed while its copy was being checked".into());
        }
        if let Some(report) = validation
            && matches!(r.kind, Kind::Log | Kind::Digest)
        {
            match report.status(&copy) {
                Some("valid") => {}
                Some(status) => {
                    return Err(format!(
                        "the validation {} reports its copy {copy} {status}",
                        report.name
                    ));
                }
                // A log that no digest lists has no verdict; its bytes are verified above.
                None if r.kind == Kind::Log => {}
                None => {
                    return Err(format!(
                        "the validation {} does not judge its copy {copy}: validate the copied history with --manifest",
                        report.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// An earlier state under `AWSLogs/`: a noncurrent version needs a verified copy, a delete
    /// marker a record.
    async fn check_earlier(
        &self,
        v: &Version,
        state: State,
        object: &ObjectRef,
        central: &Location,
        copies: &Copies,
    ) -> Result<(), String> {
        let written = v
            .last_modified
            .map(|t| format!(", written {}", t.format("%Y-%m-%dT%H:%M:%SZ")))
            .unwrap_or_default();
        let what = match state {
            State::DeleteMarker => format!("a delete marker{written}: the object was deleted"),
            _ => format!(
                "a noncurrent version{written}: an earlier state of the object, perhaps its only untampered copy"
            ),
        };
        if Kind::of_key(&v.key).is_none() {
            return Err(format!(
                "{what}; it is not a CloudTrail log or digest, which consolidate does not copy: \
                 move or delete this version yourself"
            ));
        }
        let Some(r) = copies.earlier.get(&(v.key.clone(), v.version_id.clone())) else {
            return Err(format!(
                "{what}; no consolidation manifest in {central} records it: run trailkeeper consolidate --all-versions"
            ));
        };
        if state == State::DeleteMarker {
            return match r.kind {
                Kind::DeleteMarker => Ok(()),
                _ => Err(format!(
                    "{what}; the manifest records a copy, not a delete marker"
                )),
            };
        }
        let copy = ObjectRef::new(&r.bucket, &r.key);
        self.held_to_record(r, object, Some(&v.version_id), &copy, v.size)
            .await
            .map(|_| ())
    }

    /// The copy checked now as consolidate checked it, and against what the manifest recorded;
    /// the source's ETag.
    async fn held_to_record(
        &self,
        r: &Relocated,
        object: &ObjectRef,
        version: Option<&str>,
        copy: &ObjectRef,
        size: u64,
    ) -> Result<Option<String>, String> {
        let (checksum, etag) = self
            .consolidator
            .verify_copy(r.kind, object, version, copy)
            .await?;
        if r.size != size {
            return Err(format!(
                "{} is {size} bytes, the manifest recorded {} for its copy {copy}",
                versioned(object, version),
                r.size
            ));
        }
        if checksum != r.checksum {
            return Err(format!(
                "its copy {copy} now matches by {checksum}, the manifest recorded {}",
                r.checksum
            ));
        }
        Ok(etag)
    }
}

/// What the manifests say was copied from the old bucket.
#[derive(Debug, Default)]
struct Copies {
    /// Current objects: source key -> the copy.
    current: HashMap<String, Relocated>,
    /// Earlier states: (source key, version id) -> the copy or the delete marker's record.
    earlier: HashMap<(String, String), Relocated>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Current,
    Noncurrent,
    DeleteMarker,
}

/// The command that produces the validation retire needs.
fn validate_command(central: &Location, manifest: Option<&ObjectRef>) -> String {
    let prefix = central.prefix.trim_end_matches('/');
    format!(
        "`trailkeeper validate --bucket {}{} --manifest {} --format json > FILE`",
        central.bucket,
        if prefix.is_empty() {
            String::new()
        } else {
            format!(" --prefix {prefix}")
        },
        manifest.map_or("<the consolidation manifest>".to_string(), |m| m
            .to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::delete_objects::DeleteObjectsOutput;
    use aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput;
    use aws_sdk_s3::types::{Error as S3Error, ObjectVersion};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const VERSIONS: usize = 2500;

    fn key(i: usize) -> String {
        format!("AWSLogs/111122223333/CloudTrail/us-east-1/2026/01/01/k-{i}.json.gz")
    }

    fn plan() -> Plan {
        Plan {
            bucket: "old-logs".into(),
            central: Location::new("central-logs", None),
            manifests: vec![],
            inventory: None,
            verified: (0..VERSIONS)
                .map(|i| (key(i), Some("\"e\"".to_string())))
                .collect(),
            verified_versions: HashSet::new(),
            unverified: vec![],
            validation: None,
            validation_problems: vec![],
            trails: vec![],
        }
    }

    #[tokio::test]
    async fn versions_are_deleted_1000_at_a_time_and_each_failure_is_named() {
        let list = mock!(aws_sdk_s3::Client::list_object_versions).then_output(|| {
            ListObjectVersionsOutput::builder()
                .set_versions(Some(
                    (0..VERSIONS)
                        .map(|i| {
                            ObjectVersion::builder()
                                .key(key(i))
                                .version_id(format!("v{i}"))
                                .e_tag("\"e\"")
                                .is_latest(true)
                                .size(1)
                                .build()
                        })
                        .collect(),
                ))
                .is_truncated(false)
                .build()
        });
        let within = |d: &aws_sdk_s3::operation::delete_objects::DeleteObjectsInput| {
            d.delete()
                .is_some_and(|d| d.objects().len() <= DELETE_BATCH)
        };
        let names = |d: &aws_sdk_s3::operation::delete_objects::DeleteObjectsInput, k: &str| {
            d.delete()
                .is_some_and(|d| d.objects().iter().any(|o| o.key() == k))
        };
        let refused = mock!(aws_sdk_s3::Client::delete_objects)
            .match_requests(move |r| within(r) && names(r, &key(1500)))
            .then_output(|| {
                DeleteObjectsOutput::builder()
                    .errors(
                        S3Error::builder()
                            .key(key(1500))
                            .version_id("v1500")
                            .code("AccessDenied")
                            .message("Access Denied")
                            .build(),
                    )
                    .build()
            });
        let deleted = mock!(aws_sdk_s3::Client::delete_objects)
            .match_requests(move |r| within(r) && !names(r, &key(1500)))
            .then_output(|| DeleteObjectsOutput::builder().build());
        let bucket = mock!(aws_sdk_s3::Client::delete_bucket).then_output(|| {
            aws_sdk_s3::operation::delete_bucket::DeleteBucketOutput::builder().build()
        });
        let s3 = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&list, &refused, &deleted, &bucket]
        );
        let retired = Retirer::new(s3, 4).retire(&plan(), &[]).await.unwrap();
        assert_eq!(refused.num_calls() + deleted.num_calls(), 3);
        assert_eq!(retired.deleted, VERSIONS as u64 - 1);
        assert_eq!(
            retired.failed,
            [(
                ObjectRef::new("old-logs", key(1500)),
                "v1500".to_string(),
                "AccessDenied: Access Denied".to_string()
            )]
        );
        assert_eq!(bucket.num_calls(), 0, "a bucket with versions left is kept");
        assert!(!retired.bucket_gone);
    }

    #[tokio::test]
    async fn a_changed_object_found_by_the_second_listing_stops_every_deletion() {
        let list = mock!(aws_sdk_s3::Client::list_object_versions).then_output(|| {
            ListObjectVersionsOutput::builder()
                .versions(
                    ObjectVersion::builder()
                        .key(key(7))
                        .version_id("v7b")
                        .e_tag("\"changed\"")
                        .is_latest(true)
                        .build(),
                )
                .build()
        });
        let delete = mock!(aws_sdk_s3::Client::delete_objects)
            .then_output(|| DeleteObjectsOutput::builder().build());
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&list, &delete]);
        let retired = Retirer::new(s3, 4).retire(&plan(), &[]).await.unwrap();
        assert_eq!(delete.num_calls(), 0);
        assert_eq!(retired.landed.len(), 1);
        assert_eq!(retired.landed[0].object, ObjectRef::new("old-logs", key(7)));
        assert!(retired.landed[0].reason.contains("changed"));
    }
}
