//! Findings where security teams already look: each finding that goes to the alert topic also
//! goes to AWS Security Hub, as an AWS Security Finding Format (ASFF) record imported with
//! `BatchImportFindings` into the account's default product
//! (`arn:<partition>:securityhub:<region>:<account>:product/<account>/default`).
//!
//! - A finding's `Id` is stable: the same object, stream or account always gets the same id, so
//!   a repeated finding updates the record instead of adding a second one.
//! - Severity by kind: tampering (a bad signature or hash, a broken chain, a moved, unsigned or
//!   malformed file, a log no digest lists) is CRITICAL, a missing digest or log HIGH, an account that is not covered
//!   HIGH, a gap MEDIUM, an account that could not be audited MEDIUM.
//! - The remediation text is the `trailkeeper` command that reproduces the finding.
//! - When the org-auditor finds an account covered again, its active coverage finding is updated
//!   to `RESOLVED` (workflow) and `ARCHIVED` (record state).
//!
//! `AwsAccountId` is the importing account (Security Hub accepts a default-product finding only
//! from the account it belongs to); the account the finding is about is in `Resources` and in
//! `ProductFields`. The importing account and partition come from the caller's own ARN (a
//! Lambda function's, from its invocation context), so no call is needed to find them.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingFilters, Recommendation, RecordState, Remediation,
    Resource, Severity as AsffSeverity, SeverityLabel, StringFilter, StringFilterComparison,
    Workflow, WorkflowStatus,
};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};

use crate::audit::AccountAudit;
use crate::digest::file::format_time;
use crate::report::{DigestStatus, LogStatus, Status, Verdict};
use crate::store::describe_sdk_error;

/// The IAM actions of [`SecurityHub::import`].
pub const IMPORT_CALLS: &[&str] = &["securityhub:BatchImportFindings"];
/// The IAM actions [`SecurityHub::import_audits`] adds: which findings are still active.
pub const RESOLVE_CALLS: &[&str] = &["securityhub:GetFindings"];
/// `TRAILKEEPER_SECURITY_HUB=1` turns the import on (the template's `SecurityHubFindings`).
pub const ENV: &str = "TRAILKEEPER_SECURITY_HUB";

/// Whether `TRAILKEEPER_SECURITY_HUB` is `1` or `true`.
pub fn enabled_in_env() -> bool {
    crate::config::optional(ENV)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
}

const SCHEMA_VERSION: &str = "2018-10-08";
/// Every trailkeeper finding id starts with this.
const ID_PREFIX: &str = "trailkeeper/";
const ACCOUNT_ID_PREFIX: &str = "trailkeeper/account/";
/// BatchImportFindings takes at most 100 findings a call.
const BATCH: usize = 100;
/// ASFF limits: Title 256, Description 1024, Recommendation.Text 512 characters.
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 1024;
const RECOMMENDATION_MAX: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum SecurityHubError {
    #[error("Security Hub: which account imports is not known: {0}")]
    Identity(String),
    #[error("Security Hub: {call} in {product_arn}: {message}")]
    Call {
        call: &'static str,
        product_arn: String,
        message: String,
    },
    #[error("Security Hub refused finding {id}: {code}: {message}")]
    Refused {
        id: String,
        code: String,
        message: String,
    },
}

/// ASFF severity labels, as trailkeeper uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Informational,
    Medium,
    High,
    Critical,
}

