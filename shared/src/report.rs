//! Findings: the verdict vocabulary of `trailkeeper validate --format json` and the Lambda logs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::digest::file::format_time;
use crate::digest::key::StreamId;
use crate::store::ObjectRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestStatus {
    Valid,
    InvalidSignature,
    UnknownKey,
    Malformed,
    Moved,
    Missing,
    ChainBroken,
    Unsigned,
}

impl DigestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::InvalidSignature => "invalid_signature",
            Self::UnknownKey => "unknown_key",
            Self::Malformed => "malformed",
            Self::Moved => "moved",
            Self::Missing => "missing",
            Self::ChainBroken => "chain_broken",
            Self::Unsigned => "unsigned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    Valid,
    HashMismatch,
    Missing,
    Malformed,
    /// In the bucket, in time that digests cover, yet listed by none: not delivered by
    /// CloudTrail as it stands (dropped in, or renamed).
    Unreferenced,
}

impl LogStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::HashMismatch => "hash_mismatch",
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unreferenced => "unreferenced",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Digest(DigestStatus),
    Log(LogStatus),
    /// Time with no chain: logging stopped and restarted. Informational, not a finding.
    Gap,
}

/// One line of output: a digest, a log, or a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub bucket: String,
    /// `None` for a gap, and for a missing digest whose name cannot be known.
    pub key: Option<String>,
    pub account: String,
    pub region: String,
    pub trail: String,
    pub reason: Option<String>,
    /// For gaps and inferred missing digests: the time with no evidence.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// For logs: the digest that lists them.
    pub digest: Option<String>,
}

impl Verdict {
    pub fn new(status: Status, stream: &StreamId, bucket: &str, key: Option<&str>) -> Self {
        Self {
            status,
            bucket: bucket.to_string(),
            key: key.map(str::to_string),
            account: stream.account.clone(),
            region: stream.region.clone(),
            trail: stream.trail.clone(),
            reason: None,
            window: None,
            digest: None,
        }
    }

    pub fn at(status: Status, stream: &StreamId, object: &ObjectRef) -> Self {
        Self::new(status, stream, &object.bucket, Some(&object.key))
    }

    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn kind(&self) -> &'static str {
        match self.status {
            Status::Digest(_) => "digest",
            Status::Log(_) => "log",
            Status::Gap => "gap",
        }
    }

    /// The kind as a person reads it (alerts, Security Hub titles): `log file`, `digest`, `gap`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind() {
            "log" => "log file",
            other => other,
        }
    }

    pub fn status_str(&self) -> &'static str {
        match self.status {
            Status::Digest(s) => s.as_str(),
            Status::Log(s) => s.as_str(),
            Status::Gap => "gap",
        }
    }

    /// A finding is anything an operator must look at: all but valid files and gaps.
    pub fn is_finding(&self) -> bool {
        !matches!(
            self.status,
            Status::Digest(DigestStatus::Valid) | Status::Log(LogStatus::Valid) | Status::Gap
        )
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The length of the window, in hours to a tenth: for a gap, the hours without a chain.
    pub fn hours(&self) -> Option<f64> {
        self.window
            .map(|(from, to)| ((to - from).num_seconds() as f64 / 360.0).round() / 10.0)
    }
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.kind())?;
        m.serialize_entry("status", self.status_str())?;
        m.serialize_entry("bucket", &self.bucket)?;
        m.serialize_entry("key", &self.key)?;
        m.serialize_entry("account", &self.account)?;
        m.serialize_entry("region", &self.region)?;
        m.serialize_entry("trail", &self.trail)?;
        m.serialize_entry("reason", &self.reason)?;
        if let Some((from, to)) = self.window {
            m.serialize_entry("start", &format_time(from))?;
            m.serialize_entry("end", &format_time(to))?;
        }
        if self.status == Status::Gap {
            m.serialize_entry("hours", &self.hours())?;
        }
        if let Some(d) = &self.digest {
            m.serialize_entry("digest", d)?;
        }
        m.end()
    }
}

