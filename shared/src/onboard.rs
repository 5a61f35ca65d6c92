//! Onboarding an account: its grant in the central bucket's policy (and the KMS key's), written
//! from the log-archive account by the policy-updater; its trail, created by the trail-enabler
//! through [`crate::trail`]. The Lambdas and `trailkeeper onboard` run this same code.
//!
//! ## Why the policy loop reads back, waits, and reads again
//! S3 and KMS have no compare-and-swap for policies: two writers that read the same policy each
//! write their own account, and the last write erases the other's. Deployment serializes the
//! policy-updater (reserved concurrency 1), but that is not a proof (a CLI run, a second stack, a
//! retried event), so the loop itself converges:
//! 1. read the policy; if it already admits the account, done (no write);
//! 2. add the account; send PutBucketPolicy only if the read is younger than `fence`
//!    (otherwise read again), without SDK retries and with a deadline of `settle - fence`, so
//!    any writer's write lands within `settle` of its read (or is abandoned);
//! 3. wait `settle`, then read back. Any writer that read before
//!    our write has written by now; if the account is missing it was overwritten: back off with
//!    jitter and go to 1, on top of what is there now (which keeps the other writer's account).
//!
//! A writer whose read-back admits its account is safe from every writer that read before its
//! write; writers that read after it carry the account along. So every account ends up admitted,
//! however many arrive at once, within the attempt bound.
//!
//! Offboarding ([`revoke`], [`PolicyUpdater::revoke`]) is the same loop with the opposite edit:
//! a writer that read before our write puts the departed account back, so the read-back must find
//! it gone, or the loop removes it again on top of what is there.

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use serde::Serialize;
use serde_json::Value;

use crate::athena::{AccountProjection, ProjectionError, QueryTables};
use crate::config::{self, ConfigError};
use crate::events::AccountId;
use crate::partition::Partition;
use crate::policy::{
    BucketName, BucketPolicy, Grant, KeyPolicy, KeyPrefix, LogDestination, OrgId, PolicyEdit,
    PolicyError, PolicyKind, RegionName, Revocation, TrailName,
};
use crate::store::describe_sdk_error;
use crate::trail::{Backoff, KmsKeyArn, RoleName, TrailSpec};

/// The IAM actions of the bucket policy edit (see `crate::store::CALLS`).
pub const BUCKET_POLICY_CALLS: &[&str] = &["s3:GetBucketPolicy", "s3:PutBucketPolicy"];
/// The IAM actions of the KMS key policy edit.
pub const KEY_POLICY_CALLS: &[&str] = &["kms:GetKeyPolicy", "kms:PutKeyPolicy"];
/// The IAM actions of [`active_accounts`] (`trailkeeper onboard --all`, not a Lambda).
pub const ORGANIZATION_CALLS: &[&str] = &["organizations:ListAccounts"];

pub const DEFAULT_TRAIL_NAME: &str = "trailkeeper";
pub const DEFAULT_MEMBER_ROLE: &str = "OrganizationAccountAccessRole";

// ---------------------------------------------------------------------------------------------
// Configuration

/// How the bucket policy admits trails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyMode {
    /// One statement per account, binding its prefix to its trail (default).
    PerAccount,
    /// Any trail of the organization, through `aws:SourceOrgID`, in constant space.
    Organization(OrgId),
}

/// The onboarding settings (design, "Configuration"), shared by both functions and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardConfig {
    pub destination: LogDestination,
    pub trail_name: TrailName,
    pub member_role: RoleName,
    pub home_region: RegionName,
    pub kms_key: Option<KmsKeyArn>,
    pub mode: PolicyMode,
    /// The Athena tables whose account projection admission extends (`crate::athena`).
    pub query_tables: Option<QueryTables>,
}

fn invalid(variable: &'static str, e: impl fmt::Display) -> ConfigError {
    ConfigError {
        variable,
        why: format!("is invalid: {e}"),
    }
}