impl Severity {
    fn label(self) -> SeverityLabel {
        match self {
            Self::Informational => SeverityLabel::Informational,
            Self::Medium => SeverityLabel::Medium,
            Self::High => SeverityLabel::High,
            Self::Critical => SeverityLabel::Critical,
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A log or digest object in the archive.
    Object { bucket: String, key: String },
    /// An account (its coverage, or a window of its history with no object to name).
    Account(String),
}

/// One finding in trailkeeper's terms, before it becomes ASFF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFinding {
    /// Stable: the same subject gives the same id.
    pub id: String,
    /// Which part of trailkeeper judged it (`GeneratorId`).
    pub generator: &'static str,
    pub severity: Severity,
    /// ASFF finding types (`namespace/category/classifier`).
    pub types: Vec<&'static str>,
    pub title: String,
    pub description: String,
    pub subject: Subject,
    /// The account and region the finding is about (`ProductFields`).
    pub account: String,
    pub region: Option<String>,
    /// The command that reproduces it.
    pub remediation: String,
    /// When the evidence is from (`CreatedAt`): the digest's hour, or the audit's time.
    pub observed: DateTime<Utc>,
    /// The subject is fine again: the record is resolved and archived.
    pub resolved: bool,
    /// Extra `ProductFields` (`trailkeeper/status`, `trailkeeper/trail`, …).
    pub fields: BTreeMap<&'static str, String>,
}

const TAMPERING: &str = "Effects/Data Destruction/CloudTrail history altered";
const DEFENSE_EVASION: &str = "TTPs/Defense Evasion/CloudTrail history incomplete";
const COVERAGE: &str =
    "Software and Configuration Checks/AWS Security Best Practices/CloudTrail coverage";

impl HubFinding {
    /// A finding of the digest-validator or `trailkeeper validate`, about the digest that
    /// covered `period`.
    pub fn for_verdict(
        finding: &Verdict,
        digest_key: Option<&str>,
        period: (DateTime<Utc>, DateTime<Utc>),
    ) -> Self {
        let (severity, types) = match finding.status {
            Status::Digest(DigestStatus::Missing) | Status::Log(LogStatus::Missing) => {
                (Severity::High, vec![DEFENSE_EVASION])
            }
            Status::Digest(DigestStatus::UnknownKey) => (Severity::High, vec![TAMPERING]),
            Status::Digest(
                DigestStatus::InvalidSignature
                | DigestStatus::Malformed
                | DigestStatus::Moved
                | DigestStatus::ChainBroken
                | DigestStatus::Unsigned,
            )
            // A log no digest lists, in covered time: injected evidence.
            | Status::Log(LogStatus::HashMismatch | LogStatus::Malformed | LogStatus::Unreferenced) => {
                (Severity::Critical, vec![TAMPERING])
            }
            Status::Gap => (Severity::Medium, vec![DEFENSE_EVASION]),
            // Valid files are never findings; if one is passed, it is informational.
            Status::Digest(DigestStatus::Valid) | Status::Log(LogStatus::Valid) => {
                (Severity::Informational, vec![COVERAGE])
            }
        };
        let kind = finding.kind_name();
        let (from, until) = finding.window.unwrap_or(period);
        let subject = match &finding.key {
            Some(key) => Subject::Object {
                bucket: finding.bucket.clone(),
                key: key.clone(),
            },
            None => Subject::Account(finding.account.clone()),
        };
        // The object names the finding; without one, the stream and the window do.
        let identity = match &finding.key {
            Some(key) => format!("{}/{key}", finding.bucket),
            None => format!(
                "{}/{}/{}/{}/{}",
                finding.bucket,
                finding.account,
                finding.region,
                finding.trail,
                format_time(from)
            ),
        };
        let mut description = format!(
            "The CloudTrail history of account {} in {} (trail {}), the hour from {} to {}: {kind} is {}{}.",
            finding.account,
            finding.region,
            finding.trail,
            format_time(from),
            format_time(until),
            finding.status_str(),
            finding
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
        );
        if let Some(d) = digest_key.filter(|d| finding.key.as_deref() != Some(*d)) {
            description.push_str(&format!(" Digest: s3://{}/{d}.", finding.bucket));
        }
        let mut fields = BTreeMap::new();
        fields.insert("trailkeeper/status", finding.status_str().to_string());
        fields.insert("trailkeeper/trail", finding.trail.clone());
        fields.insert("trailkeeper/bucket", finding.bucket.clone());
        Self {
            id: format!(
                "{ID_PREFIX}{}/{}/{}/{}",
                finding.kind(),
                finding.account,
                finding.region,
                short_hash(&identity)
            ),
            generator: "trailkeeper-digest-validation",
            severity,
            types,
            title: match finding.status {
                Status::Gap => format!(
                    "trailkeeper: digest chain gap of {:.1} hours in account {} {}",
                    finding.hours().unwrap_or_default(),
                    finding.account,
                    finding.region
                ),
                _ => format!(
                    "trailkeeper: {kind} {} in account {} {}",
                    finding.status_str(),
                    finding.account,
                    finding.region
                ),
            },
            description,
            subject,
            account: finding.account.clone(),
            region: Some(finding.region.clone()),
            remediation: format!(
                "Reproduce with: {}",
                crate::alerts::reproduce_command(finding, period)
            ),
            observed: until,
            resolved: false,
            fields,
        }
    }

