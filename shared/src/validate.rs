//! The validation engine. The digest-validator Lambda checks one digest with it, and
//! `trailkeeper validate` checks years of history with it: there is one implementation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use futures::{StreamExt, stream};
use tokio::sync::{Semaphore, mpsc};

use crate::consolidate::Location;
use crate::coverage::Coverage;
use crate::digest::chain::{self, ChainFinding, ChainNode, previous_location};
use crate::digest::file::{DigestFile, LogFileEntry};
use crate::digest::key::{self, DigestKey, StreamId};
use crate::digest::signature::{SIGNATURE_ALGORITHM, string_to_sign};
use crate::gzip::{gunzip_all, sha256};
use crate::keys::{KeyError, KeyRing, SigningWindow};
use crate::report::{DigestReport, DigestStatus, LogStatus, Status, Verdict};
use crate::store::{Fetched, Listing, LogContent, ObjectRef, Store, StoreError};

/// Metadata CloudTrail puts on every digest object (the SDK gives the keys in lower case).
pub const META_SIGNATURE: &str = "signature";
pub const META_SIGNATURE_ALGORITHM: &str = "signature-algorithm";
pub const META_BACKFILL_GENERATED: &str = "backfill-generation-timestamp";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Task(String),
}

/// Size bounds: a digest is held in memory, a log is streamed but its inflated size is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub digest_compressed: u64,
    pub digest_inflated: u64,
    pub log_inflated: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            digest_compressed: 16 << 20,
            digest_inflated: 64 << 20,
            log_inflated: 1 << 30,
        }
    }
}

/// History copied from where CloudTrail delivered it, from one or several old locations into
/// one. The signature covers the original bucket and key, so a copy is checked against where it
/// came from: its key under the current prefix must be its key under one of the origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    origins: Vec<Location>,
    current: Location,
}

impl Relocation {
    /// The copies under `current` came from `origins` (`trailkeeper consolidate`'s sources).
    pub fn new(origins: Vec<Location>, current: Location) -> Self {
        Self { origins, current }
    }

    /// Whether the object now at `current` may have been delivered to `claimed`: where it is, or
    /// the same key under an origin.
    pub fn may_come_from(&self, current: &ObjectRef, claimed: &ObjectRef) -> bool {
        if current == claimed {
            return true;
        }
        let Some(rest) = (current.bucket == self.current.bucket)
            .then(|| self.current.relative(&current.key))
            .flatten()
        else {
            return false;
        };
        self.origins.iter().any(|o| o.object(rest) == *claimed)
    }

    /// Where the object CloudTrail delivered to `original` is now.
    pub fn current(&self, original: &ObjectRef) -> ObjectRef {
        self.origins
            .iter()
            .filter(|o| o.bucket == original.bucket)
            .find_map(|o| o.relative(&original.key))
            .map(|rest| self.current.object(rest))
            .unwrap_or_else(|| original.clone())
    }
}

/// One digest, checked on its own.
#[derive(Debug, Clone)]
pub struct DigestCheck {
    pub key: DigestKey,
    pub status: DigestStatus,
    pub reason: Option<String>,
    pub node: ChainNode,
    /// The logs it vouches for; empty unless it is authentic.
    pub logs: Vec<LogFileEntry>,
}

impl DigestCheck {
    pub fn location(&self) -> &ObjectRef {
        &self.node.location
    }
}

/// One log, checked against the hash its digest holds.
#[derive(Debug, Clone)]
pub struct LogCheck {
    pub location: ObjectRef,
    pub status: LogStatus,
    pub reason: Option<String>,
    pub inflated_bytes: u64,
    pub compressed_bytes: u64,
}

/// What a run produces, in order of discovery.
#[derive(Debug)]
pub enum Event {
    /// More digests were found to check.
    Listed(u64),
    /// A digest and its logs are done (before chain analysis).
    Checked,
    Verdict(Verdict),
    Error(String),
    Bytes {
        inflated: u64,
        compressed: u64,
    },
}

/// What to validate: the `trailkeeper validate` options.
#[derive(Debug, Clone, Default)]
pub struct HistoryScope {
    pub bucket: String,
    pub prefix: Option<String>,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub trail: Option<String>,
    pub org_id: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl HistoryScope {
    fn wants(&self, key: &DigestKey) -> bool {
        // A digest ends the hour it covers: include the one that covers `end`.
        self.trail.as_ref().is_none_or(|t| *t == key.trail)
            && self.start.is_none_or(|s| key.end_time >= s)
            && self
                .end
                .is_none_or(|e| key.end_time <= e + Duration::hours(1))
    }
}

/// One region's digests and logs of one account: the unit that is listed and checked together.
#[derive(Debug, Clone)]
pub struct RegionDir {
    /// `o-…` for the organization trail layout.
    pub org_id: Option<String>,
    pub account: String,
    pub region: String,
}

/// How a region folder is gone through.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// Whether the logs that digests list are read and hashed; a sweep for unreferenced logs
    /// reads the digests only.
    hash_logs: bool,
}

/// What a sweep for unreferenced logs found.
#[derive(Debug, Default)]
pub struct LogSweep {
    /// The `unreferenced` log verdicts.
    pub unreferenced: Vec<Verdict>,
    /// Objects or listings that could not be read: the sweep is incomplete; run it again.
    pub errors: Vec<String>,
}

/// The listing bounds for a folder of date folders: from the day before `start` to the day
/// after `end` (keys sort by their date folders).
fn day_bounds(folder: &str, scope: &HistoryScope) -> (Option<String>, Option<String>) {
    let start_after = scope
        .start
        .map(|s| format!("{folder}{}", (s - Duration::days(1)).format("%Y/%m/%d")));
    let until = scope
        .end
        .map(|e| format!("{folder}{}/~", (e + Duration::days(1)).format("%Y/%m/%d")));
    (start_after, until)
}