impl OnboardConfig {
    /// Reads `TRAILKEEPER_*`; the home region defaults to `AWS_REGION` (the function's region).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(config::optional)
    }

    /// [`Self::from_env`] over any source of variables (set but empty counts as unset).
    pub fn from_vars(var: impl Fn(&'static str) -> Option<String>) -> Result<Self, ConfigError> {
        let parsed = |variable: &'static str| var(variable).filter(|v| !v.trim().is_empty());
        fn checked<T, E: fmt::Display>(
            variable: &'static str,
            value: Option<String>,
            parse: impl Fn(&str) -> Result<T, E>,
        ) -> Result<Option<T>, ConfigError> {
            value
                .map(|v| parse(v.trim()).map_err(|e| invalid(variable, e)))
                .transpose()
        }
        macro_rules! parsed {
            ($variable:literal, $parse:expr) => {
                checked($variable, parsed($variable), $parse)
            };
        }
        let bucket = parsed!("TRAILKEEPER_BUCKET", BucketName::new)?.ok_or(ConfigError {
            variable: "TRAILKEEPER_BUCKET",
            why: "is not set: name the central log bucket".into(),
        })?;
        let prefix = parsed!("TRAILKEEPER_PREFIX", KeyPrefix::new)?;
        let trail_name = parsed!("TRAILKEEPER_TRAIL_NAME", TrailName::new)?
            .map_or_else(|| TrailName::new(DEFAULT_TRAIL_NAME), Ok)
            .map_err(|e| invalid("TRAILKEEPER_TRAIL_NAME", e))?;
        let member_role = parsed!("TRAILKEEPER_MEMBER_ROLE", RoleName::new)?
            .map_or_else(|| RoleName::new(DEFAULT_MEMBER_ROLE), Ok)
            .map_err(|e| invalid("TRAILKEEPER_MEMBER_ROLE", e))?;
        let own_region = parsed!("AWS_REGION", RegionName::new)?;
        let home_region = match parsed!("TRAILKEEPER_HOME_REGION", RegionName::new)? {
            Some(r) => r,
            None => own_region.clone().ok_or(ConfigError {
                variable: "TRAILKEEPER_HOME_REGION",
                why: "is not set, and neither is AWS_REGION to default it to".into(),
            })?,
        };
        // The one place the partition is decided: the function's own region (the CLI's, when
        // run by hand), else the home region. Everything else must be in it.
        let partition = Partition::of_region(own_region.as_ref().unwrap_or(&home_region).as_str());
        let other_partition = |variable: &'static str, found: Partition| ConfigError {
            variable,
            why: format!(
                "is in partition {found}, but the function runs in {partition} (AWS_REGION): an ARN of another partition never matches"
            ),
        };
        if Partition::of_region(home_region.as_str()) != partition {
            return Err(other_partition(
                "TRAILKEEPER_HOME_REGION",
                Partition::of_region(home_region.as_str()),
            ));
        }
        let kms_key = parsed!("TRAILKEEPER_KMS_KEY_ARN", KmsKeyArn::new)?;
        if let Some(key) = kms_key.as_ref().filter(|k| k.partition() != partition) {
            return Err(other_partition("TRAILKEEPER_KMS_KEY_ARN", key.partition()));
        }
        let org_id = parsed!("TRAILKEEPER_ORG_ID", OrgId::new)?;
        let mode = match parsed("TRAILKEEPER_POLICY_MODE").as_deref().map(str::trim) {
            None | Some("per-account") => PolicyMode::PerAccount,
            Some("organization") => PolicyMode::Organization(org_id.ok_or(ConfigError {
                variable: "TRAILKEEPER_ORG_ID",
                why: "is required when TRAILKEEPER_POLICY_MODE=organization".into(),
            })?),
            Some(other) => {
                return Err(ConfigError {
                    variable: "TRAILKEEPER_POLICY_MODE",
                    why: format!("is {other:?}: expected per-account or organization"),
                });
            }
        };
        let query_tables = QueryTables::from_vars(&var)?;
        Ok(Self {
            destination: LogDestination::new(bucket, prefix).in_partition(partition),
            trail_name,
            member_role,
            home_region,
            kms_key,
            mode,
            query_tables,
        })
    }

    /// The partition every ARN is written in (decided by [`Self::from_vars`]).
    pub fn partition(&self) -> Partition {
        self.destination.partition
    }

    pub fn trail_spec(&self) -> TrailSpec {
        TrailSpec {
            name: self.trail_name.clone(),
            home_region: self.home_region.clone(),
            destination: self.destination.clone(),
            kms_key: self.kms_key.clone(),
        }
    }

    /// What the policies must grant for `account`.
    pub fn grant(&self, account: AccountId) -> Grant {
        match &self.mode {
            PolicyMode::PerAccount => Grant::Trail(self.trail_spec().trail_arn(account)),
            PolicyMode::Organization(org) => Grant::Organization(org.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// The policy is unreadable, tampered or too large: nothing was written.
    #[error("account {account}: {target}: {source}")]
    Policy {
        account: AccountId,
        target: String,
        source: PolicyError,
    },
    #[error("account {account}: {operation} on {target} failed: {cause}")]
    Call {
        account: AccountId,
        operation: &'static str,
        target: String,
        cause: String,
    },
    #[error(
        "account {account}: {target} {state} after {attempts} attempts ({writes} writes), each overwritten by concurrent edits; nothing was lost that was there before, but the edit is not done: deliver the event again{retry}"
    )]
    NotConverged {
        account: AccountId,
        target: String,
        /// Where the account still is: "still does not admit the account", "still admits ...".
        state: &'static str,
        /// How to retry by hand, when there is a way.
        retry: String,
        attempts: u32,
        writes: u32,
    },
    #[error("listing the organization's accounts failed: {0}")]
    ListAccounts(String),
    /// Admitted, but not yet queryable in Athena: a retry adds it (admission is idempotent).
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

// ---------------------------------------------------------------------------------------------
// Policies

/// What a policy write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// The service applied it.
    Done,
    /// The service refused it (a conflict, throttling): it did not happen.
    Refused,
    /// No answer, or a server failure: it may have landed all the same.
    Unknown,
}

