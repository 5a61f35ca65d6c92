//! `trailkeeper retire`: after consolidation, the old trails and their bucket are deleted, but
//! only when every object in the bucket has a verified copy in the central bucket.
//!
//! The central bucket is the deployment's (`TRAILKEEPER_BUCKET`, `TRAILKEEPER_PREFIX`); the
//! proof is the consolidation manifests there. Without `--yes` it prints the plan and changes
//! nothing.

use std::io::Write;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use trailkeeper::consolidate::Location;
use trailkeeper::onboard::OnboardConfig;
use trailkeeper::policy::TrailArn;
use trailkeeper::retire::{
    Plan, Retired, Retirer, TrailState, TrailTarget, Unverified, ValidationReport,
};
use trailkeeper::store::s3_client;
use trailkeeper::trail::Backoff;

use crate::OrgSetup;
use crate::validate::Format;

#[derive(Debug, Clone, Args)]
pub struct RetireArgs {
    /// The old bucket to empty and delete (the whole bucket: no prefix).
    #[arg(long = "from", value_name = "s3://OLD_BUCKET")]
    pub from: String,
    /// A trail that writes to the old bucket, to stop and delete first (repeatable).
    #[arg(long = "trail", value_name = "ARN")]
    pub trails: Vec<String>,
    /// What `trailkeeper validate --manifest … --format json` printed for the copied history
    /// (a file); retire requires it clean and judging every copied log and digest.
    #[arg(long, value_name = "FILE")]
    pub validation: Option<String>,
    /// Carry out the plan; without it, the plan is printed and nothing is changed.
    #[arg(long)]
    pub yes: bool,
    /// Copies checked at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Exit codes: 0 retired (or, without `--yes`, a plan that can be carried out), 1 refused (an
/// object has no verified copy; nothing is deleted), 2 error.
pub async fn run(args: RetireArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some(setup) = OrgSetup::from_env("retire", err).await else {
        return 2;
    };
    run_with(args, setup, out, err).await
}

/// [`run`] with the set-up given (tests).
pub async fn run_with(
    args: RetireArgs,
    setup: OrgSetup,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let started = Instant::now();
    let code = match retire(&args, &setup.config, &setup.aws, setup.backoff, out).await {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "trailkeeper retire: {e}");
            if args.format == Format::Json {
                let line = json!({"type": "summary", "status": "error", "bucket": bucket_name(&args.from), "reason": e});
                let _ = writeln!(out, "{line}");
            } else {
                let _ = writeln!(out, "result: ERROR: {e}");
            }
            2
        }
    };
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), code, "retire");
    let _ = out.flush();
    code
}

fn bucket_name(from: &str) -> String {
    Location::parse(from).map(|l| l.bucket).unwrap_or_default()
}