/// The previous digests linked from outside a run's listing, as [`Engine::fetch_outside_links`]
/// found them.
#[derive(Default)]
struct OutsideLinks {
    nodes: HashMap<ObjectRef, ChainNode>,
    errors: Vec<EngineError>,
    /// Why a previous digest in another bucket is missing: S3's answer.
    refused: HashMap<ObjectRef, String>,
    /// Verdicts on the previous digests in another bucket that could be read.
    foreign: Vec<Verdict>,
}

/// How many region folders are checked at once; each may hold years of digests.
const REGION_DIRS_AT_ONCE: usize = 4;

struct Inner {
    store: Store,
    keys: KeyRing,
    relocation: Option<Relocation>,
    limits: Limits,
    /// Bounds the objects being read at once, digests and logs alike.
    reads: Semaphore,
    concurrency: usize,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn hex_signature(metadata: &HashMap<String, String>) -> Option<String> {
    metadata
        .get(META_SIGNATURE)
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

fn parse_generation_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            s.parse::<i64>()
                .ok()
                .and_then(|n| DateTime::from_timestamp(n, 0))
        })
}

impl Engine {
    pub fn new(store: Store, keys: KeyRing, concurrency: usize) -> Self {
        Self::with(store, keys, concurrency, None, Limits::default())
    }