    /// The tripwire's finding for one write or delete under `AWSLogs/` that CloudTrail did not
    /// make: CRITICAL (the record was altered), about the object, with a stable id.
    pub fn for_tamper(t: &crate::tripwire::Tamper) -> Self {
        let d = &t.event.detail;
        let alert = crate::alerts::Alert::for_tamper(t);
        let account = t.account.clone().unwrap_or_else(|| t.event_account());
        let mut fields = BTreeMap::new();
        fields.insert("trailkeeper/status", t.kind.as_str().to_string());
        fields.insert("trailkeeper/bucket", d.bucket.name.clone());
        for (name, value) in [
            ("trailkeeper/requester", &d.requester),
            ("trailkeeper/source-ip", &d.source_ip),
            ("trailkeeper/request-id", &d.request_id),
            ("trailkeeper/version-id", &d.object.version_id),
        ] {
            if let Some(v) = value {
                fields.insert(name, v.clone());
            }
        }
        Self {
            id: format!(
                "{ID_PREFIX}tripwire/{account}/{}/{}",
                t.region.as_deref().unwrap_or("none"),
                short_hash(&t.identity())
            ),
            generator: "trailkeeper-tripwire",
            severity: Severity::Critical,
            types: vec![TAMPERING],
            title: alert.subject,
            description: format!(
                "{} {} in s3://{}/{}: {}",
                t.object_kind,
                t.kind.as_str(),
                d.bucket.name,
                d.object.key,
                t.why
            ),
            subject: Subject::Object {
                bucket: d.bucket.name.clone(),
                key: d.object.key.clone(),
            },
            account,
            region: t.region.clone(),
            remediation: format!(
                "Find out who made request {} from {}; the key's earlier versions hold what CloudTrail delivered: aws s3api list-object-versions --bucket {} --prefix {}",
                d.request_id.as_deref().unwrap_or("(no id)"),
                d.source_ip.as_deref().unwrap_or("(no address)"),
                d.bucket.name,
                d.object.key
            ),
            observed: t.event.time,
            resolved: false,
            fields,
        }
    }

    /// The coverage finding of one audited account: active while it is not covered (or could not
    /// be audited), resolved once it is.
    pub fn for_account_audit(audit: &AccountAudit, now: DateTime<Utc>) -> Self {
        let account = audit.account.as_str().to_string();
        let (severity, title, details): (Severity, String, Vec<&str>) = match &audit.error {
            Some(e) => (
                Severity::Medium,
                format!("trailkeeper: account {account} could not be audited"),
                vec![e.as_str()],
            ),
            None if audit.covered() => (
                Severity::Informational,
                format!("trailkeeper: account {account} is covered again"),
                vec![],
            ),
            None => (
                Severity::High,
                format!("trailkeeper: account {account} is not covered"),
                audit.findings.iter().map(String::as_str).collect(),
            ),
        };
        let description = if details.is_empty() {
            format!(
                "The audit of {} found account {account}'s trail multi-region, validated, logging and admitted.",
                format_time(now)
            )
        } else {
            format!(
                "The audit of {} found account {account}: {}.",
                format_time(now),
                details.join("; ")
            )
        };
        Self {
            id: account_finding_id(&account),
            generator: "trailkeeper-org-audit",
            severity,
            types: vec![COVERAGE],
            title,
            description,
            subject: Subject::Account(account.clone()),
            account: account.clone(),
            region: None,
            remediation: format!(
                "Reproduce with: trailkeeper audit --account {account}; repair with: trailkeeper onboard --account {account}"
            ),
            observed: now,
            resolved: audit.covered(),
            fields: BTreeMap::new(),
        }
    }

