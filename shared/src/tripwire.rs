//! The tripwire: CloudTrail writes each object under `[prefix/]AWSLogs/` exactly once, and never
//! deletes or copies, so every other write or delete there is tampering or an operation someone
//! must own. S3 sends each to EventBridge ("Object Created", "Object Deleted"); the template's
//! tripwire rule passes on every one whose `requester` is not CloudTrail's, and this module
//! judges it:
//!
//! - a delete (of the current version, by a delete marker, or of any version) is a finding,
//!   unless it is a lifecycle expiration the template configures (`reason` "Lifecycle
//!   Expiration", which only S3 itself sets, of an object at least that old);
//! - a write is a finding (an overwrite when the key had earlier versions, an injection when
//!   not), unless it is a copy `trailkeeper consolidate` planned: S3's `reason` says CopyObject
//!   or CompleteMultipartUpload (a writer cannot claim a copy without making one), the key and
//!   size are in a plan consolidate wrote before it copied, and the key had no earlier version.
//!
//! `requester`, `source-ip-address`, `request-id` and the time come from S3's event as they
//! are; a finding names them. Its id is stable (the key, the version and the kind), so a
//! repeated event updates one Security Hub finding instead of adding another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::consolidate::{MANIFEST_DIR, PLAN_FILE, PlannedCopy};
use crate::digest::key::{DigestKey, LogKey, is_account_id};
use crate::store::{Fetched, ObjectRef, Store, StoreError};

/// The IAM actions the tripwire's reads need, besides `crate::store::CALLS`.
pub const CALLS: &[&str] = &["s3:ListBucketVersions"];

/// S3's `requester` for CloudTrail's own deliveries: the service principal (S3 user guide,
/// "EventBridge event message structure": the account ID or AWS service principal of the
/// requester). The template's rules match on it.
pub const CLOUDTRAIL_REQUESTER: &str = "cloudtrail.amazonaws.com";
/// S3's `reason` for a delete its lifecycle configuration made.
pub const LIFECYCLE_EXPIRATION: &str = "Lifecycle Expiration";
/// How far back a consolidate plan may have been written for a copy it explains.
const PLAN_HORIZON_DAYS: i64 = 14;
/// A plan lists every copy of one run; a larger one is refused, not read.
const PLAN_LIMIT: u64 = 512 << 20;

/// One S3 object event, as EventBridge delivers it.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectEvent {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    #[serde(default)]
    pub id: Option<String>,
    /// The bucket owner's account.
    #[serde(default)]
    pub account: Option<String>,
    pub time: DateTime<Utc>,
    pub detail: ObjectEventDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObjectEventDetail {
    pub bucket: EventBucket,
    pub object: EventObject,
    #[serde(rename = "request-id", default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub requester: Option<String>,
    #[serde(rename = "source-ip-address", default)]
    pub source_ip: Option<String>,
    /// The S3 call: `PutObject`, `CopyObject`, `CompleteMultipartUpload`, `DeleteObject`,
    /// `Lifecycle Expiration`, ….
    #[serde(default)]
    pub reason: Option<String>,
    /// `Permanently Deleted` or `Delete Marker Created` (Object Deleted only).
    #[serde(rename = "deletion-type", default)]
    pub deletion_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventBucket {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventObject {
    /// Not URL-encoded in EventBridge events.
    pub key: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(rename = "version-id", default)]
    pub version_id: Option<String>,
    #[serde(default)]
    pub sequencer: Option<String>,
}

impl ObjectEvent {
    pub fn object(&self) -> ObjectRef {
        ObjectRef::new(&self.detail.bucket.name, &self.detail.object.key)
    }

    pub fn is_delete(&self) -> bool {
        self.detail_type == "Object Deleted"
    }

    fn reason(&self) -> &str {
        self.detail.reason.as_deref().unwrap_or("")
    }

    /// CloudTrail delivering, as S3 names it. CloudTrail never copies, so a copy is not a
    /// delivery whoever made it.
    pub fn is_cloudtrail_delivery(&self) -> bool {
        !self.is_delete()
            && self.detail.requester.as_deref() == Some(CLOUDTRAIL_REQUESTER)
            && self.reason() != "CopyObject"
    }
}

/// What a tampering event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamperKind {
    /// A version or the current object was deleted (a delete marker or a permanent delete).
    Deleted,
    /// A lifecycle rule the template does not configure deleted it (or deleted it too young).
    Expired,
    /// A new version of a key that already had one.
    Overwritten,
    /// A new object that CloudTrail did not write.
    Injected,
}

