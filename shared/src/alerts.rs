//! Findings for the person on call: one SNS message per finding, saying what, where, since when,
//! and the command that reproduces it.

use chrono::{DateTime, Utc};

use crate::digest::file::format_time;
use crate::report::Verdict;

/// The IAM actions this module's AWS calls need (see `crate::store::CALLS`).
pub const CALLS: &[&str] = &["sns:Publish"];

#[derive(Debug, thiserror::Error)]
#[error("publishing the alert {subject:?} to {topic}: {message}")]
pub struct AlertError {
    pub topic: String,
    pub subject: String,
    pub message: String,
}

/// One alert, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// SNS subjects are at most 100 ASCII characters.
    pub subject: String,
    pub message: String,
}

impl Alert {
    /// The alert for one finding about the digest that covered `period`.
    pub fn for_finding(
        finding: &Verdict,
        digest_key: Option<&str>,
        period: (DateTime<Utc>, DateTime<Utc>),
    ) -> Self {
        let kind = finding.kind_name();
        let mut subject = format!(
            "trailkeeper: {} {} in account {} {}",
            kind,
            finding.status_str(),
            finding.account,
            finding.region
        );
        subject.truncate(100);
        let location = match &finding.key {
            Some(k) => format!("s3://{}/{}", finding.bucket, k),
            None => format!("s3://{}/ (the object's name is unknown)", finding.bucket),
        };
        let (from, until) = finding.window.unwrap_or(period);
        let mut message = format!(
            "trailkeeper found a problem in the CloudTrail history of account {account}, region {region} (trail {trail}).\n\n\
             What:   {kind} is {status}{reason}\n\
             Where:  {location}\n",
            account = finding.account,
            region = finding.region,
            trail = finding.trail,
            status = finding.status_str(),
            reason = finding
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
        );
        if let Some(d) = digest_key.filter(|d| finding.key.as_deref() != Some(*d)) {
            message.push_str(&format!("Digest: s3://{}/{d}\n", finding.bucket));
        }
        message.push_str(&format!(
            "When:   the hour from {} to {}\n\n\
             Reproduce with:\n  {}\n",
            format_time(from),
            format_time(until),
            reproduce_command(finding, period),
        ));
        Self { subject, message }
    }
}

/// The `trailkeeper validate` command that judges the digest of `period` again, as the finding
/// was judged (alerts and Security Hub's remediation text). A gap is judged from its start, and
/// fails the run with `--fail-on-gap`.
pub fn reproduce_command(finding: &Verdict, period: (DateTime<Utc>, DateTime<Utc>)) -> String {
    use crate::report::{LogStatus, Status};
    let (start, gap) = match finding.status {
        Status::Gap => (finding.window.map_or(period.1, |w| w.0), " --fail-on-gap"),
        // The sweep judged a whole day: validate that day again.
        Status::Log(LogStatus::Unreferenced) => (period.0, ""),
        _ => (period.1, ""),
    };
    format!(
        "trailkeeper validate --bucket {} --account {} --region {} --trail {} --start {} --end {}{gap}",
        finding.bucket,
        finding.account,
        finding.region,
        finding.trail,
        format_time(start),
        format_time(period.1),
    )
}

impl Alert {
    /// The alert for a chain restart found before the digest `digest_key`: the hours in which no
    /// digest chain vouches for the record (logging or log file validation was off).
    pub fn for_gap(
        gap: &Verdict,
        digest_key: &str,
        period: (DateTime<Utc>, DateTime<Utc>),
    ) -> Self {
        let (from, until) = gap.window.unwrap_or(period);
        let hours = gap.hours().unwrap_or_default();
        let mut subject = format!(
            "trailkeeper: digest chain gap of {hours:.1} hours in account {} {}",
            gap.account, gap.region
        );
        subject.truncate(100);
        let message = format!(
            "trailkeeper found a gap in the CloudTrail history of account {account}, region {region} (trail {trail}).\n\n\
             What:   {reason}\n\
             Digest: s3://{bucket}/{digest_key} (the first digest of the new chain)\n\
             When:   from {from} to {until}\n\n\
             StopLogging, or turning log file validation off, leaves such a gap: look for StopLogging,\n\
             UpdateTrail and DeleteTrail in the account's CloudTrail events of that time.\n\n\
             Reproduce with:\n  {command}\n",
            account = gap.account,
            region = gap.region,
            trail = gap.trail,
            reason = gap.reason.as_deref().unwrap_or("no digest chain"),
            bucket = gap.bucket,
            from = format_time(from),
            until = format_time(until),
            command = reproduce_command(gap, period),
        );
        Self { subject, message }
    }

