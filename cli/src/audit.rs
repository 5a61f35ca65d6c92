//! `trailkeeper audit`: every ACTIVE account of the organization, is it covered? Its trail
//! (there, multi-region, validated, logging, delivering) and its admission to the central
//! bucket (and key) policy; other trails are listed as history to consolidate.
//!
//! The same `TRAILKEEPER_*` settings as `trailkeeper onboard`; run it from the management
//! account, with `--archive-role-arn` naming a role in the log-archive account that may read
//! the bucket policy (unless the caller may read it already).
//!
//! `--archive` audits the log archive instead (who can reach the central bucket, who can assume
//! the log-archive account's member role, the bucket's protections), with credentials in the
//! log-archive account (or through `--archive-role-arn`).

use std::io::Write;

use clap::Args;
use serde_json::json;

use trailkeeper::archive::{ArchiveAudit, ArchiveAuditor, Flag, TrustedPrincipals};
use trailkeeper::audit::{AccountAudit, Auditor};
use trailkeeper::controls::Outcome;
use trailkeeper::freshness::{Watch, age_text};
use trailkeeper::onboard::OnboardConfig;
use trailkeeper::store::{Store, s3_client};
use trailkeeper::trail::{Backoff, RoleName};

use crate::OrgSetup;
use crate::validate::Format;

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only this account (repeatable); default: every ACTIVE account (ListAccounts).
    #[arg(long = "account", value_name = "ID", conflicts_with = "archive")]
    pub accounts: Vec<String>,
    /// A role in the log-archive account to assume to read the bucket and key policies.
    #[arg(long, value_name = "ARN")]
    pub archive_role_arn: Option<String>,
    /// The read-only role to assume in member accounts (templates/audit-member-role.yaml;
    /// DescribeTrails and GetTrailStatus only). Give OrganizationAccountAccessRole where it is
    /// not deployed yet.
    #[arg(long, value_name = "NAME", env = "TRAILKEEPER_AUDIT_ROLE", default_value = trailkeeper::audit::DEFAULT_AUDIT_ROLE)]
    pub audit_role: String,
    /// Accounts audited at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Also check that each account's digests keep arriving: every region's newest digest in
    /// the central bucket must be at most --max-digest-age old (listed through
    /// --archive-role-arn, which then needs s3:ListBucket).
    #[arg(long, conflicts_with = "archive")]
    pub freshness: bool,
    /// With --freshness: the age, in minutes, past which a region's newest digest is stale.
    #[arg(long, value_name = "MINUTES", default_value_t = 120, requires = "freshness",
          value_parser = clap::value_parser!(i64).range(60..=10_080))]
    pub max_digest_age: i64,
    /// Audit the log archive instead: who can reach the central bucket, who can assume the
    /// log-archive account's member role, and the bucket's protections.
    #[arg(long)]
    pub archive: bool,
    /// With --archive: a role of trailkeeper's own (policy-updater, digest-validator, S3 Batch
    /// Operations) that may delete or change the policy and protections (repeatable).
    #[arg(long = "trusted-role", value_name = "ARN", requires = "archive")]
    pub trusted_roles: Vec<String>,
    /// With --archive: the break-glass role, which may too.
    #[arg(long, value_name = "ARN", requires = "archive")]
    pub break_glass_role: Option<String>,
    /// With --archive: a principal that may assume the member role (repeatable; an ARN, or an
    /// account id for all of that account's principals).
    #[arg(long = "admin", value_name = "ARN", requires = "archive")]
    pub admins: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Exit codes: 0 every account is covered, 1 at least one is not, 2 the audit could not be
/// completed (configuration, ListAccounts, the policy, or an account that could not be read).
pub async fn run(args: AuditArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some(setup) = OrgSetup::from_env("audit", err).await else {
        return 2;
    };
    if args.archive {
        return run_archive(args, setup.config, &setup.aws, out, err).await;
    }
    run_with(args, setup, out, err).await
}

