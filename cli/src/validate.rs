//! `trailkeeper validate`: the whole history in scope, with the contract's JSON Lines and exit codes.

use std::io::Write;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, ValueEnum};
use tokio::sync::mpsc;

use trailkeeper::consolidate::{Location, Manifest};
use trailkeeper::keys::{CloudTrailKeys, KeyRing, KeySource, parse_keys_file};
use trailkeeper::report::{Status, Summary, Verdict};
use trailkeeper::store::{ObjectRef, Store, load_aws_config, s3_client};
use trailkeeper::validate::{Engine, Event, HistoryScope, Limits, Relocation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// The bucket CloudTrail delivers to (or that holds the copies).
    #[arg(long)]
    pub bucket: String,
    /// The trails' S3 key prefix, if any.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only these accounts (repeatable); default: every account found in the bucket.
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// Only digests delivered from these regions (repeatable); default: every region found.
    #[arg(long = "region")]
    pub regions: Vec<String>,
    /// Only this trail name.
    #[arg(long)]
    pub trail: Option<String>,
    /// Only the organization trail layout AWSLogs/<org-id>/…
    #[arg(long)]
    pub org_id: Option<String>,
    /// Start of the window (RFC 3339, or a date); default: the beginning of history.
    #[arg(long, value_parser = parse_when)]
    pub start: Option<DateTime<Utc>>,
    /// End of the window (RFC 3339, or a date); default: now.
    #[arg(long, value_parser = parse_when)]
    pub end: Option<DateTime<Utc>>,
    /// `aws cloudtrail list-public-keys` output to use instead of calling ListPublicKeys.
    #[arg(long)]
    pub public_keys: Option<String>,
    /// The history was copied from OLD_BUCKET[/OLD_PREFIX] (repeatable): check each copy
    /// against where CloudTrail wrote it.
    #[arg(long = "relocated-from", value_name = "OLD_BUCKET[/OLD_PREFIX]")]
    pub relocated_from: Vec<String>,
    /// The manifest `trailkeeper consolidate` wrote (s3://BUCKET/KEY): the copies came from its
    /// sources.
    #[arg(long, value_name = "S3_URI")]
    pub manifest: Option<String>,
    /// Exit 1 when the chain restarted (a `gap`: logging or log file validation was off), as
    /// for a finding.
    #[arg(long)]
    pub fail_on_gap: bool,
    /// Objects read at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

fn parse_when(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))
}

/// Runs the command; returns the exit code: 0 all valid, 1 findings, 2 incomplete.
pub async fn run(args: ValidateArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let started = Instant::now();
    let config = load_aws_config().await;
    let source = match &args.public_keys {
        Some(path) => {
            let loaded = std::fs::read_to_string(path)
                .map_err(|e| format!("public keys file {path}: {e}"))
                .and_then(|text| parse_keys_file(path, &text).map_err(|e| e.to_string()));
            match loaded {
                Ok(keys) => KeySource::Fixed(keys.into_iter().map(Into::into).collect()),
                Err(e) => {
                    let _ = writeln!(err, "trailkeeper: {e}");
                    return 2;
                }
            }
        }
        None => KeySource::Api(Box::new(CloudTrailKeys::new(&config))),
    };
    let store = Store::new(s3_client(&config));
    let relocation = match relocation(&args, &store).await {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "trailkeeper: {e}");
            return 2;
        }
    };
    let engine = Engine::with(
        store,
        KeyRing::new(source),
        args.concurrency,
        relocation,
        Limits::default(),
    );
    let scope = HistoryScope {
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        accounts: args.accounts.clone(),
        regions: args.regions.clone(),
        trail: args.trail.clone(),
        org_id: args.org_id.clone(),
        start: args.start,
        end: Some(args.end.unwrap_or_else(Utc::now)),
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let task = tokio::spawn(async move { engine.validate_history(&scope, tx).await });

    let progress = crate::progress_bar(
        args.format == Format::Text,
        "{spinner} {pos}/{len} digests [{elapsed_precise}] {wide_bar} {msg}",
    );
    let mut summary = Summary {
        fail_on_gap: args.fail_on_gap,
        ..Summary::default()
    };
    while let Some(event) = rx.recv().await {
        match event {
            Event::Listed(n) => progress.inc_length(n),
            Event::Checked => progress.inc(1),
            Event::Bytes {
                inflated,
                compressed,
            } => {
                summary.bytes += inflated;
                summary.compressed_bytes += compressed;
            }
            Event::Error(e) => {
                summary.errors += 1;
                progress.suspend(|| {
                    let _ = writeln!(err, "trailkeeper: error: {e}");
                });
            }
            Event::Verdict(v) => {
                summary.count(&v);
                progress.suspend(|| write_verdict(out, args.format, &v));
            }
        }
    }
    progress.finish_and_clear();
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            summary.errors += 1;
            let _ = writeln!(err, "trailkeeper: error: {e}");
        }
        Err(e) => {
            summary.errors += 1;
            let _ = writeln!(err, "trailkeeper: error: {e}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    match args.format {
        Format::Json => {
            let _ = writeln!(out, "{}", summary.to_json_line(seconds));
        }
        Format::Text => write_text_summary(out, &summary, seconds),
    }
    let _ = out.flush();
    summary.exit_code()
}

