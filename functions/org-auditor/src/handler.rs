//! One scheduled event in, the organization's audit out: a metrics record, an alert per account
//! that is not covered (or could not be read), and the audit as the invocation's result.
//!
//! Only what stops the audit as a whole fails the invocation, so that Lambda retries it:
//! listing the accounts, assuming the reader role, or reading a policy. An account that is not
//! covered is a finding, reported and alerted, not an error.

use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent, tracing};
use serde_json::{Value, json};
use trailkeeper::alerts::{Alert, AlertTopic};
use trailkeeper::audit::{AccountAudit, Auditor, metrics_record};
use trailkeeper::config::{self, ConfigError};
use trailkeeper::events::AccountId;
use trailkeeper::freshness::{self, Watch};
use trailkeeper::onboard::{OnboardConfig, active_accounts};
use trailkeeper::securityhub::SecurityHub;
use trailkeeper::store::{Store, s3_client};
use trailkeeper::trail::{Backoff, RoleName, assume_role};

/// Settings besides the onboarding ones (`TRAILKEEPER_*`), read once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The read-only role assumed in member accounts (`TRAILKEEPER_AUDIT_ROLE`), never the
    /// administrator member role.
    pub audit_role: RoleName,
    /// The log-archive account's role that may read the bucket (and key) policy; unset when
    /// the function's own credentials may read them.
    pub archive_role_arn: Option<String>,
    pub alert_topic_arn: Option<String>,
    /// `TRAILKEEPER_SECURITY_HUB=1`: coverage findings are also kept in Security Hub.
    pub security_hub: bool,
    /// Accounts audited at once.
    pub concurrency: usize,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            audit_role: trailkeeper::audit::audit_role_from_env()?,
            archive_role_arn: config::optional_checked(
                "TRAILKEEPER_ARCHIVE_ROLE_ARN",
                check_role_arn,
            )?,
            alert_topic_arn: config::optional_checked(
                "TRAILKEEPER_ALERT_TOPIC_ARN",
                config::check_sns_topic_arn,
            )?,
            security_hub: trailkeeper::securityhub::enabled_in_env(),
            concurrency: config::count("TRAILKEEPER_CONCURRENCY", 8)?,
        })
    }
}

/// The reader role setting must name a role (`trailkeeper::archive::is_role_arn`).
fn check_role_arn(v: &str) -> Result<(), String> {
    if trailkeeper::archive::is_role_arn(v) {
        Ok(())
    } else {
        Err(format!("is not an IAM role ARN: {v:?}"))
    }
}

pub use trailkeeper::report::{RecordSink, Stdout};

pub struct Deps<R: RecordSink> {
    pub aws: aws_config::SdkConfig,
    pub onboard: OnboardConfig,
    pub config: Config,
    pub alerts: Option<AlertTopic>,
    pub security_hub: Option<SecurityHub>,
    /// How long to wait for a member role that is not assumable yet.
    pub backoff: Backoff,
    pub records: R,
}

