//! Which log files the digests vouch for, and so which ones no digest does: a log object that no
//! digest lists, in an hour that digests of its account and region cover, was not delivered by
//! CloudTrail as it stands (the AWS CLI only checks the logs that digests list).

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use crate::digest::file::format_time;
use crate::digest::key::{LogKey, StreamId};
use crate::report::{LogStatus, Status, Verdict};
use crate::store::ObjectRef;

/// The time a digest covers, `[digestStartTime, digestEndTime]`.
pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// An authentic digest's window, and who it is.
#[derive(Debug, Clone)]
struct Vouching {
    window: Window,
    stream: StreamId,
    key: String,
}

/// What the digests of one account and region say about which logs exist.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Logs that an authentic digest lists, where they are now.
    listed: HashSet<ObjectRef>,
    vouching: Vec<Vouching>,
    /// Windows of digests whose content is unknown (missing, unreadable, not authentic, or not
    /// in scope): what they list cannot be known, so logs in them are not judged.
    unknown: Vec<Window>,
}

impl Coverage {
    /// An authentic digest covering `window` that lists `logs`.
    pub fn vouched(
        &mut self,
        window: Window,
        stream: StreamId,
        key: &str,
        logs: impl IntoIterator<Item = ObjectRef>,
    ) {
        self.listed.extend(logs);
        self.vouching.push(Vouching {
            window,
            stream,
            key: key.to_string(),
        });
    }

    /// A digest whose list of logs is not known.
    pub fn unknown(&mut self, window: Window) {
        self.unknown.push(window);
    }

    /// The window a digest's key name implies (CloudTrail names a digest by its end time, and
    /// digests cover an hour): for digests whose own claim cannot be trusted.
    pub fn key_window(end_time: DateTime<Utc>) -> Window {
        (end_time - Duration::hours(1), end_time)
    }

    pub fn merge(&mut self, other: Coverage) {
        self.listed.extend(other.listed);
        self.vouching.extend(other.vouching);
        self.unknown.extend(other.unknown);
    }

    /// The `unreferenced` logs among `logs` (keys in `bucket`, of the account and region of
    /// these digests) whose delivery minute `[T, T + 60 s)` starts in `[from, until]`. A log is
    /// judged only where the record is settled: its minute lies wholly within the time that
    /// digests cover without a break (a minute that begins before a chain's first digest, or
    /// ends after the newest one, may hold a delivery no digest was due to list), and overlaps
    /// no window of a digest whose list is unknown.
    pub fn unreferenced<'k>(
        &self,
        bucket: &str,
        logs: impl IntoIterator<Item = &'k str>,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Vec<Verdict> {
        let vouching = Intervals::new(self.vouching.iter().map(|v| v.window).collect());
        let unknown = Intervals::new(self.unknown.clone());
        let all = Intervals::new(
            self.vouching
                .iter()
                .map(|v| v.window)
                .chain(self.unknown.iter().copied())
                .collect(),
        );
        let mut out = Vec::new();
        for key in logs {
            let location = ObjectRef::new(bucket, key);
            if self.listed.contains(&location) {
                continue;
            }
            let Some(log) = LogKey::parse(key) else {
                continue;
            };
            let (t, t_end) = (log.time, log.time + Duration::seconds(60));
            if from.is_some_and(|f| t < f) || until.is_some_and(|u| t > u) {
                continue;
            }
            if !all.contain(t, t_end) || unknown.overlapping(t, t_end).is_some() {
                continue;
            }
            let Some(i) = vouching.overlapping(t, t_end) else {
                continue;
            };
            let by = &self.vouching[vouching.order[i]];
            if by.stream.account != log.account || by.stream.region != log.region {
                continue;
            }
            out.push(
                Verdict::at(Status::Log(LogStatus::Unreferenced), &by.stream, &location).because(
                    format!(
                        "no digest lists it, yet {} covers its delivery minute {}",
                        by.key,
                        format_time(t)
                    ),
                ),
            );
        }
        out
    }
}

/// Windows sorted by start, for overlap and containment questions in logarithmic time.
struct Intervals {
    sorted: Vec<Window>,
    /// `order[i]`: the index, in the input, of `sorted[i]`.
    order: Vec<usize>,
    /// The latest end among `sorted[..=i]`.
    max_end: Vec<DateTime<Utc>>,
    /// The union, as disjoint spans in order.
    spans: Vec<Window>,
}

