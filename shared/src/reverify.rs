//! Scheduled re-verification: the whole history validated again, one slice (an account's region
//! on one day) at a time, so that a log or digest changed long after its hour was judged is
//! found within one period (default 30 days), even if nobody runs `trailkeeper validate`.
//!
//! Each run goes on from where the last one stopped: slices in a fixed order (account, region,
//! day, up to yesterday), a cursor and the pass's progress in a small state object of
//! trailkeeper's own in the bucket (`[prefix/]trailkeeper/reverification/state.json`, outside
//! `AWSLogs/`), written after every slice. A run starts no slice it cannot finish before its
//! deadline (the Lambda time limit less a margin). When a pass is done, the next run starts a
//! new one. Per account, the state keeps when the latest complete pass over it began: the age
//! of its oldest re-verification. A run that sees the pass will not end within the period says
//! so (`behind`), with the slices left: more runs, or S3 Batch Operations over those slices, are
//! needed.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::digest::key;
use crate::partition::Partition;
use crate::report::{Status, Verdict};
use crate::store::{Fetched, ObjectRef, Store, StoreError};
use crate::validate::{Engine, Event, HistoryScope, RegionDir};

/// Where the state lives under the bucket's prefix.
pub const STATE_KEY: &str = "trailkeeper/reverification/state.json";
/// Beside the state: the S3 Batch Operations manifest generator for what a pass behind its
/// period has left (`aws s3control create-job --manifest-generator file://…`).
pub const BATCH_GENERATOR_KEY: &str = "trailkeeper/reverification/batch-manifest-generator.json";
/// The IAM actions of a run besides reading the bucket: writing its state object.
pub const CALLS: &[&str] = &["s3:PutObject"];
/// Reading the state object only: what the audit needs to report each account's age.
pub const STATE_READ_CALLS: &[&str] = &["s3:GetObject"];
pub const DEFAULT_PERIOD_DAYS: u32 = 30;
const STATE_LIMIT: u64 = 16 << 20;

/// One slice: an account's region folder on one day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Slice {
    pub account: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub day: NaiveDate,
}

/// What runs remember between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub trailkeeper_reverification: u32,
    /// When the pass under way began; None: the next run begins one.
    pub pass_started: Option<DateTime<Utc>>,
    /// The last slice done in this pass.
    pub cursor: Option<Slice>,
    /// Slices done in this pass.
    #[serde(default)]
    pub slices_done: u64,
    /// When this pass reached each account.
    #[serde(default)]
    pub account_started: BTreeMap<String, DateTime<Utc>>,
    /// Per account: when the latest complete pass over it began. Every digest and log of the
    /// account was validated again since then.
    #[serde(default)]
    pub verified_since: BTreeMap<String, DateTime<Utc>>,
    #[serde(default)]
    pub passes_completed: u64,
}

/// One account's oldest re-verification, as the audit reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReverificationAge {
    /// When the latest complete pass over the account began; None: no pass has finished.
    pub verified_since: Option<DateTime<Utc>>,
    pub age_hours: Option<f64>,
    /// The state object could not be read (naming it and why): the age is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl State {
    /// The age of `account`'s oldest re-verification at `now`.
    pub fn age_of(&self, account: &str, now: DateTime<Utc>) -> ReverificationAge {
        let since = self.verified_since.get(account).copied();
        ReverificationAge {
            verified_since: since,
            age_hours: since.map(|t| ((now - t).num_seconds() as f64 / 360.0).round() / 10.0),
            error: None,
        }
    }

    /// The age of each account's oldest re-verification at `now`; None for an account no pass
    /// has finished yet.
    pub fn ages(&self, accounts: &[String], now: DateTime<Utc>) -> BTreeMap<String, Option<f64>> {
        accounts
            .iter()
            .map(|a| (a.clone(), self.age_of(a, now).age_hours))
            .collect()
    }
}

/// Where the state of re-verification lives in `bucket` under `prefix`.
pub fn state_object(bucket: &str, prefix: Option<&str>) -> ObjectRef {
    own_object(bucket, prefix, STATE_KEY)
}