/// The origins of relocated history: `--relocated-from` locations and the manifest's sources.
async fn relocation(args: &ValidateArgs, store: &Store) -> Result<Option<Relocation>, String> {
    let mut origins = args
        .relocated_from
        .iter()
        .map(|from| Location::parse(from).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let current = Location::new(&args.bucket, args.prefix.as_deref());
    if let Some(uri) = &args.manifest {
        let at = Location::parse(uri).map_err(|e| e.to_string())?;
        let at = ObjectRef::new(&at.bucket, at.prefix.trim_end_matches('/'));
        let manifest = Manifest::load(store, &at)
            .await
            .map_err(|e| e.to_string())?;
        if manifest.target != current {
            return Err(format!(
                "the manifest {at} describes copies in {}, not in {current}",
                manifest.target
            ));
        }
        origins.extend(manifest.sources);
    }
    Ok((!origins.is_empty()).then(|| Relocation::new(origins, current)))
}

fn write_verdict(out: &mut dyn Write, format: Format, v: &Verdict) {
    match format {
        Format::Json => {
            let _ = writeln!(out, "{}", v.to_json_line());
        }
        // People see problems and gaps; valid files only count in the summary.
        Format::Text if v.is_finding() || v.status == Status::Gap => {
            let what = match (&v.key, v.window) {
                (Some(k), _) => format!("s3://{}/{}", v.bucket, k),
                (None, Some((from, to))) => format!(
                    "{} {} {}: {} to {}",
                    v.account,
                    v.region,
                    v.trail,
                    from.format("%Y-%m-%dT%H:%M:%SZ"),
                    to.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                (None, None) => format!("{} {} {}", v.account, v.region, v.trail),
            };
            let _ = writeln!(
                out,
                "{:<6} {:<17} {}{}",
                v.kind(),
                v.status_str().to_uppercase(),
                what,
                v.reason
                    .as_deref()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default()
            );
        }
        Format::Text => {}
    }
}

fn write_text_summary(out: &mut dyn Write, s: &Summary, seconds: f64) {
    let line = |m: &std::collections::BTreeMap<&'static str, u64>| {
        let total: u64 = m.values().sum();
        let parts: Vec<String> = m.iter().map(|(k, n)| format!("{n} {k}")).collect();
        format!(
            "{total} ({})",
            if parts.is_empty() {
                "none".into()
            } else {
                parts.join(", ")
            }
        )
    };
    let _ = writeln!(out, "digests: {}", line(&s.digests));
    let _ = writeln!(out, "logs:    {}", line(&s.logs));
    let _ = writeln!(
        out,
        "gaps: {}; errors: {}; {:.1} MB hashed in {seconds:.1} s",
        s.gaps,
        s.errors,
        s.bytes as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "{}",
        match s.exit_code() {
            0 => "result: every digest and log file in scope is valid",
            1 if s.findings() == 0 => {
                "result: GAPS: the digest chain restarted (logging or validation was off)"
            }
            1 => "result: FINDINGS: at least one digest or log file is not valid",
            _ => "result: INCOMPLETE: some objects could not be read; run again",
        }
    );
}
