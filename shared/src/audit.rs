//! The organization-wide audit: for every account, is its trail there, multi-region, validated,
//! logging and delivering, and does the central bucket (and key) policy admit it? Other trails
//! are listed as left-overs to retire and to consolidate.
//!
//! It reads only: `DescribeTrails` and `GetTrailStatus` as each account, through the read-only
//! audit role (templates/audit-member-role.yaml, which allows exactly [`CALLS`]; never the
//! administrator member role the trail-enabler uses), and the policies from the log-archive
//! side. With a freshness [`Watch`] it also lists each account's newest digests
//! (`crate::freshness`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{self, ConfigError};
use crate::controls::Control;
use crate::event_selectors::ManagementEvents;
use crate::events::AccountId;
use crate::freshness::{StreamAge, Watch};
use crate::onboard::{OnboardConfig, PolicyTarget, PolicyUpdater};
use crate::reverify::{self, ReverificationAge};
use crate::store::describe_sdk_error;
use crate::store::{ObjectRef, Store};
use crate::trail::{Drift, ObservedTrail, RoleName, TrailEnabler};

/// The IAM actions of an audit of trails (as the member role in other accounts, with the
/// caller's credentials in its own), besides `sts:AssumeRole` and `organizations:ListAccounts`.
pub const CALLS: &[&str] = &[
    "cloudtrail:DescribeTrails",
    "cloudtrail:GetTrailStatus",
    "cloudtrail:GetEventSelectors",
];
/// The IAM actions that read the policies, in the log-archive account.
pub const POLICY_READ_CALLS: &[&str] = &["s3:GetBucketPolicy", "kms:GetKeyPolicy"];

/// The read-only role the audit assumes in member accounts, unless [`AUDIT_ROLE_ENV`] names
/// another (the management stack's `AuditRoleName`).
pub const DEFAULT_AUDIT_ROLE: &str = "trailkeeper-audit";
pub const AUDIT_ROLE_ENV: &str = "TRAILKEEPER_AUDIT_ROLE";

/// The audit role from [`AUDIT_ROLE_ENV`], else [`DEFAULT_AUDIT_ROLE`].
pub fn audit_role_from_env() -> Result<RoleName, ConfigError> {
    let name = config::optional(AUDIT_ROLE_ENV).unwrap_or_else(|| DEFAULT_AUDIT_ROLE.to_owned());
    RoleName::new(&name).map_err(|e| ConfigError {
        variable: AUDIT_ROLE_ENV,
        why: e.to_string(),
    })
}

/// The trailkeeper trail of one account, as CloudTrail reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrailState {
    pub arn: String,
    pub multi_region: bool,
    pub log_file_validation: bool,
    pub logging: bool,
    pub latest_delivery: Option<DateTime<Utc>>,
    pub latest_digest: Option<DateTime<Utc>>,
    pub latest_delivery_error: Option<String>,
    pub latest_digest_error: Option<String>,
    /// The settings that are not what the spec says (bucket, prefix, multi-region, …).
    pub drift: Vec<Drift>,
    /// When logging last started (`GetTrailStatus.StartLoggingTime`).
    pub started_logging: Option<DateTime<Utc>>,
    pub kms_key_id: Option<String>,
    /// What its event selectors record.
    pub management_events: Option<ManagementEvents>,
}

impl TrailState {
    /// What `GetTrailStatus` says is wrong: not logging, a failed log or digest delivery.
    pub fn status_findings(&self) -> Vec<String> {
        let mut findings = Vec::new();
        if !self.logging {
            findings.push(format!("trail {} is not logging", self.arn));
        }
        for (what, e) in [
            ("log delivery", &self.latest_delivery_error),
            ("digest delivery", &self.latest_digest_error),
        ] {
            if let Some(e) = e {
                findings.push(format!("trail {}: latest {what} failed: {e}", self.arn));
            }
        }
        findings
    }
}

/// A trail that is not trailkeeper's: history to consolidate, then a trail to retire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherTrail {
    pub arn: String,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub multi_region: bool,
    pub organization_trail: bool,
}