    /// The alert for an account the scheduled audit found uncovered or could not read; `None`
    /// for a covered account.
    pub fn for_account_audit(audit: &crate::audit::AccountAudit) -> Option<Self> {
        let (what, lines): (&str, Vec<&str>) = match &audit.error {
            Some(e) => ("could not be audited", vec![e.as_str()]),
            None if audit.covered() => return None,
            None => (
                "is not covered",
                audit.findings.iter().map(String::as_str).collect(),
            ),
        };
        let mut subject = format!("trailkeeper: account {} {what}", audit.account);
        subject.truncate(100);
        let mut message = format!(
            "trailkeeper's daily audit found that account {} {what}:\n\n",
            audit.account
        );
        for line in lines {
            message.push_str(&format!("  - {line}\n"));
        }
        message.push_str(&format!(
            "\nReproduce with:\n  trailkeeper audit --account {}\nRepair with:\n  trailkeeper onboard --account {}\n",
            audit.account, audit.account
        ));
        Some(Self { subject, message })
    }
}

impl Alert {
    /// The hourly freshness check's alerts for one account (`crate::freshness`): one per stale
    /// stream, naming its region, and one for a trail that is not logging or reports a failed
    /// delivery; none when every stream is fed.
    pub fn for_freshness(
        audit: &crate::audit::AccountAudit,
        watch: &crate::freshness::Watch,
    ) -> Vec<Self> {
        let account = audit.account;
        let mut alerts = Vec::new();
        for s in audit.streams.iter().flatten().filter(|s| s.stale) {
            let what = match s.age_seconds {
                Some(age) => format!("no digest for {}", crate::freshness::age_text(age)),
                None => "no digest".to_string(),
            };
            let mut subject = format!("trailkeeper: account {account} region {}: {what}", s.region);
            subject.truncate(100);
            let finding = watch
                .findings(account.as_str(), std::slice::from_ref(s))
                .join("\n  - ");
            let since = s
                .newest_end
                .map(|t| format!(" --start {}", format_time(t)))
                .unwrap_or_default();
            let message = format!(
                "trailkeeper's hourly freshness check found that the CloudTrail history of account {account}, region {region}, is no longer fed:\n\n  - {finding}\n\n\
                 The trail may have stopped or been diverted, its bucket or key policy may refuse it, or the newest digests and logs were deleted.\n\n\
                 Reproduce with:\n  trailkeeper audit --account {account} --freshness\n  trailkeeper validate {location} --account {account} --region {region}{since}\n",
                region = s.region,
                location = watch.validate_args(),
            );
            alerts.push(Self { subject, message });
        }
        if let Some(t) = &audit.trail {
            // A trail that logs and delivers, but records less: as urgent as one that stopped.
            for d in t
                .drift
                .iter()
                .filter(|d| d.setting == crate::trail::EVENT_SELECTORS)
            {
                let mut subject = format!(
                    "trailkeeper: account {account}: the trail records {}",
                    d.found
                );
                subject.truncate(100);
                let message = format!(
                    "trailkeeper's hourly freshness check found that the trail {arn} of account {account} is logging, and its digests may keep arriving, but its event selectors record {found}, not {expected}: what they leave out is not in the archive.\n\n\
                     Someone with PutEventSelectors in the account changed them (the trail guard SCP denies it).\n\n\
                     Reproduce with:\n  trailkeeper audit --account {account}\nRepair with:\n  trailkeeper onboard --account {account}\n",
                    arn = t.arn,
                    found = d.found,
                    expected = d.expected,
                );
                alerts.push(Self { subject, message });
            }
            let findings = t.status_findings();
            if !findings.is_empty() {
                let mut subject = format!(
                    "trailkeeper: account {account}: the trail is not logging or delivering"
                );
                subject.truncate(100);
                let mut message = format!(
                    "trailkeeper's hourly freshness check found, in GetTrailStatus of account {account}:\n\n"
                );
                for f in findings {
                    message.push_str(&format!("  - {f}\n"));
                }
                message.push_str(&format!(
                    "\nReproduce with:\n  trailkeeper audit --account {account} --freshness\nRepair with:\n  trailkeeper onboard --account {account}\n"
                ));
                alerts.push(Self { subject, message });
            }
        }
        alerts
    }
}

