//! `trailkeeper audit`: every ACTIVE account of the organization, is it covered? Its trail
//! (there, multi-region, validated, logging, delivering) and its admission to the central
//! bucket (and key) policy; other trails are listed as history to consolidate.
//!
//! The same `TRAILKEEPER_*` settings as `trailkeeper onboard`; run it from the management
//! account, with `--archive-role-arn` naming a role in the log-archive account that may read
//! the bucket policy (unless the caller may read it already).

use std::io::Write;

use clap::Args;
use futures::{StreamExt, stream};
use serde_json::json;

use trailkeeper::audit::{AccountAudit, Auditor};
use trailkeeper::onboard::{OnboardConfig, PolicyLoop, PolicyUpdater};
use trailkeeper::store::load_aws_config;
use trailkeeper::trail::{Backoff, TrailEnabler};

use crate::validate::Format;

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only this account (repeatable); default: every ACTIVE account (ListAccounts).
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// A role in the log-archive account to assume to read the bucket and key policies.
    #[arg(long, value_name = "ARN")]
    pub archive_role_arn: Option<String>,
    /// Accounts audited at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Exit codes: 0 every account is covered, 1 at least one is not, 2 the audit could not be
/// completed (configuration, ListAccounts, the policy, or an account that could not be read).
pub async fn run(args: AuditArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some(config) = crate::onboard_config_from_env("audit", err) else {
        return 2;
    };
    let aws = load_aws_config().await;
    run_with(args, config, &aws, Backoff::SETTLING, out, err).await
}

/// [`run`] with the configuration and the member-role backoff given (tests).
pub async fn run_with(
    args: AuditArgs,
    config: OnboardConfig,
    aws: &aws_config::SdkConfig,
    backoff: Backoff,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let central = match &config.destination.prefix {
        Some(p) => format!("s3://{}/{p}", config.destination.bucket),
        None => format!("s3://{}", config.destination.bucket),
    };
    let audits = match audit(&args, config, aws, backoff).await {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(err, "trailkeeper audit: {e}");
            return 2;
        }
    };
    for a in &audits {
        if let Some(e) = &a.error {
            let _ = writeln!(err, "trailkeeper audit: account {}: {e}", a.account);
        }
    }
    match args.format {
        Format::Json => write_json(out, &audits),
        Format::Text => write_table(out, &audits, &central),
    }
    let _ = out.flush();
    if audits.iter().any(|a| a.error.is_some()) {
        2
    } else if audits.iter().any(|a| !a.covered()) {
        1
    } else {
        0
    }
}

async fn audit(
    args: &AuditArgs,
    config: OnboardConfig,
    aws: &aws_config::SdkConfig,
    backoff: Backoff,
) -> Result<Vec<AccountAudit>, String> {
    let accounts =
        crate::onboard::selected_accounts(aws, args.accounts.is_empty(), &args.accounts).await?;
    let Some(first) = accounts.first().copied() else {
        return Ok(Vec::new());
    };
    let (caller, archive) = crate::onboard::caller_and_archive(
        aws,
        args.archive_role_arn.as_deref(),
        "trailkeeper-audit",
    )
    .await?;
    let auditor = Auditor::new(
        config.clone(),
        TrailEnabler::new(
            aws,
            config.trail_spec(),
            config.member_role.clone(),
            backoff,
        ),
        PolicyUpdater::new(&archive, config, PolicyLoop::DEFAULT),
        caller,
    );
    let policies = auditor.read_policies(first).await?;
    let mut audits: Vec<AccountAudit> = stream::iter(accounts)
        .map(|account| auditor.audit(account, &policies))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    audits.sort_by_key(|a| a.account);
    Ok(audits)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Where the history of left-over trails is: `--from` arguments for `trailkeeper consolidate`.
fn consolidate_from(audits: &[AccountAudit]) -> Vec<String> {
    let mut from: Vec<String> = audits
        .iter()
        .flat_map(|a| a.other_trails.iter().filter_map(|t| t.location()))
        .collect();
    from.sort();
    from.dedup();
    from
}

fn write_table(out: &mut dyn Write, audits: &[AccountAudit], central: &str) {
    let _ = writeln!(
        out,
        "{:<12}  {:<5}  {:<12}  {:<10}  {:<7}  {:<20}  {:<20}  {:<6}  COVERED",
        "ACCOUNT",
        "TRAIL",
        "MULTI-REGION",
        "VALIDATION",
        "LOGGING",
        "LATEST DELIVERY",
        "LATEST DIGEST",
        "POLICY"
    );
    for a in audits {
        let t = a.trail.as_ref();
        let flag = |f: fn(&trailkeeper::audit::TrailState) -> bool| t.map_or("-", |t| yes(f(t)));
        let _ = writeln!(
            out,
            "{:<12}  {:<5}  {:<12}  {:<10}  {:<7}  {:<20}  {:<20}  {:<6}  {}",
            a.account.to_string(),
            yes(t.is_some()),
            flag(|t| t.multi_region),
            flag(|t| t.log_file_validation),
            flag(|t| t.logging),
            when(t.and_then(|t| t.latest_delivery)),
            when(t.and_then(|t| t.latest_digest)),
            yes(a.admitted.values().all(|v| *v)),
            if a.error.is_some() {
                "UNKNOWN"
            } else {
                yes(a.covered())
            }
        );
    }
    for a in audits {
        for f in &a.findings {
            let _ = writeln!(out, "{}: {f}", a.account);
        }
        if let Some(e) = &a.error {
            let _ = writeln!(out, "{}: could not be audited: {e}", a.account);
        }
        for t in &a.other_trails {
            let _ = writeln!(
                out,
                "{}: other trail {} writes to {} (consolidate its history, then retire it)",
                a.account,
                t.arn,
                t.location().unwrap_or_else(|| "no bucket".into())
            );
        }
    }
    let from = consolidate_from(audits);
    if !from.is_empty() {
        let args: Vec<String> = from.iter().map(|f| format!("--from {f}")).collect();
        let _ = writeln!(
            out,
            "to consolidate: trailkeeper consolidate {} --to {central}",
            args.join(" ")
        );
    }
    let covered = audits.iter().filter(|a| a.covered()).count();
    let errors = audits.iter().filter(|a| a.error.is_some()).count();
    let _ = writeln!(
        out,
        "accounts: {} ({covered} covered, {} not covered, {errors} not audited)",
        audits.len(),
        audits.len() - covered - errors
    );
}

fn write_json(out: &mut dyn Write, audits: &[AccountAudit]) {
    for a in audits {
        let mut line = serde_json::to_value(a).unwrap_or_default();
        line["type"] = json!("account");
        line["covered"] = json!(a.covered());
        let _ = writeln!(out, "{line}");
    }
    let covered = audits.iter().filter(|a| a.covered()).count();
    let errors = audits.iter().filter(|a| a.error.is_some()).count();
    let line = json!({
        "type": "summary",
        "accounts": audits.len(),
        "covered": covered,
        "not_covered": audits.len() - covered - errors,
        "errors": errors,
        "consolidate_from": consolidate_from(audits),
    });
    let _ = writeln!(out, "{line}");
}