    /// The ASFF record, as `product` imports it at `now`.
    fn to_asff(&self, product: &Product, now: DateTime<Utc>) -> AwsSecurityFinding {
        let resource = match &self.subject {
            Subject::Object { bucket, key } => Resource::builder()
                .r#type("AwsS3Object")
                .id(format!("arn:{}:s3:::{bucket}/{key}", product.partition)),
            Subject::Account(account) => Resource::builder()
                .r#type("AwsAccount")
                .id(format!("AWS::::Account:{account}")),
        }
        .partition(product.partition.as_str().into())
        .region(self.region.as_deref().unwrap_or(product.region.as_str()))
        .build();
        let mut fields = self
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<std::collections::HashMap<_, _>>();
        fields.insert("trailkeeper/account".into(), self.account.clone());
        if let Some(r) = &self.region {
            fields.insert("trailkeeper/region".into(), r.clone());
        }
        let (workflow, record_state) = if self.resolved {
            (WorkflowStatus::Resolved, RecordState::Archived)
        } else {
            (WorkflowStatus::New, RecordState::Active)
        };
        AwsSecurityFinding::builder()
            .schema_version(SCHEMA_VERSION)
            .id(&self.id)
            .product_arn(&product.arn)
            .generator_id(self.generator)
            .aws_account_id(&product.account)
            .set_types(Some(self.types.iter().map(|t| t.to_string()).collect()))
            .created_at(format_time(self.observed))
            .updated_at(format_time(now))
            .severity(AsffSeverity::builder().label(self.severity.label()).build())
            .title(truncate(&self.title, TITLE_MAX))
            .description(truncate(&self.description, DESCRIPTION_MAX))
            .remediation(
                Remediation::builder()
                    .recommendation(
                        Recommendation::builder()
                            .text(truncate(&self.remediation, RECOMMENDATION_MAX))
                            .build(),
                    )
                    .build(),
            )
            .resources(resource)
            .set_product_fields(Some(fields))
            .company_name("trailkeeper")
            .product_name("trailkeeper")
            .region(&product.region)
            .workflow(Workflow::builder().status(workflow).build())
            .record_state(record_state)
            .build()
    }
}

/// The stable id of an account's coverage finding.
fn account_finding_id(account: &str) -> String {
    format!("{ACCOUNT_ID_PREFIX}{account}/coverage")
}

/// 32 hex digits of SHA-256: ids stay short (ASFF allows 512) whatever the key's length.
fn short_hash(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    hex::encode(&d.as_ref()[..16])
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_string(),
        Some((cut, _)) => {
            let mut t: String = s[..cut].to_string();
            t.pop();
            t.push('…');
            t
        }
    }
}

/// The importing account's default product.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Product {
    arn: String,
    account: String,
    partition: String,
    region: String,
}

impl Product {
    /// From an ARN of the importing account's own (`arn:<partition>:<service>:<region>:<account>:…`)
    /// and the client's region.
    fn from_caller_arn(caller_arn: &str, region: &str) -> Option<Self> {
        let mut parts = caller_arn.split(':');
        let (Some("arn"), Some(partition), _, _, Some(account)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if partition.is_empty() || !crate::digest::key::is_account_id(account) {
            return None;
        }
        Some(Self {
            arn: format!(
                "arn:{partition}:securityhub:{region}:{account}:product/{account}/default"
            ),
            account: account.to_string(),
            partition: partition.to_string(),
            region: region.to_string(),
        })
    }
}

/// Security Hub in the region the SDK configuration names, for the account [`Self::identify`]
/// names. Building it touches no network.
pub struct SecurityHub {
    hub: aws_sdk_securityhub::Client,
    region: String,
    product: OnceLock<Product>,
}

impl SecurityHub {
    pub fn new(aws: &aws_config::SdkConfig) -> Self {
        Self {
            hub: aws_sdk_securityhub::Client::new(aws),
            region: aws
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            product: OnceLock::new(),
        }
    }

    /// Names the importing account by an ARN of its own (`arn:<partition>:<service>:<region>:
    /// <account>:…`, a Lambda function's invocation ARN); the first one given is kept.
    pub fn identify(&self, own_arn: &str) -> Result<(), SecurityHubError> {
        if self.product.get().is_none() {
            let product = Product::from_caller_arn(own_arn, &self.region).ok_or_else(|| {
                SecurityHubError::Identity(format!("not an ARN with an account: {own_arn:?}"))
            })?;
            let _ = self.product.set(product);
        }
        Ok(())
    }

    fn product(&self) -> Result<&Product, SecurityHubError> {
        self.product.get().ok_or_else(|| {
            SecurityHubError::Identity("no ARN of the caller's own was given (identify)".into())
        })
    }