/// An object of re-verification's own (`key`) in `bucket` under `prefix`.
fn own_object(bucket: &str, prefix: Option<&str>, key: &str) -> ObjectRef {
    let prefix = prefix
        .map(|p| format!("{}/", p.trim_end_matches('/')))
        .unwrap_or_default();
    ObjectRef::new(bucket, format!("{prefix}{key}"))
}

/// The state of re-verification (a fresh one when no run has saved any yet).
pub async fn read_state(store: &Store, object: &ObjectRef) -> Result<State, ReverifyError> {
    match store.get_small(object, STATE_LIMIT).await? {
        Fetched::Missing => Ok(State {
            trailkeeper_reverification: 1,
            ..State::default()
        }),
        Fetched::TooLarge(n) => Err(ReverifyError::BadState {
            object: object.clone(),
            why: format!("{n} bytes"),
        }),
        Fetched::Object(o) => {
            serde_json::from_slice(&o.body).map_err(|e| ReverifyError::BadState {
                object: object.clone(),
                why: e.to_string(),
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReverifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the re-verification state {object} cannot be read: {why}")]
    BadState { object: ObjectRef, why: String },
    #[error("listing the history of s3://{bucket}: {why}")]
    Discover { bucket: String, why: String },
}

/// What one run did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub slices: Vec<Slice>,
    pub digests: u64,
    pub logs: u64,
    /// Tampering found again, or for the first time.
    pub findings: Vec<Verdict>,
    /// Chain gaps seen (recorded; alerted when they were first seen).
    pub gaps: u64,
    /// Objects that could not be read: those slices are done again by the next pass.
    pub errors: Vec<String>,
    /// This run finished a pass.
    pub pass_completed: bool,
    /// Slices left in the pass (known when the run stopped for its deadline).
    pub slices_left: u64,
    /// At the pace so far, the pass ends after the period.
    pub behind: bool,
    /// The digest folders of the accounts this pass has not finished, in order (known when the
    /// run stopped for its deadline): what S3 Batch Operations should take when runs cannot.
    pub folders_left: Vec<String>,
    /// Behind: where the manifest generator over [`Self::folders_left`] was written.
    pub batch_generator: Option<ObjectRef>,
    /// The state could not be read (why, naming it): this run began a new pass.
    pub state_unreadable: Option<String>,
    pub state: State,
    /// Accounts with history, for the ages.
    pub accounts: Vec<String>,
}

impl RunReport {
    /// The run as one CloudWatch embedded-metric-format record: slices and findings, and the
    /// oldest re-verification's age in hours (the largest over accounts; each account's own is
    /// in `accounts`, not a dimension, to keep metrics few).
    pub fn record(&self, now: DateTime<Utc>, period_days: u32) -> serde_json::Value {
        let ages = self.state.ages(&self.accounts, now);
        // An account no pass has finished counts as old as the pass under way (or the period).
        let oldest = ages
            .values()
            .map(|a| {
                a.unwrap_or_else(|| {
                    self.state
                        .pass_started
                        .map(|s| (now - s).num_seconds() as f64 / 3600.0)
                        .unwrap_or(f64::from(period_days) * 24.0)
                })
            })
            .fold(0.0_f64, f64::max);
        serde_json::json!({
            "_aws": crate::report::emf_metadata(now, &[("SlicesReverified", "Count"), ("ReverificationFindings", "Count"), ("OldestReverificationHours", "None")]),
            "reverification": {
                "period_days": period_days,
                "pass_started": self.state.pass_started.map(crate::digest::file::format_time),
                "pass_completed": self.pass_completed,
                "cursor": self.state.cursor,
                "slices_left": self.slices_left,
                "behind": self.behind,
                "batch_manifest_generator": self.batch_generator.as_ref().map(ToString::to_string),
                "state_unreadable": self.state_unreadable,
                "digests": self.digests,
                "logs": self.logs,
                "gaps": self.gaps,
                "errors": self.errors,
                "accounts": ages,
            },
            "SlicesReverified": self.slices.len(),
            "ReverificationFindings": self.findings.len(),
            "OldestReverificationHours": (oldest * 10.0).round() / 10.0,
        })
    }
}

/// The re-verification of one bucket's history.
pub struct Reverifier {
    pub engine: Engine,
    pub store: Store,
    pub bucket: String,
    pub prefix: Option<String>,
    pub period_days: u32,
    /// The bucket's partition, for the ARN S3 Batch Operations takes.
    pub partition: Partition,
}

/// An S3 Batch Operations manifest generator (`CreateJob`'s `ManifestGenerator`) over the digests
/// under `folders` created before `before`: each becomes a task of the digest-validator.
pub fn batch_manifest_generator(
    bucket_arn: &str,
    folders: &[String],
    before: DateTime<Utc>,
) -> serde_json::Value {
    serde_json::json!({
        "S3JobManifestGenerator": {
            "SourceBucket": bucket_arn,
            "EnableManifestOutput": false,
            "Filter": {
                "KeyNameConstraint": {"MatchAnyPrefix": folders},
                "CreatedBefore": crate::digest::file::format_time(before),
            },
        },
    })
}

impl Reverifier {
    fn state_object(&self) -> ObjectRef {
        state_object(&self.bucket, self.prefix.as_deref())
    }

    pub async fn load_state(&self) -> Result<State, ReverifyError> {
        read_state(&self.store, &self.state_object()).await
    }

    async fn save_batch_generator(
        &self,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> Result<ObjectRef, ReverifyError> {
        let arn = format!("{}::{}", self.partition.arn_prefix("s3"), self.bucket);
        let generator = batch_manifest_generator(&arn, &report.folders_left, now);
        let at = own_object(&self.bucket, self.prefix.as_deref(), BATCH_GENERATOR_KEY);
        let body = serde_json::to_vec_pretty(&generator).unwrap_or_default();
        self.store.put_small(&at, body, "application/json").await?;
        Ok(at)
    }

    async fn save_state(&self, state: &State) -> Result<(), ReverifyError> {
        let body = serde_json::to_vec_pretty(state).unwrap_or_default();
        self.store
            .put_small(&self.state_object(), body, "application/json")
            .await?;
        Ok(())
    }

    fn scope(&self) -> HistoryScope {
        HistoryScope {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            ..HistoryScope::default()
        }
    }

    /// The days of one region folder that have digests, before `today`.
    async fn days(&self, dir: &RegionDir, today: NaiveDate) -> Result<Vec<NaiveDate>, StoreError> {
        let root = key::digest_region_dir(
            self.prefix.as_deref(),
            dir.org_id.as_deref(),
            &dir.account,
            &dir.region,
        );
        let mut folders = vec![root.clone()];
        // Three levels of date folders: years, months, days.
        for _ in 0..3 {
            let mut next = Vec::new();
            for f in &folders {
                next.extend(
                    self.store
                        .list(&self.bucket, f, None, None, Some("/"))
                        .await?
                        .prefixes,
                );
            }
            folders = next;
        }
        let mut days: Vec<NaiveDate> = folders
            .iter()
            .filter_map(|f| {
                let date = f.strip_prefix(&root)?.trim_end_matches('/');
                NaiveDate::parse_from_str(date, "%Y/%m/%d").ok()
            })
            .filter(|d| *d < today)
            .collect();
        days.sort();
        days.dedup();
        Ok(days)
    }

    /// One run: slices after the cursor until the pass ends or `deadline` is near.
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<RunReport, ReverifyError> {
        let mut report = RunReport::default();
        let mut state = match self.load_state().await {
            Ok(state) => state,
            // Anyone who may write the bucket may write the state: a state that cannot be read
            // is said (an alert), and a new pass begins, rather than no pass ever again.
            Err(e @ ReverifyError::BadState { .. }) => {
                report.state_unreadable = Some(e.to_string());
                State::default()
            }
            Err(e) => return Err(e),
        };
        state.trailkeeper_reverification = 1;
        let pass_started = *state.pass_started.get_or_insert(now);
        let dirs =
            self.engine
                .region_dirs(&self.scope())
                .await
                .map_err(|e| ReverifyError::Discover {
                    bucket: self.bucket.clone(),
                    why: e.to_string(),
                })?;
        let mut accounts: Vec<String> = dirs.iter().map(|d| d.account.clone()).collect();
        accounts.dedup();
        let today = now.date_naive();
        let mut slowest = std::time::Duration::ZERO;
        let mut stopped = false;
        let cursor = state.cursor.clone();
        for (i, dir) in dirs.iter().enumerate() {
            let here = (&dir.account, &dir.region);
            if cursor
                .as_ref()
                .is_some_and(|c| here < (&c.account, &c.region))
            {
                continue;
            }
            let days = self.days(dir, today).await?;
            for day in days {
                let slice = Slice {
                    account: dir.account.clone(),
                    region: dir.region.clone(),
                    org_id: dir.org_id.clone(),
                    day,
                };
                if cursor.as_ref().is_some_and(|c| {
                    (&slice.account, &slice.region, slice.day) <= (&c.account, &c.region, c.day)
                }) {
                    continue;
                }
                if stopped || Instant::now() + slowest >= deadline {
                    stopped = true;
                    report.slices_left += 1;
                    continue;
                }
                let began = Instant::now();
                state
                    .account_started
                    .entry(slice.account.clone())
                    .or_insert(now);
                self.validate_slice(&slice, dir, &mut report).await;
                slowest = slowest.max(began.elapsed());
                state.cursor = Some(slice.clone());
                state.slices_done += 1;
                report.slices.push(slice);
                self.save_state(&state).await?;
            }
            if stopped {
                // The slices of the folders not yet listed are left too; counting them would
                // list them, so only the folders are counted, as one slice each at least.
                report.slices_left += (dirs.len() - i - 1) as u64;
                // Whole accounts: validating again what this pass did of one is harmless.
                for d in &dirs[i..] {
                    let folder = format!(
                        "{}{}/",
                        key::account_root(self.prefix.as_deref(), d.org_id.as_deref(), &d.account),
                        key::DIGEST_DIR
                    );
                    if report.folders_left.last() != Some(&folder) {
                        report.folders_left.push(folder);
                    }
                }
                break;
            }
            // The account is done when its last region folder is.
            let last_of_account = dirs.get(i + 1).is_none_or(|n| n.account != dir.account);
            if last_of_account && let Some(began) = state.account_started.remove(&dir.account) {
                state.verified_since.insert(dir.account.clone(), began);
            }
        }
        if !stopped {
            report.pass_completed = true;
            state.passes_completed += 1;
            state.pass_started = None;
            state.cursor = None;
            state.slices_done = 0;
            state.account_started.clear();
        } else {
            // The pace of this pass so far, against the period.
            let elapsed = (now - pass_started).num_seconds().max(1) as f64;
            let done = state.slices_done.max(1) as f64;
            let projected = elapsed * (done + report.slices_left as f64) / done;
            report.behind = projected > f64::from(self.period_days) * 86_400.0;
            if report.behind {
                report.batch_generator = Some(self.save_batch_generator(&report, now).await?);
            }
        }
        self.save_state(&state).await?;
        report.state = state;
        report.accounts = accounts;
        Ok(report)
    }

    async fn validate_slice(&self, slice: &Slice, dir: &RegionDir, report: &mut RunReport) {
        let start = slice.day.and_time(NaiveTime::MIN).and_utc();
        let scope = HistoryScope {
            accounts: vec![slice.account.clone()],
            regions: vec![slice.region.clone()],
            org_id: slice.org_id.clone(),
            start: Some(start),
            end: Some(start + Duration::days(1) - Duration::seconds(1)),
            ..self.scope()
        };
        let (tx, mut rx) = mpsc::channel(64);
        let run = self.engine.validate_dir(&scope, dir.clone(), tx);
        let collect = async {
            while let Some(event) = rx.recv().await {
                match event {
                    Event::Verdict(v) => {
                        match v.status {
                            Status::Digest(_) => report.digests += 1,
                            Status::Log(_) => report.logs += 1,
                            Status::Gap => report.gaps += 1,
                        }
                        if v.is_finding() {
                            report.findings.push(v);
                        }
                    }
                    Event::Error(e) => report.errors.push(format!(
                        "account {} region {} day {}: {e}",
                        slice.account, slice.region, slice.day
                    )),
                    _ => {}
                }
            }
        };
        tokio::join!(run, collect);
    }
}
