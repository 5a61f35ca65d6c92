//! The trail every member account gets (design, "Trail spec"), and converging an account to it.
//!
//! The trail-enabler and `trailkeeper onboard` run [`TrailEnabler::enable`]: assume the member
//! role, look at the trail of the configured name in the home region, create it or repair the
//! settings the spec owns with `UpdateTrail` (reporting each drifted setting), `StartLogging`,
//! and verify `GetTrailStatus.IsLogging`. Settings the spec does not own (CloudWatch Logs, SNS,
//! event selectors, tags) are left alone.
//!
//! New accounts refuse calls for minutes after `SUCCEEDED`, and CloudTrail refuses `CreateTrail`
//! until the bucket policy admits the account and has propagated. Those errors are retried with
//! a bounded, jittered exponential [`Backoff`]; when the bound runs out the error names the
//! account, the call and the cause.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_sdk_cloudtrail::error::ProvideErrorMetadata;
use aws_sdk_sts::config::{Credentials, Region, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde::Serialize;

use crate::event_selectors::ManagementEvents;
use crate::events::{AccountId, log_safe_with};
use crate::partition::Partition;
use crate::policy::{LogDestination, RegionName, TrailArn, TrailName};
use crate::store::describe_sdk_error;

/// The IAM actions called with the function's own credentials (see `crate::store::CALLS`).
pub const CALLS: &[&str] = &["sts:AssumeRole"];
/// The IAM actions called in the member account, with the assumed member role (which the
/// organization provides; the template grants none of these).
pub const MEMBER_ROLE_CALLS: &[&str] = &[
    "cloudtrail:DescribeTrails",
    "cloudtrail:GetTrailStatus",
    "cloudtrail:CreateTrail",
    "cloudtrail:UpdateTrail",
    "cloudtrail:StartLogging",
    "cloudtrail:GetEventSelectors",
    "cloudtrail:PutEventSelectors",
];

// ---------------------------------------------------------------------------------------------
// Names from configuration

/// A configuration value that is not a role name or a key ARN. `value` is log-safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value}: {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

/// IAM role name assumed in member accounts (`OrganizationAccountAccessRole`,
/// `AWSControlTowerExecution`, ...): 1-64 of `A-Z a-z 0-9 + = , . @ _ -`, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn new(s: &str) -> Result<Self, NameError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        ok.then(|| Self(s.to_owned())).ok_or_else(|| NameError {
            what: "role name",
            value: log_safe_with(s, 80),
            rule: "expected 1-64 characters of A-Z a-z 0-9 + = , . @ _ - (a role name, not an ARN or a path)",
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The role in `account`, an account of `partition`.
    pub fn arn(&self, partition: Partition, account: AccountId) -> String {
        format!("arn:{partition}:iam::{account}:role/{}", self.0)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `arn:<partition>:kms:<region>:<account>:key/<key id>`, the partition that of the region. A full key ARN, because the trail lives in
/// another account than the key (a bare key id or an alias would resolve in the member
/// account) and because `GetTrail` reports the key as this ARN, which makes drift exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyArn(String);

impl KmsKeyArn {
    pub fn new(s: &str) -> Result<Self, NameError> {
        let bad = || NameError {
            what: "KMS key ARN",
            value: log_safe_with(s, 160),
            rule: "expected arn:<partition>:kms:<region>:<account>:key/<key id> (a key ARN, not an alias; the partition that of the region)",
        };
        let (partition, rest) = Partition::split_arn(s, "kms").ok_or_else(bad)?;
        let mut parts = rest.splitn(3, ':');
        let (Some(region), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let key_id_ok = resource.strip_prefix("key/").is_some_and(|id| {
            (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if RegionName::new(region).is_err()
            || Partition::of_region(region) != partition
            || AccountId::new(account).is_err()
            || !key_id_ok
        {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }

    /// The key's partition, that of its region.
    pub fn partition(&self) -> Partition {
        Partition::of_region(self.region())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's region: KMS keys for CloudTrail must be in the bucket's region.
    pub fn region(&self) -> &str {
        self.0.split(':').nth(3).unwrap_or_default()
    }
}

impl fmt::Display for KmsKeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// The spec and what an account has

/// What every member account's trail must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailSpec {
    pub name: TrailName,
    /// Where the trail is created and where StartLogging/UpdateTrail must be called.
    pub home_region: RegionName,
    pub destination: LogDestination,
    pub kms_key: Option<KmsKeyArn>,
}

impl TrailSpec {
    pub fn trail_arn(&self, account: AccountId) -> TrailArn {
        TrailArn::new(self.home_region.clone(), account, self.name.clone())
    }

    /// The settings the spec owns that `trail` does not have, in a fixed order.
    pub fn drift(&self, trail: &ObservedTrail) -> Vec<Drift> {
        let mut drift = Vec::new();
        let mut check = |setting: &'static str, found: String, expected: String| {
            if found != expected {
                drift.push(Drift {
                    setting,
                    found,
                    expected,
                });
            }
        };
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        check(
            "S3BucketName",
            or_none(&trail.bucket),
            self.destination.bucket.to_string(),
        );
        check(
            "S3KeyPrefix",
            or_none(&trail.prefix),
            or_none(&self.destination.prefix.as_ref().map(ToString::to_string)),
        );
        check(
            "IsMultiRegionTrail",
            trail.multi_region.to_string(),
            "true".into(),
        );
        check(
            "IncludeGlobalServiceEvents",
            trail.global_service_events.to_string(),
            "true".into(),
        );
        check(
            "LogFileValidationEnabled",
            trail.log_file_validation.to_string(),
            "true".into(),
        );
        check(
            "KmsKeyId",
            or_none(&trail.kms_key_id),
            or_none(&self.kms_key.as_ref().map(ToString::to_string)),
        );
        if let Some(recorded) = trail.management_events.as_ref().filter(|m| !m.all()) {
            check(
                EVENT_SELECTORS,
                recorded.to_string(),
                ManagementEvents::every().to_string(),
            );
        }
        drift
    }
}

/// A trail as `DescribeTrails` shows it; empty strings (moto, and some SDK paths) read as unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedTrail {
    pub arn: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub multi_region: bool,
    pub global_service_events: bool,
    pub log_file_validation: bool,
    pub kms_key_id: Option<String>,
    pub home_region: Option<String>,
    pub organization_trail: bool,
    /// What its event selectors record (`GetEventSelectors`); None where they were not read.
    pub management_events: Option<ManagementEvents>,
}

impl ObservedTrail {
    pub fn from_sdk(t: &aws_sdk_cloudtrail::types::Trail) -> Self {
        let text = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
        Self {
            arn: text(t.trail_arn()),
            bucket: text(t.s3_bucket_name()),
            prefix: text(t.s3_key_prefix()),
            multi_region: t.is_multi_region_trail().unwrap_or(false),
            global_service_events: t.include_global_service_events().unwrap_or(false),
            log_file_validation: t.log_file_validation_enabled().unwrap_or(false),
            kms_key_id: text(t.kms_key_id()),
            home_region: text(t.home_region()),
            organization_trail: t.is_organization_trail().unwrap_or(false),
            management_events: None,
        }
    }
}

/// The [`Drift::setting`] of event selectors that leave management events out.
pub const EVENT_SELECTORS: &str = "EventSelectors";

/// One setting of the trail that is not what the spec says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub setting: &'static str,
    pub found: String,
    pub expected: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}, expected {}",
            self.setting,
            log_safe_with(&self.found, 160),
            log_safe_with(&self.expected, 160)
        )
    }
}

/// What converging an account would do (`--dry-run`) or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TrailAction {
    Create,
    Repair { drift: Vec<Drift> },
    UpToDate,
}