impl Intervals {
    fn new(windows: Vec<Window>) -> Self {
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| windows[i]);
        let sorted: Vec<Window> = order.iter().map(|&i| windows[i]).collect();
        let mut max_end = Vec::with_capacity(sorted.len());
        let mut spans: Vec<Window> = Vec::new();
        for &(s, e) in &sorted {
            let m = max_end.last().map_or(e, |&m: &DateTime<Utc>| m.max(e));
            max_end.push(m);
            match spans.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => spans.push((s, e)),
            }
        }
        Self {
            sorted,
            order,
            max_end,
            spans,
        }
    }

    /// The position (in `sorted`) of the latest-starting window that overlaps `[from, until)`.
    fn overlapping(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Option<usize> {
        let n = self.sorted.partition_point(|w| w.0 < until);
        if n == 0 || self.max_end[n - 1] < from {
            return None;
        }
        (0..n).rev().find(|&i| self.sorted[i].1 >= from)
    }

    /// Whether `[from, until)` lies wholly within one span of the union.
    fn contain(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> bool {
        let n = self.spans.partition_point(|s| s.0 <= from);
        n > 0 && self.spans[n - 1].1 >= until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::key::log_key;

    fn t(m: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_775_030_652 + m * 60, 0).unwrap()
    }

    fn stream() -> StreamId {
        StreamId {
            account: "111122223333".into(),
            region: "us-east-1".into(),
            trail: "trailkeeper".into(),
            home_region: "us-east-1".into(),
            org_id: None,
            backfill: false,
        }
    }

    fn log(m: i64, unique: &str) -> String {
        log_key(None, None, "111122223333", "us-east-1", t(m), unique)
    }

    /// Three hours of digests, the middle one not authentic.
    fn coverage(listed: &[&str]) -> Coverage {
        let mut c = Coverage::default();
        c.vouched(
            (t(0), t(60)),
            stream(),
            "d1",
            listed.iter().map(|k| ObjectRef::new("b", *k)),
        );
        c.unknown(Coverage::key_window(t(120)));
        c.vouched((t(120), t(180)), stream(), "d3", []);
        c
    }

    #[test]
    fn only_unlisted_logs_in_settled_covered_time_are_unreferenced() {
        let listed = log(10, "listed");
        let c = coverage(&[&listed]);
        let keys = [
            listed.clone(),
            log(20, "forged"),
            log(90, "in-the-unknown-hour"),
            log(180, "newest-minute"),
            log(200, "too-recent"),
            log(0, "first-minute"),
            log(-5, "before"),
            "AWSLogs/111122223333/CloudTrail/us-east-1/2026/04/01/not-a-log".into(),
        ];
        let found = c.unreferenced("b", keys.iter().map(String::as_str), None, None);
        let keys: Vec<&str> = found.iter().filter_map(|v| v.key.as_deref()).collect();
        assert_eq!(keys, vec![log(20, "forged").as_str()]);
        assert_eq!(found[0].status, Status::Log(LogStatus::Unreferenced));
        assert!(
            found[0]
                .reason
                .as_deref()
                .unwrap()
                .starts_with("no digest lists it, yet d1 covers"),
            "{:?}",
            found[0].reason
        );
    }

    #[test]
    fn a_window_bounds_what_is_judged() {
        let c = coverage(&[]);
        let keys = [log(20, "a"), log(150, "b")];
        let found = c.unreferenced("b", keys.iter().map(String::as_str), Some(t(100)), None);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key.as_deref(), Some(log(150, "b").as_str()));
    }

    #[test]
    fn a_minute_across_two_digests_is_judged_and_a_minute_across_a_gap_is_not() {
        let mut c = Coverage::default();
        c.vouched((t(0), t(60) + Duration::seconds(12)), stream(), "d1", []);
        c.vouched((t(60) + Duration::seconds(12), t(120)), stream(), "d2", []);
        c.vouched((t(300), t(360)), stream(), "d3", []);
        let keys = [
            log(60, "straddles"),
            log(120, "chain-end"),
            log(300, "chain-start"),
            log(301, "after-chain-start"),
        ];
        let found = c.unreferenced("b", keys.iter().map(String::as_str), None, None);
        let keys: Vec<&str> = found.iter().filter_map(|v| v.key.as_deref()).collect();
        assert_eq!(
            keys,
            vec![
                log(60, "straddles").as_str(),
                log(301, "after-chain-start").as_str()
            ]
        );
    }
}