/// What a failed policy write came to, or `None` when it is not worth another round (access
/// denied, a malformed policy: for a person). A conflict or throttling is `Refused`: the service
/// answered that it did not apply it. A service failure (a 5xx other than SlowDown) or no answer
/// in time is `Unknown`: it may have landed all the same.
fn failed_write<E: ProvideErrorMetadata>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> Option<Written> {
    use aws_smithy_runtime_api::client::result::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Some(Written::Unknown)
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let refused = status == 429
                || matches!(
                    s.err().code(),
                    Some(
                        "OperationAborted"
                            | "SlowDown"
                            | "ThrottlingException"
                            | "Throttling"
                            | "ConflictException"
                    )
                );
            if refused {
                Some(Written::Refused)
            } else if status >= 500 {
                Some(Written::Unknown)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A policy trailkeeper edits: the central bucket's, or the KMS key's.
#[derive(Debug, Clone)]
pub enum PolicyTarget {
    Bucket {
        s3: aws_sdk_s3::Client,
        destination: LogDestination,
    },
    Key {
        kms: aws_sdk_kms::Client,
        key: KmsKeyArn,
    },
}

impl fmt::Display for PolicyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bucket { destination, .. } => {
                write!(f, "bucket policy of s3://{}", destination.bucket)
            }
            Self::Key { key, .. } => write!(f, "key policy of {key}"),
        }
    }
}

/// KMS keys have one policy, named `default` (moto needs the name spelled out).
const KEY_POLICY_NAME: &str = "default";

impl PolicyTarget {
    pub fn kind(&self) -> PolicyKind {
        match self {
            Self::Bucket { .. } => PolicyKind::Bucket,
            Self::Key { .. } => PolicyKind::Key,
        }
    }

    fn call_error(
        &self,
        account: AccountId,
        operation: &'static str,
        cause: String,
    ) -> OnboardError {
        OnboardError::Call {
            account,
            operation,
            target: self.to_string(),
            cause,
        }
    }

    /// The policy text; `None` for a bucket without a policy.
    pub async fn read(&self, account: AccountId) -> Result<Option<String>, OnboardError> {
        match self {
            Self::Bucket { s3, destination } => {
                match s3
                    .get_bucket_policy()
                    .bucket(destination.bucket.as_str())
                    .send()
                    .await
                {
                    Ok(out) => Ok(out.policy().map(str::to_owned)),
                    Err(e) if e.code() == Some("NoSuchBucketPolicy") => Ok(None),
                    Err(e) => {
                        Err(self.call_error(account, "s3:GetBucketPolicy", describe_sdk_error(&e)))
                    }
                }
            }
            Self::Key { kms, key } => kms
                .get_key_policy()
                .key_id(key.as_str())
                .policy_name(KEY_POLICY_NAME)
                .send()
                .await
                .map(|out| out.policy().map(str::to_owned))
                .map_err(|e| self.call_error(account, "kms:GetKeyPolicy", describe_sdk_error(&e))),
        }
    }