impl OtherTrail {
    /// `s3://BUCKET[/PREFIX]`, what `trailkeeper consolidate --from` takes.
    pub fn location(&self) -> Option<String> {
        let bucket = self.bucket.as_deref()?;
        Some(match self.prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => format!("s3://{bucket}/{p}"),
            None => format!("s3://{bucket}"),
        })
    }
}

/// One account's audit.
#[derive(Debug, Clone, Serialize)]
pub struct AccountAudit {
    pub account: AccountId,
    /// `None` when the account has no trailkeeper trail.
    pub trail: Option<TrailState>,
    /// Per policy (`bucket policy of s3://…`, `key policy of …`): does it admit the account?
    pub admitted: BTreeMap<String, bool>,
    pub other_trails: Vec<OtherTrail>,
    /// Why the account is not covered; empty when it is.
    pub findings: Vec<String>,
    /// Why the account could not be audited (role, throttling, permissions); not a verdict.
    pub error: Option<String>,
    /// With the freshness watch: each region's newest digest; stale ones are findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<StreamAge>>,
    /// CloudTrail.1, .2 and .4 of trailkeeper's trail (`crate::controls`); empty when the
    /// account could not be read.
    pub controls: Vec<Control>,
    /// With the archive's state read: since when every digest and log of the account was
    /// validated again (`crate::reverify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverification: Option<ReverificationAge>,
}

impl AccountAudit {
    pub fn covered(&self) -> bool {
        self.error.is_none() && self.findings.is_empty()
    }

    /// What makes the account not covered, from what was observed.
    fn judge(&mut self, trail_arn: &str) {
        let mut findings = Vec::new();
        match &self.trail {
            None => findings.push(format!("no trail {trail_arn}")),
            Some(t) => {
                findings.extend(t.drift.iter().map(|d| format!("trail {}: {d}", t.arn)));
                findings.extend(t.status_findings());
            }
        }
        for (policy, admitted) in &self.admitted {
            if !admitted {
                findings.push(format!("the {policy} does not admit the account"));
            }
        }
        self.findings = findings;
    }
}

/// The audit as one CloudWatch embedded-metric-format record (the scheduled audit's log line):
/// accounts audited, covered, not covered, and unreadable, with the accounts of the last two.
pub fn metrics_record(audits: &[AccountAudit], now: DateTime<Utc>) -> serde_json::Value {
    let uncovered: Vec<String> = audits
        .iter()
        .filter(|a| a.error.is_none() && !a.covered())
        .map(|a| a.account.to_string())
        .collect();
    let unreadable: Vec<String> = audits
        .iter()
        .filter(|a| a.error.is_some())
        .map(|a| a.account.to_string())
        .collect();
    serde_json::json!({
        "_aws": crate::report::emf_metadata(now, &[("AccountsAudited", "Count"), ("AccountsCovered", "Count"), ("AccountsNotCovered", "Count"), ("AccountsUnreadable", "Count")]),
        "AccountsAudited": audits.len(),
        "AccountsCovered": audits.iter().filter(|a| a.covered()).count(),
        "AccountsNotCovered": uncovered.len(),
        "AccountsUnreadable": unreadable.len(),
        "notCovered": uncovered,
        "unreadable": unreadable,
    })
}

/// Audits accounts with the onboarding configuration (`TRAILKEEPER_*`).
pub struct Auditor {
    pub config: OnboardConfig,
    trails: TrailEnabler,
    policies: PolicyUpdater,
    /// The caller's own account: audited with its own credentials, as no member role exists.
    caller: Option<AccountId>,
    /// Also judge whether each account's digests keep arriving.
    watch: Option<Watch>,
    /// Also report each account's oldest re-verification, from this state object.
    reverification: Option<(Store, ObjectRef)>,
}