impl Alert {
    /// The tripwire's alert for one write or delete under `AWSLogs/` that CloudTrail did not
    /// make: what, which object and version, who (requester and source IP), when, and S3's
    /// request id, with what to look at next.
    pub fn for_tamper(t: &crate::tripwire::Tamper) -> Self {
        let d = &t.event.detail;
        let account = t.account.as_deref().unwrap_or("(unknown)");
        let mut subject = format!(
            "trailkeeper: {} {} in account {account}",
            t.object_kind,
            t.kind.as_str()
        );
        subject.truncate(100);
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not given)".into());
        let validate = match (&t.account, &t.region) {
            (Some(a), Some(r)) => format!(
                "\n  trailkeeper validate --bucket {} --account {a} --region {r}",
                d.bucket.name
            ),
            _ => String::new(),
        };
        let message = format!(
            "trailkeeper's tripwire saw a change to the CloudTrail archive that CloudTrail did not make.\n\n\
             What:       {kind}: {why}\n\
             Where:      s3://{bucket}/{key}\n\
             Version:    {version}\n\
             Requester:  {requester}\n\
             Source IP:  {ip}\n\
             When:       {time}\n\
             Request id: {request} ({reason}{deletion})\n\n\
             Earlier versions of the key, if any, still hold what CloudTrail delivered:\n  \
             aws s3api list-object-versions --bucket {bucket} --prefix {key}{validate}\n",
            kind = t.kind.as_str(),
            why = t.why,
            bucket = d.bucket.name,
            key = d.object.key,
            version = or_unknown(&d.object.version_id),
            requester = or_unknown(&d.requester),
            ip = or_unknown(&d.source_ip),
            time = format_time(t.event.time),
            request = or_unknown(&d.request_id),
            reason = d.reason.as_deref().unwrap_or("no reason given"),
            deletion = d
                .deletion_type
                .as_deref()
                .map(|x| format!(", {x}"))
                .unwrap_or_default(),
        );
        Self { subject, message }
    }
}

/// An SNS topic for alerts.
pub struct AlertTopic {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
}

impl AlertTopic {
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self {
            sns,
            topic_arn: topic_arn.into(),
        }
    }

    pub async fn publish(&self, alert: &Alert) -> Result<(), AlertError> {
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&alert.subject)
            .message(&alert.message)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AlertError {
                topic: self.topic_arn.clone(),
                subject: alert.subject.clone(),
                message: crate::store::describe_sdk_error(&e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::key::StreamId;
    use crate::report::{LogStatus, Status};
    use crate::store::ObjectRef;

    #[test]
    fn an_alert_says_what_where_when_and_how_to_reproduce() {
        let stream = StreamId {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            trail: "trailkeeper".into(),
            home_region: "us-east-1".into(),
            org_id: None,
            backfill: false,
        };
        let v = Verdict::at(
            Status::Log(LogStatus::HashMismatch),
            &stream,
            &ObjectRef::new("central", "AWSLogs/x.json.gz"),
        )
        .because("SHA-256 is aa, the digest says bb");
        let t = |s| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let a = Alert::for_finding(
            &v,
            Some("AWSLogs/d.json.gz"),
            (t("2026-01-01T00:00:00Z"), t("2026-01-01T01:00:00Z")),
        );
        assert_eq!(
            a.subject,
            "trailkeeper: log file hash_mismatch in account 111122223333 eu-west-1"
        );
        for part in [
            "What:   log file is hash_mismatch: SHA-256 is aa, the digest says bb",
            "Where:  s3://central/AWSLogs/x.json.gz",
            "Digest: s3://central/AWSLogs/d.json.gz",
            "When:   the hour from 2026-01-01T00:00:00Z to 2026-01-01T01:00:00Z",
            "trailkeeper validate --bucket central --account 111122223333 --region eu-west-1 --trail trailkeeper --start 2026-01-01T01:00:00Z --end 2026-01-01T01:00:00Z",
        ] {
            assert!(a.message.contains(part), "{part}\n{}", a.message);
        }
    }
}