    /// `Refused`: S3 aborted it for a concurrent one or throttled it. `Unknown`: the service
    /// failed or the answer was lost (a reset, a timeout) after the request may have reached
    /// it. Either way the loop reads again.
    ///
    /// The SDK's own retries are off and the call is bounded by `deadline`: a write retried
    /// for seconds could land after other writers' read-backs and erase their accounts unseen.
    async fn write(
        &self,
        account: AccountId,
        text: &str,
        deadline: Duration,
    ) -> Result<Written, OnboardError> {
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .operation_timeout(deadline)
            .build();
        let (operation, result) = match self {
            Self::Bucket { s3, destination } => (
                "s3:PutBucketPolicy",
                s3.put_bucket_policy()
                    .bucket(destination.bucket.as_str())
                    .policy(text)
                    .customize()
                    .config_override(
                        aws_sdk_s3::config::Builder::default()
                            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
                            .timeout_config(timeouts),
                    )
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| (failed_write(&e), describe_sdk_error(&e))),
            ),
            Self::Key { kms, key } => (
                "kms:PutKeyPolicy",
                kms.put_key_policy()
                    .key_id(key.as_str())
                    .policy_name(KEY_POLICY_NAME)
                    .policy(text)
                    .customize()
                    .config_override(
                        aws_sdk_kms::config::Builder::default()
                            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
                            .timeout_config(timeouts),
                    )
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| (failed_write(&e), describe_sdk_error(&e))),
            ),
        };
        match result {
            Ok(()) => Ok(Written::Done),
            Err((Some(Written::Refused), cause)) => {
                tracing::warn!(%account, policy = %self, %cause, "{operation} refused; reading again");
                Ok(Written::Refused)
            }
            Err((Some(written), cause)) => {
                tracing::warn!(%account, policy = %self, %cause, "{operation} may or may not have landed; reading back after settling");
                Ok(written)
            }
            Err((None, cause)) => Err(self.call_error(account, operation, cause)),
        }
    }

    /// The edit admitting `grant` to `text` (`None`: the bucket has no policy yet), and the
    /// policy as JSON before and after.
    pub fn admit(&self, text: Option<&str>, grant: &Grant) -> Result<Admit, PolicyError> {
        match self {
            Self::Bucket { destination, .. } => {
                let before = match text {
                    Some(t) => BucketPolicy::parse(t)?,
                    None => BucketPolicy::empty(),
                };
                Ok(match before.admit(destination, grant)? {
                    PolicyEdit::Unchanged => Admit::Unchanged,
                    PolicyEdit::Changed { policy, bytes } => Admit::Changed {
                        before: text.map(|_| before.to_value()),
                        after: policy.to_value(),
                        text: policy.to_json(),
                        bytes,
                    },
                })
            }
            Self::Key { key, .. } => {
                // A key always has a policy; GetKeyPolicy never returns none.
                let before =
                    KeyPolicy::parse(text.unwrap_or_default())?.in_partition(key.partition());
                Ok(match before.admit(grant)? {
                    PolicyEdit::Unchanged => Admit::Unchanged,
                    PolicyEdit::Changed { policy, bytes } => Admit::Changed {
                        before: Some(before.to_value()),
                        after: policy.to_value(),
                        text: policy.to_json(),
                        bytes,
                    },
                })
            }
        }
    }

    /// The edit taking `account` out of `text`, and what the account held there.
    pub fn revoke(
        &self,
        text: Option<&str>,
        account: AccountId,
    ) -> Result<(Admit, Vec<String>), PolicyError> {
        fn admit_of<P>(
            before: Option<Value>,
            r: Revocation<P>,
            render: impl Fn(&P) -> (Value, String),
        ) -> (Admit, Vec<String>) {
            let edit = match r.edit {
                PolicyEdit::Unchanged => Admit::Unchanged,
                PolicyEdit::Changed { policy, bytes } => {
                    let (after, text) = render(&policy);
                    Admit::Changed {
                        before,
                        after,
                        text,
                        bytes,
                    }
                }
            };
            (edit, r.revoked)
        }
        match self {
            Self::Bucket { destination, .. } => {
                let Some(t) = text else {
                    return Ok((Admit::Unchanged, Vec::new()));
                };
                let before = BucketPolicy::parse(t)?;
                Ok(admit_of(
                    Some(before.to_value()),
                    before.revoke(destination, account)?,
                    |p| (p.to_value(), p.to_json()),
                ))
            }
            Self::Key { key, .. } => {
                let before =
                    KeyPolicy::parse(text.unwrap_or_default())?.in_partition(key.partition());
                Ok(admit_of(
                    Some(before.to_value()),
                    before.revoke(account)?,
                    |p| (p.to_value(), p.to_json()),
                ))
            }
        }
    }

    /// Whether trailkeeper's statements in `text` grant `account` anything.
    pub fn holds_account(
        &self,
        text: Option<&str>,
        account: AccountId,
    ) -> Result<bool, PolicyError> {
        match (self, text) {
            (_, None) => Ok(false),
            (Self::Bucket { destination, .. }, Some(t)) => {
                BucketPolicy::parse(t)?.holds_account(destination, account)
            }
            (Self::Key { key, .. }, Some(t)) => KeyPolicy::parse(t)?
                .in_partition(key.partition())
                .holds_account(account),
        }
    }

    pub fn admits(&self, text: Option<&str>, grant: &Grant) -> Result<bool, PolicyError> {
        match (self, text) {
            (_, None) => Ok(false),
            (Self::Bucket { destination, .. }, Some(t)) => {
                BucketPolicy::parse(t)?.admits(destination, grant)
            }
            (Self::Key { key, .. }, Some(t)) => KeyPolicy::parse(t)?
                .in_partition(key.partition())
                .admits(grant),
        }
    }
}

/// An edit, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    Unchanged,
    Changed {
        /// `None`: the bucket had no policy.
        before: Option<Value>,
        after: Value,
        text: String,
        bytes: usize,
    },
}

/// The bounds of the read–write–verify loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLoop {
    /// Rounds of read, write, verify.
    pub attempts: u32,
    /// The oldest a read may be when its write is sent.
    pub fence: Duration,
    /// The wait between a write and its read-back; must exceed `fence` plus a call's latency.
    pub settle: Duration,
    /// Between rounds lost to a concurrent writer.
    pub backoff: Backoff,
}

impl PolicyLoop {
    /// About 6 s per onboarding when uncontended. 30 rounds carry dozens of accounts arriving
    /// at once (the 50-account test converges in far fewer).
    pub const DEFAULT: Self = Self {
        attempts: 30,
        fence: Duration::from_secs(2),
        settle: Duration::from_secs(5),
        backoff: Backoff {
            attempts: 30,
            first: Duration::from_millis(250),
            max: Duration::from_secs(8),
        },
    };
}