impl Auditor {
    /// `aws` is the management side: it assumes `audit_role` (read-only) in each account
    /// (with `backoff` for one not assumable yet) and reads `caller`'s own trail itself;
    /// `archive` reads the policies (the log-archive account, or a role there).
    pub fn new(
        aws: &aws_config::SdkConfig,
        archive: &aws_config::SdkConfig,
        config: OnboardConfig,
        audit_role: RoleName,
        backoff: crate::trail::Backoff,
        caller: Option<AccountId>,
    ) -> Self {
        Self {
            trails: TrailEnabler::new(aws, config.trail_spec(), audit_role, backoff),
            policies: PolicyUpdater::new(
                archive,
                config.clone(),
                crate::onboard::PolicyLoop::DEFAULT,
            ),
            config,
            caller,
            watch: None,
            reverification: None,
        }
    }

    /// With another STS client (tests with mocks).
    pub fn with_sts(mut self, sts: aws_sdk_sts::Client) -> Self {
        self.trails = self.trails.with_sts(sts);
        self
    }

    /// Also lists each audited account's newest digests, and reports stale streams.
    pub fn with_freshness(mut self, watch: Watch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Also reports each account's oldest re-verification, read (once) from the state in the
    /// central bucket that the digest-validator's scheduled runs keep.
    pub fn with_reverification(mut self, store: Store, bucket: &str, prefix: Option<&str>) -> Self {
        self.reverification = Some((store, reverify::state_object(bucket, prefix)));
        self
    }

    /// The policy texts, read once for all accounts.
    pub async fn read_policies(
        &self,
        any: AccountId,
    ) -> Result<Vec<(&PolicyTarget, Option<String>)>, String> {
        let mut out = Vec::new();
        for target in &self.policies.targets {
            let text = target.read(any).await.map_err(|e| e.to_string())?;
            out.push((target, text));
        }
        Ok(out)
    }

    /// Every account in `accounts`, `concurrency` at a time, sorted by account; the policies are
    /// read once. Only an unreadable policy fails the whole audit: an account that cannot be
    /// read is an [`AccountAudit::error`].
    pub async fn audit_all(
        &self,
        accounts: Vec<AccountId>,
        concurrency: usize,
    ) -> Result<Vec<AccountAudit>, String> {
        use futures::{StreamExt, stream};
        let Some(first) = accounts.first().copied() else {
            return Ok(Vec::new());
        };
        let policies = self.read_policies(first).await?;
        let mut audits: Vec<AccountAudit> = stream::iter(accounts)
            .map(|account| self.audit(account, &policies))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        audits.sort_by_key(|a| a.account);
        if let Some((store, object)) = &self.reverification {
            // An unreadable state leaves coverage as it is, and says why on every account.
            let state = reverify::read_state(store, object).await;
            let now = Utc::now();
            for a in &mut audits {
                a.reverification = Some(match &state {
                    Ok(state) => state.age_of(a.account.as_str(), now),
                    Err(e) => ReverificationAge {
                        verified_since: None,
                        age_hours: None,
                        error: Some(e.to_string()),
                    },
                });
            }
        }
        Ok(audits)
    }

    /// One account: its trails, their status, and the policies.
    pub async fn audit(
        &self,
        account: AccountId,
        policies: &[(&PolicyTarget, Option<String>)],
    ) -> AccountAudit {
        let mut audit = AccountAudit {
            account,
            trail: None,
            admitted: BTreeMap::new(),
            other_trails: Vec::new(),
            findings: Vec::new(),
            error: None,
            streams: None,
            reverification: None,
            controls: Vec::new(),
        };
        let grant = self.config.grant(account);
        for (target, text) in policies {
            match target.admits(text.as_deref(), &grant) {
                Ok(admits) => {
                    audit.admitted.insert(target.to_string(), admits);
                }
                Err(e) => {
                    audit.error = Some(format!("{target}: {e}"));
                    return audit;
                }
            }
        }
        if let Err(e) = self.observe(account, &mut audit).await {
            audit.error = Some(e);
            return audit;
        }
        audit.judge(&self.trails.spec.trail_arn(account).to_string());
        audit.controls = crate::controls::trail_controls(audit.trail.as_ref());
        if let (Some(watch), Some(trail)) = (&self.watch, &audit.trail) {
            let home = self.trails.spec.home_region.as_str();
            let listed = watch
                .streams(account.as_str(), home, trail.started_logging, Utc::now())
                .await;
            match listed {
                Ok(streams) => {
                    audit
                        .findings
                        .extend(watch.findings(account.as_str(), &streams));
                    audit.streams = Some(streams);
                }
                Err(e) => audit.error = Some(format!("account {account}: the newest digests: {e}")),
            }
        }
        audit
    }

    async fn observe(&self, account: AccountId, audit: &mut AccountAudit) -> Result<(), String> {
        let ct = if Some(account) == self.caller {
            self.trails.own_cloudtrail()
        } else {
            self.trails
                .member_cloudtrail(account)
                .await
                .map_err(|e| e.to_string())?
                .0
        };
        let listed = ct
            .describe_trails()
            .include_shadow_trails(true)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "account {account}: cloudtrail:DescribeTrails: {}",
                    describe_sdk_error(&e)
                )
            })?;
        let spec = &self.trails.spec;
        let ours = spec.trail_arn(account).to_string();
        for t in listed.trail_list() {
            let mut observed = ObservedTrail::from_sdk(t);
            let arn = observed.arn.clone().unwrap_or_default();
            if arn != ours {
                audit.other_trails.push(OtherTrail {
                    arn,
                    bucket: observed.bucket.clone(),
                    prefix: observed.prefix.clone(),
                    multi_region: observed.multi_region,
                    organization_trail: observed.organization_trail,
                });
                continue;
            }
            let status = ct.get_trail_status().name(&arn).send().await.map_err(|e| {
                format!(
                    "account {account}: cloudtrail:GetTrailStatus {arn}: {}",
                    describe_sdk_error(&e)
                )
            })?;
            // A trail that logs, and delivers its digests, records nothing if its selectors
            // leave management events out.
            let selectors = ct
                .get_event_selectors()
                .trail_name(&arn)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "account {account}: cloudtrail:GetEventSelectors {arn}: {}",
                        describe_sdk_error(&e)
                    )
                })?;
            observed.management_events = Some(ManagementEvents::from_sdk(&selectors));
            let text = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
            let time = |t: Option<&aws_smithy_types::DateTime>| {
                t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
            };
            audit.trail = Some(TrailState {
                arn: arn.clone(),
                multi_region: observed.multi_region,
                log_file_validation: observed.log_file_validation,
                logging: status.is_logging() == Some(true),
                latest_delivery: time(status.latest_delivery_time()),
                latest_digest: time(status.latest_digest_delivery_time()),
                latest_delivery_error: text(status.latest_delivery_error()),
                latest_digest_error: text(status.latest_digest_delivery_error()),
                drift: spec.drift(&observed),
                started_logging: time(status.start_logging_time()),
                kms_key_id: observed.kms_key_id.clone(),
                management_events: observed.management_events.clone(),
            });
        }
        audit.other_trails.sort_by(|a, b| a.arn.cmp(&b.arn));
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn audit(trail: Option<TrailState>, admitted: bool) -> AccountAudit {
        let mut a = AccountAudit {
            account: AccountId::new("111122223333").unwrap(),
            trail,
            admitted: BTreeMap::from([("bucket policy of s3://central".to_string(), admitted)]),
            other_trails: Vec::new(),
            findings: Vec::new(),
            error: None,
            streams: None,
            reverification: None,
            controls: Vec::new(),
        };
        a.judge("arn:aws:cloudtrail:us-east-1:111122223333:trail/trailkeeper");
        a
    }

    /// A trail of the spec, logging (no key, selectors not read).
    pub(crate) fn trail() -> TrailState {
        TrailState {
            arn: "arn:aws:cloudtrail:us-east-1:111122223333:trail/trailkeeper".into(),
            multi_region: true,
            log_file_validation: true,
            logging: true,
            latest_delivery: None,
            latest_digest: None,
            latest_delivery_error: None,
            latest_digest_error: None,
            drift: Vec::new(),
            started_logging: None,
            kms_key_id: None,
            management_events: None,
        }
    }

    #[test]
    fn every_gap_in_coverage_is_a_finding_and_nothing_else_is() {
        assert!(audit(Some(trail()), true).covered());
        assert_eq!(
            audit(None, true).findings,
            ["no trail arn:aws:cloudtrail:us-east-1:111122223333:trail/trailkeeper"]
        );
        let stopped = TrailState {
            logging: false,
            latest_delivery_error: Some("AccessDenied".into()),
            ..trail()
        };
        let a = audit(Some(stopped), false);
        assert_eq!(a.findings.len(), 3, "{:?}", a.findings);
        assert!(a.findings[0].ends_with("is not logging"));
        assert!(a.findings[1].contains("latest log delivery failed: AccessDenied"));
        assert_eq!(
            a.findings[2],
            "the bucket policy of s3://central does not admit the account"
        );
    }

    #[test]
    fn the_metrics_record_counts_each_kind_of_account() {
        let mut unreadable = audit(Some(trail()), true);
        unreadable.account = AccountId::new("444455556666").unwrap();
        unreadable.error = Some("sts:AssumeRole: AccessDenied".into());
        let audits = [audit(Some(trail()), true), audit(None, true), unreadable];
        let r = metrics_record(&audits, DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert_eq!(r["AccountsAudited"], 3);
        assert_eq!(r["AccountsCovered"], 1);
        assert_eq!(r["AccountsNotCovered"], 1);
        assert_eq!(r["AccountsUnreadable"], 1);
        assert_eq!(r["notCovered"], serde_json::json!(["111122223333"]));
        assert_eq!(r["unreadable"], serde_json::json!(["444455556666"]));
        assert_eq!(r["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let names: Vec<&str> = r["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in &names {
            assert!(r.get(*name).is_some(), "metric {name} has no value");
        }
    }

    /// The audit reads member accounts through the read-only audit role, never through the
    /// administrator member role of the onboarding configuration.
    #[tokio::test]
    async fn member_accounts_are_read_through_the_audit_role_not_the_member_role() {
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        const DENIED: &str = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not deployed in this account</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        let audit_role = "arn:aws:iam::111122223333:role/trailkeeper-audit";
        let refused = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(move |r| r.role_arn() == Some(audit_role))
            .sequence()
            .http_status(403, Some(DENIED.into()))
            .build();
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&refused], |c| c
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled()));
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let config = OnboardConfig::from_vars(|name| match name {
            "TRAILKEEPER_BUCKET" => Some("central-logs".into()),
            "AWS_REGION" => Some("us-east-1".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.member_role.as_str(), "OrganizationAccountAccessRole");
        let once = crate::trail::Backoff {
            attempts: 1,
            first: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(1),
        };
        let auditor = Auditor::new(
            &aws,
            &aws,
            config,
            RoleName::new(DEFAULT_AUDIT_ROLE).unwrap(),
            once,
            None,
        )
        .with_sts(sts);
        let a = auditor
            .audit(AccountId::new("111122223333").unwrap(), &[])
            .await;
        assert_eq!(refused.num_calls(), 1, "AssumeRole of {audit_role}");
        assert!(!a.covered());
        let error = a
            .error
            .expect("an account whose role cannot be assumed is not audited");
        assert!(error.contains("sts:AssumeRole"), "{error}");
    }

    #[test]
    fn other_trails_name_where_their_history_is() {
        let t = OtherTrail {
            arn: "arn".into(),
            bucket: Some("old".into()),
            prefix: Some("p".into()),
            multi_region: false,
            organization_trail: false,
        };
        assert_eq!(t.location().as_deref(), Some("s3://old/p"));
        let no_prefix = OtherTrail { prefix: None, ..t };
        assert_eq!(no_prefix.location().as_deref(), Some("s3://old"));
    }
}