impl TamperKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Expired => "expired",
            Self::Overwritten => "overwritten",
            Self::Injected => "injected",
        }
    }
}

/// A finding of the tripwire.
#[derive(Debug, Clone)]
pub struct Tamper {
    pub kind: TamperKind,
    pub event: ObjectEvent,
    /// The account and region the key belongs to, as far as the key says.
    pub account: Option<String>,
    pub region: Option<String>,
    /// `log file`, `digest` or `object`.
    pub object_kind: &'static str,
    pub why: String,
}

impl Tamper {
    /// Stable: the same event (EventBridge delivers at least once) gives the same id; another
    /// version, delete marker or kind gives another.
    pub fn identity(&self) -> String {
        let d = &self.event.detail;
        let version = d
            .object
            .version_id
            .as_deref()
            .or(d.object.sequencer.as_deref())
            .or(d.request_id.as_deref())
            .unwrap_or("");
        format!(
            "{}/{}/{version}/{}",
            d.bucket.name,
            d.object.key,
            self.kind.as_str()
        )
    }

    /// The account the event came from (the bucket owner's), for a key that names none.
    pub fn event_account(&self) -> String {
        self.event.account.clone().unwrap_or_default()
    }

    /// One line for logs and records.
    pub fn record(&self) -> serde_json::Value {
        let d = &self.event.detail;
        serde_json::json!({
            "tripwire": self.kind.as_str(),
            "object": self.object_kind,
            "bucket": d.bucket.name,
            "key": d.object.key,
            "version_id": d.object.version_id,
            "account": self.account,
            "region": self.region,
            "requester": d.requester,
            "source_ip": d.source_ip,
            "request_id": d.request_id,
            "reason": d.reason,
            "deletion_type": d.deletion_type,
            "time": crate::digest::file::format_time(self.event.time),
            "why": self.why,
        })
    }
}

/// How the tripwire judged one event.
#[derive(Debug, Clone)]
pub enum Judgement {
    /// Not a finding, and why (CloudTrail's delivery, a configured expiration, a planned copy,
    /// another bucket or a key outside `AWSLogs/`).
    Expected(String),
    Finding(Box<Tamper>),
}

/// The tripwire's settings and its cache of consolidate plans.
pub struct Tripwire {
    store: Store,
    /// The age at which the template's lifecycle rule expires logs and digests; None: never.
    expire_after_days: Option<u32>,
    /// Consolidate plans read so far (they never change once written), by key.
    plans: Mutex<HashMap<String, Arc<HashMap<String, u64>>>>,
}

/// Where a key sits under `AWSLogs/`, as far as it says: the part before it, the account and
/// the region. An injected object need not have a CloudTrail name.
fn place(key: &str) -> Option<(String, Option<String>, Option<String>)> {
    let segments: Vec<&str> = key.split('/').collect();
    let root = segments.iter().position(|s| *s == "AWSLogs")?;
    let prefix = segments[..root]
        .iter()
        .map(|s| format!("{s}/"))
        .collect::<String>();
    let mut rest = segments[root + 1..].iter().copied().peekable();
    if rest.peek().is_some_and(|s| s.starts_with("o-")) {
        rest.next();
    }
    let account = rest.next().filter(|a| is_account_id(a)).map(str::to_string);
    let region = match (rest.next(), rest.next()) {
        (Some("CloudTrail" | "CloudTrail-Digest"), Some(r)) if !r.is_empty() => Some(r.to_string()),
        _ => None,
    };
    Some((prefix, account, region))
}

