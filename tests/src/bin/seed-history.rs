//! Writes signed CloudTrail-format history into a bucket on the local emulator, as CloudTrail
//! would deliver it, and serves the signing key through the emulator's ListPublicKeys. For the
//! demo, benchmarks and trying `trailkeeper validate` by hand; never for real AWS.

use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use trailkeeper::testdata::{Generator, History, LogSize, TestKey, TrailLayout, gzip};
use trailkeeper_e2e::{create_bucket, register_keys, s3, upload};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bucket: String,
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long, default_value = "111122223333")]
    account: String,
    /// Regions the trail delivers from (repeatable).
    #[arg(long = "region", default_values_t = vec!["us-east-1".to_string()])]
    regions: Vec<String>,
    #[arg(long, default_value = "trailkeeper")]
    trail: String,
    #[arg(long)]
    org_id: Option<String>,
    /// First hour (RFC 3339).
    #[arg(long, default_value = "2026-11-01T00:04:12Z")]
    start: DateTime<Utc>,
    #[arg(long, default_value_t = 6)]
    hours: usize,
    #[arg(long, default_value_t = 2)]
    logs_per_hour: usize,
    #[arg(long, default_value_t = 20)]
    events_per_log: usize,
    /// Vary log sizes as CloudTrail does, from 1 KB to a few MB gzipped (ignores
    /// --events-per-log).
    #[arg(long)]
    realistic_sizes: bool,
    /// Replace the content of this many log files, spread evenly, after signing: each is a
    /// finding every validator must report. Their keys go to stderr.
    #[arg(long, default_value_t = 0)]
    tamper_logs: usize,
    /// Stop logging after this many hours, for --stopped-hours, then start again: CloudTrail
    /// begins a new chain, which validators report as a gap.
    #[arg(long)]
    stop_after: Option<usize>,
    #[arg(long, default_value_t = 3)]
    stopped_hours: i64,
    /// Also write every object, as uploaded, under this directory (its key is the path).
    #[arg(long)]
    local_dir: Option<std::path::PathBuf>,
    /// Create the bucket first.
    #[arg(long)]
    create_bucket: bool,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let key = TestKey::generate(a.start - Duration::days(1), a.start + Duration::days(60));
    register_keys(&[&key]);
    let s3 = s3().await;
    if a.create_bucket {
        create_bucket(&s3, &a.bucket).await;
    }
    let mut history = History::default();
    for (i, region) in a.regions.iter().enumerate() {
        let layout = TrailLayout {
            bucket: a.bucket.clone(),
            prefix: a.prefix.clone(),
            org_id: a.org_id.clone(),
            account: a.account.clone(),
            region: region.clone(),
            trail: a.trail.clone(),
            home_region: a.regions[0].clone(),
        };
        let mut g = Generator::new(layout, &key, i as u64 + 1);
        g.log_size = if a.realistic_sizes {
            LogSize::Realistic
        } else {
            LogSize::Events(a.events_per_log)
        };
        let logs = a.logs_per_hour;
        match a.stop_after.filter(|n| (1..a.hours).contains(n)) {
            Some(n) => {
                let before = g.chain(a.start, n, None, |_| logs);
                let last = before.digests.last().expect("at least one hour").clone();
                history.extend(before);
                let stopped = Duration::hours(a.stopped_hours);
                history.extend(g.restart(&last, stopped, a.hours - n, |_| logs));
            }
            None => history.extend(g.chain(a.start, a.hours, None, |_| logs)),
        }
    }
    if a.tamper_logs > 0 {
        let step = history
            .logs
            .len()
            .checked_div(a.tamper_logs)
            .unwrap_or(1)
            .max(1);
        for log in history.logs.iter_mut().step_by(step).take(a.tamper_logs) {
            log.body = gzip(br#"{"Records":[]}"#);
            eprintln!("seed-history: tampered s3://{}/{}", a.bucket, log.key);
        }
    }
    if let Some(dir) = &a.local_dir {
        for o in history.objects() {
            let path = dir.join(&o.key);
            std::fs::create_dir_all(path.parent().expect("key has a folder"))
                .and_then(|()| std::fs::write(&path, &o.body))
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }
    upload(&s3, &a.bucket, &history).await;
    let bytes: usize = history.objects().map(|o| o.body.len()).sum();
    eprintln!(
        "seed-history: {} digests and {} log files ({bytes} bytes gzipped) in s3://{}, signed by key {}",
        history.digests.len(),
        history.logs.len(),
        a.bucket,
        key.fingerprint
    );
    for d in &history.digests {
        println!("{}", d.object.key);
    }
}