/// [`run`] with the set-up given (tests).
pub async fn run_with(
    args: AuditArgs,
    setup: OrgSetup,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let OrgSetup {
        config,
        aws,
        backoff,
    } = setup;
    let central = match &config.destination.prefix {
        Some(p) => format!("s3://{}/{p}", config.destination.bucket),
        None => format!("s3://{}", config.destination.bucket),
    };
    let audits = match audit(&args, config, &aws, backoff).await {
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
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let (caller, archive) = crate::onboard::caller_and_archive(
        aws,
        args.archive_role_arn.as_deref(),
        "trailkeeper-audit",
    )
    .await?;
    let audit_role = RoleName::new(&args.audit_role).map_err(|e| format!("--audit-role: {e}"))?;
    let watch = args.freshness.then(|| {
        let d = &config.destination;
        Watch::new(
            Store::new(s3_client(&archive)),
            d.bucket.as_str(),
            d.prefix.as_ref().map(|p| p.as_str()),
            config.trail_name.as_str(),
            chrono::Duration::minutes(args.max_digest_age),
        )
    });
    let d = &config.destination;
    let auditor = Auditor::new(aws, &archive, config.clone(), audit_role, backoff, caller)
        .with_reverification(
            Store::new(s3_client(&archive)),
            d.bucket.as_str(),
            d.prefix.as_ref().map(|p| p.as_str()),
        );
    match watch {
        Some(w) => auditor.with_freshness(w),
        None => auditor,
    }
    .audit_all(accounts, args.concurrency)
    .await
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
        for s in a.streams.iter().flatten() {
            let _ = writeln!(
                out,
                "{}: region {:<14} newest digest {:>7} old  {}",
                a.account,
                s.region,
                s.age_seconds.map_or("-".to_string(), age_text),
                if s.stale { "STALE" } else { "fresh" }
            );
        }
    }
    for a in audits.iter().filter(|a| !a.controls.is_empty()) {
        let summary: Vec<String> = a
            .controls
            .iter()
            .map(|c| format!("{} {}", c.id, c.outcome.as_str()))
            .collect();
        let _ = writeln!(out, "{}: controls {}", a.account, summary.join(", "));
        for c in a.controls.iter().filter(|c| c.outcome == Outcome::Fail) {
            let _ = writeln!(out, "{}: {}", a.account, c.line());
        }
    }
    for a in audits {
        let Some(r) = &a.reverification else { continue };
        let _ = match (&r.error, r.verified_since, r.age_hours) {
            (Some(e), _, _) => writeln!(out, "{}: re-verification unknown: {e}", a.account),
            (None, Some(since), Some(age)) => writeln!(
                out,
                "{}: history re-verified {} ago (every digest and log since {})",
                a.account,
                age_text((age * 3600.0) as i64),
                when(Some(since))
            ),
            _ => writeln!(out, "{}: history not re-verified yet", a.account),
        };
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

/// `--archive`. Exit codes: 0 nothing flagged, 1 at least one flag, 2 something could not be
/// read (each named; what was read is still reported).
pub async fn run_archive(
    args: AuditArgs,
    config: OnboardConfig,
    aws: &aws_config::SdkConfig,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let trusted = match TrustedPrincipals::new(
        &args.trusted_roles,
        args.break_glass_role.as_deref(),
        &args.admins,
    ) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "trailkeeper audit --archive: {e}");
            return 2;
        }
    };
    let archive = match &args.archive_role_arn {
        None => aws.clone(),
        Some(arn) => match crate::onboard::assume(aws, arn, "trailkeeper-audit-archive").await {
            Ok(a) => a,
            Err(e) => {
                let _ = writeln!(err, "trailkeeper audit --archive: {e}");
                return 2;
            }
        },
    };
    let auditor = ArchiveAuditor::new(
        &archive,
        config.destination.bucket.clone(),
        config.member_role.clone(),
        trusted,
    );
    let audit = auditor.audit().await;
    for e in audit.errors() {
        let _ = writeln!(err, "trailkeeper audit --archive: could not read {e}");
    }
    match args.format {
        Format::Json => write_archive_json(out, &audit),
        Format::Text => write_archive_text(out, &audit),
    }
    let _ = out.flush();
    if audit.errors().next().is_some() {
        2
    } else if audit.flags().next().is_some() {
        1
    } else {
        0
    }
}

fn archive_status(audit: &ArchiveAudit) -> &'static str {
    if audit.errors().next().is_some() {
        "incomplete"
    } else if audit.flags().next().is_some() {
        "findings"
    } else {
        "clean"
    }
}