    pub fn with(
        store: Store,
        keys: KeyRing,
        concurrency: usize,
        relocation: Option<Relocation>,
        limits: Limits,
    ) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            inner: Arc::new(Inner {
                store,
                keys,
                relocation,
                limits,
                reads: Semaphore::new(concurrency),
                concurrency,
            }),
        }
    }

    /// One of the bounded number of object reads; held only while reading, never while waiting
    /// on other reads, so digests and their logs cannot starve each other.
    async fn read_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, EngineError> {
        self.inner
            .reads
            .acquire()
            .await
            .map_err(|e| EngineError::Task(e.to_string()))
    }

    fn delivered_to(&self, current: &ObjectRef, claimed: &ObjectRef) -> bool {
        match &self.inner.relocation {
            Some(r) => r.may_come_from(current, claimed),
            None => current == claimed,
        }
    }

    fn current(&self, original: &ObjectRef) -> ObjectRef {
        match &self.inner.relocation {
            Some(r) => r.current(original),
            None => original.clone(),
        }
    }

    /// Checks one digest on its own: its bytes, its metadata, its location, its key and its
    /// signature. Logs and links are not looked at here.
    pub async fn check_digest(
        &self,
        location: &ObjectRef,
        key: &DigestKey,
    ) -> Result<DigestCheck, EngineError> {
        let fetched = {
            let _permit = self.read_permit().await?;
            self.inner
                .store
                .get_small(location, self.inner.limits.digest_compressed)
                .await?
        };
        let mut node = ChainNode::unknown(location.clone(), key.end_time);
        let verdict = |node: ChainNode, status: DigestStatus, reason: String| DigestCheck {
            key: key.clone(),
            status,
            reason: Some(reason),
            node,
            logs: Vec::new(),
        };
        let object = match fetched {
            Fetched::Missing => {
                node.missing = true;
                return Ok(verdict(
                    node,
                    DigestStatus::Missing,
                    "the digest object does not exist".into(),
                ));
            }
            Fetched::TooLarge(n) => {
                let limit = self.inner.limits.digest_compressed;
                return Ok(verdict(
                    node,
                    DigestStatus::Malformed,
                    format!("{n} bytes, over the {limit}-byte digest limit"),
                ));
            }
            Fetched::Object(o) => o,
        };
        node.signature = hex_signature(&object.metadata);
        let inflated = match gunzip_all(&object.body, self.inner.limits.digest_inflated) {
            Ok(b) => b,
            Err(e) => return Ok(verdict(node, DigestStatus::Malformed, e.to_string())),
        };
        node.sha256 = Some(sha256(&inflated));
        let file = match DigestFile::parse(&inflated) {
            Ok(f) => f,
            Err(e) => return Ok(verdict(node, DigestStatus::Malformed, e.to_string())),
        };
        drop(inflated);
        let (start, end) = match (file.start_time(), file.end_time()) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(e), _) | (_, Err(e)) => {
                return Ok(verdict(node, DigestStatus::Malformed, e.to_string()));
            }
        };
        node.start = Some(start);
        node.end = Some(end);
        node.previous = file.previous.clone();

        let Some(signature) = node.signature.clone() else {
            return Ok(verdict(
                node,
                DigestStatus::Unsigned,
                "no x-amz-meta-signature on the object".into(),
            ));
        };
        match object.metadata.get(META_SIGNATURE_ALGORITHM) {
            None => {
                return Ok(verdict(
                    node,
                    DigestStatus::Unsigned,
                    "no x-amz-meta-signature-algorithm on the object".into(),
                ));
            }
            Some(a) if a != SIGNATURE_ALGORITHM => {
                return Ok(verdict(
                    node,
                    DigestStatus::InvalidSignature,
                    format!("unsupported signature algorithm {a:?}"),
                ));
            }
            Some(_) => {}
        }
        if let Some(a) = file
            .digest_signature_algorithm
            .as_deref()
            .filter(|a| *a != SIGNATURE_ALGORITHM)
        {
            return Ok(verdict(
                node,
                DigestStatus::InvalidSignature,
                format!("digestSignatureAlgorithm is {a:?}"),
            ));
        }
        let claimed = ObjectRef::new(&file.digest_s3_bucket, &file.digest_s3_object);
        if !self.delivered_to(location, &claimed) {
            return Ok(verdict(
                node,
                DigestStatus::Moved,
                format!(
                    "it says it was delivered to s3://{}/{}",
                    file.digest_s3_bucket, file.digest_s3_object
                ),
            ));
        }
        if let Some(account) = file.aws_account_id.as_deref().filter(|a| *a != key.account) {
            return Ok(verdict(
                node,
                DigestStatus::Malformed,
                format!(
                    "awsAccountId {account} is not the account {} of its key",
                    key.account
                ),
            ));
        }
        let window = if key.backfill {
            match object
                .metadata
                .get(META_BACKFILL_GENERATED)
                .and_then(|s| parse_generation_time(s))
            {
                Some(t) => SigningWindow::for_backfill(t),
                None => {
                    return Ok(verdict(
                        node,
                        DigestStatus::Unsigned,
                        "backfill digest without a readable x-amz-meta-backfill-generation-timestamp".into(),
                    ));
                }
            }
        } else {
            SigningWindow::for_digest(end)
        };
        let fingerprint = &file.digest_public_key_fingerprint;
        let Some(public_key) = self
            .inner
            .keys
            .find(&key.region, fingerprint, window)
            .await?
        else {
            return Ok(verdict(
                node,
                DigestStatus::UnknownKey,
                format!(
                    "no public key with fingerprint {fingerprint} in {} valid between {} and {}",
                    key.region,
                    window.from.to_rfc3339(),
                    window.until.to_rfc3339()
                ),
            ));
        };
        let Ok(raw_signature) = hex::decode(&signature) else {
            return Ok(verdict(
                node,
                DigestStatus::InvalidSignature,
                "x-amz-meta-signature is not hex".into(),
            ));
        };
        let sha = node.sha256.unwrap_or_default();
        if !public_key.verify(string_to_sign(&file, &sha).as_bytes(), &raw_signature) {
            return Ok(verdict(
                node,
                DigestStatus::InvalidSignature,
                format!("the signature does not verify under key {fingerprint}"),
            ));
        }
        node.authentic = true;
        Ok(DigestCheck {
            key: key.clone(),
            status: DigestStatus::Valid,
            reason: None,
            node,
            logs: file.log_files,
        })
    }

    /// Streams one log through gunzip and SHA-256 and compares with its digest.
    pub async fn check_log(&self, entry: &LogFileEntry) -> Result<LogCheck, EngineError> {
        let location = self.current(&ObjectRef::new(&entry.s3_bucket, &entry.s3_object));
        let content = {
            let _permit = self.read_permit().await?;
            self.inner
                .store
                .hash_gzip(&location, self.inner.limits.log_inflated)
                .await?
        };
        let check = |status, reason: Option<String>| LogCheck {
            location: location.clone(),
            status,
            reason,
            inflated_bytes: 0,
            compressed_bytes: 0,
        };
        if let Some(a) = entry.hash_algorithm.as_deref().filter(|a| *a != "SHA-256") {
            return Ok(check(
                LogStatus::Malformed,
                Some(format!("unsupported hashAlgorithm {a:?}")),
            ));
        }
        Ok(match content {
            LogContent::Missing => check(
                LogStatus::Missing,
                Some("the log object does not exist".into()),
            ),
            LogContent::Unreadable(e) => check(LogStatus::Malformed, Some(e.to_string())),
            LogContent::Read {
                sha256,
                inflated_bytes,
                compressed_bytes,
            } => {
                let actual = hex::encode(sha256);
                let (status, reason) = if actual.eq_ignore_ascii_case(entry.hash_value.trim()) {
                    (LogStatus::Valid, None)
                } else {
                    (
                        LogStatus::HashMismatch,
                        Some(format!(
                            "SHA-256 is {actual}, the digest says {}",
                            entry.hash_value
                        )),
                    )
                };
                LogCheck {
                    location: location.clone(),
                    status,
                    reason,
                    inflated_bytes,
                    compressed_bytes,
                }
            }
        })
    }

    /// Checks the logs of an authentic digest, spread over the runtime's threads.
    pub async fn check_logs(&self, digest: &DigestCheck) -> Vec<Result<LogCheck, EngineError>> {
        let tasks: Vec<_> = digest
            .logs
            .iter()
            .cloned()
            .map(|entry| {
                let engine = self.clone();
                tokio::spawn(async move { engine.check_log(&entry).await })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(
                t.await
                    .map_err(|e| EngineError::Task(e.to_string()))
                    .and_then(|r| r),
            );
        }
        out
    }

    /// One digest and, when `hash_logs`, the logs it lists (which `check.logs` keeps).
    async fn check_with_logs(
        &self,
        location: ObjectRef,
        key: DigestKey,
        hash_logs: bool,
    ) -> Result<(DigestCheck, Vec<Result<LogCheck, EngineError>>), EngineError> {
        let check = self.check_digest(&location, &key).await?;
        let logs = if hash_logs {
            self.check_logs(&check).await
        } else {
            Vec::new()
        };
        Ok((check, logs))
    }

    /// Fetches the linked previous digests that are neither among `checked` nor `unreadable`
    /// (already read in vain, and reported, in this run: reading them again as a link would
    /// only report them twice). A previous digest outside the bucket of the digest that names it
    /// (the trail was pointed elsewhere for a while) is evidence like any other: when S3 refuses
    /// it (no such bucket or key, access denied) it is missing, with S3's answer, never an error
    /// to retry; when it can be read, it gets a verdict of its own that names its bucket.
    async fn fetch_outside_links(
        &self,
        checked: &[DigestCheck],
        unreadable: &[ChainNode],
        events: Option<&mpsc::Sender<Event>>,
    ) -> OutsideLinks {
        let have: HashSet<&ObjectRef> = checked
            .iter()
            .map(|c| c.location())
            .chain(unreadable.iter().map(|n| &n.location))
            .collect();
        let mut wanted: Vec<(ObjectRef, DigestKey, ObjectRef)> = Vec::new();
        let mut seen: HashSet<ObjectRef> = HashSet::new();
        for c in checked.iter().filter(|c| c.node.authentic) {
            let Some(loc) = c.node.previous.as_ref().and_then(previous_location) else {
                continue;
            };
            let loc = self.current(&loc);
            if have.contains(&loc) || !seen.insert(loc.clone()) {
                continue;
            }
            if let Ok(k) = DigestKey::parse(&loc.key) {
                wanted.push((loc, k, c.location().clone()));
            }
        }
        let mut links = OutsideLinks::default();
        let results: Vec<_> = stream::iter(wanted)
            .map(|(loc, key, named_by)| async move {
                let r = self.check_digest(&loc, &key).await;
                (loc, key, named_by, r)
            })
            .buffer_unordered(self.inner.concurrency)
            .collect()
            .await;
        for (loc, key, named_by, r) in results {
            let outside = (loc.bucket != named_by.bucket)
                .then(|| format!("outside the validated bucket {}", named_by.bucket));
            match (r, outside) {
                (Ok(c), None) => {
                    links.nodes.insert(loc, c.node);
                }
                (Ok(c), Some(outside)) => {
                    if c.node.missing {
                        links.refused.insert(
                            loc.clone(),
                            format!(
                                "it is {outside} and cannot be read: NoSuchKey: the object does not exist"
                            ),
                        );
                    } else {
                        let why = format!("{outside}: the previous digest of {}", named_by.key);
                        let reason = match &c.reason {
                            Some(r) => format!("{r}; {why}"),
                            None => why,
                        };
                        links.foreign.push(
                            Verdict::at(Status::Digest(c.status), &key.stream(), &loc)
                                .because(reason),
                        );
                    }
                    links.nodes.insert(loc, c.node);
                }
                (Err(EngineError::Store(StoreError::Refused { message, .. })), Some(outside)) => {
                    let mut node = ChainNode::unknown(loc.clone(), key.end_time);
                    node.missing = true;
                    links.refused.insert(
                        loc.clone(),
                        format!("it is {outside} and cannot be read: {message}"),
                    );
                    links.nodes.insert(loc, node);
                }
                (Err(e), _) => {
                    if let Some(tx) = events {
                        let _ = tx.send(Event::Error(e.to_string())).await;
                    }
                    links.errors.push(e);
                }
            }
        }
        links
    }

    /// Turns checks and chain findings into verdicts, digests in time order.
    fn chain_verdicts(
        &self,
        stream: &StreamId,
        checked: &[DigestCheck],
        findings: Vec<ChainFinding>,
        refused: &HashMap<ObjectRef, String>,
    ) -> Vec<Verdict> {
        let mut broken: HashMap<ObjectRef, String> = HashMap::new();
        let mut extra = Vec::new();
        let bucket = checked
            .first()
            .map(|c| c.location().bucket.clone())
            .unwrap_or_default();
        for f in findings {
            match f {
                ChainFinding::Broken { newer, reason } => {
                    broken.insert(newer, reason);
                }
                ChainFinding::Missing {
                    object,
                    window,
                    reason,
                } => {
                    let reason = match object.as_ref().and_then(|o| refused.get(o)) {
                        Some(why) => format!("{reason}; {why}"),
                        None => reason,
                    };
                    let mut v = match &object {
                        Some(o) => Verdict::at(Status::Digest(DigestStatus::Missing), stream, o),
                        None => Verdict::new(
                            Status::Digest(DigestStatus::Missing),
                            stream,
                            &bucket,
                            None,
                        ),
                    };
                    v.window = Some(window);
                    extra.push(v.because(reason));
                }
                ChainFinding::Gap { window } => {
                    let mut v = Verdict::new(Status::Gap, stream, &bucket, None);
                    v.window = Some(window);
                    let hours = v.hours().unwrap_or_default();
                    extra.push(v.because(format!(
                        "no digest chain for {hours:.1} hours: CloudTrail started a new chain \
                         (logging or log file validation was off)"
                    )));
                }
            }
        }
        let mut out: Vec<Verdict> = checked
            .iter()
            .map(|c| {
                let (status, reason) = match (c.status, broken.remove(c.location())) {
                    (DigestStatus::Valid, Some(r)) => (DigestStatus::ChainBroken, Some(r)),
                    (s, _) => (s, c.reason.clone()),
                };
                let v = Verdict::at(Status::Digest(status), stream, c.location());
                match reason {
                    Some(r) => v.because(r),
                    None => v,
                }
            })
            .collect();
        out.extend(extra);
        out
    }

    fn log_verdict(stream: &StreamId, digest: &ObjectRef, log: &LogCheck) -> Verdict {
        let mut v = Verdict::at(Status::Log(log.status), stream, &log.location);
        v.reason = log.reason.clone();
        v.digest = Some(digest.key.clone());
        v
    }

    /// For an authentic digest that starts a chain, the newest older digest of its stream, known
    /// by its key: with one, the digest is a restart (a gap); without, the stream's first digest.
    /// Backfill digests start no chain. Cheap, as the Lambda does it per digest: one listing of
    /// the two days before the digest, and only when that finds nothing, one of its folder
    /// before them.
    async fn older_digest_if_restart(
        &self,
        check: &DigestCheck,
    ) -> Result<Option<ChainNode>, EngineError> {
        if !check.node.authentic || check.node.previous.is_some() || check.key.backfill {
            return Ok(None);
        }
        let (key, location) = (&check.key, check.location());
        let folder = key::digest_region_dir(
            key.prefix.as_deref(),
            key.org_id.as_deref(),
            &key.account,
            &key.region,
        );
        let stream = key.stream();
        let newest = |keys: Vec<String>| {
            keys.into_iter()
                .filter(|k| *k < location.key)
                .filter_map(|k| {
                    DigestKey::parse(&k)
                        .ok()
                        .filter(|d| d.stream() == stream)
                        .map(|d| (d.end_time, k))
                })
                .max()
        };
        let recent = format!(
            "{folder}{}",
            (key.end_time - Duration::days(2)).format("%Y/%m/%d")
        );
        let store = &self.inner.store;
        let bucket = &location.bucket;
        let mut found = newest(
            store
                .list(bucket, &folder, Some(&recent), Some(&location.key), None)
                .await?
                .keys,
        );
        if found.is_none() {
            found = newest(
                store
                    .list(bucket, &folder, None, Some(&recent), None)
                    .await?
                    .keys,
            );
        }
        Ok(found.map(|(time, k)| ChainNode::unknown(ObjectRef::new(bucket, k), time)))
    }

    /// Validates one delivered digest: its signature, its logs, and its link to the previous one.
    /// This is the digest-validator Lambda's whole job.
    pub async fn validate_digest(
        &self,
        location: &ObjectRef,
        key: &DigestKey,
    ) -> Result<DigestReport, EngineError> {
        let (check, logs) = self
            .check_with_logs(location.clone(), key.clone(), true)
            .await?;
        let stream = key.stream();
        let mut report = DigestReport {
            bucket: location.bucket.clone(),
            key: location.key.clone(),
            stream: stream.clone(),
            period: (
                check
                    .node
                    .start
                    .unwrap_or(key.end_time - Duration::hours(1)),
                check.node.end.unwrap_or(key.end_time),
            ),
            ..DigestReport::default()
        };
        for log in logs {
            let log = log?;
            report.summary.bytes += log.inflated_bytes;
            report.summary.compressed_bytes += log.compressed_bytes;
            report.logs.push(Self::log_verdict(&stream, location, &log));
        }
        let checked = vec![check];
        let links = self.fetch_outside_links(&checked, &[], None).await;
        if let Some(e) = links.errors.into_iter().next() {
            return Err(e);
        }
        let mut nodes: Vec<ChainNode> = checked.iter().map(|c| c.node.clone()).collect();
        if let Some(older) = self.older_digest_if_restart(&checked[0]).await? {
            nodes.insert(0, older);
        }
        let findings = chain::analyse(&nodes, &links.nodes, |o| self.current(o));
        let mut verdicts = self
            .chain_verdicts(&stream, &checked, findings, &links.refused)
            .into_iter();
        report.digest = verdicts.next();
        report.chain = verdicts.chain(links.foreign).collect();
        let mut summary = std::mem::take(&mut report.summary);
        for v in report.all() {
            summary.count(v);
        }
        report.summary = summary;
        Ok(report)
    }

    /// Validates every digest in scope, its logs and its links, sending events as it goes.
    /// Errors reading single objects are sent as events and counted; only a failure to list the
    /// bucket at all is returned.
    pub async fn validate_history(
        &self,
        scope: &HistoryScope,
        events: mpsc::Sender<Event>,
    ) -> Result<(), EngineError> {
        let dirs = self.discover(scope).await?;
        stream::iter(dirs)
            .map(|dir| {
                let events = events.clone();
                let pass = Pass { hash_logs: true };
                async move { self.validate_region_dir(scope, dir, events, pass).await }
            })
            .buffer_unordered(REGION_DIRS_AT_ONCE)
            .collect::<Vec<()>>()
            .await;
        Ok(())
    }

    /// Every region folder in scope (account and region order): what a run goes through.
    pub async fn region_dirs(&self, scope: &HistoryScope) -> Result<Vec<RegionDir>, EngineError> {
        self.discover(scope).await
    }

    /// One region folder within the scope's times: its digests, their logs and links, and the
    /// logs no digest lists (the unit of scheduled re-verification, `crate::reverify`).
    pub async fn validate_dir(
        &self,
        scope: &HistoryScope,
        dir: RegionDir,
        events: mpsc::Sender<Event>,
    ) {
        self.validate_region_dir(scope, dir, events, Pass { hash_logs: true })
            .await
    }

    async fn discover(&self, scope: &HistoryScope) -> Result<Vec<RegionDir>, EngineError> {
        let store = &self.inner.store;
        let root = key::logs_root(scope.prefix.as_deref());
        let top = store
            .list(&scope.bucket, &root, None, None, Some("/"))
            .await?;
        let last = |p: &str| {
            p.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let mut accounts: Vec<(Option<String>, String)> = Vec::new();
        for p in &top.prefixes {
            let name = last(p);
            if name.starts_with("o-") {
                if scope.org_id.as_ref().is_some_and(|o| *o != name) {
                    continue;
                }
                for sub in store
                    .list(&scope.bucket, p, None, None, Some("/"))
                    .await?
                    .prefixes
                {
                    accounts.push((Some(name.clone()), last(&sub)));
                }
            } else if scope.org_id.is_none() {
                accounts.push((None, name));
            }
        }
        accounts.retain(|(_, a)| {
            key::is_account_id(a) && (scope.accounts.is_empty() || scope.accounts.contains(a))
        });
        let listings: Vec<Result<Vec<RegionDir>, StoreError>> = stream::iter(accounts)
            .map(|(org_id, account)| async move {
                let dir = format!(
                    "{}{}/",
                    key::account_root(scope.prefix.as_deref(), org_id.as_deref(), &account),
                    key::DIGEST_DIR
                );
                let regions = store
                    .list(&scope.bucket, &dir, None, None, Some("/"))
                    .await?;
                Ok(regions
                    .prefixes
                    .iter()
                    .map(|p| last(p))
                    .filter(|r| scope.regions.is_empty() || scope.regions.contains(r))
                    .map(|region| RegionDir {
                        org_id: org_id.clone(),
                        account: account.clone(),
                        region,
                    })
                    .collect())
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut dirs = Vec::new();
        for l in listings {
            dirs.extend(l?);
        }
        dirs.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        Ok(dirs)
    }

    /// The logs of one day that no digest lists (see [`Coverage::unreferenced`]): the entry
    /// point for a scheduled sweep of the day before. It reads the digests around the day (not
    /// the logs they list) and lists the day's logs.
    pub async fn unreferenced_logs(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        dir: &RegionDir,
        day: NaiveDate,
    ) -> LogSweep {
        let start = day.and_time(NaiveTime::MIN).and_utc();
        let scope = HistoryScope {
            bucket: bucket.to_string(),
            prefix: prefix.map(str::to_string),
            accounts: vec![dir.account.clone()],
            regions: vec![dir.region.clone()],
            trail: None,
            org_id: dir.org_id.clone(),
            start: Some(start),
            end: Some(start + Duration::days(1) - Duration::seconds(1)),
        };
        let (tx, mut rx) = mpsc::channel(64);
        let run = self.validate_region_dir(&scope, dir.clone(), tx, Pass { hash_logs: false });
        let collect = async {
            let mut sweep = LogSweep::default();
            while let Some(event) = rx.recv().await {
                match event {
                    Event::Verdict(v) if v.status == Status::Log(LogStatus::Unreferenced) => {
                        sweep.unreferenced.push(v)
                    }
                    Event::Error(e) => sweep.errors.push(e),
                    _ => {}
                }
            }
            sweep
        };
        let ((), sweep) = tokio::join!(run, collect);
        sweep
    }

    /// One region folder: its digests (and their logs), then its logs that no digest lists.
    async fn validate_region_dir(
        &self,
        scope: &HistoryScope,
        dir: RegionDir,
        events: mpsc::Sender<Event>,
        pass: Pass,
    ) {
        // The logs are listed while the digests are checked, not after.
        let (logs, coverage) = tokio::join!(
            self.list_logs(scope, &dir),
            self.validate_digest_dir(scope, &dir, &events, pass)
        );
        let Some(coverage) = coverage else { return };
        match logs {
            Ok(listing) => {
                let keys = listing.keys.iter().map(String::as_str);
                for v in coverage.unreferenced(&scope.bucket, keys, scope.start, scope.end) {
                    let _ = events.send(Event::Verdict(v)).await;
                }
            }
            Err(e) => {
                let _ = events.send(Event::Error(e.to_string())).await;
            }
        }
    }

    async fn list_logs(
        &self,
        scope: &HistoryScope,
        dir: &RegionDir,
    ) -> Result<Listing, StoreError> {
        let folder = key::log_region_dir(
            scope.prefix.as_deref(),
            dir.org_id.as_deref(),
            &dir.account,
            &dir.region,
        );
        let (start_after, until) = day_bounds(&folder, scope);
        self.inner
            .store
            .list(
                &scope.bucket,
                &folder,
                start_after.as_deref(),
                until.as_deref(),
                None,
            )
            .await
    }

    /// The digests of one region folder, stream by stream; what they vouch for, or `None` when
    /// the folder could not be listed (reported as an error).
    async fn validate_digest_dir(
        &self,
        scope: &HistoryScope,
        dir: &RegionDir,
        events: &mpsc::Sender<Event>,
        pass: Pass,
    ) -> Option<Coverage> {
        let folder = key::digest_region_dir(
            scope.prefix.as_deref(),
            dir.org_id.as_deref(),
            &dir.account,
            &dir.region,
        );
        let (start_after, until) = day_bounds(&folder, scope);
        let listing = match self
            .inner
            .store
            .list(
                &scope.bucket,
                &folder,
                start_after.as_deref(),
                until.as_deref(),
                None,
            )
            .await
        {
            Ok(l) => l,
            Err(e) => {
                let _ = events.send(Event::Error(e.to_string())).await;
                return None;
            }
        };
        let mut coverage = Coverage::default();
        let mut streams: BTreeMap<StreamId, Vec<(ObjectRef, DigestKey)>> = BTreeMap::new();
        for k in listing.keys {
            match DigestKey::parse(&k) {
                Ok(dk) if scope.wants(&dk) => streams
                    .entry(dk.stream())
                    .or_default()
                    .push((ObjectRef::new(&scope.bucket, k), dk)),
                // Another trail's digest, not read: what it lists is unknown.
                Ok(dk) if scope.trail.as_ref().is_some_and(|t| *t != dk.trail) => {
                    coverage.unknown(Coverage::key_window(dk.end_time))
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "skipping a key that is not a digest"),
            }
        }
        let times = streams.values().flatten().map(|(_, k)| k.end_time);
        if let (Some(first), Some(last)) = (times.clone().min(), times.max())
            && let Err(e) = self.inner.keys.prefetch(&dir.region, first, last).await
        {
            // Lookups will try again digest by digest, and fail those digests if it persists.
            let _ = events.send(Event::Error(e.to_string())).await;
        }
        let total: usize = streams.values().map(Vec::len).sum();
        let _ = events.send(Event::Listed(total as u64)).await;
        for (stream_id, mut digests) in streams {
            digests.sort_by(|a, b| (a.1.end_time, &a.0.key).cmp(&(b.1.end_time, &b.0.key)));
            // Without --start the listing began at the folder's first digest.
            let look_back = scope.start.is_some();
            let vouched = self
                .validate_stream(&stream_id, digests, look_back, pass, events)
                .await;
            coverage.merge(vouched);
        }
        Some(coverage)
    }

    async fn validate_stream(
        &self,
        stream_id: &StreamId,
        digests: Vec<(ObjectRef, DigestKey)>,
        look_back: bool,
        pass: Pass,
        events: &mpsc::Sender<Event>,
    ) -> Coverage {
        let mut coverage = Coverage::default();
        let mut checked: Vec<DigestCheck> = Vec::with_capacity(digests.len());
        let mut unreadable: Vec<ChainNode> = Vec::new();
        let mut results = stream::iter(digests)
            .map(|(loc, key)| {
                let engine = self.clone();
                let placeholder = (loc.clone(), key.clone());
                async move {
                    let r = tokio::spawn(async move {
                        engine.check_with_logs(loc, key, pass.hash_logs).await
                    })
                    .await;
                    (
                        placeholder,
                        r.map_err(|e| EngineError::Task(e.to_string()))
                            .and_then(|r| r),
                    )
                }
            })
            .buffer_unordered(self.inner.concurrency);
        while let Some(((loc, key), result)) = results.next().await {
            match result {
                Ok((mut check, logs)) => {
                    for log in logs {
                        match log {
                            Ok(l) => {
                                let _ = events
                                    .send(Event::Bytes {
                                        inflated: l.inflated_bytes,
                                        compressed: l.compressed_bytes,
                                    })
                                    .await;
                                let _ = events
                                    .send(Event::Verdict(Self::log_verdict(stream_id, &loc, &l)))
                                    .await;
                            }
                            Err(e) => {
                                let _ = events.send(Event::Error(e.to_string())).await;
                            }
                        }
                    }
                    let listed: Vec<ObjectRef> = check
                        .logs
                        .drain(..)
                        .map(|l| self.current(&ObjectRef::new(&l.s3_bucket, &l.s3_object)))
                        .collect();
                    match (check.node.authentic, check.node.start, check.node.end) {
                        (true, Some(start), Some(end)) => coverage.vouched(
                            (start, end),
                            check.key.stream(),
                            &check.location().key,
                            listed,
                        ),
                        _ => coverage.unknown(Coverage::key_window(key.end_time)),
                    }
                    checked.push(check);
                }
                Err(e) => {
                    let _ = events.send(Event::Error(e.to_string())).await;
                    // Unknown, not judged: no verdict, and links to it are not checked either.
                    coverage.unknown(Coverage::key_window(key.end_time));
                    unreadable.push(ChainNode::unknown(loc, key.end_time));
                }
            }
            let _ = events.send(Event::Checked).await;
        }
        drop(results);
        checked.sort_by(|a, b| {
            (a.key.end_time, &a.location().key).cmp(&(b.key.end_time, &b.location().key))
        });
        let links = self
            .fetch_outside_links(&checked, &unreadable, Some(events))
            .await;
        let mut nodes: Vec<ChainNode> = checked
            .iter()
            .map(|c| c.node.clone())
            .chain(unreadable)
            .collect();
        nodes.sort_by(|a, b| (a.key_time, &a.location.key).cmp(&(b.key_time, &b.location.key)));
        // The window's first digest starts a chain: a restart if older digests lie before it.
        if let Some(first) = checked
            .first()
            .filter(|c| look_back && nodes.first().map(|n| &n.location) == Some(c.location()))
        {
            match self.older_digest_if_restart(first).await {
                Ok(Some(older)) => nodes.insert(0, older),
                Ok(None) => {}
                Err(e) => {
                    let _ = events.send(Event::Error(e.to_string())).await;
                }
            }
        }
        let findings = chain::analyse(&nodes, &links.nodes, |o| self.current(o));
        let verdicts = self.chain_verdicts(stream_id, &checked, findings, &links.refused);
        for v in verdicts.into_iter().chain(links.foreign) {
            if let (Status::Digest(DigestStatus::Missing), Some(window)) = (v.status, v.window) {
                coverage.unknown(window);
            }
            let _ = events.send(Event::Verdict(v)).await;
        }
        coverage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySource;
    use crate::testdata::{Generator, TestKey, TrailLayout};
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    const SLOW_DOWN: &str =
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

    fn one_signed_hour() -> (TestKey, crate::testdata::History) {
        let t0 = DateTime::parse_from_rfc3339("2026-05-01T00:01:02Z")
            .unwrap()
            .to_utc();
        let key = TestKey::generate(t0 - Duration::days(1), t0 + Duration::days(1));
        let layout = TrailLayout::new("central", "111122223333", "us-east-1");
        let history = Generator::new(layout, &key, 3).chain(t0, 1, None, |_| 1);
        (key, history)
    }

    fn serve(object: &crate::testdata::Object) -> Rule {
        let (key, body, metadata) = (
            object.key.clone(),
            object.body.clone(),
            object.metadata.clone(),
        );
        mock!(aws_sdk_s3::Client::get_object)
            .match_requests(move |r| r.key() == Some(key.as_str()))
            .then_output(move || {
                let mut out = GetObjectOutput::builder()
                    .content_length(body.len() as i64)
                    .body(ByteStream::from(body.clone()));
                for (k, v) in &metadata {
                    out = out.metadata(k, v);
                }
                out.build()
            })
    }

    fn throttle(key: &str) -> Rule {
        let key = key.to_string();
        mock!(aws_sdk_s3::Client::get_object)
            .match_requests(move |r| r.key() == Some(key.as_str()))
            .sequence()
            .http_status(503, Some(SLOW_DOWN.into()))
            .times(50)
            .build()
    }

    fn engine(rules: &[&Rule], key: &TestKey) -> Engine {
        // A digest that starts a chain is looked back from: here, the bucket holds no older one.
        let empty = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| {
            aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output::builder().build()
        });
        let rules: Vec<&Rule> = rules.iter().copied().chain([&empty]).collect();
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &rules, |c| c.retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2)
        ));
        Engine::new(
            Store::new(client),
            KeyRing::new(KeySource::Fixed(vec![Arc::new(key.public_key())])),
            4,
        )
    }

    #[tokio::test]
    async fn an_intact_hour_is_valid_through_the_sdk() {
        let (key, h) = one_signed_hour();
        let (digest, log) = (serve(&h.digests[0].object), serve(&h.logs[0]));
        let e = engine(&[&digest, &log], &key);
        let loc = ObjectRef::new("central", &h.digests[0].object.key);
        let report = e
            .validate_digest(&loc, &DigestKey::parse(&loc.key).unwrap())
            .await
            .unwrap();
        assert_eq!(
            report.digest.unwrap().status,
            Status::Digest(DigestStatus::Valid)
        );
        assert_eq!(report.logs.len(), 1);
        assert_eq!(report.logs[0].status, Status::Log(LogStatus::Valid));
    }

    #[tokio::test]
    async fn a_throttled_log_is_an_error_naming_it_never_a_verdict() {
        let (key, h) = one_signed_hour();
        let (digest, log) = (serve(&h.digests[0].object), throttle(&h.logs[0].key));
        let e = engine(&[&digest, &log], &key);
        let loc = ObjectRef::new("central", &h.digests[0].object.key);
        let err = e
            .validate_digest(&loc, &DigestKey::parse(&loc.key).unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&h.logs[0].key), "{err}");
        assert!(err.to_string().contains("SlowDown"), "{err}");
    }

    #[tokio::test]
    async fn a_throttled_digest_is_an_error_never_a_verdict() {
        let (key, h) = one_signed_hour();
        let digest = throttle(&h.digests[0].object.key);
        let e = engine(&[&digest], &key);
        let loc = ObjectRef::new("central", &h.digests[0].object.key);
        assert!(
            e.validate_digest(&loc, &DigestKey::parse(&loc.key).unwrap())
                .await
                .is_err()
        );
    }

    /// A digest in `central` whose previous digest lies in the bucket `attacker`.
    fn linked_from_another_bucket() -> (TestKey, crate::testdata::History, String) {
        let t0 = DateTime::parse_from_rfc3339("2026-05-01T00:01:02Z")
            .unwrap()
            .to_utc();
        let key = TestKey::generate(t0 - Duration::days(1), t0 + Duration::days(1));
        let away = TrailLayout::new("attacker", "111122223333", "us-east-1");
        let diverted = Generator::new(away, &key, 4).chain(t0, 1, None, |_| 0);
        let central = TrailLayout::new("central", "111122223333", "us-east-1");
        let back = Generator::new(central, &key, 5).chain(
            t0 + Duration::hours(1),
            1,
            diverted.digests.first(),
            |_| 1,
        );
        let previous = diverted.digests[0].object.key.clone();
        (key, back, previous)
    }

    #[tokio::test]
    async fn a_previous_digest_refused_in_another_bucket_is_missing_and_a_throttled_one_an_error() {
        let (key, h, previous) = linked_from_another_bucket();
        let (digest, log) = (serve(&h.digests[0].object), serve(&h.logs[0]));
        let loc = ObjectRef::new("central", &h.digests[0].object.key);
        let dk = DigestKey::parse(&loc.key).unwrap();
        let denied = {
            let previous = previous.clone();
            mock!(aws_sdk_s3::Client::get_object)
                .match_requests(move |r| r.key() == Some(previous.as_str()))
                .sequence()
                .http_status(
                    403,
                    Some(
                        "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                            .into(),
                    ),
                )
                .times(50)
                .build()
        };
        let report = engine(&[&digest, &log, &denied], &key)
            .validate_digest(&loc, &dk)
            .await
            .unwrap();
        assert_eq!(
            report.digest.unwrap().status,
            Status::Digest(DigestStatus::Valid)
        );
        let missing = &report.chain[0];
        assert_eq!(missing.status, Status::Digest(DigestStatus::Missing));
        assert_eq!(
            (missing.bucket.as_str(), missing.key.as_deref()),
            ("attacker", Some(previous.as_str()))
        );
        assert_eq!(
            missing.reason.as_deref(),
            Some(
                format!(
                    "named as the previous digest by {}; it is outside the validated bucket central \
                     and cannot be read: AccessDenied: Access Denied (HTTP 403)",
                    loc.key
                )
                .as_str()
            )
        );
        // Throttling is no answer about the object: the invocation fails, to be retried.
        let slow = throttle(&previous);
        let err = engine(&[&digest, &log, &slow], &key)
            .validate_digest(&loc, &dk)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SlowDown"), "{err}");
    }

    #[test]
    fn relocation_maps_both_ways_and_leaves_other_objects_alone() {
        let r = Relocation::new(
            vec![
                Location::parse("s3://old-bucket/old/prefix").unwrap(),
                Location::parse("s3://other-old").unwrap(),
            ],
            Location::new("central", Some("new")),
        );
        let current = ObjectRef::new("central", "new/AWSLogs/111122223333/CloudTrail/x.json.gz");
        let original = ObjectRef::new(
            "old-bucket",
            "old/prefix/AWSLogs/111122223333/CloudTrail/x.json.gz",
        );
        let other = ObjectRef::new("other-old", "AWSLogs/111122223333/CloudTrail/x.json.gz");
        assert!(r.may_come_from(&current, &original));
        assert!(r.may_come_from(&current, &other));
        assert!(r.may_come_from(&current, &current));
        assert!(!r.may_come_from(
            &current,
            &ObjectRef::new("old-bucket", "AWSLogs/111122223333/CloudTrail/x.json.gz")
        ));
        assert!(!r.may_come_from(
            &ObjectRef::new("central", "new/AWSLogs/111122223333/CloudTrail/y.json.gz"),
            &original
        ));
        assert_eq!(r.current(&original), current);
        assert_eq!(r.current(&other), current);
        let elsewhere = ObjectRef::new("elsewhere", "AWSLogs/1/x");
        assert_eq!(r.current(&elsewhere), elsewhere);
    }

    #[test]
    fn backfill_generation_times_are_read_in_the_forms_seen() {
        for s in ["2026-03-01T12:00:00Z", "20260301T120000Z", "1772366400"] {
            assert_eq!(
                parse_generation_time(s).unwrap().timestamp(),
                1772366400,
                "{s}"
            );
        }
        assert!(parse_generation_time("yesterday").is_none());
    }
}
