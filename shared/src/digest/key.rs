//! CloudTrail object key names: where digests and logs live in the bucket.
//!
//! `[prefix/]AWSLogs/[o-orgid/]ACCT/CloudTrail-Digest/REGION/Y/M/D/
//!  ACCT_CloudTrail-Digest_REGION_TRAIL_HOMEREGION_YYYYMMDDTHHMMSSZ[_backfill].json.gz`

use chrono::{DateTime, NaiveDateTime, Utc};

pub const DIGEST_DIR: &str = "CloudTrail-Digest";
pub const LOG_DIR: &str = "CloudTrail";
const LOGS_ROOT: &str = "AWSLogs";
const KEY_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const LOG_TIME_FORMAT: &str = "%Y%m%dT%H%MZ";

/// Why a key is not a CloudTrail digest key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key:?} is not a CloudTrail digest key: {why}")]
pub struct KeyNameError {
    pub key: String,
    pub why: &'static str,
}

/// The parts of a digest's key name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DigestKey {
    /// The trail's S3 key prefix, without the trailing `/`.
    pub prefix: Option<String>,
    /// `o-…` for organization trails.
    pub org_id: Option<String>,
    pub account: String,
    /// The region the digest was delivered from, whose keys signed it.
    pub region: String,
    pub trail: String,
    pub home_region: String,
    /// The digest's end time, as written in the name.
    pub end_time: DateTime<Utc>,
    pub backfill: bool,
}

/// One chain of digests: the same trail, account and region, standard or backfill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub account: String,
    pub region: String,
    pub trail: String,
    pub home_region: String,
    pub org_id: Option<String>,
    pub backfill: bool,
}

pub fn is_account_id(s: &str) -> bool {
    crate::events::AccountId::new(s).is_ok()
}

fn is_org_id(s: &str) -> bool {
    s.len() > 2
        && s.starts_with("o-")
        && s[2..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// The account's root: `[prefix/]AWSLogs/[o-org/]ACCT/`.
pub fn account_root(prefix: Option<&str>, org_id: Option<&str>, account: &str) -> String {
    let mut s = logs_root(prefix);
    if let Some(org) = org_id {
        s.push_str(org);
        s.push('/');
    }
    s.push_str(account);
    s.push('/');
    s
}

/// `[prefix/]AWSLogs/`.
pub fn logs_root(prefix: Option<&str>) -> String {
    match prefix
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(p) => format!("{p}/{LOGS_ROOT}/"),
        None => format!("{LOGS_ROOT}/"),
    }
}

/// The path of any object CloudTrail writes:
/// `[prefix/]AWSLogs/[o-orgid/]ACCT/DIR/REGION/YYYY/MM/DD/FILE`.
struct Layout<'k> {
    prefix: Option<String>,
    org_id: Option<String>,
    account: &'k str,
    dir: &'k str,
    region: &'k str,
    file: &'k str,
}

impl<'k> Layout<'k> {
    fn parse(key: &'k str) -> Result<Self, KeyNameError> {
        let err = |why| KeyNameError {
            key: key.to_string(),
            why,
        };
        let segments: Vec<&str> = key.split('/').collect();
        // The first AWSLogs segment starts the layout. CloudTrail refuses a prefix containing
        // `AWSLogs/`, so `AWSLogs/B/AWSLogs/A/...` is B's tree with a bogus path, not A's.
        let root = segments
            .iter()
            .position(|s| *s == LOGS_ROOT)
            .ok_or_else(|| err("no AWSLogs segment"))?;
        let prefix = (root > 0).then(|| segments[..root].join("/"));
        let mut rest = &segments[root + 1..];
        let org_id = match rest.first() {
            Some(s) if s.starts_with("o-") => {
                if !is_org_id(s) {
                    return Err(err("malformed organization id"));
                }
                rest = &rest[1..];
                Some(s.to_string())
            }
            _ => None,
        };
        let &[account, dir, region, year, month, day, file] = rest else {
            return Err(err("wrong number of path segments"));
        };
        if !is_account_id(account) {
            return Err(err("account is not 12 digits"));
        }
        if !is_region(region) {
            return Err(err("malformed region"));
        }
        if !(is_digits(year, 4) && is_digits(month, 2) && is_digits(day, 2)) {
            return Err(err("malformed date folders"));
        }
        Ok(Self {
            prefix,
            org_id,
            account,
            dir,
            region,
            file,
        })
    }
}

/// The parts of a CloudTrail log file's key name:
/// `[prefix/]AWSLogs/[o-orgid/]ACCT/CloudTrail/REGION/Y/M/D/ACCT_CloudTrail_REGION_YYYYMMDDTHHMMZ_UNIQUE.json.gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey {
    pub account: String,
    pub region: String,
    /// The minute of delivery written in the name.
    pub time: DateTime<Utc>,
}