/// The time a CloudTrail key names (a digest's end, a log's minute), if it is one.
fn named_time(key: &str) -> Option<(DateTime<Utc>, &'static str)> {
    if let Ok(d) = DigestKey::parse(key) {
        return Some((d.end_time, "digest"));
    }
    LogKey::parse(key).map(|l| (l.time, "log file"))
}

impl Tripwire {
    pub fn new(s3: aws_sdk_s3::Client, expire_after_days: Option<u32>) -> Self {
        Self {
            store: Store::new(s3),
            expire_after_days,
            plans: Mutex::new(HashMap::new()),
        }
    }

    /// Judges one event. Only a failure to read what the judgement needs (the key's versions, a
    /// plan) is an error, worth retrying; the event is never dropped.
    pub async fn judge(&self, event: &ObjectEvent) -> Result<Judgement, StoreError> {
        let key = &event.detail.object.key;
        let Some((prefix, account, region)) = place(key) else {
            return Ok(Judgement::Expected(format!(
                "{key} is not under AWSLogs/, where CloudTrail writes"
            )));
        };
        if event.is_cloudtrail_delivery() {
            return Ok(Judgement::Expected(format!(
                "{key} was delivered by CloudTrail ({CLOUDTRAIL_REQUESTER})"
            )));
        }
        let (object_kind, named) = match named_time(key) {
            Some((t, kind)) => (kind, Some(t)),
            None => ("object", None),
        };
        let tamper = |kind, why: String| {
            Ok(Judgement::Finding(Box::new(Tamper {
                kind,
                event: event.clone(),
                account: account.clone(),
                region: region.clone(),
                object_kind,
                why,
            })))
        };
        let requester = event
            .detail
            .requester
            .as_deref()
            .unwrap_or("an unnamed requester");
        if event.is_delete() {
            let what = match event.detail.deletion_type.as_deref() {
                Some("Delete Marker Created") => "hidden by a delete marker",
                Some("Permanently Deleted") => "permanently deleted",
                _ => "deleted",
            };
            if event.reason() == LIFECYCLE_EXPIRATION {
                return self.judge_expiration(event, named, what, tamper);
            }
            return tamper(
                TamperKind::Deleted,
                format!(
                    "{object_kind} {what} by {requester} ({}); CloudTrail never deletes, and trailkeeper deletes nothing in the central bucket",
                    event.reason()
                ),
            );
        }
        let earlier = self
            .store
            .versions_of(&event.object(), event.detail.object.version_id.as_deref())
            .await?;
        if earlier > 0 {
            return tamper(
                TamperKind::Overwritten,
                format!(
                    "{object_kind} overwritten by {requester} ({}): the key has {earlier} earlier version(s); CloudTrail writes each key once",
                    event.reason()
                ),
            );
        }
        if matches!(event.reason(), "CopyObject" | "CompleteMultipartUpload")
            && let Some(run) = self.planned_copy(event, &prefix).await?
        {
            return Ok(Judgement::Expected(format!(
                "{key} was copied by trailkeeper consolidate, as its plan {run} says"
            )));
        }
        tamper(
            TamperKind::Injected,
            format!(
                "{object_kind} written by {requester} ({}), not by CloudTrail, and in no consolidate plan",
                event.reason()
            ),
        )
    }

