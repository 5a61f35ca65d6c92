//! Retirement: an old trail bucket and the trails that wrote to it are deleted, but only after
//! every object in it has a verified copy in the central bucket.
//!
//! The proof is the consolidation manifests under the central bucket's
//! `[prefix/]trailkeeper/relocations/` that name the old bucket as a source: every current
//! object of the old bucket (the whole bucket, not only `AWSLogs/`) must be listed there, and
//! its copy must pass, now, the check `trailkeeper consolidate` made (size, user metadata,
//! checksum). Noncurrent versions and delete markers need no copy: they are history of objects
//! whose current state was copied, and they go with the bucket.
//!
//! The order is what keeps the record whole: the trails are stopped and deleted first, so that
//! nothing new lands; then the bucket is listed again, and any object that appeared or changed
//! since the check stops the retirement before anything is deleted; then every version and
//! delete marker that listing found is deleted by version id (never by key alone, so an object
//! that lands meanwhile survives and keeps the bucket); then the bucket. Each step converges:
//! a trail or bucket already gone counts as done, so a run that failed half-way can be run again.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::{StreamExt, stream};

use crate::consolidate::{Consolidator, Location, MANIFEST_DIR, Manifest, Options, Relocated};
use crate::digest::key::{DigestKey, is_log_key};
use crate::events::AccountId;
use crate::policy::TrailArn;
use crate::store::{Fetched, ObjectRef, Store, describe_sdk_error};
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
}

/// One version (or delete marker) of an object in the old bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    /// `null` for objects written while versioning was off.
    pub version_id: String,
    pub etag: Option<String>,
    pub size: u64,
}

/// Everything the old bucket holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The current version of each object: these need verified copies.
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
}

/// A current object without a verified copy, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    pub object: ObjectRef,
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
    pub unverified: Vec<Unverified>,
    pub trails: Vec<(String, TrailState)>,
}

impl Plan {
    pub fn refused(&self) -> bool {
        !self.unverified.is_empty()
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

    /// Lists the bucket, finds the manifests, checks every current object's copy, and looks at
    /// the trails. Changes nothing.
    pub async fn plan(
        &self,
        bucket: &str,
        central: &Location,
        trails: &[TrailTarget],
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
        let (verified, unverified) = match &inventory {
            Some(inventory) => {
                self.check(bucket, central, &inventory.current, &copies)
                    .await
            }
            None => Default::default(),
        };
        Ok(Plan {
            bucket: bucket.to_string(),
            central: central.clone(),
            manifests,
            inventory,
            verified,
            unverified,
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
                "{} objects of s3://{} have no verified copy",
                plan.unverified.len(),
                plan.bucket
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
                match plan.verified.get(&v.key) {
                    Some(etag) if *etag == v.etag => None,
                    Some(_) => Some(Unverified {
                        object,
                        reason: "changed after its copy was checked".into(),
                    }),
                    None => Some(Unverified {
                        object,
                        reason: "appeared after the bucket was checked".into(),
                    }),
                }
            })
            .collect();
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
        let mut inventory = Inventory::default();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = match self
                .s3
                .list_object_versions()
                .bucket(bucket)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) if e.code() == Some("NoSuchBucket") => return Ok(None),
                Err(e) => {
                    return Err(RetireError::List {
                        bucket: bucket.to_string(),
                        message: describe_sdk_error(&e),
                    });
                }
            };
            for v in page.versions() {
                let version = Version {
                    key: v.key().unwrap_or_default().to_string(),
                    version_id: v.version_id().unwrap_or("null").to_string(),
                    etag: v.e_tag().map(str::to_string),
                    size: v.size().unwrap_or_default().max(0) as u64,
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
                return Err(RetireError::List {
                    bucket: bucket.to_string(),
                    message: "a truncated page without a new marker".into(),
                });
            }
            (key_marker, version_marker) = next;
        }
    }

    /// The manifests under the central location that name `bucket` as a source, and what they
    /// say each of its objects was copied to (a later manifest's word wins).
    async fn copies(
        &self,
        bucket: &str,
        central: &Location,
    ) -> Result<(Vec<ObjectRef>, HashMap<String, Relocated>), RetireError> {
        let dir = format!("{}{MANIFEST_DIR}", central.prefix);
        let listing = self
            .store
            .list(&central.bucket, &dir, None, None, None)
            .await
            .map_err(|e| RetireError::Manifest(e.to_string()))?;
        // Keys carry the run's start time: listing order is chronological.
        let mut manifests = Vec::new();
        let mut copies = HashMap::new();
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
                if r.source_bucket == bucket && r.bucket == central.bucket {
                    copies.insert(r.source_key.clone(), r);
                }
            }
            manifests.push(at);
        }
        Ok((manifests, copies))
    }

    /// Holds each current object to its copy, as consolidate verified it.
    async fn check(
        &self,
        bucket: &str,
        central: &Location,
        current: &[Version],
        copies: &HashMap<String, Relocated>,
    ) -> (HashMap<String, Option<String>>, Vec<Unverified>) {
        let mut results = stream::iter(current)
            .map(|v| async move {
                let object = ObjectRef::new(bucket, &v.key);
                let verdict = self.check_one(v, &object, central, copies).await;
                (v, object, verdict)
            })
            .buffer_unordered(self.concurrency);
        let (mut verified, mut unverified) = (HashMap::new(), Vec::new());
        while let Some((v, object, verdict)) = results.next().await {
            match verdict {
                Ok(()) => {
                    verified.insert(v.key.clone(), v.etag.clone());
                }
                Err(reason) => unverified.push(Unverified { object, reason }),
            }
        }
        unverified.sort_by(|a, b| a.object.cmp(&b.object));
        (verified, unverified)
    }

    async fn check_one(
        &self,
        v: &Version,
        object: &ObjectRef,
        central: &Location,
        copies: &HashMap<String, Relocated>,
    ) -> Result<(), String> {
        let Some(r) = copies.get(&v.key) else {
            let what = if DigestKey::parse(&v.key).is_ok() || is_log_key(&v.key) {
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
        let (checksum, etag) = self.consolidator.verify_copy(r.kind, object, &copy).await?;
        if r.size != v.size {
            return Err(format!(
                "{} bytes, the manifest recorded {} for its copy {copy}",
                v.size, r.size
            ));
        }
        if checksum != r.checksum {
            return Err(format!(
                "its copy {copy} now matches by {checksum}, the manifest recorded {}",
                r.checksum
            ));
        }
        if etag != v.etag {
            return Err("changed while its copy was being checked".into());
        }
        Ok(())
    }
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
            unverified: vec![],
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