/// What the loop did to one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    /// `admitted` (written now) or `already_admitted` (nothing written); when offboarding,
    /// `revoked` (written now) or `not_admitted` (the policy held nothing for the account).
    pub status: &'static str,
    /// PutBucketPolicy / PutKeyPolicy calls that took effect, or may have (their answer was
    /// lost); more than one means concurrent edits overwrote ours and we wrote again.
    pub writes: u32,
    /// Rounds of the loop.
    pub attempts: u32,
    /// Size of the policy we last wrote (0 if none).
    pub bytes: usize,
    /// Offboarding: each grant the account held and lost, as written in the policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
}

/// The edit the loop converges to, for one account.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    Admit(&'a Grant),
    Revoke,
}

impl Change<'_> {
    /// (status when this round wrote, status when nothing had to be written)
    fn statuses(self) -> (&'static str, &'static str) {
        match self {
            Self::Admit(_) => ("admitted", "already_admitted"),
            Self::Revoke => ("revoked", "not_admitted"),
        }
    }
}

/// Makes `target` admit `grant` for `account`, converging under concurrent writers.
pub async fn admit(
    target: &PolicyTarget,
    account: AccountId,
    grant: &Grant,
    bounds: &PolicyLoop,
) -> Result<PolicyReport, OnboardError> {
    converge(target, account, Change::Admit(grant), bounds).await
}

/// Takes `account`'s grants out of `target` (offboarding), converging under concurrent writers.
pub async fn revoke(
    target: &PolicyTarget,
    account: AccountId,
    bounds: &PolicyLoop,
) -> Result<PolicyReport, OnboardError> {
    converge(target, account, Change::Revoke, bounds).await
}

async fn converge(
    target: &PolicyTarget,
    account: AccountId,
    change: Change<'_>,
    bounds: &PolicyLoop,
) -> Result<PolicyReport, OnboardError> {
    let policy_error = |source| OnboardError::Policy {
        account,
        target: target.to_string(),
        source,
    };
    let (done, nothing_to_do) = change.statuses();
    let (mut writes, mut bytes) = (0, 0);
    let mut revoked = Vec::new();
    for attempt in 1..=bounds.attempts {
        let read_at = Instant::now();
        let current = target.read(account).await?;
        let edit = match change {
            Change::Admit(grant) => target.admit(current.as_deref(), grant),
            Change::Revoke => target
                .revoke(current.as_deref(), account)
                .map(|(edit, held)| {
                    if !held.is_empty() {
                        revoked = held;
                    }
                    edit
                }),
        }
        .map_err(policy_error)?;
        let (text, size) = match edit {
            Admit::Unchanged => {
                return Ok(PolicyReport {
                    policy: target.to_string(),
                    status: if writes == 0 { nothing_to_do } else { done },
                    writes,
                    attempts: attempt,
                    bytes,
                    revoked,
                });
            }
            Admit::Changed { text, bytes, .. } => (text, bytes),
        };
        if read_at.elapsed() > bounds.fence {
            tracing::info!(%account, policy = %target, "read went stale before the write; reading again");
            continue;
        }
        let deadline = bounds.settle.saturating_sub(bounds.fence);
        let written = target.write(account, &text, deadline).await?;
        if written == Written::Unknown {
            // It may have landed, only its answer lost. Then a writer that read before it may
            // still write on top of what it read: reading again at once could find our account
            // and stop just before it is erased. So count it, and wait `settle` like after any
            // write: the next round's read is then a read-back.
            writes += 1;
            bytes = size;
            tokio::time::sleep(bounds.settle).await;
            continue;
        }
        if written == Written::Done {
            writes += 1;
            bytes = size;
            tokio::time::sleep(bounds.settle).await;
            let back = target.read(account).await?;
            let holds = match change {
                Change::Admit(grant) => target.admits(back.as_deref(), grant),
                Change::Revoke => target
                    .holds_account(back.as_deref(), account)
                    .map(|held| !held),
            }
            .map_err(policy_error)?;
            if holds {
                tracing::info!(%account, policy = %target, writes, attempt, bytes, "{done}");
                return Ok(PolicyReport {
                    policy: target.to_string(),
                    status: done,
                    writes,
                    attempts: attempt,
                    bytes,
                    revoked,
                });
            }
            tracing::warn!(%account, policy = %target, attempt, "a concurrent edit overwrote ours ({done}); writing again");
        }
        tokio::time::sleep(bounds.backoff.delay(attempt)).await;
    }
    Err(OnboardError::NotConverged {
        account,
        target: target.to_string(),
        state: match change {
            Change::Admit(_) => "still does not admit the account",
            Change::Revoke => "still admits the account",
        },
        retry: match change {
            Change::Admit(_) => format!(" (or invoke with {{\"accountId\": \"{account}\"}})"),
            Change::Revoke => String::new(),
        },
        attempts: bounds.attempts,
        writes,
    })
}

// ---------------------------------------------------------------------------------------------
// The policy-updater's step