    fn judge_expiration(
        &self,
        event: &ObjectEvent,
        named: Option<DateTime<Utc>>,
        what: &str,
        tamper: impl Fn(TamperKind, String) -> Result<Judgement, StoreError>,
    ) -> Result<Judgement, StoreError> {
        let key = &event.detail.object.key;
        let age = named.map(|t| event.time - t);
        match (self.expire_after_days, age) {
            // S3 expires at the first midnight after the age is reached, never before.
            (Some(days), Some(age))
                if age >= Duration::days(i64::from(days)) - Duration::days(1) =>
            {
                Ok(Judgement::Expected(format!(
                    "{key} expired by the lifecycle rule the template configures ({days} days; it was {} days old)",
                    age.num_days()
                )))
            }
            (Some(days), Some(age)) => tamper(
                TamperKind::Expired,
                format!(
                    "{what} by a lifecycle rule at {} days old, but the template expires logs and digests at {days} days: the bucket's lifecycle configuration was changed",
                    age.num_days()
                ),
            ),
            (Some(days), None) => tamper(
                TamperKind::Expired,
                format!(
                    "{what} by a lifecycle rule; its age is unknown (not a CloudTrail name), and the template expires only logs and digests at {days} days"
                ),
            ),
            (None, _) => tamper(
                TamperKind::Expired,
                format!(
                    "{what} by a lifecycle rule, but the template expires nothing under AWSLogs/: the bucket's lifecycle configuration was changed"
                ),
            ),
        }
    }

    /// The consolidate run whose plan lists this copy (key and size), among the plans written
    /// in the [`PLAN_HORIZON_DAYS`] before it.
    async fn planned_copy(
        &self,
        event: &ObjectEvent,
        prefix: &str,
    ) -> Result<Option<String>, StoreError> {
        let bucket = &event.detail.bucket.name;
        let root = format!("{prefix}{MANIFEST_DIR}");
        let since = event.time - Duration::days(PLAN_HORIZON_DAYS);
        let start_after = format!("{root}{}", since.format("%Y%m%dT%H%M%S"));
        let runs = self
            .store
            .list(bucket, &root, Some(&start_after), None, Some("/"))
            .await?;
        let key = &event.detail.object.key;
        for run in runs.prefixes.iter().rev() {
            let plan = self
                .plan(&ObjectRef::new(bucket, format!("{run}{PLAN_FILE}")))
                .await?;
            let size_matches = match (plan.get(key), event.detail.object.size) {
                (Some(planned), Some(size)) => *planned == size,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if size_matches {
                return Ok(Some(format!("s3://{bucket}/{run}{PLAN_FILE}")));
            }
        }
        Ok(None)
    }

    async fn plan(&self, at: &ObjectRef) -> Result<Arc<HashMap<String, u64>>, StoreError> {
        if let Some(p) = self.plans.lock().ok().and_then(|m| m.get(&at.key).cloned()) {
            return Ok(p);
        }
        let body = match self.store.get_small(at, PLAN_LIMIT).await? {
            Fetched::Object(o) => o.body,
            // A run without a plan (an older trailkeeper, or a dry run's manifest) plans nothing.
            Fetched::Missing | Fetched::TooLarge(_) => Vec::new(),
        };
        let plan: HashMap<String, u64> = body
            .split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice::<PlannedCopy>(line).ok())
            .map(|p| (p.key, p.size))
            .collect();
        let plan = Arc::new(plan);
        if let Ok(mut m) = self.plans.lock() {
            m.insert(at.key.clone(), plan.clone());
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_account_and_region_as_far_as_it_can() {
        assert_eq!(
            place("p/AWSLogs/o-ab12cd34ef/111122223333/CloudTrail/eu-west-1/2026/x.json.gz"),
            Some((
                "p/".into(),
                Some("111122223333".into()),
                Some("eu-west-1".into())
            ))
        );
        assert_eq!(
            place("AWSLogs/111122223333/evil.txt"),
            Some(("".into(), Some("111122223333".into()), None))
        );
        assert_eq!(
            place("AWSLogs/not-an-account/x"),
            Some(("".into(), None, None))
        );
        assert_eq!(place("trailkeeper/relocations/x"), None);
    }
}