async fn retire(
    args: &RetireArgs,
    config: &OnboardConfig,
    aws: &aws_config::SdkConfig,
    backoff: Backoff,
    out: &mut dyn Write,
) -> Result<i32, String> {
    let old = Location::parse(&args.from).map_err(|e| format!("--from: {e}"))?;
    if !old.prefix.is_empty() {
        return Err(format!(
            "--from {}: retire empties and deletes the whole bucket; name it without a prefix (s3://{})",
            args.from, old.bucket
        ));
    }
    let arns = args
        .trails
        .iter()
        .map(|a| TrailArn::parse(a).map_err(|e| format!("--trail: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let central = Location::new(
        config.destination.bucket.as_str(),
        config.destination.prefix.as_ref().map(|p| p.as_str()),
    );
    let caller = if arns.is_empty() {
        None
    } else {
        crate::onboard::caller_and_archive(aws, None, "trailkeeper-retire")
            .await?
            .0
    };
    let mut trails = Vec::new();
    for arn in arns {
        trails.push(
            TrailTarget::new(
                aws,
                &config.trail_spec(),
                &config.member_role,
                caller,
                arn,
                backoff,
            )
            .await
            .map_err(|e| e.to_string())?,
        );
    }
    let validation = match &args.validation {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("--validation {path}: {e}"))?;
            Some(ValidationReport::parse(path, &text).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let retirer = Retirer::new(s3_client(aws), args.concurrency);
    let plan = retirer
        .plan(&old.bucket, &central, &trails, validation.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    write_plan(out, args.format, &plan, args.yes);
    if plan.refused() {
        summary(
            out,
            args.format,
            &plan,
            None,
            "refused",
            &format!(
                "REFUSED: {} object(s) of s3://{} without a verified copy{}; nothing was changed",
                plan.unverified.len(),
                plan.bucket,
                match plan.validation_problems.first() {
                    Some(p) if p.status == "missing" => ", and no validation of the copied history",
                    Some(_) => ", and the validation of the copied history is not clean",
                    None => "",
                }
            ),
        );
        return Ok(1);
    }
    if !args.yes {
        summary(
            out,
            args.format,
            &plan,
            None,
            "plan",
            "plan only; nothing was changed: run again with --yes to retire",
        );
        return Ok(0);
    }
    let retired = retirer
        .retire(&plan, &trails)
        .await
        .map_err(|e| e.to_string())?;
    for t in &retired.trails_deleted {
        line(
            out,
            args.format,
            json!({"type": "trail", "status": "deleted", "arn": t}),
            || format!("trail {t}: stopped and deleted"),
        );
    }
    if !retired.landed.is_empty() {
        unverified_lines(out, args.format, &retired.landed, "landed");
        summary(
            out,
            args.format,
            &plan,
            Some(&retired),
            "refused",
            &format!(
                "REFUSED: {} object(s) of s3://{} appeared or changed after the check; the trails are gone, nothing in the bucket was deleted: consolidate again, then run again",
                retired.landed.len(),
                plan.bucket
            ),
        );
        return Ok(1);
    }
    for (object, version, why) in &retired.failed {
        line(
            out,
            args.format,
            json!({"type": "object", "status": "delete_failed", "bucket": object.bucket, "key": object.key, "version_id": version, "reason": why}),
            || format!("NOT DELETED {object} version {version}  ({why})"),
        );
    }
    if !retired.failed.is_empty() {
        summary(
            out,
            args.format,
            &plan,
            Some(&retired),
            "incomplete",
            &format!(
                "INCOMPLETE: {} version(s) of s3://{} could not be deleted; the bucket was kept: run again",
                retired.failed.len(),
                plan.bucket
            ),
        );
        return Ok(2);
    }
    summary(
        out,
        args.format,
        &plan,
        Some(&retired),
        "retired",
        &format!(
            "retired: s3://{} and {} trail(s) are gone; their history is in {}",
            plan.bucket,
            retired.trails_deleted.len(),
            plan.central
        ),
    );
    Ok(0)
}

fn line(
    out: &mut dyn Write,
    format: Format,
    json: serde_json::Value,
    text: impl FnOnce() -> String,
) {
    let _ = match format {
        Format::Json => writeln!(out, "{json}"),
        Format::Text => writeln!(out, "{}", text()),
    };
}

fn unverified_lines(out: &mut dyn Write, format: Format, objects: &[Unverified], status: &str) {
    for u in objects {
        line(
            out,
            format,
            json!({"type": "object", "status": status, "bucket": u.object.bucket, "key": u.object.key,
                   "version_id": u.version_id, "reason": u.reason}),
            || {
                let version = u
                    .version_id
                    .as_ref()
                    .map(|v| format!(" version {v}"))
                    .unwrap_or_default();
                format!(
                    "{} {}{version}  ({})",
                    status.to_uppercase(),
                    u.object,
                    u.reason
                )
            },
        );
    }
}

fn write_plan(out: &mut dyn Write, format: Format, plan: &Plan, yes: bool) {
    if format == Format::Text {
        let _ = writeln!(
            out,
            "retire s3://{}{}",
            plan.bucket,
            if yes {
                ""
            } else {
                " (plan: nothing is changed without --yes)"
            }
        );
        match plan.manifests.len() {
            0 => {
                let _ = writeln!(
                    out,
                    "  no consolidation manifest in {} names s3://{} as a source",
                    plan.central, plan.bucket
                );
            }
            _ => {
                for m in &plan.manifests {
                    let _ = writeln!(out, "  manifest {m}");
                }
            }
        }
    }
    for (arn, state) in &plan.trails {
        let (status, location) = match state {
            TrailState::Gone => ("already_gone", None),
            TrailState::Present { location } => ("to_delete", Some(location)),
        };
        line(
            out,
            format,
            json!({"type": "trail", "status": status, "arn": arn, "writes_to": location}),
            || match state {
                TrailState::Gone => format!("  trail {arn}: already gone"),
                TrailState::Present { location } => {
                    format!("  trail {arn}: writes to {location}; stop logging and delete it")
                }
            },
        );
    }
    match &plan.inventory {
        None => line(
            out,
            format,
            json!({"type": "bucket", "status": "already_gone", "bucket": plan.bucket}),
            || format!("  bucket s3://{}: already gone", plan.bucket),
        ),
        Some(i) => line(
            out,
            format,
            json!({"type": "bucket", "status": "to_delete", "bucket": plan.bucket,
                   "current_objects": i.current.len(), "verified": plan.verified.len(),
                   "noncurrent_versions": i.noncurrent.len(), "delete_markers": i.delete_markers.len()}),
            || {
                format!(
                    "  bucket s3://{}: {} current objects ({} with a verified copy in {}), {} noncurrent versions, {} delete markers; delete them all, then the bucket",
                    plan.bucket,
                    i.current.len(),
                    plan.verified.len(),
                    plan.central,
                    i.noncurrent.len(),
                    i.delete_markers.len()
                )
            },
        ),
    }
    unverified_lines(out, format, &plan.unverified, "unverified");
    for p in &plan.validation_problems {
        line(
            out,
            format,
            json!({"type": "validation", "status": p.status, "reason": p.reason}),
            || format!("VALIDATION {}  ({})", p.status.to_uppercase(), p.reason),
        );
    }
}

fn summary(
    out: &mut dyn Write,
    format: Format,
    plan: &Plan,
    retired: Option<&Retired>,
    status: &str,
    text: &str,
) {
    let json = json!({
        "type": "summary",
        "status": status,
        "bucket": plan.bucket,
        "central": plan.central.to_string(),
        "manifests": plan.manifests.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "current_objects": plan.inventory.as_ref().map_or(0, |i| i.current.len()),
        "verified": plan.verified.len(),
        "unverified": plan.unverified.len(),
        "validation": plan.validation,
        "validation_problems": plan.validation_problems.len(),
        "landed": retired.map_or(0, |r| r.landed.len()),
        "trails_deleted": retired.map_or(0, |r| r.trails_deleted.len()),
        "versions_deleted": retired.map_or(0, |r| r.deleted),
        "delete_failed": retired.map_or(0, |r| r.failed.len()),
        "bucket_gone": retired.is_some_and(|r| r.bucket_gone),
    });
    line(out, format, json, || format!("result: {text}"));
}