/// The plan for one account: the trail action, and whether logging must be started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrailPlan {
    pub account: AccountId,
    pub trail_arn: String,
    #[serde(flatten)]
    pub action: TrailAction,
    pub start_logging: bool,
}

impl fmt::Display for TrailPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            TrailAction::Create => write!(f, "create trail {}", self.trail_arn)?,
            TrailAction::Repair { drift } => {
                write!(f, "repair trail {} (UpdateTrail):", self.trail_arn)?;
                for d in drift {
                    write!(f, "\n    {d}")?;
                }
            }
            TrailAction::UpToDate => write!(f, "trail {} matches the spec", self.trail_arn)?,
        }
        if self.start_logging {
            write!(f, "\n  then StartLogging")?;
        }
        Ok(())
    }
}

/// What converging an account did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrailReport {
    pub account: AccountId,
    pub trail_arn: String,
    #[serde(flatten)]
    pub action: TrailAction,
    /// StartLogging was called (logging was off, or the trail is new).
    pub started_logging: bool,
    /// Calls that were refused while the account settled, then retried.
    pub retries: u32,
}

// ---------------------------------------------------------------------------------------------
// Backoff

/// Bounded exponential backoff with jitter, for accounts that are still settling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Calls in all, the first included.
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// About 7 minutes in all (2, 4, 8, 16, 32, then 60 s): new accounts take "minutes"
    /// and the Lambda timeout (15 min at most) must leave room for the rest of the work.
    pub const SETTLING: Self = Self {
        attempts: 12,
        first: Duration::from_secs(2),
        max: Duration::from_secs(60),
    };

    /// The wait after failed attempt `n` (1-based): the exponential step, jittered to
    /// between half and all of it so concurrent callers spread out.
    pub fn delay(&self, n: u32) -> Duration {
        let step = self
            .first
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.max);
        step / 2 + step.mul_f64(0.5 * jitter())
    }
}

/// A number in [0, 1) that differs between calls and processes (no RNG dependency needed).
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Error codes of an account that is not ready yet, or of a policy not yet propagated.
pub const SETTLING_CODES: &[&str] = &[
    "SubscriptionRequiredException",
    "OptInRequired",
    "InsufficientS3BucketPolicyException",
    "InsufficientEncryptionPolicyException",
];
/// AssumeRole in a brand-new account: the role exists only after a while.
pub const ASSUME_ROLE_SETTLING_CODES: &[&str] = &["AccessDenied", "RegionDisabledException"];