/// Counts of a run, and what they mean for the exit code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub digests: BTreeMap<&'static str, u64>,
    pub logs: BTreeMap<&'static str, u64>,
    pub gaps: u64,
    /// Objects or listings that could not be read: the run is incomplete.
    pub errors: u64,
    /// Uncompressed bytes hashed.
    pub bytes: u64,
    pub compressed_bytes: u64,
    /// `--fail-on-gap`: a chain restart fails the run like a finding.
    pub fail_on_gap: bool,
}

impl Summary {
    pub fn count(&mut self, v: &Verdict) {
        match v.status {
            Status::Digest(s) => *self.digests.entry(s.as_str()).or_default() += 1,
            Status::Log(s) => *self.logs.entry(s.as_str()).or_default() += 1,
            Status::Gap => self.gaps += 1,
        }
    }

    pub fn findings(&self) -> u64 {
        let bad = |m: &BTreeMap<&'static str, u64>| {
            m.iter()
                .filter(|(k, _)| **k != "valid")
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        bad(&self.digests) + bad(&self.logs)
    }

    /// 0: everything valid (gaps allowed unless `fail_on_gap`); 1: at least one finding (or gap);
    /// 2: the run is incomplete.
    pub fn exit_code(&self) -> i32 {
        if self.errors > 0 {
            2
        } else if self.findings() > 0 || (self.fail_on_gap && self.gaps > 0) {
            1
        } else {
            0
        }
    }

    pub fn status(&self) -> &'static str {
        match self.exit_code() {
            0 => "valid",
            1 => "findings",
            _ => "incomplete",
        }
    }

    pub fn to_json_line(&self, seconds: f64) -> String {
        serde_json::json!({
            "type": "summary",
            "status": self.status(),
            "digests": self.digests,
            "logs": self.logs,
            "gaps": self.gaps,
            "findings": self.findings(),
            "errors": self.errors,
            "bytes": self.bytes,
            "compressed_bytes": self.compressed_bytes,
            "seconds": (seconds * 1000.0).round() / 1000.0,
        })
        .to_string()
    }
}

/// The outcome of validating one delivered digest: the digest-validator's unit of work.
#[derive(Debug, Default, Clone)]
pub struct DigestReport {
    pub bucket: String,
    pub key: String,
    pub stream: StreamId,
    /// The hour the digest covers.
    pub period: (DateTime<Utc>, DateTime<Utc>),
    pub digest: Option<Verdict>,
    pub logs: Vec<Verdict>,
    /// Missing previous digests and the like.
    pub chain: Vec<Verdict>,
    pub summary: Summary,
}

/// The CloudWatch namespace of trailkeeper's metrics.
pub const METRICS_NAMESPACE: &str = "Trailkeeper";

/// The `_aws` member of a CloudWatch embedded-metric-format record: `metrics` (name, unit) in
/// trailkeeper's namespace, without dimensions; the record carries their values beside it.
pub fn emf_metadata(
    now: chrono::DateTime<chrono::Utc>,
    metrics: &[(&str, &str)],
) -> serde_json::Value {
    serde_json::json!({
        "Timestamp": now.timestamp_millis(),
        "CloudWatchMetrics": [{
            "Namespace": METRICS_NAMESPACE,
            "Dimensions": [[]],
            "Metrics": metrics.iter()
                .map(|(name, unit)| serde_json::json!({"Name": name, "Unit": unit}))
                .collect::<Vec<_>>(),
        }],
    })
}

impl DigestReport {
    pub fn all(&self) -> impl Iterator<Item = &Verdict> {
        self.digest.iter().chain(&self.logs).chain(&self.chain)
    }

    pub fn findings(&self) -> impl Iterator<Item = &Verdict> {
        self.all().filter(|v| v.is_finding())
    }

    /// Chain restarts before this digest: not findings, but alerted as they happen.
    pub fn gaps(&self) -> impl Iterator<Item = &Verdict> {
        self.all().filter(|v| v.status == Status::Gap)
    }