    /// Imports (creates or updates) the findings, 100 a call. A finding Security Hub refuses is
    /// an error naming it; the others of its batch are still imported.
    pub async fn import(&self, findings: &[HubFinding]) -> Result<(), SecurityHubError> {
        if findings.is_empty() {
            return Ok(());
        }
        let product = self.product()?;
        let now = Utc::now();
        let mut first_refusal = None;
        for batch in findings.chunks(BATCH) {
            let records = batch.iter().map(|f| f.to_asff(product, now)).collect();
            let out = self
                .hub
                .batch_import_findings()
                .set_findings(Some(records))
                .send()
                .await
                .map_err(|e| SecurityHubError::Call {
                    call: "BatchImportFindings",
                    product_arn: product.arn.clone(),
                    message: describe_sdk_error(&e),
                })?;
            if let Some(f) = out.failed_findings().first() {
                first_refusal.get_or_insert(SecurityHubError::Refused {
                    id: f.id().unwrap_or_default().to_string(),
                    code: f.error_code().unwrap_or_default().to_string(),
                    message: format!(
                        "{} ({} of {} in the batch refused)",
                        f.error_message().unwrap_or_default(),
                        out.failed_count().unwrap_or_default(),
                        batch.len()
                    ),
                });
            }
        }
        first_refusal.map_or(Ok(()), Err)
    }