/// Why a call failed for good.
#[derive(Debug)]
pub(crate) enum CallFailure {
    /// A settling error, still there after every attempt.
    Exhausted {
        code: String,
        cause: String,
        attempts: u32,
    },
    Failed {
        code: Option<String>,
        cause: String,
    },
}

/// Runs `call` until it succeeds, fails with a code outside `settling`, or the bound runs out.
/// Returns the value and how many attempts were refused first.
pub(crate) async fn with_backoff<T, E, Fut>(
    backoff: &Backoff,
    settling: &[&str],
    mut call: impl FnMut() -> Fut,
) -> Result<(T, u32), CallFailure>
where
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(v) => return Ok((v, attempt - 1)),
            Err(e) => {
                let code = e.code().map(str::to_owned);
                let cause = describe_sdk_error(&e);
                match code {
                    Some(code) if settling.contains(&code.as_str()) => {
                        if attempt >= backoff.attempts.max(1) {
                            return Err(CallFailure::Exhausted {
                                code,
                                cause,
                                attempts: attempt,
                            });
                        }
                        let wait = backoff.delay(attempt);
                        tracing::info!(%code, attempt, ?wait, "not ready yet; retrying");
                        tokio::time::sleep(wait).await;
                    }
                    code => return Err(CallFailure::Failed { code, cause }),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error(
        "account {account}: {operation} still refused after {attempts} attempts: {cause}. {hint}"
    )]
    Exhausted {
        account: AccountId,
        operation: &'static str,
        attempts: u32,
        cause: String,
        hint: &'static str,
    },
    #[error("account {account}: {operation} failed: {cause}")]
    Call {
        account: AccountId,
        operation: &'static str,
        cause: String,
    },
    #[error(
        "account {account}: trail {name} exists with home region {found}, not {expected}; CloudTrail cannot move a trail, so nothing was changed: delete that trail or set TRAILKEEPER_HOME_REGION={found}"
    )]
    HomeRegion {
        account: AccountId,
        name: TrailName,
        found: String,
        expected: RegionName,
    },
    #[error(
        "account {account}: trail {name} is an organization trail, which only the management account can change; nothing was changed: set TRAILKEEPER_TRAIL_NAME to another name"
    )]
    OrganizationTrail { account: AccountId, name: TrailName },
    #[error(
        "account {account}: trail {arn} still differs from the spec after UpdateTrail: {drift}"
    )]
    StillDrifted {
        account: AccountId,
        arn: String,
        drift: String,
    },
    #[error(
        "account {account}: trail {arn} is not logging after StartLogging (GetTrailStatus.IsLogging = {is_logging:?})"
    )]
    NotLogging {
        account: AccountId,
        arn: String,
        is_logging: Option<bool>,
    },
}

fn hint(code: &str) -> &'static str {
    match code {
        "InsufficientS3BucketPolicyException" => {
            "The central bucket policy does not admit this account's trail yet: check that the policy-updater onboarded the account (its log names it) and that TRAILKEEPER_BUCKET/PREFIX/TRAIL_NAME/HOME_REGION match in both functions."
        }
        "InsufficientEncryptionPolicyException" => {
            "The KMS key policy does not let CloudTrail use the key for this account yet: check the policy-updater's log for this account."
        }
        "AccessDenied" => {
            "The member role cannot be assumed: check TRAILKEEPER_MEMBER_ROLE (OrganizationAccountAccessRole for Organizations, AWSControlTowerExecution for Control Tower) and that the function's role may sts:AssumeRole it."
        }
        "SubscriptionRequiredException" | "OptInRequired" | "RegionDisabledException" => {
            "The account is not ready for CloudTrail yet (new accounts can take many minutes); invoke again with {\"accountId\": \"...\"} or run trailkeeper onboard --account."
        }
        _ => "",
    }
}