    pub fn verdict(&self) -> &'static str {
        self.digest.as_ref().map_or("unknown", Verdict::status_str)
    }

    /// One JSON log line that is also CloudWatch Embedded Metric Format: the verdict and its
    /// findings as properties, the counts as metrics. The dimension set is empty: CloudWatch
    /// bills one custom metric per name and dimension values, so `[Account, Region]` grew with
    /// accounts x regions; account and region stay properties, for Logs Insights.
    pub fn record(&self, now: DateTime<Utc>) -> serde_json::Value {
        let digests = |valid: bool| {
            self.digest
                .iter()
                .chain(&self.chain)
                .filter(|v| v.kind() == "digest" && v.is_finding() != valid)
                .count()
        };
        let findings: Vec<serde_json::Value> = self
            .findings()
            .map(|v| {
                serde_json::json!({
                    "type": v.kind(), "status": v.status_str(), "key": v.key, "reason": v.reason,
                })
            })
            .collect();
        let gaps: Vec<serde_json::Value> = self
            .gaps()
            .map(|v| {
                let (from, to) = v.window.unwrap_or(self.period);
                serde_json::json!({
                    "start": format_time(from), "end": format_time(to), "hours": v.hours(),
                    "reason": v.reason,
                })
            })
            .collect();
        // fold from +0.0: an empty f64 sum is -0.0, which would reach the record as `-0.0`.
        let hours_without_chain: f64 = self
            .gaps()
            .filter_map(Verdict::hours)
            .fold(0.0, |a, h| a + h);
        serde_json::json!({
            "_aws": {
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [[]],
                    "Metrics": [
                        {"Name": "DigestsValid", "Unit": "Count"},
                        {"Name": "DigestsInvalid", "Unit": "Count"},
                        {"Name": "LogFilesValidated", "Unit": "Count"},
                        {"Name": "LogFilesInvalid", "Unit": "Count"},
                        {"Name": "BytesHashed", "Unit": "Bytes"},
                        {"Name": "ChainGaps", "Unit": "Count"},
                        {"Name": "HoursWithoutChain", "Unit": "None"},
                    ],
                }],
            },
            "Account": self.stream.account,
            "Region": self.stream.region,
            "DigestsValid": digests(true),
            "DigestsInvalid": digests(false),
            "LogFilesValidated": self.logs.len(),
            "LogFilesInvalid": self.logs.iter().filter(|v| v.is_finding()).count(),
            "BytesHashed": self.summary.bytes,
            "ChainGaps": gaps.len(),
            "HoursWithoutChain": hours_without_chain,
            "verdict": self.verdict(),
            "trail": self.stream.trail,
            "bucket": self.bucket,
            "key": self.key,
            "period": [format_time(self.period.0), format_time(self.period.1)],
            "logFiles": self.logs.len(),
            "bytes": self.summary.bytes,
            "compressedBytes": self.summary.compressed_bytes,
            "findings": findings,
            "gaps": gaps,
        })
    }
}

/// Where a Lambda's one-line records go: stdout in Lambda, where CloudWatch Logs reads the
/// embedded metrics; tests keep them.
pub trait RecordSink: Send + Sync {
    fn write(&self, record: &serde_json::Value);
}

/// Records to stdout, one JSON line each.
pub struct Stdout;

impl RecordSink for Stdout {
    fn write(&self, record: &serde_json::Value) {
        println!("{record}");
    }
}

/// Records kept in memory, in order: what tests and benchmarks read back.
#[derive(Debug, Default)]
pub struct Collected(pub std::sync::Mutex<Vec<serde_json::Value>>);