impl<R: RecordSink> Deps<R> {
    /// Clients are made once per container; nothing here touches the network.
    pub fn new(
        aws: &aws_config::SdkConfig,
        onboard: OnboardConfig,
        config: Config,
        records: R,
    ) -> Self {
        Self {
            aws: aws.clone(),
            alerts: config
                .alert_topic_arn
                .clone()
                .map(|arn| AlertTopic::new(aws_sdk_sns::Client::new(aws), arn)),
            security_hub: config.security_hub.then(|| SecurityHub::new(aws)),
            onboard,
            config,
            // An audit does not wait for accounts to settle: a short bound, then an error.
            backoff: Backoff {
                attempts: 3,
                first: std::time::Duration::from_millis(200),
                max: std::time::Duration::from_secs(2),
            },
            records,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The audit could not run as a whole (accounts, reader role, policies): worth a retry.
    #[error("the organization audit could not run: {0}")]
    Audit(String),
    /// An event asking for something this function does not do: retrying cannot help.
    #[error("the event is not an org-auditor event: {0}")]
    Event(String),
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match e {
            HandlerError::Audit(_) => "AuditFailed",
            HandlerError::Event(_) => "BadEvent",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// The account this function runs in, from its ARN: audited with its own credentials, since a
/// management account has no member role.
fn own_account(invoked_function_arn: &str) -> Option<AccountId> {
    invoked_function_arn
        .split(':')
        .nth(4)
        .and_then(|a| AccountId::new(a).ok())
}

/// What an invocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The daily audit: any event without `check` (a schedule's, or `{}` by hand).
    Audit,
    /// The hourly freshness check: `{"check": "freshness", "maxDigestAgeMinutes": N}`.
    Freshness { max_age: chrono::Duration },
}

fn check_of(event: &Value) -> Result<Check, HandlerError> {
    match event.get("check").and_then(Value::as_str) {
        None => Ok(Check::Audit),
        Some("freshness") => {
            let max_age = match event.get("maxDigestAgeMinutes") {
                None => freshness::default_max_age(),
                Some(v) => match v.as_i64().filter(|m| (60..=10_080).contains(m)) {
                    Some(m) => chrono::Duration::minutes(m),
                    None => {
                        return Err(HandlerError::Event(format!(
                            "maxDigestAgeMinutes is {v}, expected minutes from 60 to 10080"
                        )));
                    }
                },
            };
            Ok(Check::Freshness { max_age })
        }
        Some(other) => Err(HandlerError::Event(format!(
            "check is {other:?}, expected \"freshness\" or no check (the daily audit)"
        ))),
    }
}

/// Audits the organization, or checks its freshness. Either only reads, so any invocation is
/// safe.
pub async fn handle<R: RecordSink>(
    deps: &Deps<R>,
    event: LambdaEvent<Value>,
) -> Result<Value, HandlerError> {
    let caller = own_account(&event.context.invoked_function_arn);
    if let Check::Freshness { max_age } = check_of(&event.payload)? {
        return check_freshness(deps, caller, max_age).await;
    }
    let audits = audit(deps, caller).await?;
    let now = Utc::now();
    deps.records.write(&metrics_record(&audits, now));
    let mut alerted = 0;
    let mut alert_errors = Vec::new();
    if let Some(hub) = &deps.security_hub
        && let Err(e) = match hub.identify(&event.context.invoked_function_arn) {
            Ok(()) => hub.import_audits(&audits, now).await,
            Err(e) => Err(e),
        }
    {
        alert_errors.push(e.to_string());
    }
    if let Some(topic) = &deps.alerts {
        for alert in audits.iter().filter_map(Alert::for_account_audit) {
            match topic.publish(&alert).await {
                Ok(()) => alerted += 1,
                Err(e) => alert_errors.push(e.to_string()),
            }
        }
    }
    for a in audits.iter().filter(|a| !a.covered()) {
        tracing::warn!(account = %a.account, findings = ?a.findings, error = ?a.error, "account not covered");
    }
    if !alert_errors.is_empty() {
        // The audit itself is done; the alerts must not be lost: fail so that Lambda retries.
        return Err(HandlerError::Audit(alert_errors.join("; ")));
    }
    Ok(json!({
        "status": if audits.iter().all(AccountAudit::covered) { "covered" } else { "not_covered" },
        "accounts": audits.len(),
        "alerts": alerted,
        "audits": audits,
    }))
}

async fn audit<R: RecordSink>(
    deps: &Deps<R>,
    caller: Option<AccountId>,
) -> Result<Vec<AccountAudit>, HandlerError> {
    let (auditor, accounts, archive) = auditor(deps, caller).await?;
    let d = &deps.onboard.destination;
    auditor
        .with_reverification(
            Store::new(s3_client(&archive)),
            d.bucket.as_str(),
            d.prefix.as_ref().map(|p| p.as_str()),
        )
        .audit_all(accounts, deps.config.concurrency)
        .await
        .map_err(HandlerError::Audit)
}

/// The auditor, the ACTIVE accounts, and the log-archive side's credentials.
async fn auditor<R: RecordSink>(
    deps: &Deps<R>,
    caller: Option<AccountId>,
) -> Result<(Auditor, Vec<AccountId>, aws_config::SdkConfig), HandlerError> {
    let fail = HandlerError::Audit;
    let accounts = active_accounts(&aws_sdk_organizations::Client::new(&deps.aws))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let archive = match &deps.config.archive_role_arn {
        Some(arn) => assume_role(&deps.aws, arn, "trailkeeper-org-auditor")
            .await
            .map_err(fail)?,
        None => deps.aws.clone(),
    };
    let auditor = Auditor::new(
        &deps.aws,
        &archive,
        deps.onboard.clone(),
        deps.config.audit_role.clone(),
        deps.backoff,
        caller,
    );
    Ok((auditor, accounts, archive))
}

/// The hourly check: for every account the policies admit and whose trail exists, its trail
/// status and every region's newest digest; one alert per stale stream (and per trail not
/// logging or delivering), one metrics record. Accounts that could not be read, or are not
/// covered for other reasons, are the daily audit's to report.
async fn check_freshness<R: RecordSink>(
    deps: &Deps<R>,
    caller: Option<AccountId>,
    max_age: chrono::Duration,
) -> Result<Value, HandlerError> {
    let (auditor, accounts, archive) = auditor(deps, caller).await?;
    let d = &deps.onboard.destination;
    let watch = Watch::new(
        Store::new(s3_client(&archive)),
        d.bucket.as_str(),
        d.prefix.as_ref().map(|p| p.as_str()),
        deps.onboard.trail_name.as_str(),
        max_age,
    );
    let audits = auditor
        .with_freshness(watch.clone())
        .audit_all(accounts, deps.config.concurrency)
        .await
        .map_err(HandlerError::Audit)?;
    let watched: Vec<&AccountAudit> = audits
        .iter()
        .filter(|a| a.error.is_none() && a.trail.is_some() && a.admitted.values().all(|v| *v))
        .collect();
    let streams: Vec<(String, freshness::StreamAge)> = watched
        .iter()
        .flat_map(|a| {
            a.streams
                .iter()
                .flatten()
                .map(|s| (a.account.to_string(), s.clone()))
        })
        .collect();
    deps.records
        .write(&freshness::metrics_record(&streams, Utc::now()));
    let mut alerted = 0;
    let mut alert_errors = Vec::new();
    for alert in watched.iter().flat_map(|a| Alert::for_freshness(a, &watch)) {
        tracing::warn!(subject = %alert.subject, "freshness");
        if let Some(topic) = &deps.alerts {
            match topic.publish(&alert).await {
                Ok(()) => alerted += 1,
                Err(e) => alert_errors.push(e.to_string()),
            }
        }
    }
    if !alert_errors.is_empty() {
        return Err(HandlerError::Audit(alert_errors.join("; ")));
    }
    let stale: Vec<String> = watched
        .iter()
        .flat_map(|a| watch.findings(a.account.as_str(), a.streams.as_deref().unwrap_or_default()))
        .collect();
    Ok(json!({
        "check": "freshness",
        "status": if streams.iter().any(|(_, s)| s.stale) { "stale" } else { "fresh" },
        "accounts": watched.len(),
        "streams": streams.len(),
        "stale": stale,
        "alerts": alerted,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_account_comes_from_the_function_arn() {
        assert_eq!(
            own_account("arn:aws:lambda:us-east-1:111122223333:function:org-auditor"),
            Some(AccountId::new("111122223333").unwrap())
        );
        assert_eq!(own_account(""), None);
        assert_eq!(own_account("arn:aws:lambda:us-east-1:12:function:x"), None);
    }

    #[test]
    fn the_event_says_which_check() {
        assert_eq!(check_of(&json!({})).unwrap(), Check::Audit);
        assert_eq!(
            check_of(&json!({"check": "freshness", "maxDigestAgeMinutes": 180})).unwrap(),
            Check::Freshness {
                max_age: chrono::Duration::minutes(180)
            }
        );
        assert_eq!(
            check_of(&json!({"check": "freshness"})).unwrap(),
            Check::Freshness {
                max_age: freshness::default_max_age()
            }
        );
        for bad in [
            json!({"check": "everything"}),
            json!({"check": "freshness", "maxDigestAgeMinutes": 5}),
            json!({"check": "freshness", "maxDigestAgeMinutes": "2h"}),
        ] {
            assert!(
                matches!(check_of(&bad), Err(HandlerError::Event(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_reader_role_must_be_a_role_arn() {
        assert!(check_role_arn("arn:aws:iam::111122223333:role/trailkeeper-reader").is_ok());
        assert!(check_role_arn("arn:aws:iam::111122223333:role/path/reader").is_ok());
        for bad in [
            "arn:aws:iam::111122223333:user/someone",
            "arn:aws:iam::1111:role/r",
            "arn:aws:sts::111122223333:role/r",
            "arn:aws:iam::111122223333:role/",
            "reader",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }
}