impl LogKey {
    pub fn parse(key: &str) -> Option<Self> {
        let l = Layout::parse(key).ok()?;
        let head = format!("{}_{LOG_DIR}_{}_", l.account, l.region);
        let rest = l
            .file
            .strip_prefix(head.as_str())
            .and_then(|r| r.strip_suffix(".json.gz"))?;
        let (stamp, unique) = rest.split_once('_')?;
        let exact = l.dir == LOG_DIR
            && !unique.is_empty()
            && stamp.len() == 14
            && stamp.as_bytes()[8] == b'T'
            && stamp.ends_with('Z')
            && is_digits(&stamp[..8], 8)
            && is_digits(&stamp[9..13], 4);
        if !exact {
            return None;
        }
        let time = NaiveDateTime::parse_from_str(stamp, LOG_TIME_FORMAT)
            .ok()?
            .and_utc();
        Some(Self {
            account: l.account.to_string(),
            region: l.region.to_string(),
            time,
        })
    }
}

/// Whether `key` is a CloudTrail log file (see [`LogKey`]).
pub fn is_log_key(key: &str) -> bool {
    LogKey::parse(key).is_some()
}

impl DigestKey {
    pub fn parse(key: &str) -> Result<Self, KeyNameError> {
        let err = |why| KeyNameError {
            key: key.to_string(),
            why,
        };
        let Layout {
            prefix,
            org_id,
            account,
            dir,
            region,
            file,
        } = Layout::parse(key)?;
        if dir != DIGEST_DIR {
            return Err(err("not under CloudTrail-Digest/"));
        }
        let head = format!("{account}_{DIGEST_DIR}_{region}_");
        let body = file.strip_prefix(head.as_str()).ok_or_else(|| {
            err("file name does not start with ACCOUNT_CloudTrail-Digest_REGION_")
        })?;
        let (body, backfill) = match body.strip_suffix("_backfill.json.gz") {
            Some(b) => (b, true),
            None => (
                body.strip_suffix(".json.gz")
                    .ok_or_else(|| err("not a .json.gz file"))?,
                false,
            ),
        };
        let (trail_and_home, stamp) = body.rsplit_once('_').ok_or_else(|| err("no timestamp"))?;
        let (trail, home_region) = trail_and_home
            .rsplit_once('_')
            .ok_or_else(|| err("no trail home region"))?;
        if trail.is_empty() || !is_region(home_region) {
            return Err(err("malformed trail name or home region"));
        }
        let exact = stamp.len() == 16
            && stamp.as_bytes()[8] == b'T'
            && stamp.ends_with('Z')
            && is_digits(&stamp[..8], 8)
            && is_digits(&stamp[9..15], 6);
        if !exact {
            return Err(err("malformed timestamp"));
        }
        let end_time = NaiveDateTime::parse_from_str(stamp, KEY_TIME_FORMAT)
            .map_err(|_| err("malformed timestamp"))?
            .and_utc();
        Ok(Self {
            prefix,
            org_id,
            account: account.to_string(),
            region: region.to_string(),
            trail: trail.to_string(),
            home_region: home_region.to_string(),
            end_time,
            backfill,
        })
    }

    pub fn stream(&self) -> StreamId {
        StreamId {
            account: self.account.clone(),
            region: self.region.clone(),
            trail: self.trail.clone(),
            home_region: self.home_region.clone(),
            org_id: self.org_id.clone(),
            backfill: self.backfill,
        }
    }

    /// The key this digest is stored under.
    pub fn to_key(&self) -> String {
        let t = self.end_time;
        format!(
            "{root}{DIGEST_DIR}/{region}/{date}/{account}_{DIGEST_DIR}_{region}_{trail}_{home}_{stamp}{suffix}.json.gz",
            root = account_root(
                self.prefix.as_deref(),
                self.org_id.as_deref(),
                &self.account
            ),
            region = self.region,
            date = t.format("%Y/%m/%d"),
            account = self.account,
            trail = self.trail,
            home = self.home_region,
            stamp = t.format(KEY_TIME_FORMAT),
            suffix = if self.backfill { "_backfill" } else { "" },
        )
    }
}

/// The folder that holds one region's digests of one account.
pub fn digest_region_dir(
    prefix: Option<&str>,
    org_id: Option<&str>,
    account: &str,
    region: &str,
) -> String {
    format!(
        "{}{DIGEST_DIR}/{region}/",
        account_root(prefix, org_id, account)
    )
}

/// The folder that holds one region's logs of one account.
pub fn log_region_dir(
    prefix: Option<&str>,
    org_id: Option<&str>,
    account: &str,
    region: &str,
) -> String {
    format!(
        "{}{LOG_DIR}/{region}/",
        account_root(prefix, org_id, account)
    )
}