impl RecordSink for Collected {
    fn write(&self, record: &serde_json::Value) {
        if let Ok(mut kept) = self.0.lock() {
            kept.push(record.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(account: &str, region: &str) -> StreamId {
        StreamId {
            account: account.into(),
            region: region.into(),
            trail: "trailkeeper".into(),
            home_region: "us-east-1".into(),
            org_id: None,
            backfill: false,
        }
    }

    /// A digest with two logs, one of them tampered.
    fn report(account: &str, region: &str) -> DigestReport {
        let s = stream(account, region);
        let digest_key = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/d.json.gz";
        let log =
            |key: &str, status| Verdict::new(Status::Log(status), &s, "central-logs", Some(key));
        DigestReport {
            bucket: "central-logs".into(),
            key: digest_key.into(),
            stream: s.clone(),
            period: (
                DateTime::from_timestamp(1_761_958_800, 0).unwrap(),
                DateTime::from_timestamp(1_761_962_400, 0).unwrap(),
            ),
            digest: Some(Verdict::new(
                Status::Digest(DigestStatus::Valid),
                &s,
                "central-logs",
                Some(digest_key),
            )),
            logs: vec![
                log("AWSLogs/a.json.gz", LogStatus::Valid),
                log("AWSLogs/b.json.gz", LogStatus::HashMismatch).because("SHA-256 differs"),
            ],
            chain: Vec::new(),
            summary: Summary {
                bytes: 2048,
                compressed_bytes: 512,
                ..Summary::default()
            },
        }
    }

    /// The EMF record, pinned: CloudWatch counts one custom metric per (name, dimension
    /// values), so the dimension set must not name Account or Region (4,250 metrics for 50
    /// accounts in 17 regions); they stay properties for Logs Insights.
    #[test]
    fn the_digest_record_is_embedded_metric_format_without_per_account_dimensions() {
        let now = DateTime::from_timestamp(1_761_966_000, 0).unwrap();
        assert_eq!(
            report("111122223333", "eu-west-1").record(now),
            serde_json::json!({
                "_aws": {
                    "Timestamp": 1_761_966_000_000i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "Trailkeeper",
                        "Dimensions": [[]],
                        "Metrics": [
                            {"Name": "DigestsValid", "Unit": "Count"},
                            {"Name": "DigestsInvalid", "Unit": "Count"},
                            {"Name": "LogFilesValidated", "Unit": "Count"},
                            {"Name": "LogFilesInvalid", "Unit": "Count"},
                            {"Name": "BytesHashed", "Unit": "Bytes"},
                            {"Name": "ChainGaps", "Unit": "Count"},
                            {"Name": "HoursWithoutChain", "Unit": "None"},
                        ],
                    }],
                },
                "Account": "111122223333",
                "Region": "eu-west-1",
                "DigestsValid": 1,
                "DigestsInvalid": 0,
                "LogFilesValidated": 2,
                "LogFilesInvalid": 1,
                "BytesHashed": 2048,
                "ChainGaps": 0,
                "HoursWithoutChain": 0.0,
                "verdict": "valid",
                "trail": "trailkeeper",
                "bucket": "central-logs",
                "key": "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/d.json.gz",
                "period": ["2025-11-01T01:00:00Z", "2025-11-01T02:00:00Z"],
                "logFiles": 2,
                "bytes": 2048,
                "compressedBytes": 512,
                "findings": [{"type": "log", "status": "hash_mismatch", "key": "AWSLogs/b.json.gz",
                              "reason": "SHA-256 differs"}],
                "gaps": [],
            })
        );
    }

    /// The metrics a fleet publishes: one per (metric, dimension values) over every record.
    /// The same number for 2 accounts in 2 regions as for 500 in 17.
    #[test]
    fn the_number_of_custom_metrics_does_not_grow_with_accounts_and_regions() {
        let now = DateTime::from_timestamp(1_761_966_000, 0).unwrap();
        let metrics = |accounts: u64, regions: &[&str]| {
            let mut seen = std::collections::BTreeSet::new();
            for a in 0..accounts {
                for r in regions {
                    let record = report(&format!("{:012}", 100_000_000_000 + a), r).record(now);
                    let emf = &record["_aws"]["CloudWatchMetrics"][0];
                    for set in emf["Dimensions"].as_array().unwrap() {
                        let values: Vec<String> = set
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|d| record[d.as_str().unwrap()].to_string())
                            .collect();
                        for m in emf["Metrics"].as_array().unwrap() {
                            seen.insert((m["Name"].to_string(), values.clone()));
                        }
                    }
                }
            }
            seen.len()
        };
        let seventeen = [
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "eu-central-1",
            "eu-north-1",
            "ap-south-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-southeast-1",
            "ap-southeast-2",
            "ca-central-1",
            "sa-east-1",
        ];
        assert_eq!(metrics(2, &seventeen[..2]), 7);
        assert_eq!(metrics(50, &seventeen), 7);
        assert_eq!(metrics(500, &seventeen), 7);
    }
}
