//! `trailkeeper consolidate`: old trails' history copied into the central bucket, server-side,
//! verified, resumable, with a manifest for `trailkeeper validate --manifest`.

use std::io::Write;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde_json::json;
use tokio::sync::mpsc;

use trailkeeper::consolidate::{Consolidator, Location, Options, Outcome, Progress, Report};
use trailkeeper::store::{load_aws_config, s3_client};

use crate::validate::Format;

/// The storage classes a copy may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Class {
    #[value(name = "STANDARD")]
    Standard,
    #[value(name = "STANDARD_IA")]
    StandardIa,
    #[value(name = "GLACIER_IR")]
    GlacierIr,
    #[value(name = "GLACIER")]
    Glacier,
    #[value(name = "DEEP_ARCHIVE")]
    DeepArchive,
}

impl Class {
    fn storage_class(self) -> aws_sdk_s3::types::StorageClass {
        use aws_sdk_s3::types::StorageClass as S;
        match self {
            Self::Standard => S::Standard,
            Self::StandardIa => S::StandardIa,
            Self::GlacierIr => S::GlacierIr,
            Self::Glacier => S::Glacier,
            Self::DeepArchive => S::DeepArchive,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ConsolidateArgs {
    /// An old bucket (and the trails' prefix in it) to copy from; repeatable.
    #[arg(
        long = "from",
        value_name = "s3://OLD_BUCKET[/PREFIX]",
        required = true
    )]
    pub from: Vec<String>,
    /// The central bucket (and prefix) the copies go to, under the same AWSLogs/… keys.
    #[arg(long, value_name = "s3://CENTRAL_BUCKET[/PREFIX]")]
    pub to: String,
    /// The copies' storage class (GLACIER and DEEP_ARCHIVE must be restored before validating).
    #[arg(long, value_enum)]
    pub storage_class: Option<Class>,
    /// List and compare only: copy nothing, write no manifest.
    #[arg(long)]
    pub dry_run: bool,
    /// Also copy every earlier state (noncurrent version) of the CloudTrail objects, by version
    /// id, to [PREFIX/]trailkeeper-versions/<old bucket>/<version id>/<key>, and record every
    /// delete marker in the manifest: `trailkeeper retire` needs them when the old bucket is
    /// versioned.
    #[arg(long)]
    pub all_versions: bool,
    /// Objects copied at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Runs the command; returns the exit code: 0 everything is in place (or would be copied, for a
/// dry run), 2 something could not be listed, copied or verified.
pub async fn run(args: ConsolidateArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let started = Instant::now();
    let parsed = args
        .from
        .iter()
        .chain(std::iter::once(&args.to))
        .map(|s| Location::parse(s))
        .collect::<Result<Vec<_>, _>>();
    let mut locations = match parsed {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(err, "trailkeeper consolidate: {e}");
            return 2;
        }
    };
    let Some(target) = locations.pop() else {
        return 2;
    };
    let config = load_aws_config().await;
    let consolidator = Consolidator::new(
        s3_client(&config),
        Options {
            storage_class: args.storage_class.map(Class::storage_class),
            dry_run: args.dry_run,
            all_versions: args.all_versions,
            concurrency: args.concurrency,
            ..Options::default()
        },
    );
    let (tx, mut rx) = mpsc::channel(1024);
    let task = {
        let (sources, target) = (locations.clone(), target.clone());
        tokio::spawn(async move { consolidator.run(&sources, &target, tx).await })
    };

    let progress = crate::progress_bar(
        args.format == Format::Text,
        "{spinner} {bytes}/{total_bytes} [{elapsed_precise}] {wide_bar} ETA {eta} {msg}",
    );
    let (mut total, mut done, mut failed) = (0u64, 0u64, 0u64);
    while let Some(event) = rx.recv().await {
        match event {
            Progress::Listed { objects, bytes } => {
                total = objects;
                progress.set_length(bytes);
            }
            Progress::Done { planned, outcome } => {
                done += 1;
                progress.inc(planned.size);
                if let Outcome::Failed(why) = &outcome {
                    failed += 1;
                    progress.suspend(|| match args.format {
                        Format::Json => {
                            let line = json!({
                                "type": "object",
                                "status": "failed",
                                "source": planned.source.to_string(),
                                "target": planned.target.to_string(),
                                "reason": why,
                            });
                            let _ = writeln!(out, "{line}");
                        }
                        Format::Text => {
                            let _ = writeln!(out, "FAILED {}  ({why})", planned.source);
                        }
                    });
                }
                progress.set_message(format!("{done}/{total} objects, {failed} failed"));
            }
        }
    }
    progress.finish_and_clear();
    let report = match task.await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            let _ = writeln!(err, "trailkeeper consolidate: {e}");
            return 2;
        }
        Err(e) => {
            let _ = writeln!(err, "trailkeeper consolidate: {e}");
            return 2;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match args.format {
        Format::Json => {
            let line = json!({
                "type": "summary",
                "status": if report.failed.is_empty() { "complete" } else { "incomplete" },
                "copied": report.copied,
                "already_there": report.already_there,
                "would_copy": report.would_copy,
                "failed": report.failed.len(),
                "bytes_copied": report.bytes_copied,
                "not_cloudtrail": report.not_cloudtrail,
                "delete_markers": report.delete_markers,
                "manifest": report.manifest.as_ref().map(|m| m.to_string()),
                "seconds": (seconds * 1000.0).round() / 1000.0,
            });
            let _ = writeln!(out, "{line}");
        }
        Format::Text => write_text_summary(out, &report, &target, seconds),
    }
    let _ = out.flush();
    report.exit_code()
}

fn write_text_summary(out: &mut dyn Write, r: &Report, target: &Location, seconds: f64) {
    let total = r.copied + r.already_there + r.would_copy + r.failed.len() as u64;
    let _ = writeln!(
        out,
        "objects: {total} ({} copied, {} already there, {} to copy, {} failed)",
        r.copied,
        r.already_there,
        r.would_copy,
        r.failed.len()
    );
    let _ = writeln!(
        out,
        "{:.1} MB copied in {seconds:.1} s; {} objects under AWSLogs/ that are not CloudTrail's were left alone",
        r.bytes_copied as f64 / 1e6,
        r.not_cloudtrail
    );
    if r.delete_markers > 0 {
        let _ = writeln!(
            out,
            "{} delete markers recorded in the manifest",
            r.delete_markers
        );
    }
    if let Some(m) = &r.manifest {
        let prefix = target.prefix.trim_end_matches('/');
        let _ = writeln!(out, "manifest: {m}");
        let _ = writeln!(
            out,
            "validate the copies: trailkeeper validate --bucket {}{} --manifest {m}",
            target.bucket,
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" --prefix {prefix}")
            }
        );
    }
    let _ = writeln!(
        out,
        "{}",
        match (r.failed.is_empty(), r.would_copy) {
            (false, _) => "result: INCOMPLETE: the objects above were not copied; run again",
            (true, 0) => "result: every CloudTrail object is in the central bucket, verified",
            (true, _) => "result: dry run; nothing was copied",
        }
    );
}
