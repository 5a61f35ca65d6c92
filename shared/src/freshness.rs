//! The freshness watchdog: is every stream still being fed? A trail that logs and delivers
//! puts one digest an hour in each region it records, so for every account and every region its
//! digests come from, the newest digest must be recent. When the newest digests (and their logs)
//! are deleted, no surviving digest names them, and validation alone cannot tell; their absence
//! can. A stale stream is a finding, as is a trail that is not logging or reports a delivery
//! error (`GetTrailStatus`, read by `crate::audit`).
//!
//! Regions are the digest folders found under the account's `CloudTrail-Digest/`, and always
//! the trail's home region: a region whose every digest was deleted has no folder left, and is
//! checked only if it is the home region.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::digest::key::{DigestKey, account_root, digest_region_dir};
use crate::store::{Store, StoreError};

/// The IAM actions of the watch: listing digest keys of the central bucket.
pub const CALLS: &[&str] = &["s3:ListBucket"];

/// CloudTrail delivers a digest for every hour, within about an hour of the hour's end: two
/// hours without one is a stream that stopped.
pub fn default_max_age() -> Duration {
    Duration::hours(2)
}

/// The newest digest of one region's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamAge {
    pub region: String,
    /// Its key; None when there is none in the window looked at (`max_age` and a day).
    pub newest_digest: Option<String>,
    /// Its end time (from its name).
    pub newest_end: Option<DateTime<Utc>>,
    /// Seconds from that end to the time of the check.
    pub age_seconds: Option<i64>,
    pub stale: bool,
}

/// Where the watch looks, and how old is too old.
#[derive(Clone)]
pub struct Watch {
    store: Store,
    bucket: String,
    prefix: Option<String>,
    trail: String,
    pub max_age: Duration,
}

impl Watch {
    pub fn new(
        store: Store,
        bucket: &str,
        prefix: Option<&str>,
        trail: &str,
        max_age: Duration,
    ) -> Self {
        Self {
            store,
            bucket: bucket.to_string(),
            prefix: prefix.map(str::to_string),
            trail: trail.to_string(),
            max_age,
        }
    }

    /// `--bucket B [--prefix P]`: where it watches, as `trailkeeper validate` takes it.
    pub fn validate_args(&self) -> String {
        match &self.prefix {
            Some(p) => format!("--bucket {} --prefix {p}", self.bucket),
            None => format!("--bucket {}", self.bucket),
        }
    }

    /// How far back a newest digest is looked for: beyond that, the stream is stale anyway.
    fn window(&self) -> Duration {
        self.max_age + Duration::days(1)
    }

