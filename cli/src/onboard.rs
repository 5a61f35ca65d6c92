//! `trailkeeper onboard`: both onboarding steps for accounts that no event announced (accounts
//! older than trailkeeper, or a failed run), with the code the Lambdas run.
//!
//! The same `TRAILKEEPER_*` settings as the Lambdas. One set of credentials does both steps
//! unless `--archive-role-arn` names a role in the log-archive account for the policy step:
//! the trail step assumes `TRAILKEEPER_MEMBER_ROLE` in each account (the caller's own account
//! uses the caller's credentials, since no member role exists there).

use std::io::Write;

use clap::Args;
use trailkeeper::events::AccountId;
use trailkeeper::onboard::{OnboardConfig, PolicyLoop, PolicyUpdater, active_accounts};
use trailkeeper::store::{describe_sdk_error, load_aws_config};
pub(crate) use trailkeeper::trail::assume_role as assume;
use trailkeeper::trail::{Backoff, TrailAction, TrailEnabler};

#[derive(Debug, Clone, Args)]
pub struct OnboardArgs {
    /// The account to onboard (repeatable).
    #[arg(
        long = "account",
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub accounts: Vec<String>,
    /// Every ACTIVE account of the organization (ListAccounts; run it from the management
    /// account or a delegated administrator).
    #[arg(long)]
    pub all: bool,
    /// Print the policy diff and the trail plan for each account; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A role in the log-archive account to assume for the bucket and key policy step.
    #[arg(long, value_name = "ARN")]
    pub archive_role_arn: Option<String>,
}

/// Exit codes: 0 every account onboarded (or planned), 1 at least one account failed,
/// 2 nothing could be done (configuration, credentials, ListAccounts).
pub async fn run(args: OnboardArgs, out: &mut impl Write, err: &mut impl Write) -> i32 {
    let Some(config) = crate::onboard_config_from_env("onboard", err) else {
        return 2;
    };
    let aws = load_aws_config().await;
    run_with(
        args,
        config,
        &aws,
        Backoff::SETTLING,
        PolicyLoop::DEFAULT,
        out,
        err,
    )
    .await
}

/// [`run`] with the configuration and bounds given (tests).
pub async fn run_with(
    args: OnboardArgs,
    config: OnboardConfig,
    aws: &aws_config::SdkConfig,
    backoff: Backoff,
    bounds: PolicyLoop,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    match onboard(args, config, aws, backoff, bounds, out, err).await {
        Ok(0) => 0,
        Ok(_) => 1,
        Err(e) => {
            let _ = writeln!(err, "trailkeeper onboard: {e}");
            2
        }
    }
}

async fn onboard(
    args: OnboardArgs,
    config: OnboardConfig,
    aws: &aws_config::SdkConfig,
    backoff: Backoff,
    bounds: PolicyLoop,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<usize, String> {
    let accounts = selected_accounts(aws, args.all, &args.accounts).await?;
    let (caller, archive) =
        caller_and_archive(aws, args.archive_role_arn.as_deref(), "trailkeeper-onboard").await?;
    let policies = PolicyUpdater::new(&archive, config.clone(), bounds);
    let trails = TrailEnabler::new(
        aws,
        config.trail_spec(),
        config.member_role.clone(),
        backoff,
    );

    let mut failed = 0;
    for account in accounts {
        let own = (Some(account) == caller).then(|| trails.own_cloudtrail());
        let header = if args.dry_run {
            format!("account {account} (dry run: nothing is changed)")
        } else {
            format!("account {account}")
        };
        let _ = writeln!(out, "{header}");
        let result = if args.dry_run {
            plan(&policies, &trails, own.as_ref(), account, out).await
        } else {
            apply(&policies, &trails, own.as_ref(), account, out).await
        };
        if let Err(e) = result {
            failed += 1;
            let _ = writeln!(out, "  FAILED: {e}");
            let _ = writeln!(err, "trailkeeper onboard: {e}");
        }
    }
    Ok(failed)
}

async fn plan(
    policies: &PolicyUpdater,
    trails: &TrailEnabler,
    own: Option<&aws_sdk_cloudtrail::Client>,
    account: AccountId,
    out: &mut impl Write,
) -> Result<(), String> {
    for p in policies.plan(account).await.map_err(|e| e.to_string())? {
        let _ = writeln!(out, "  {}", p.to_string().replace('\n', "\n  "));
    }
    let plan = match own {
        Some(ct) => trails.plan_with(account, ct).await,
        None => trails.plan(account).await,
    }
    .map_err(|e| e.to_string())?;
    let _ = writeln!(out, "  {}", plan.to_string().replace('\n', "\n  "));
    Ok(())
}

async fn apply(
    policies: &PolicyUpdater,
    trails: &TrailEnabler,
    own: Option<&aws_sdk_cloudtrail::Client>,
    account: AccountId,
    out: &mut impl Write,
) -> Result<(), String> {
    for r in policies.admit(account).await.map_err(|e| e.to_string())? {
        let _ = writeln!(
            out,
            "  {}: {} ({} write(s), {} bytes written)",
            r.policy,
            r.status.replace('_', " "),
            r.writes,
            r.bytes
        );
    }
    let report = match own {
        Some(ct) => trails.enable_with(account, ct).await,
        None => trails.enable(account).await,
    }
    .map_err(|e| e.to_string())?;
    let action = match &report.action {
        TrailAction::Create => "created".to_owned(),
        TrailAction::UpToDate => "matches the spec".to_owned(),
        TrailAction::Repair { drift } => format!(
            "repaired: {}",
            drift
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let logging = if report.started_logging {
        "logging started"
    } else {
        "logging"
    };
    let _ = writeln!(out, "  trail {}: {action}; {logging}", report.trail_arn);
    Ok(())
}

/// The caller's configuration with the credentials of `role_arn`.
/// Every ACTIVE account of the organization when `all`, else the `--account` ids, checked.
pub(crate) async fn selected_accounts(
    aws: &aws_config::SdkConfig,
    all: bool,
    accounts: &[String],
) -> Result<Vec<AccountId>, String> {
    if all {
        return active_accounts(&aws_sdk_organizations::Client::new(aws))
            .await
            .map_err(|e| e.to_string());
    }
    accounts
        .iter()
        .map(|a| AccountId::new(a).map_err(|e| format!("--account: {e}")))
        .collect()
}

/// The caller's own account (so that it is not treated as a member), and the configuration for
/// the log-archive account: the caller's, or `archive_role_arn` assumed as `session`.
pub(crate) async fn caller_and_archive(
    aws: &aws_config::SdkConfig,
    archive_role_arn: Option<&str>,
    session: &str,
) -> Result<(Option<AccountId>, aws_config::SdkConfig), String> {
    let caller = aws_sdk_sts::Client::new(aws)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("sts:GetCallerIdentity: {}", describe_sdk_error(&e)))?
        .account()
        .and_then(|a| AccountId::new(a).ok());
    let archive = match archive_role_arn {
        None => aws.clone(),
        Some(arn) => assume(aws, arn, session).await?,
    };
    Ok((caller, archive))
}