fn failure(account: AccountId, operation: &'static str, f: CallFailure) -> TrailError {
    match f {
        CallFailure::Exhausted {
            code,
            cause,
            attempts,
        } => TrailError::Exhausted {
            account,
            operation,
            attempts,
            cause,
            hint: hint(&code),
        },
        CallFailure::Failed { cause, .. } => TrailError::Call {
            account,
            operation,
            cause,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Roles

/// `base`, acting with the temporary credentials that AssumeRole returned.
pub fn with_role_credentials(
    base: &aws_config::SdkConfig,
    c: &aws_sdk_sts::types::Credentials,
    provider: &'static str,
) -> aws_config::SdkConfig {
    let creds = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        std::time::SystemTime::try_from(*c.expiration()).ok(),
        provider,
    );
    base.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .build()
}

/// `base` acting as `role_arn`, with one AssumeRole (the SDK retries throttling): for a role
/// that exists already, such as the log-archive account's reader role.
pub async fn assume_role(
    base: &aws_config::SdkConfig,
    role_arn: &str,
    session: &str,
) -> Result<aws_config::SdkConfig, String> {
    let out = aws_sdk_sts::Client::new(base)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session)
        .send()
        .await
        .map_err(|e| format!("sts:AssumeRole {role_arn}: {}", describe_sdk_error(&e)))?;
    let c = out
        .credentials()
        .ok_or_else(|| format!("sts:AssumeRole {role_arn}: no credentials returned"))?;
    Ok(with_role_credentials(base, c, "trailkeeper-assumed-role"))
}

// ---------------------------------------------------------------------------------------------
// Converging one account

/// Assumes the member role, then acts as the account in the home region.
#[derive(Debug, Clone)]
pub struct TrailEnabler {
    /// The caller's configuration (management account); member sessions derive from it.
    base: aws_config::SdkConfig,
    sts: aws_sdk_sts::Client,
    pub spec: TrailSpec,
    pub member_role: RoleName,
    pub backoff: Backoff,
}

impl TrailEnabler {
    pub fn new(
        base: &aws_config::SdkConfig,
        spec: TrailSpec,
        member_role: RoleName,
        backoff: Backoff,
    ) -> Self {
        Self {
            base: base.clone(),
            sts: aws_sdk_sts::Client::new(base),
            spec,
            member_role,
            backoff,
        }
    }

    /// With another STS client (tests with mocks).
    pub fn with_sts(mut self, sts: aws_sdk_sts::Client) -> Self {
        self.sts = sts;
        self
    }

    /// A CloudTrail client acting as `account` in the home region, through AssumeRole.
    pub async fn member_cloudtrail(
        &self,
        account: AccountId,
    ) -> Result<(aws_sdk_cloudtrail::Client, u32), TrailError> {
        let role_arn = self
            .member_role
            .arn(self.spec.destination.partition, account);
        let session = format!("trailkeeper-{account}");
        let (out, retries) = with_backoff(&self.backoff, ASSUME_ROLE_SETTLING_CODES, || {
            self.sts
                .assume_role()
                .role_arn(&role_arn)
                .role_session_name(&session)
                .send()
        })
        .await
        .map_err(|f| failure(account, "sts:AssumeRole", f))?;
        let Some(c) = out.credentials() else {
            return Err(TrailError::Call {
                account,
                operation: "sts:AssumeRole",
                cause: format!("no credentials returned for {role_arn}"),
            });
        };
        let config = with_role_credentials(&self.base, c, "trailkeeper-member-role")
            .to_builder()
            .region(Region::new(self.spec.home_region.to_string()))
            .build();
        Ok((aws_sdk_cloudtrail::Client::new(&config), retries))
    }

    /// What [`Self::enable`] would do; changes nothing.
    pub async fn plan(&self, account: AccountId) -> Result<TrailPlan, TrailError> {
        let (ct, _) = self.member_cloudtrail(account).await?;
        self.plan_with(account, &ct).await
    }

    /// [`Self::plan`] with a CloudTrail client already acting as the account (the caller's own
    /// account, where there is no member role to assume).
    pub async fn plan_with(
        &self,
        account: AccountId,
        cloudtrail: &aws_sdk_cloudtrail::Client,
    ) -> Result<TrailPlan, TrailError> {
        let mut converge = Converge::new(self, account, cloudtrail);
        let observed = converge.observe().await?;
        let action = converge.action(observed.as_ref())?;
        let start_logging = match action {
            TrailAction::Create => true,
            _ => converge.is_logging().await? != Some(true),
        };
        Ok(TrailPlan {
            account,
            trail_arn: self.spec.trail_arn(account).to_string(),
            action,
            start_logging,
        })
    }

    /// A CloudTrail client for the caller's own credentials in the home region.
    pub fn own_cloudtrail(&self) -> aws_sdk_cloudtrail::Client {
        let config = self
            .base
            .to_builder()
            .region(Region::new(self.spec.home_region.to_string()))
            .build();
        aws_sdk_cloudtrail::Client::new(&config)
    }

    /// Creates or repairs the account's trail, starts logging and verifies it.
    pub async fn enable(&self, account: AccountId) -> Result<TrailReport, TrailError> {
        let (ct, retries) = self.member_cloudtrail(account).await?;
        Converge::new(self, account, &ct)
            .with_retries(retries)
            .run()
            .await
    }

    /// Converges with a CloudTrail client already acting as the account (the caller's own
    /// account; tests with mocks).
    pub async fn enable_with(
        &self,
        account: AccountId,
        cloudtrail: &aws_sdk_cloudtrail::Client,
    ) -> Result<TrailReport, TrailError> {
        Converge::new(self, account, cloudtrail).run().await
    }
}

struct Converge<'a> {
    spec: &'a TrailSpec,
    backoff: &'a Backoff,
    account: AccountId,
    ct: &'a aws_sdk_cloudtrail::Client,
    retries: u32,
}