/// The policies one account needs, from the log-archive account.
#[derive(Debug, Clone)]
pub struct PolicyUpdater {
    pub config: OnboardConfig,
    pub targets: Vec<PolicyTarget>,
    pub bounds: PolicyLoop,
    /// Once admitted, the account is projected in the Athena tables (when configured).
    pub projection: Option<AccountProjection>,
}

impl PolicyUpdater {
    /// The key policy (when a key is configured) comes first: CloudTrail checks both, and the
    /// bucket grant is what the trail-enabler's retries wait for.
    pub fn new(aws: &aws_config::SdkConfig, config: OnboardConfig, bounds: PolicyLoop) -> Self {
        let mut targets = Vec::new();
        if let Some(key) = &config.kms_key {
            let kms_conf = aws_sdk_kms::config::Builder::from(aws)
                .region(aws_sdk_kms::config::Region::new(key.region().to_owned()))
                .build();
            targets.push(PolicyTarget::Key {
                kms: aws_sdk_kms::Client::from_conf(kms_conf),
                key: key.clone(),
            });
        }
        targets.push(PolicyTarget::Bucket {
            s3: crate::store::s3_client(aws),
            destination: config.destination.clone(),
        });
        let projection = config
            .query_tables
            .clone()
            .map(|tables| AccountProjection::new(aws, tables));
        Self {
            config,
            targets,
            bounds,
            projection,
        }
    }

    /// Admits the account to each policy, then (only once every policy admits it) to the
    /// Athena tables' account projection.
    pub async fn admit(&self, account: AccountId) -> Result<Vec<PolicyReport>, OnboardError> {
        let grant = self.config.grant(account);
        let mut reports = Vec::new();
        for target in &self.targets {
            reports.push(admit(target, account, &grant, &self.bounds).await?);
        }
        if let Some(projection) = &self.projection {
            for (table, added) in projection.project(account).await? {
                reports.push(PolicyReport {
                    policy: format!(
                        "account projection of Athena table {}.{table}",
                        projection.tables.database
                    ),
                    status: if added {
                        "admitted"
                    } else {
                        "already_admitted"
                    },
                    writes: u32::from(added),
                    attempts: 1,
                    bytes: 0,
                    revoked: Vec::new(),
                });
            }
        }
        Ok(reports)
    }

    /// Offboards the account: takes its statements out of each policy, the bucket's first (it is
    /// what lets the trail write). The Athena projection keeps the account: its history stays,
    /// and stays queryable.
    pub async fn revoke(&self, account: AccountId) -> Result<Vec<PolicyReport>, OnboardError> {
        let mut reports = Vec::new();
        for target in self.targets.iter().rev() {
            reports.push(revoke(target, account, &self.bounds).await?);
        }
        Ok(reports)
    }

    /// What [`Self::admit`] would change, as a statement diff per policy; writes nothing.
    pub async fn plan(&self, account: AccountId) -> Result<Vec<PolicyPlan>, OnboardError> {
        let grant = self.config.grant(account);
        let mut plans = Vec::new();
        for target in &self.targets {
            let current = target.read(account).await?;
            let edit = target.admit(current.as_deref(), &grant).map_err(|source| {
                OnboardError::Policy {
                    account,
                    target: target.to_string(),
                    source,
                }
            })?;
            plans.push(PolicyPlan {
                policy: target.to_string(),
                diff: match edit {
                    Admit::Unchanged => None,
                    Admit::Changed {
                        before,
                        after,
                        bytes,
                        ..
                    } => Some((statement_diff(before.as_ref(), &after), bytes)),
                },
            });
        }
        Ok(plans)
    }
}

/// A dry run's view of one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPlan {
    pub policy: String,
    /// `None`: already admitted, nothing to write. Otherwise the diff and the new size.
    pub diff: Option<(Vec<String>, usize)>,
}

impl fmt::Display for PolicyPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.diff {
            None => write!(f, "{}: already admits the account; no change", self.policy),
            Some((lines, bytes)) => {
                write!(f, "{}: would become {bytes} bytes:", self.policy)?;
                for l in lines {
                    write!(f, "\n  {l}")?;
                }
                Ok(())
            }
        }
    }
}