    /// The accounts whose coverage finding is active now (not resolved, not archived).
    pub async fn active_account_findings(&self) -> Result<BTreeSet<String>, SecurityHubError> {
        let product = self.product()?;
        let prefix = |v: &str, c: StringFilterComparison| {
            StringFilter::builder().value(v).comparison(c).build()
        };
        let filters = AwsSecurityFindingFilters::builder()
            .product_arn(prefix(&product.arn, StringFilterComparison::Equals))
            .id(prefix(ACCOUNT_ID_PREFIX, StringFilterComparison::Prefix))
            .record_state(prefix("ACTIVE", StringFilterComparison::Equals))
            .build();
        let mut pages = self
            .hub
            .get_findings()
            .filters(filters)
            .max_results(100)
            .into_paginator()
            .send();
        let mut active = BTreeSet::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| SecurityHubError::Call {
                call: "GetFindings",
                product_arn: product.arn.clone(),
                message: describe_sdk_error(&e),
            })?;
            // The filters are applied again here: they decide what is resolved.
            for f in page.findings() {
                let resolved = f.record_state() == Some(&RecordState::Archived)
                    || f.workflow().and_then(|w| w.status()) == Some(&WorkflowStatus::Resolved);
                if let Some(account) = f
                    .id()
                    .and_then(|id| id.strip_prefix(ACCOUNT_ID_PREFIX))
                    .and_then(|rest| rest.strip_suffix("/coverage"))
                    .filter(|_| !resolved && f.product_arn() == Some(product.arn.as_str()))
                {
                    active.insert(account.to_string());
                }
            }
        }
        Ok(active)
    }

    /// The org-auditor's import: an active finding for every account that is not covered (or
    /// could not be audited), and a resolved one for every covered account whose finding is
    /// still active. Covered accounts that never had a finding get none.
    pub async fn import_audits(
        &self,
        audits: &[AccountAudit],
        now: DateTime<Utc>,
    ) -> Result<(), SecurityHubError> {
        let active = self.active_account_findings().await?;
        let findings: Vec<HubFinding> = audits
            .iter()
            .filter(|a| !a.covered() || active.contains(a.account.as_str()))
            .map(|a| HubFinding::for_account_audit(a, now))
            .collect();
        self.import(&findings).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::key::StreamId;
    use crate::events::AccountId;
    use crate::store::ObjectRef;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn stream() -> StreamId {
        StreamId {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            trail: "trailkeeper".into(),
            home_region: "us-east-1".into(),
            org_id: None,
            backfill: false,
        }
    }

    const PERIOD: &str = "2026-01-01T01:00:00Z";

    fn verdict(status: Status, key: &str) -> Verdict {
        Verdict::at(status, &stream(), &ObjectRef::new("central", key)).because("why")
    }

    fn hub(status: Status, key: &str) -> HubFinding {
        HubFinding::for_verdict(
            &verdict(status, key),
            Some("AWSLogs/d.json.gz"),
            (t("2026-01-01T00:00:00Z"), t(PERIOD)),
        )
    }

    #[test]
    fn severity_follows_the_kind_of_finding() {
        let cases = [
            (Status::Log(LogStatus::HashMismatch), Severity::Critical),
            (Status::Log(LogStatus::Malformed), Severity::Critical),
            (Status::Log(LogStatus::Unreferenced), Severity::Critical),
            (
                Status::Digest(DigestStatus::InvalidSignature),
                Severity::Critical,
            ),
            (
                Status::Digest(DigestStatus::ChainBroken),
                Severity::Critical,
            ),
            (Status::Digest(DigestStatus::Moved), Severity::Critical),
            (Status::Digest(DigestStatus::Unsigned), Severity::Critical),
            (Status::Digest(DigestStatus::Malformed), Severity::Critical),
            (Status::Digest(DigestStatus::Missing), Severity::High),
            (Status::Log(LogStatus::Missing), Severity::High),
            (Status::Digest(DigestStatus::UnknownKey), Severity::High),
            (Status::Gap, Severity::Medium),
        ];
        for (status, want) in cases {
            assert_eq!(
                hub(status, "AWSLogs/x.json.gz").severity,
                want,
                "{status:?}"
            );
        }
    }

    #[test]
    fn a_gap_is_named_by_its_stream_and_start_and_reproduced_with_fail_on_gap() {
        let from = t("2025-12-31T21:00:00Z");
        let mut gap = Verdict::new(Status::Gap, &stream(), "central", None).because("no chain");
        gap.window = Some((from, t("2026-01-01T00:00:00Z")));
        let f = HubFinding::for_verdict(
            &gap,
            Some("AWSLogs/d.json.gz"),
            (t("2026-01-01T00:00:00Z"), t(PERIOD)),
        );
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.subject, Subject::Account("111122223333".into()));
        assert!(
            f.id.starts_with("trailkeeper/gap/111122223333/eu-west-1/"),
            "{}",
            f.id
        );
        assert!(
            f.title.starts_with("trailkeeper: digest chain gap of "),
            "{}",
            f.title
        );
        assert!(
            f.remediation.ends_with(&format!(
                "--start 2025-12-31T21:00:00Z --end {PERIOD} --fail-on-gap"
            )),
            "{}",
            f.remediation
        );
        let mut later = gap.clone();
        later.window = Some((t("2026-01-02T00:00:00Z"), t("2026-01-02T03:00:00Z")));
        let g = HubFinding::for_verdict(&later, None, (t(PERIOD), t(PERIOD)));
        assert_ne!(f.id, g.id, "another gap of the stream is another finding");
    }

    #[test]
    fn the_id_is_stable_per_object_and_differs_between_objects() {
        let a = hub(Status::Log(LogStatus::HashMismatch), "AWSLogs/a.json.gz");
        let again = hub(Status::Log(LogStatus::Malformed), "AWSLogs/a.json.gz");
        let b = hub(Status::Log(LogStatus::HashMismatch), "AWSLogs/b.json.gz");
        assert_eq!(
            a.id, again.id,
            "a new verdict on the same object updates its finding"
        );
        assert_ne!(a.id, b.id);
        assert!(
            a.id.starts_with("trailkeeper/log/111122223333/eu-west-1/"),
            "{}",
            a.id
        );
        assert!(a.id.len() < 80);
        let long_key = format!("AWSLogs/{}", "k".repeat(1000));
        assert!(hub(Status::Log(LogStatus::Missing), &long_key).id.len() < 80);
    }

    #[test]
    fn the_finding_names_the_object_and_the_command_that_reproduces_it() {
        let f = hub(Status::Log(LogStatus::HashMismatch), "AWSLogs/x.json.gz");
        assert_eq!(
            f.subject,
            Subject::Object {
                bucket: "central".into(),
                key: "AWSLogs/x.json.gz".into()
            }
        );
        assert_eq!(
            f.title,
            "trailkeeper: log file hash_mismatch in account 111122223333 eu-west-1"
        );
        assert!(
            f.description.contains("log file is hash_mismatch: why"),
            "{}",
            f.description
        );
        assert!(
            f.description
                .contains("Digest: s3://central/AWSLogs/d.json.gz")
        );
        assert_eq!(
            f.remediation,
            format!(
                "Reproduce with: trailkeeper validate --bucket central --account 111122223333 \
                 --region eu-west-1 --trail trailkeeper --start {PERIOD} --end {PERIOD}"
            )
        );
        assert_eq!(f.observed, t(PERIOD));
    }

    #[test]
    fn asff_carries_the_required_fields_for_the_importing_account() {
        let product = Product::from_caller_arn(
            "arn:aws-us-gov:lambda:us-gov-west-1:444455556666:function:digest-validator",
            "us-gov-west-1",
        )
        .unwrap();
        assert_eq!(
            product.arn,
            "arn:aws-us-gov:securityhub:us-gov-west-1:444455556666:product/444455556666/default"
        );
        let f = hub(
            Status::Digest(DigestStatus::InvalidSignature),
            "AWSLogs/d.json.gz",
        );
        let asff = f.to_asff(&product, t("2026-01-02T00:00:00Z"));
        assert_eq!(asff.schema_version(), Some(SCHEMA_VERSION));
        assert_eq!(asff.aws_account_id(), Some("444455556666"));
        assert_eq!(asff.product_arn(), Some(product.arn.as_str()));
        assert_eq!(asff.created_at(), Some(PERIOD));
        assert_eq!(asff.updated_at(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(
            asff.severity().and_then(|s| s.label()),
            Some(&SeverityLabel::Critical)
        );
        let r = &asff.resources()[0];
        assert_eq!(r.r#type(), Some("AwsS3Object"));
        assert_eq!(
            r.id(),
            Some("arn:aws-us-gov:s3:::central/AWSLogs/d.json.gz")
        );
        assert_eq!(
            asff.product_fields()
                .unwrap()
                .get("trailkeeper/account")
                .map(String::as_str),
            Some("111122223333")
        );
        assert_eq!(asff.record_state(), Some(&RecordState::Active));
        assert!(Product::from_caller_arn("not-an-arn", "us-east-1").is_none());
    }

    #[test]
    fn long_texts_are_cut_to_asff_limits() {
        let mut f = hub(Status::Log(LogStatus::HashMismatch), "AWSLogs/x.json.gz");
        f.description = "é".repeat(5000);
        f.title = "t".repeat(300);
        let product = Product::from_caller_arn("arn:aws:sts::444455556666:x", "us-east-1").unwrap();
        let asff = f.to_asff(&product, t(PERIOD));
        assert_eq!(asff.description().unwrap().chars().count(), DESCRIPTION_MAX);
        assert_eq!(asff.title().unwrap().chars().count(), TITLE_MAX);
    }

    #[test]
    fn an_account_finding_is_active_until_the_account_is_covered() {
        let account = AccountId::new("222233334444").unwrap();
        let mut audit = AccountAudit {
            account,
            trail: None,
            admitted: BTreeMap::new(),
            other_trails: vec![],
            streams: None,
            reverification: None,
            controls: Vec::new(),
            findings: vec![
                "no trail arn:aws:cloudtrail:us-east-1:222233334444:trail/trailkeeper".into(),
            ],
            error: None,
        };
        let now = t(PERIOD);
        let open = HubFinding::for_account_audit(&audit, now);
        assert_eq!(open.id, "trailkeeper/account/222233334444/coverage");
        assert_eq!(open.severity, Severity::High);
        assert!(!open.resolved);
        assert!(open.description.contains("no trail arn:aws:cloudtrail"));
        assert!(
            open.remediation
                .contains("trailkeeper audit --account 222233334444")
        );
        audit.findings.clear();
        let closed = HubFinding::for_account_audit(&audit, now);
        assert_eq!(closed.id, open.id, "the same record is updated");
        assert!(closed.resolved);
        let product = Product::from_caller_arn("arn:aws:sts::444455556666:x", "us-east-1").unwrap();
        let asff = closed.to_asff(&product, now);
        assert_eq!(asff.record_state(), Some(&RecordState::Archived));
        assert_eq!(
            asff.workflow().and_then(|w| w.status()),
            Some(&WorkflowStatus::Resolved)
        );
        assert_eq!(
            asff.resources()[0].id(),
            Some("AWS::::Account:222233334444")
        );
    }
}