    /// Every region the account's digests come from (and `home_region`), with its newest
    /// standard digest of the trail, judged at `now`. A trail that started logging within
    /// `max_age` (`started_logging`) has not had time to deliver: a region without any digest
    /// is not stale then (one whose newest digest is old still is: logging was off).
    pub async fn streams(
        &self,
        account: &str,
        home_region: &str,
        started_logging: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StreamAge>, StoreError> {
        let new = started_logging.is_some_and(|t| now - t <= self.max_age);
        let root = format!(
            "{}CloudTrail-Digest/",
            account_root(self.prefix.as_deref(), None, account)
        );
        let folders = self
            .store
            .list(&self.bucket, &root, None, None, Some("/"))
            .await?;
        let mut regions: Vec<String> = folders
            .prefixes
            .iter()
            .filter_map(|p| p.strip_prefix(&root)?.strip_suffix('/'))
            .map(str::to_string)
            .chain([home_region.to_string()])
            .collect();
        regions.sort();
        regions.dedup();
        let mut streams = Vec::new();
        for region in regions {
            let dir = digest_region_dir(self.prefix.as_deref(), None, account, &region);
            // Keys sort by day (`YYYY/MM/DD/`): list only the days of the window.
            let from = format!("{dir}{}", (now - self.window()).format("%Y/%m/%d"));
            let listing = self
                .store
                .list(&self.bucket, &dir, Some(&from), None, None)
                .await?;
            let newest = listing
                .keys
                .iter()
                .filter_map(|k| DigestKey::parse(k).ok().map(|d| (k, d)))
                .filter(|(_, d)| d.trail == self.trail && !d.backfill && d.account == account)
                .max_by_key(|(_, d)| d.end_time);
            let newest = newest.map(|(k, d)| (k.clone(), d.end_time));
            streams.push(self.judge(region, newest, new, now));
        }
        Ok(streams)
    }

    fn judge(
        &self,
        region: String,
        newest: Option<(String, DateTime<Utc>)>,
        new: bool,
        now: DateTime<Utc>,
    ) -> StreamAge {
        let age = newest.as_ref().map(|(_, end)| now - *end);
        StreamAge {
            region,
            stale: match age {
                Some(a) => a > self.max_age,
                None => !new,
            },
            age_seconds: age.map(|a| a.num_seconds()),
            newest_end: newest.as_ref().map(|(_, end)| *end),
            newest_digest: newest.map(|(k, _)| k),
        }
    }

    /// One finding per stale stream, naming the region, the newest digest and its age.
    pub fn findings(&self, account: &str, streams: &[StreamAge]) -> Vec<String> {
        streams
            .iter()
            .filter(|s| s.stale)
            .map(|s| match (&s.newest_digest, s.age_seconds) {
                (Some(key), Some(age)) => format!(
                    "account {account} region {}: the newest digest of trail {} is {} old, more than {}: digests stopped arriving or were deleted (s3://{}/{key})",
                    s.region,
                    self.trail,
                    age_text(age),
                    age_text(self.max_age.num_seconds()),
                    self.bucket
                ),
                _ => format!(
                    "account {account} region {}: no digest of trail {} in the last {}: digests stopped arriving or were deleted",
                    s.region,
                    self.trail,
                    age_text(self.window().num_seconds())
                ),
            })
            .collect()
    }
}

/// The hourly check as one CloudWatch embedded-metric-format record: streams watched and
/// stale, with the stale ones named (`account/region`).
pub fn metrics_record(streams: &[(String, StreamAge)], now: DateTime<Utc>) -> serde_json::Value {
    let stale: Vec<String> = streams
        .iter()
        .filter(|(_, s)| s.stale)
        .map(|(a, s)| format!("{a}/{}", s.region))
        .collect();
    serde_json::json!({
        "_aws": crate::report::emf_metadata(now, &[("StreamsWatched", "Count"), ("StreamsStale", "Count")]),
        "StreamsWatched": streams.len(),
        "StreamsStale": stale.len(),
        "stale": stale,
    })
}

/// `3h05m`, `45m`, `2d1h`: an age for people.
pub fn age_text(seconds: i64) -> String {
    let m = seconds.max(0) / 60;
    let (d, h, m) = (m / 1440, (m / 60) % 24, m % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .build(),
        );
        Watch::new(
            Store::new(s3),
            "central",
            None,
            "trailkeeper",
            default_max_age(),
        )
    }

    #[test]
    fn a_stream_is_stale_past_the_bound_and_without_a_digest() {
        let w = watch();
        let now = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .to_utc();
        let at = |h: i64| Some(("k".to_string(), now - Duration::minutes(h)));
        assert!(!w.judge("us-east-1".into(), at(119), false, now).stale);
        assert!(!w.judge("us-east-1".into(), at(120), false, now).stale);
        let old = w.judge("eu-west-1".into(), at(185), false, now);
        assert!(old.stale);
        assert_eq!(old.age_seconds, Some(185 * 60));
        assert!(
            w.judge("eu-west-1".into(), at(185), true, now).stale,
            "restarted: still a gap"
        );
        let none = w.judge("eu-west-1".into(), None, false, now);
        assert!(none.stale && none.age_seconds.is_none());
        assert!(
            !w.judge("eu-west-1".into(), None, true, now).stale,
            "a new trail"
        );
        let f = w.findings(
            "111122223333",
            &[old, none, w.judge("x".into(), at(5), false, now)],
        );
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].starts_with("account 111122223333 region eu-west-1: the newest digest of trail trailkeeper is 3h05m old, more than 2h00m"),
            "{}",
            f[0]
        );
        assert!(
            f[1].contains("no digest of trail trailkeeper in the last 1d2h"),
            "{}",
            f[1]
        );
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age_text(59), "0m");
        assert_eq!(age_text(45 * 60), "45m");
        assert_eq!(age_text(2 * 3600), "2h00m");
        assert_eq!(age_text(26 * 3600 + 60), "1d2h");
    }
}