fn statements(policy: Option<&Value>) -> Vec<String> {
    match policy.map(|p| &p["Statement"]) {
        Some(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
        Some(obj @ Value::Object(_)) => vec![obj.to_string()],
        _ => Vec::new(),
    }
}

/// `- statement` / `+ statement` lines (compact JSON), statements in both counted once.
pub fn statement_diff(before: Option<&Value>, after: &Value) -> Vec<String> {
    let (old, new) = (statements(before), statements(Some(after)));
    let mut lines: Vec<String> = old
        .iter()
        .filter(|s| !new.contains(s))
        .map(|s| format!("- {s}"))
        .collect();
    lines.extend(
        new.iter()
            .filter(|s| !old.contains(s))
            .map(|s| format!("+ {s}")),
    );
    let kept = old.iter().filter(|s| new.contains(s)).count();
    lines.push(format!("  ({kept} statements unchanged)"));
    lines
}

// ---------------------------------------------------------------------------------------------
// The organization

/// Every ACTIVE account of the organization (`ListAccounts`, from the management account or a
/// delegated administrator).
pub async fn active_accounts(
    org: &aws_sdk_organizations::Client,
) -> Result<Vec<AccountId>, OnboardError> {
    use aws_sdk_organizations::types::{AccountState, AccountStatus};
    let mut pages = org.list_accounts().into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| OnboardError::ListAccounts(describe_sdk_error(&e)))?;
        for a in page.accounts() {
            // `State` replaces the deprecated `Status`; accept whichever the service sends.
            #[allow(deprecated)]
            let active = match (a.state(), a.status()) {
                (Some(state), _) => *state == AccountState::Active,
                (None, Some(status)) => *status == AccountStatus::Active,
                (None, None) => false,
            };
            if !active {
                continue;
            }
            let id = a.id().unwrap_or_default();
            out.push(AccountId::new(id).map_err(|e| OnboardError::ListAccounts(e.to_string()))?);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_shows_added_and_kept_statements() {
        let before =
            json!({"Statement": [{"Sid": "Keep"}, {"Sid": "TrailkeeperAclCheck", "v": 1}]});
        let after = json!({"Statement": [{"Sid": "Keep"}, {"Sid": "TrailkeeperAclCheck", "v": 2}, {"Sid": "TrailkeeperWrite1"}]});
        assert_eq!(
            statement_diff(Some(&before), &after),
            [
                r#"- {"Sid":"TrailkeeperAclCheck","v":1}"#,
                r#"+ {"Sid":"TrailkeeperAclCheck","v":2}"#,
                r#"+ {"Sid":"TrailkeeperWrite1"}"#,
                "  (1 statements unchanged)",
            ]
        );
        assert_eq!(statement_diff(None, &after).len(), 4);
    }

    fn from(vars: &[(&str, &str)]) -> Result<OnboardConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OnboardConfig::from_vars(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn configuration_defaults_and_errors_name_the_variable() {
        let c = from(&[
            ("TRAILKEEPER_BUCKET", "central-logs"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(c.trail_name.as_str(), "trailkeeper");
        assert_eq!(c.member_role.as_str(), "OrganizationAccountAccessRole");
        assert_eq!(c.home_region.as_str(), "eu-west-1");
        assert_eq!(c.mode, PolicyMode::PerAccount);
        assert_eq!(c.destination.prefix, None);
        let account = AccountId::new("111122223333").unwrap();
        assert_eq!(
            c.grant(account).to_string(),
            "account 111122223333 (trail arn:aws:cloudtrail:eu-west-1:111122223333:trail/trailkeeper)"
        );

        let full = from(&[
            ("TRAILKEEPER_BUCKET", "central-logs"),
            ("TRAILKEEPER_PREFIX", "org"),
            ("TRAILKEEPER_TRAIL_NAME", "audit"),
            ("TRAILKEEPER_MEMBER_ROLE", "AWSControlTowerExecution"),
            ("TRAILKEEPER_HOME_REGION", "us-east-1"),
            ("AWS_REGION", "eu-west-1"),
            (
                "TRAILKEEPER_KMS_KEY_ARN",
                "arn:aws:kms:us-east-1:999988887777:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            ),
            ("TRAILKEEPER_POLICY_MODE", "organization"),
            ("TRAILKEEPER_ORG_ID", "o-aa111bb222"),
        ])
        .unwrap();
        assert_eq!(full.home_region.as_str(), "us-east-1");
        assert_eq!(
            full.grant(account),
            Grant::Organization(OrgId::new("o-aa111bb222").unwrap())
        );
        assert_eq!(
            full.trail_spec().destination.logs_key_prefix(),
            "org/AWSLogs/"
        );

        for (vars, variable) in [
            (vec![("AWS_REGION", "us-east-1")], "TRAILKEEPER_BUCKET"),
            (
                vec![
                    ("TRAILKEEPER_BUCKET", "Central_Logs"),
                    ("AWS_REGION", "us-east-1"),
                ],
                "TRAILKEEPER_BUCKET",
            ),
            (
                vec![("TRAILKEEPER_BUCKET", "central-logs")],
                "TRAILKEEPER_HOME_REGION",
            ),
            (
                vec![
                    ("TRAILKEEPER_BUCKET", "central-logs"),
                    ("AWS_REGION", "us-east-1"),
                    ("TRAILKEEPER_POLICY_MODE", "organization"),
                ],
                "TRAILKEEPER_ORG_ID",
            ),
            (
                vec![
                    ("TRAILKEEPER_BUCKET", "central-logs"),
                    ("AWS_REGION", "us-east-1"),
                    ("TRAILKEEPER_POLICY_MODE", "per_account"),
                ],
                "TRAILKEEPER_POLICY_MODE",
            ),
            (
                vec![
                    ("TRAILKEEPER_BUCKET", "central-logs"),
                    ("AWS_REGION", "us-east-1"),
                    ("TRAILKEEPER_PREFIX", "logs/*"),
                ],
                "TRAILKEEPER_PREFIX",
            ),
            (
                vec![
                    ("TRAILKEEPER_BUCKET", "central-logs"),
                    ("AWS_REGION", "us-east-1"),
                    ("TRAILKEEPER_MEMBER_ROLE", "arn:aws:iam::1:role/x"),
                ],
                "TRAILKEEPER_MEMBER_ROLE",
            ),
            (
                vec![
                    ("TRAILKEEPER_BUCKET", "central-logs"),
                    ("AWS_REGION", "us-east-1"),
                    ("TRAILKEEPER_KMS_KEY_ARN", "alias/trailkeeper"),
                ],
                "TRAILKEEPER_KMS_KEY_ARN",
            ),
        ] {
            let e = from(&vars).unwrap_err();
            assert_eq!(e.variable, variable, "{vars:?}: {e}");
            assert!(e.to_string().contains(variable), "{e}");
        }
    }

    /// A racing writer's PutBucketPolicy lands just after ours and erases our account; S3 then
    /// aborts one write (`OperationAborted`). The loop sees both on read-back and ends with
    /// both accounts admitted.
    #[tokio::test]
    async fn an_overwritten_write_is_detected_and_redone() {
        use aws_sdk_s3::operation::get_bucket_policy::GetBucketPolicyOutput;
        use aws_sdk_s3::operation::put_bucket_policy::{
            PutBucketPolicyError, PutBucketPolicyOutput,
        };
        use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
        use std::sync::{Arc, Mutex};

        let config = from(&[
            ("TRAILKEEPER_BUCKET", "central-logs"),
            ("AWS_REGION", "us-east-1"),
        ])
        .unwrap();
        let (a, b) = (
            AccountId::new("111111111111").unwrap(),
            AccountId::new("222222222222").unwrap(),
        );
        let foreign = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Readers","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*"}]}"#;
        // What the racer writes: the policy it read (foreign only) plus its own account B.
        let racer = match BucketPolicy::parse(foreign)
            .unwrap()
            .admit(&config.destination, &config.grant(b))
            .unwrap()
        {
            PolicyEdit::Changed { policy, .. } => policy.to_json(),
            PolicyEdit::Unchanged => unreachable!(),
        };
        let stored = Arc::new(Mutex::new(foreign.to_owned()));
        let puts = Arc::new(Mutex::new(0));
        let get = {
            let stored = stored.clone();
            mock!(aws_sdk_s3::Client::get_bucket_policy).then_compute_output(move |_| {
                GetBucketPolicyOutput::builder()
                    .policy(stored.lock().unwrap().clone())
                    .build()
            })
        };
        let put = {
            let (stored, puts) = (stored.clone(), puts.clone());
            mock!(aws_sdk_s3::Client::put_bucket_policy).then_compute_response(move |req| {
                let mut n = puts.lock().unwrap();
                *n += 1;
                match *n {
                    // Ours lands, then the racer's (read before ours) replaces it.
                    1 => *stored.lock().unwrap() = racer.clone(),
                    // S3 refuses one write for a conflicting operation.
                    2 => {
                        return MockResponse::Error(PutBucketPolicyError::generic(
                            aws_sdk_s3::error::ErrorMetadata::builder()
                                .code("OperationAborted")
                                .build(),
                        ));
                    }
                    _ => *stored.lock().unwrap() = req.policy().unwrap().to_owned(),
                }
                MockResponse::Output(PutBucketPolicyOutput::builder().build())
            })
        };
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&get, &put]);
        let target = PolicyTarget::Bucket {
            s3,
            destination: config.destination.clone(),
        };
        let bounds = PolicyLoop {
            attempts: 5,
            fence: Duration::from_secs(5),
            settle: Duration::from_millis(20),
            backoff: Backoff {
                attempts: 5,
                first: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
        };
        let report = admit(&target, a, &config.grant(a), &bounds).await.unwrap();
        assert_eq!(
            (report.writes, report.attempts, report.status),
            (2, 3, "admitted")
        );
        let last = BucketPolicy::parse(&stored.lock().unwrap()).unwrap();
        assert_eq!(last.admitted_accounts(&config.destination).unwrap(), [a, b]);
        assert_eq!(last.foreign_statements().len(), 1);

        // With too few rounds the error names the account and says nothing was written wrong.
        *stored.lock().unwrap() = foreign.to_owned();
        *puts.lock().unwrap() = 0;
        let bounds = PolicyLoop {
            attempts: 1,
            ..bounds
        };
        let err = admit(&target, a, &config.grant(a), &bounds)
            .await
            .unwrap_err();
        assert!(
            matches!(err, OnboardError::NotConverged { writes: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("account 111111111111"), "{err}");
    }

    #[test]
    fn default_loop_bounds_are_consistent() {
        let b = PolicyLoop::DEFAULT;
        assert!(
            b.settle > b.fence * 2,
            "the read-back must follow any racing write"
        );
    }
}