impl<'a> Converge<'a> {
    fn new(
        enabler: &'a TrailEnabler,
        account: AccountId,
        ct: &'a aws_sdk_cloudtrail::Client,
    ) -> Self {
        Self {
            spec: &enabler.spec,
            backoff: &enabler.backoff,
            account,
            ct,
            retries: 0,
        }
    }

    fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    async fn call<T, E, Fut>(
        &mut self,
        operation: &'static str,
        call: impl FnMut() -> Fut,
    ) -> Result<T, TrailError>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (v, retries) = with_backoff(self.backoff, SETTLING_CODES, call)
            .await
            .map_err(|f| failure(self.account, operation, f))?;
        self.retries += retries;
        Ok(v)
    }

    /// The trail of the spec's name as the home region sees it, if any.
    async fn observe(&mut self) -> Result<Option<ObservedTrail>, TrailError> {
        let ct = self.ct;
        let name = self.spec.name.as_str();
        let out = self
            .call("cloudtrail:DescribeTrails", || {
                ct.describe_trails().trail_name_list(name).send()
            })
            .await?;
        let Some(mut trail) = out
            .trail_list()
            .iter()
            .find(|t| t.name() == Some(name))
            .map(ObservedTrail::from_sdk)
        else {
            return Ok(None);
        };
        let selectors = self
            .call("cloudtrail:GetEventSelectors", || {
                ct.get_event_selectors().trail_name(name).send()
            })
            .await?;
        trail.management_events = Some(ManagementEvents::from_sdk(&selectors));
        Ok(Some(trail))
    }

    fn action(&self, observed: Option<&ObservedTrail>) -> Result<TrailAction, TrailError> {
        let Some(trail) = observed else {
            return Ok(TrailAction::Create);
        };
        if trail.organization_trail {
            return Err(TrailError::OrganizationTrail {
                account: self.account,
                name: self.spec.name.clone(),
            });
        }
        if let Some(home) = trail
            .home_region
            .as_deref()
            .filter(|h| *h != self.spec.home_region.as_str())
        {
            return Err(TrailError::HomeRegion {
                account: self.account,
                name: self.spec.name.clone(),
                found: home.to_owned(),
                expected: self.spec.home_region.clone(),
            });
        }
        let drift = self.spec.drift(trail);
        Ok(if drift.is_empty() {
            TrailAction::UpToDate
        } else {
            TrailAction::Repair { drift }
        })
    }

    async fn is_logging(&mut self) -> Result<Option<bool>, TrailError> {
        let ct = self.ct;
        let name = self.spec.name.as_str();
        let status = self
            .call("cloudtrail:GetTrailStatus", || {
                ct.get_trail_status().name(name).send()
            })
            .await?;
        Ok(status.is_logging())
    }

    async fn create(&mut self) -> Result<(), TrailError> {
        let (ct, spec) = (self.ct, self.spec);
        let result = with_backoff(self.backoff, SETTLING_CODES, || {
            ct.create_trail()
                .name(spec.name.as_str())
                .s3_bucket_name(spec.destination.bucket.as_str())
                .set_s3_key_prefix(spec.destination.prefix.as_ref().map(ToString::to_string))
                .is_multi_region_trail(true)
                .include_global_service_events(true)
                .enable_log_file_validation(true)
                .set_kms_key_id(spec.kms_key.as_ref().map(ToString::to_string))
                .send()
        })
        .await;
        match result {
            Ok((_, retries)) => {
                self.retries += retries;
                Ok(())
            }
            // Another run created it between DescribeTrails and here: converge that one.
            Err(CallFailure::Failed { code: Some(c), .. })
                if c == "TrailAlreadyExistsException" =>
            {
                Ok(())
            }
            Err(f) => Err(failure(self.account, "cloudtrail:CreateTrail", f)),
        }
    }

    /// Puts back what drifted: the trail's settings (`UpdateTrail`), its event selectors
    /// (`PutEventSelectors`: one selector of every management event, replacing the others).
    async fn update(&mut self, drift: &[Drift]) -> Result<(), TrailError> {
        if drift.iter().any(|d| d.setting == EVENT_SELECTORS) {
            let (ct, name) = (self.ct, self.spec.name.as_str());
            self.call("cloudtrail:PutEventSelectors", || {
                ct.put_event_selectors()
                    .trail_name(name)
                    .event_selectors(ManagementEvents::spec_selector())
                    .send()
            })
            .await?;
        }
        if drift.iter().all(|d| d.setting == EVENT_SELECTORS) {
            return Ok(());
        }
        let (ct, spec) = (self.ct, self.spec);
        // An empty string removes a prefix or a key that the spec does not have.
        let prefix = spec
            .destination
            .prefix
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        let kms = spec
            .kms_key
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        self.call("cloudtrail:UpdateTrail", || {
            ct.update_trail()
                .name(spec.name.as_str())
                .s3_bucket_name(spec.destination.bucket.as_str())
                .s3_key_prefix(&prefix)
                .is_multi_region_trail(true)
                .include_global_service_events(true)
                .enable_log_file_validation(true)
                .kms_key_id(&kms)
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn run(mut self) -> Result<TrailReport, TrailError> {
        let arn = self.spec.trail_arn(self.account).to_string();
        let observed = self.observe().await?;
        let mut action = self.action(observed.as_ref())?;
        match &action {
            TrailAction::Create => {
                self.create().await?;
                // A trail a concurrent run created may differ: converge it like any other.
                let now = self.observe().await?;
                if let TrailAction::Repair { drift } = self.action(now.as_ref())? {
                    self.update(&drift).await?;
                    action = TrailAction::Repair { drift };
                }
            }
            TrailAction::Repair { drift } => {
                for d in drift {
                    tracing::warn!(account = %self.account, trail = %arn, setting = d.setting, found = %d.found, expected = %d.expected, "trail drifted from the spec; repairing");
                }
                self.update(drift).await?;
            }
            TrailAction::UpToDate => {}
        }
        // Verify what CloudTrail now reports, not what we asked for.
        if !matches!(action, TrailAction::UpToDate) {
            let now = self.observe().await?;
            match self.action(now.as_ref())? {
                TrailAction::UpToDate => {}
                TrailAction::Create => {
                    return Err(TrailError::StillDrifted {
                        account: self.account,
                        arn,
                        drift: "the trail is not there".into(),
                    });
                }
                TrailAction::Repair { drift } => {
                    return Err(TrailError::StillDrifted {
                        account: self.account,
                        arn,
                        drift: drift
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                }
            }
        }
        let mut started_logging = false;
        if self.is_logging().await? != Some(true) {
            let (ct, name) = (self.ct, self.spec.name.as_str());
            self.call("cloudtrail:StartLogging", || {
                ct.start_logging().name(name).send()
            })
            .await?;
            started_logging = true;
            let is_logging = self.is_logging().await?;
            if is_logging != Some(true) {
                return Err(TrailError::NotLogging {
                    account: self.account,
                    arn,
                    is_logging,
                });
            }
        }
        Ok(TrailReport {
            account: self.account,
            trail_arn: arn,
            action,
            started_logging,
            retries: self.retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{BucketName, KeyPrefix};
    use aws_sdk_cloudtrail::operation::create_trail::CreateTrailOutput;
    use aws_sdk_cloudtrail::operation::describe_trails::DescribeTrailsOutput;
    use aws_sdk_cloudtrail::operation::get_trail_status::GetTrailStatusOutput;
    use aws_sdk_cloudtrail::operation::start_logging::StartLoggingOutput;
    use aws_sdk_cloudtrail::types::Trail;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use std::sync::{Arc, Mutex};

    const ACCOUNT: &str = "111122223333";
    const INSUFFICIENT: &str = r#"{"__type":"InsufficientS3BucketPolicyException","message":"Incorrect S3 bucket policy is detected for bucket: central-logs"}"#;

    fn spec(prefix: Option<&str>, kms: Option<&str>) -> TrailSpec {
        TrailSpec {
            name: TrailName::new("trailkeeper").unwrap(),
            home_region: RegionName::new("us-east-1").unwrap(),
            destination: LogDestination::new(
                BucketName::new("central-logs").unwrap(),
                prefix.map(|p| KeyPrefix::new(p).unwrap()),
            ),
            kms_key: kms.map(|k| KmsKeyArn::new(k).unwrap()),
        }
    }

    fn account() -> AccountId {
        AccountId::new(ACCOUNT).unwrap()
    }

    fn fast() -> Backoff {
        Backoff {
            attempts: 4,
            first: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    async fn enabler(backoff: Backoff) -> TrailEnabler {
        let base = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        TrailEnabler::new(
            &base,
            spec(None, None),
            RoleName::new("OrganizationAccountAccessRole").unwrap(),
            backoff,
        )
    }

    /// CloudTrail's default for a new trail: every management event, read and write.
    fn default_selectors() -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_cloudtrail::Client::get_event_selectors).then_output(|| {
            aws_sdk_cloudtrail::operation::get_event_selectors::GetEventSelectorsOutput::builder()
                .event_selectors(ManagementEvents::spec_selector())
                .build()
        })
    }

    fn good_trail(spec: &TrailSpec) -> Trail {
        trail_in(spec, "us-east-1", false)
    }

    fn trail_in(spec: &TrailSpec, home: &str, organization: bool) -> Trail {
        Trail::builder()
            .name(spec.name.as_str())
            .trail_arn(spec.trail_arn(account()).to_string())
            .s3_bucket_name(spec.destination.bucket.as_str())
            .is_multi_region_trail(true)
            .include_global_service_events(true)
            .log_file_validation_enabled(true)
            .home_region(home)
            .is_organization_trail(organization)
            .build()
    }

    #[test]
    fn names_are_checked() {
        assert!(RoleName::new("OrganizationAccountAccessRole").is_ok());
        assert!(RoleName::new("AWSControlTowerExecution").is_ok());
        assert!(RoleName::new("arn:aws:iam::111122223333:role/x").is_err());
        assert!(RoleName::new("path/role").is_err());
        assert!(RoleName::new(&"r".repeat(65)).is_err());
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(KmsKeyArn::new(arn).unwrap().region(), "us-east-1");
        for bad in [
            "alias/trailkeeper",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:alias/trailkeeper",
            "arn:aws:kms:us-east-1:1111:key/abc",
            "arn:aws:kms:us-east-1:111122223333:key/*",
        ] {
            assert!(KmsKeyArn::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn drift_names_each_setting() {
        let kms = "arn:aws:kms:us-east-1:999988887777:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let s = spec(Some("org"), Some(kms));
        let t = ObservedTrail {
            arn: None,
            bucket: Some("central-logs".into()),
            prefix: Some("org".into()),
            multi_region: true,
            global_service_events: true,
            log_file_validation: true,
            kms_key_id: Some(kms.into()),
            home_region: Some("us-east-1".into()),
            organization_trail: false,
            management_events: Some(ManagementEvents::every()),
        };
        assert!(s.drift(&t).is_empty());
        let drifted = ObservedTrail {
            bucket: Some("elsewhere".into()),
            prefix: None,
            multi_region: false,
            global_service_events: false,
            log_file_validation: false,
            kms_key_id: None,
            management_events: Some(ManagementEvents::default()),
            ..t.clone()
        };
        let settings: Vec<_> = s.drift(&drifted).iter().map(|d| d.setting).collect();
        assert_eq!(
            settings,
            [
                "S3BucketName",
                "S3KeyPrefix",
                "IsMultiRegionTrail",
                "IncludeGlobalServiceEvents",
                "LogFileValidationEnabled",
                "KmsKeyId",
                "EventSelectors"
            ]
        );
        let selectors = s.drift(&drifted).pop().unwrap();
        assert_eq!(
            selectors.to_string(),
            "EventSelectors is \"no management events\", expected \"all management events, read and write\""
        );
        // No prefix and no key in the spec: a trail that has them drifted too.
        let plain = spec(None, None);
        let settings: Vec<_> = plain.drift(&t).iter().map(|d| d.setting).collect();
        assert_eq!(settings, ["S3KeyPrefix", "KmsKeyId"]);
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let b = Backoff::SETTLING;
        let mut total = Duration::ZERO;
        for n in 1..b.attempts {
            let d = b.delay(n);
            let step = b.first.saturating_mul(1 << (n - 1)).min(b.max);
            assert!(d >= step / 2 && d <= step, "{n}: {d:?}");
            total += d;
        }
        assert!(total <= Duration::from_secs(10 * 60), "{total:?}");
        let delays: std::collections::BTreeSet<_> = (0..20).map(|_| b.delay(3)).collect();
        assert!(delays.len() > 1, "no jitter");
    }

    /// moto never refuses CreateTrail for the bucket policy; real CloudTrail does until the
    /// policy has propagated. The trail is created once the refusals stop.
    #[tokio::test]
    async fn create_trail_retries_insufficient_bucket_policy() {
        let e = enabler(fast()).await;
        let created = Arc::new(Mutex::new(None::<Trail>));
        let describe = {
            let created = created.clone();
            mock!(aws_sdk_cloudtrail::Client::describe_trails).then_compute_output(move |_| {
                DescribeTrailsOutput::builder()
                    .set_trail_list(created.lock().unwrap().clone().map(|t| vec![t]))
                    .build()
            })
        };
        let create = {
            let created = created.clone();
            let good = good_trail(&e.spec);
            mock!(aws_sdk_cloudtrail::Client::create_trail)
                .match_requests(|r| {
                    r.is_multi_region_trail() == Some(true)
                        && r.include_global_service_events() == Some(true)
                        && r.enable_log_file_validation() == Some(true)
                        && r.s3_bucket_name() == Some("central-logs")
                        && r.s3_key_prefix().is_none()
                })
                .sequence()
                .http_status(400, Some(INSUFFICIENT.into()))
                .times(2)
                .output(move || {
                    *created.lock().unwrap() = Some(good.clone());
                    CreateTrailOutput::builder().build()
                })
                .build()
        };
        let status = mock!(aws_sdk_cloudtrail::Client::get_trail_status)
            .sequence()
            .output(|| GetTrailStatusOutput::builder().is_logging(false).build())
            .output(|| GetTrailStatusOutput::builder().is_logging(true).build())
            .build();
        let start = mock!(aws_sdk_cloudtrail::Client::start_logging)
            .then_output(|| StartLoggingOutput::builder().build());
        let ct = mock_client!(
            aws_sdk_cloudtrail,
            RuleMode::MatchAny,
            [&describe, &create, &status, &start, &default_selectors()],
            |c| c.retry_config(aws_sdk_cloudtrail::config::retry::RetryConfig::disabled())
        );
        let report = e.enable_with(account(), &ct).await.expect("converges");
        assert_eq!(create.num_calls(), 3);
        assert_eq!(start.num_calls(), 1);
        assert_eq!(report.action, TrailAction::Create);
        assert_eq!(report.retries, 2);
        assert!(report.started_logging);
    }

    /// When the policy never arrives, the error says which account, which call and why.
    #[tokio::test]
    async fn insufficient_bucket_policy_exhausts_naming_account_and_cause() {
        let e = enabler(fast()).await;
        let describe = mock!(aws_sdk_cloudtrail::Client::describe_trails)
            .then_output(|| DescribeTrailsOutput::builder().build());
        let create = mock!(aws_sdk_cloudtrail::Client::create_trail)
            .sequence()
            .http_status(400, Some(INSUFFICIENT.into()))
            .repeatedly()
            .build();
        let ct = mock_client!(
            aws_sdk_cloudtrail,
            RuleMode::MatchAny,
            [&describe, &create],
            |c| c.retry_config(aws_sdk_cloudtrail::config::retry::RetryConfig::disabled())
        );
        let err = e.enable_with(account(), &ct).await.unwrap_err();
        assert_eq!(create.num_calls(), 4, "the bound is the attempt count");
        let text = err.to_string();
        assert!(matches!(err, TrailError::Exhausted { attempts: 4, .. }));
        for needle in [
            ACCOUNT,
            "cloudtrail:CreateTrail",
            "InsufficientS3BucketPolicyException",
            "bucket policy does not admit",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    /// A brand-new account's role is not assumable for a while: AccessDenied is retried; when it
    /// never clears, the error names the account, the call and the role to check.
    #[tokio::test]
    async fn assume_role_access_denied_is_retried_within_the_bound() {
        use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
        const DENIED: &str = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/trail-enabler/x is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role/OrganizationAccountAccessRole</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        let role = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| {
                r.role_arn() == Some("arn:aws:iam::111122223333:role/OrganizationAccountAccessRole")
            })
            .sequence()
            .http_status(403, Some(DENIED.into()))
            .times(2)
            .output(|| {
                AssumeRoleOutput::builder()
                    .credentials(
                        aws_sdk_sts::types::Credentials::builder()
                            .access_key_id("ASIAEXAMPLE")
                            .secret_access_key("secret")
                            .session_token("token")
                            .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .build();
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&role], |c| c
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled()));
        let e = enabler(fast()).await.with_sts(sts);
        let (_, retries) = e.member_cloudtrail(account()).await.expect("third time");
        assert_eq!((retries, role.num_calls()), (2, 3));

        let never = mock!(aws_sdk_sts::Client::assume_role)
            .sequence()
            .http_status(403, Some(DENIED.into()))
            .repeatedly()
            .build();
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&never], |c| c
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled()));
        let e = enabler(fast()).await.with_sts(sts);
        let err = e
            .member_cloudtrail(account())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(never.num_calls(), 4);
        for needle in [
            ACCOUNT,
            "sts:AssumeRole",
            "AccessDenied",
            "TRAILKEEPER_MEMBER_ROLE",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    /// Any other refusal is not retried.
    #[tokio::test]
    async fn other_errors_fail_at_once() {
        let e = enabler(fast()).await;
        let describe = mock!(aws_sdk_cloudtrail::Client::describe_trails)
            .then_output(|| DescribeTrailsOutput::builder().build());
        let create = mock!(aws_sdk_cloudtrail::Client::create_trail)
            .sequence()
            .http_status(
                400,
                Some(r#"{"__type":"S3BucketDoesNotExistException","message":"S3 bucket central-logs does not exist!"}"#.into()),
            )
            .repeatedly()
            .build();
        let ct = mock_client!(
            aws_sdk_cloudtrail,
            RuleMode::MatchAny,
            [&describe, &create],
            |c| c.retry_config(aws_sdk_cloudtrail::config::retry::RetryConfig::disabled())
        );
        let err = e.enable_with(account(), &ct).await.unwrap_err();
        assert_eq!(create.num_calls(), 1);
        assert!(
            err.to_string().contains("S3BucketDoesNotExistException"),
            "{err}"
        );
    }

    /// A trail in another home region, or an organization trail, is never touched.
    #[tokio::test]
    async fn foreign_trails_are_refused() {
        let e = enabler(fast()).await;
        for (trail, want) in [
            (
                trail_in(&e.spec, "eu-west-1", false),
                "home region eu-west-1",
            ),
            (trail_in(&e.spec, "us-east-1", true), "organization trail"),
        ] {
            let describe =
                mock!(aws_sdk_cloudtrail::Client::describe_trails).then_output(move || {
                    DescribeTrailsOutput::builder()
                        .trail_list(trail.clone())
                        .build()
                });
            let update = mock!(aws_sdk_cloudtrail::Client::update_trail)
                .sequence()
                .http_status(500, None)
                .repeatedly()
                .build();
            let ct = mock_client!(
                aws_sdk_cloudtrail,
                RuleMode::MatchAny,
                [&describe, &update, &default_selectors()]
            );
            let err = e.enable_with(account(), &ct).await.unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            assert_eq!(update.num_calls(), 0);
        }
    }
}