/// JSON Lines: `bucket_policy`, `member_role`, `protections` (each with its `flags`, and its
/// `error` or `errors` when something could not be read), then a `summary`.
fn write_archive_json(out: &mut dyn Write, audit: &ArchiveAudit) {
    let section = |kind: &str, value: Option<serde_json::Value>, error: &Option<String>| {
        let mut line = serde_json::Map::new();
        line.insert("type".into(), json!(kind));
        line.insert("bucket".into(), json!(audit.bucket));
        match value {
            Some(serde_json::Value::Object(fields)) => line.extend(fields),
            _ => {
                line.insert("flags".into(), json!([]));
            }
        }
        line.insert("error".into(), json!(error));
        serde_json::Value::Object(line)
    };
    let policy = audit.bucket_policy.as_ref().map(|p| {
        let mut v = serde_json::to_value(p).unwrap_or_default();
        v["denies"] = json!(
            p.denies
                .iter()
                .map(|(statement, sid)| json!({ "statement": statement, "sid": sid }))
                .collect::<Vec<_>>()
        );
        v
    });
    let role = audit
        .member_role
        .as_ref()
        .map(|r| serde_json::to_value(r).unwrap_or_default());
    let protections = serde_json::to_value(&audit.protections).ok();
    let lines = [
        section("bucket_policy", policy, &audit.bucket_policy_error),
        section("member_role", role, &audit.member_role_error),
        section("protections", protections, &None),
        json!({"type": "controls", "bucket": audit.bucket, "controls": audit.controls}),
        json!({
            "type": "summary",
            "bucket": audit.bucket,
            "status": archive_status(audit),
            "flags": audit.flags().count(),
            "errors": audit.errors().collect::<Vec<_>>(),
        }),
    ];
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

fn write_archive_text(out: &mut dyn Write, audit: &ArchiveAudit) {
    let bucket = &audit.bucket;
    match &audit.bucket_policy {
        None => {
            let _ = writeln!(out, "bucket policy of s3://{bucket}: could not be read");
        }
        Some(p) if !p.exists => {
            let _ = writeln!(
                out,
                "bucket policy of s3://{bucket}: none (only the account's own IAM policies grant access)"
            );
        }
        Some(p) => {
            let _ = writeln!(
                out,
                "bucket policy of s3://{bucket}: {} statements, {} Deny (they grant nothing)",
                p.statements,
                p.denies.len()
            );
            for g in &p.grants {
                let access = if g.access.is_empty() {
                    format!("only {}", g.actions.join(", "))
                } else {
                    g.access
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    out,
                    "  #{:<3} {}{}: {access}{}",
                    g.statement,
                    if g.not_principal {
                        "everyone except "
                    } else {
                        ""
                    },
                    g.principal,
                    if g.restricted_by.is_empty() {
                        String::new()
                    } else {
                        format!(" [when {}]", g.restricted_by.join(", "))
                    }
                );
            }
        }
    }
    match &audit.member_role {
        None => {
            let _ = writeln!(out, "member role: could not be read");
        }
        Some(r) => match &r.arn {
            None => {
                let _ = writeln!(
                    out,
                    "member role {}: does not exist in this account (nobody can assume it)",
                    r.role
                );
            }
            Some(arn) => {
                let _ = writeln!(out, "member role {arn}: who can assume it");
                for t in &r.trusted {
                    let _ = writeln!(
                        out,
                        "  #{:<3} {}{}: {}{}{}",
                        t.statement,
                        if t.not_principal {
                            "everyone except "
                        } else {
                            ""
                        },
                        t.principal,
                        t.actions.join(", "),
                        if t.restricted_by.is_empty() {
                            String::new()
                        } else {
                            format!(" [when {}]", t.restricted_by.join(", "))
                        },
                        if t.admin { " (administrator)" } else { "" }
                    );
                }
            }
        },
    }
    let p = &audit.protections;
    let known = |v: Option<String>| v.unwrap_or_else(|| "could not be read".into());
    let _ = writeln!(
        out,
        "protections of s3://{bucket}: versioning {}; MFA Delete {}; Object Lock {}; public access block {}",
        known(p.versioning.clone()),
        known(
            p.mfa_delete
                .map(|m| if m { "on" } else { "off" }.to_string())
        ),
        known(p.object_lock.as_ref().map(|l| match l {
            None => "off (no configuration)".to_string(),
            Some(l) if !l.enabled => "off".to_string(),
            Some(l) => match (&l.mode, l.days, l.years) {
                (Some(mode), Some(d), _) => format!("on, {mode} {d} days by default"),
                (Some(mode), _, Some(y)) => format!("on, {mode} {y} years by default"),
                _ => "on, no default retention".to_string(),
            },
        })),
        known(p.public_access_block.as_ref().map(|b| match b {
            None => "not configured on the bucket".to_string(),
            Some(b) if b.is_complete() => "on (all four settings)".to_string(),
            Some(_) => "partial".to_string(),
        })),
    );
    for c in &audit.controls {
        let _ = writeln!(out, "control {}", c.line());
    }
    let flags: Vec<&Flag> = audit.flags().collect();
    for f in &flags {
        let _ = writeln!(out, "FLAG {}: {f}", f.code);
    }
    for e in audit.errors() {
        let _ = writeln!(out, "ERROR could not read {e}");
    }
    let _ = writeln!(
        out,
        "result: {} ({} flags, {} errors)",
        match archive_status(audit) {
            "clean" => "CLEAN: nothing flagged",
            "findings" =>
                "FINDINGS: someone outside trailkeeper's roles can reach the archive, or a protection is off",
            _ => "INCOMPLETE: something could not be read",
        },
        flags.len(),
        audit.errors().count()
    );
}