/// The key CloudTrail gives a log file.
pub fn log_key(
    prefix: Option<&str>,
    org_id: Option<&str>,
    account: &str,
    region: &str,
    time: DateTime<Utc>,
    unique: &str,
) -> String {
    format!(
        "{root}{LOG_DIR}/{region}/{date}/{account}_{LOG_DIR}_{region}_{stamp}_{unique}.json.gz",
        root = account_root(prefix, org_id, account),
        date = time.format("%Y/%m/%d"),
        stamp = time.format(LOG_TIME_FORMAT),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: &str = "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_your-trail-name_us-east-2_20150817T150131Z.json.gz";

    #[test]
    fn parses_the_documented_layout_and_round_trips() {
        let k = DigestKey::parse(STANDARD).unwrap();
        assert_eq!(k.prefix, None);
        assert_eq!(k.org_id, None);
        assert_eq!(k.account, "111122223333");
        assert_eq!(k.region, "us-east-2");
        assert_eq!(k.trail, "your-trail-name");
        assert_eq!(k.home_region, "us-east-2");
        assert_eq!(k.end_time.to_rfc3339(), "2015-08-17T15:01:31+00:00");
        assert!(!k.backfill);
        assert_eq!(k.to_key(), STANDARD);
    }

    #[test]
    fn parses_org_trails_prefixes_backfill_and_underscored_trail_names() {
        let key = "logs/central/AWSLogs/o-abc123def4/327878933619/CloudTrail-Digest/ap-northeast-1/2023/10/15/327878933619_CloudTrail-Digest_ap-northeast-1_llm_guard_trail_us-west-2_20231015T230404Z_backfill.json.gz";
        let k = DigestKey::parse(key).unwrap();
        assert_eq!(k.prefix.as_deref(), Some("logs/central"));
        assert_eq!(k.org_id.as_deref(), Some("o-abc123def4"));
        assert_eq!(k.account, "327878933619");
        assert_eq!(k.region, "ap-northeast-1");
        assert_eq!(k.trail, "llm_guard_trail");
        assert_eq!(k.home_region, "us-west-2");
        assert!(k.backfill);
        assert_eq!(k.to_key(), key);
    }

    #[test]
    fn rejects_keys_that_are_not_digests() {
        for key in [
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1500Z_abc.json.gz",
            "AWSLogs/11112222333/CloudTrail-Digest/us-east-2/2015/08/17/11112222333_CloudTrail-Digest_us-east-2_t_us-east-2_20150817T150131Z.json.gz",
            // the file name's account differs from the folder's
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/444455556666_CloudTrail-Digest_us-east-2_t_us-east-2_20150817T150131Z.json.gz",
            // nested under another account's tree
            "AWSLogs/444455556666/AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_t_us-east-2_20150817T150131Z.json.gz",
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_t_us-east-2_20150817T150131Z.json",
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_t_us-east-2_2015081T150131Z.json.gz",
            "",
            "AWSLogs/",
        ] {
            assert!(DigestKey::parse(key).is_err(), "{key}");
        }
    }

    #[test]
    fn log_keys_are_recognized_and_nothing_else_is() {
        let t = DateTime::parse_from_rfc3339("2015-08-17T14:05:00Z")
            .unwrap()
            .to_utc();
        for key in [
            log_key(None, None, "111122223333", "us-east-2", t, "abc"),
            log_key(
                Some("p/q"),
                Some("o-abc123"),
                "111122223333",
                "eu-west-1",
                t,
                "x_y",
            ),
        ] {
            assert!(is_log_key(&key), "{key}");
        }
        for key in [
            STANDARD,
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1500Z_.json.gz",
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/444455556666_CloudTrail_us-east-2_20150817T1500Z_abc.json.gz",
            "AWSLogs/111122223333/Config/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1500Z_abc.json.gz",
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1500_abc.json.gz",
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/8/17/111122223333_CloudTrail_us-east-2_20150817T1500Z_abc.json.gz",
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1500Z_abc.json",
        ] {
            assert!(!is_log_key(key), "{key}");
        }
    }

    #[test]
    fn a_log_key_gives_its_account_region_and_minute() {
        let t = DateTime::parse_from_rfc3339("2015-08-17T14:05:00Z")
            .unwrap()
            .to_utc();
        let key = log_key(Some("p"), None, "111122223333", "us-east-2", t, "abc");
        assert_eq!(
            LogKey::parse(&key),
            Some(LogKey {
                account: "111122223333".into(),
                region: "us-east-2".into(),
                time: t,
            })
        );
        assert!(
            log_region_dir(Some("p"), None, "111122223333", "us-east-2")
                .starts_with("p/AWSLogs/111122223333/CloudTrail/us-east-2/")
        );
        assert!(key.starts_with(&log_region_dir(
            Some("p"),
            None,
            "111122223333",
            "us-east-2"
        )));
    }

    #[test]
    fn log_keys_follow_the_cloudtrail_layout() {
        let t = DateTime::parse_from_rfc3339("2015-08-17T14:05:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            log_key(Some("p"), None, "111122223333", "us-east-2", t, "abc"),
            "p/AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1405Z_abc.json.gz"
        );
    }
}
