//! The controls auditors ask for, by their Security Hub CSPM ids with the CIS AWS Foundations
//! Benchmark's beside them (v3.0 / v6.0), judged from what the audits observed: nothing here
//! reads AWS. Each is `pass`, `fail` or `not_applicable`, with the reason.
//!
//! Per account (`trailkeeper audit`, the org-auditor), of trailkeeper's trail: CloudTrail.1
//! (multi-Region, read and write management events), CloudTrail.2 (SSE-KMS), CloudTrail.4 (log
//! file validation). For the central bucket (`trailkeeper audit --archive`): CloudTrail.6 (not
//! public), CloudTrail.7 (server access logging), S3.5 (TLS only), S3.14 (versioning), S3.15
//! (Object Lock), S3.20 (MFA delete).
//! Security Hub judges CloudTrail.1 over any trail of the account; here it is trailkeeper's,
//! the one the archive depends on.

use serde::Serialize;
use serde_json::Value;

use crate::archive::ArchiveAudit;
use crate::audit::TrailState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    NotApplicable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "FAIL",
            Self::NotApplicable => "n/a",
        }
    }
}

/// One control's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Control {
    /// Security Hub CSPM's id (`CloudTrail.1`).
    pub id: &'static str,
    /// The CIS AWS Foundations Benchmark's ids, v3.0 / v6.0, where it has the control.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cis: Option<&'static str>,
    pub title: &'static str,
    pub outcome: Outcome,
    pub reason: String,
}

impl Control {
    fn judged(
        (id, cis, title): (&'static str, Option<&'static str>, &'static str),
        pass: bool,
        passed: impl Into<String>,
        failed: impl Into<String>,
    ) -> Self {
        Self {
            id,
            cis,
            title,
            outcome: if pass { Outcome::Pass } else { Outcome::Fail },
            reason: if pass { passed.into() } else { failed.into() },
        }
    }

    /// `CloudTrail.2 (CIS 3.5 / 4.5) FAIL: the reason`.
    pub fn line(&self) -> String {
        let cis = self.cis.map(|c| format!(" (CIS {c})")).unwrap_or_default();
        format!(
            "{}{cis} {}: {}",
            self.id,
            self.outcome.as_str(),
            self.reason
        )
    }
}

const CLOUDTRAIL_1: (&str, Option<&str>, &str) = (
    "CloudTrail.1",
    Some("3.1 / 4.1"),
    "a multi-Region trail that records read and write management events",
);
const CLOUDTRAIL_2: (&str, Option<&str>, &str) = (
    "CloudTrail.2",
    Some("3.5 / 4.5"),
    "encryption at rest with SSE-KMS",
);
const CLOUDTRAIL_4: (&str, Option<&str>, &str) =
    ("CloudTrail.4", Some("3.2 / 4.2"), "log file validation");
const CLOUDTRAIL_6: (&str, Option<&str>, &str) = (
    "CloudTrail.6",
    None,
    "the trail's bucket is not publicly accessible",
);
const CLOUDTRAIL_7: (&str, Option<&str>, &str) = (
    "CloudTrail.7",
    Some("3.4 / 4.4"),
    "S3 server access logging on the trail's bucket",
);
const S3_5: (&str, Option<&str>, &str) = ("S3.5", None, "requests must use TLS");
const S3_14: (&str, Option<&str>, &str) = ("S3.14", None, "versioning");
const S3_15: (&str, Option<&str>, &str) = ("S3.15", None, "Object Lock");
const S3_20: (&str, Option<&str>, &str) = ("S3.20", None, "MFA delete");

/// The account controls of trailkeeper's trail (`None`: the account has none).
pub fn trail_controls(trail: Option<&TrailState>) -> Vec<Control> {
    let Some(t) = trail else {
        return [CLOUDTRAIL_1, CLOUDTRAIL_2, CLOUDTRAIL_4]
            .into_iter()
            .map(|c| Control::judged(c, false, "", "no trailkeeper trail in the account"))
            .collect();
    };
    let recorded = t.management_events.as_ref().map_or(
        "management events not read".to_string(),
        ToString::to_string,
    );
    let all_events = t.management_events.as_ref().is_some_and(|m| m.all());
    vec![
        Control::judged(
            CLOUDTRAIL_1,
            t.multi_region && all_events,
            format!("{} is multi-Region and records {recorded}", t.arn),
            match (t.multi_region, all_events) {
                (false, _) => format!("{} is a single-Region trail", t.arn),
                _ => format!("{} records {recorded}", t.arn),
            },
        ),
        Control::judged(
            CLOUDTRAIL_2,
            t.kms_key_id.is_some(),
            format!(
                "logs are encrypted with {}",
                t.kms_key_id.as_deref().unwrap_or_default()
            ),
            format!("{} encrypts with SSE-S3, not an AWS KMS key", t.arn),
        ),
        Control::judged(
            CLOUDTRAIL_4,
            t.log_file_validation,
            "log file validation is on: CloudTrail signs a digest file every hour",
            format!("log file validation of {} is off", t.arn),
        ),
    ]
}

/// The central bucket's controls, from `trailkeeper audit --archive`'s reads; a control whose
/// input could not be read fails, naming what is unknown.
pub fn bucket_controls(audit: &ArchiveAudit) -> Vec<Control> {
    let b = &audit.bucket;
    let p = &audit.protections;
    let unknown = |what: &str| format!("the {what} of s3://{b} could not be read");
    let public = audit
        .bucket_policy
        .iter()
        .flat_map(|r| &r.flags)
        .chain(&p.flags)
        .filter(|f| {
            matches!(
                f.code,
                "public_principal" | "not_principal" | "public_access_not_blocked"
            )
        })
        .map(|f| f.reason.clone())
        .collect::<Vec<_>>();
    let cloudtrail_6 = match (&audit.bucket_policy, &p.public_access_block) {
        (None, _) | (_, None) => Control::judged(
            CLOUDTRAIL_6,
            false,
            "",
            unknown("policy or public access block"),
        ),
        _ => Control::judged(
            CLOUDTRAIL_6,
            public.is_empty(),
            format!("public access to s3://{b} is blocked and its policy grants no one at large"),
            public.join("; "),
        ),
    };
    let tls = match &audit.bucket_policy {
        None => Control::judged(S3_5, false, "", unknown("bucket policy")),
        Some(r) => Control::judged(
            S3_5,
            r.denies_insecure_transport,
            format!("the policy of s3://{b} denies every request without TLS"),
            format!(
                "the policy of s3://{b} has no Deny of s3:* for everyone when aws:SecureTransport is false"
            ),
        ),
    };
    let versioning = match p.versioning.as_deref() {
        None => Control::judged(S3_14, false, "", unknown("versioning")),
        Some(v) => Control::judged(
            S3_14,
            v == "Enabled",
            format!("versioning of s3://{b} is Enabled"),
            format!("versioning of s3://{b} is {v}"),
        ),
    };
    let lock = match &p.object_lock {
        None => Control::judged(S3_15, false, "", unknown("Object Lock configuration")),
        Some(None) => Control::judged(S3_15, false, "", format!("s3://{b} has no Object Lock")),
        Some(Some(l)) => Control::judged(
            S3_15,
            l.enabled,
            match (&l.mode, l.days, l.years) {
                (Some(m), Some(d), _) => format!("Object Lock on, default retention {m} {d} days"),
                (Some(m), _, Some(y)) => format!("Object Lock on, default retention {m} {y} years"),
                _ => "Object Lock on, no default retention".to_string(),
            },
            format!("Object Lock of s3://{b} is not enabled"),
        ),
    };
    let mfa = match p.mfa_delete {
        None => Control::judged(S3_20, false, "", unknown("versioning")),
        Some(on) => Control::judged(
            S3_20,
            on,
            format!("MFA delete of s3://{b} is on"),
            format!("MFA delete of s3://{b} is off (only the root user can turn it on)"),
        ),
    };
    let logging = match &p.access_logging {
        None => Control::judged(CLOUDTRAIL_7, false, "", unknown("access logging")),
        Some(target) => Control::judged(
            CLOUDTRAIL_7,
            target.is_some(),
            format!(
                "server access logs of s3://{b} go to {}",
                target.as_deref().unwrap_or_default()
            ),
            format!("server access logging of s3://{b} is off"),
        ),
    };
    vec![cloudtrail_6, logging, tls, versioning, lock, mfa]
}

/// Whether a bucket policy's statements deny every request without TLS: a `Deny` of `s3:*` (or
/// `*`) for everyone, on the objects, when `aws:SecureTransport` is false (Security Hub's S3.5).
pub fn denies_insecure_transport(statements: &[Value]) -> bool {
    let has = |v: &Value, want: &[&str]| match v {
        Value::String(s) => want.contains(&s.as_str()),
        Value::Array(a) => a
            .iter()
            .any(|x| x.as_str().is_some_and(|s| want.contains(&s))),
        _ => false,
    };
    statements.iter().any(|s| {
        let everyone = match &s["Principal"] {
            Value::String(p) => p == "*",
            Value::Object(o) => o.get("AWS").is_some_and(|a| has(a, &["*"])),
            _ => false,
        };
        let insecure = s["Condition"]["Bool"]["aws:SecureTransport"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .or_else(|| {
                s["Condition"]["Bool"]["aws:SecureTransport"]
                    .as_bool()
                    .map(|b| b.to_string())
            })
            .or_else(|| {
                s["Condition"]["Bool"]["aws:SecureTransport"][0]
                    .as_str()
                    .map(str::to_ascii_lowercase)
            })
            .is_some_and(|v| v == "false");
        let objects = match &s["Resource"] {
            Value::String(r) => r.ends_with("/*") || r == "*",
            Value::Array(a) => a
                .iter()
                .any(|r| r.as_str().is_some_and(|r| r.ends_with("/*") || r == "*")),
            _ => false,
        };
        s["Effect"] == "Deny"
            && everyone
            && has(&s["Action"], &["s3:*", "*"])
            && insecure
            && objects
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_selectors::ManagementEvents;
    use serde_json::json;

    fn trail() -> TrailState {
        TrailState {
            kms_key_id: Some("arn:aws:kms:us-east-1:999988887777:key/k".into()),
            management_events: Some(ManagementEvents::every()),
            ..crate::audit::tests::trail()
        }
    }

    fn outcomes(cs: &[Control]) -> Vec<(&str, Outcome)> {
        cs.iter().map(|c| (c.id, c.outcome)).collect()
    }

    #[test]
    fn a_trail_of_the_spec_with_a_key_passes_all_three() {
        let cs = trail_controls(Some(&trail()));
        assert_eq!(
            outcomes(&cs),
            [
                ("CloudTrail.1", Outcome::Pass),
                ("CloudTrail.2", Outcome::Pass),
                ("CloudTrail.4", Outcome::Pass)
            ]
        );
        assert_eq!(cs[1].cis, Some("3.5 / 4.5"));
    }

    #[test]
    fn each_control_fails_for_its_own_reason() {
        let mut t = trail();
        t.kms_key_id = None;
        t.management_events = Some(ManagementEvents::default());
        let cs = trail_controls(Some(&t));
        assert_eq!(cs[0].outcome, Outcome::Fail);
        assert!(
            cs[0].reason.ends_with("records no management events"),
            "{}",
            cs[0].reason
        );
        assert_eq!(cs[1].outcome, Outcome::Fail);
        assert_eq!(cs[2].outcome, Outcome::Pass);
        t.multi_region = false;
        t.log_file_validation = false;
        let cs = trail_controls(Some(&t));
        assert!(
            cs[0].reason.ends_with("is a single-Region trail"),
            "{}",
            cs[0].reason
        );
        assert_eq!(cs[2].outcome, Outcome::Fail);
        let none = trail_controls(None);
        assert!(
            none.iter()
                .all(|c| c.outcome == Outcome::Fail && c.reason.contains("no trailkeeper trail"))
        );
    }

    #[test]
    fn only_a_deny_of_every_request_without_tls_is_tls_only() {
        let deny = json!({"Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}});
        assert!(denies_insecure_transport(std::slice::from_ref(&deny)));
        let mut allow = deny.clone();
        allow["Effect"] = json!("Allow");
        let mut some_actions = deny.clone();
        some_actions["Action"] = json!("s3:GetObject");
        let mut bucket_only = deny.clone();
        bucket_only["Resource"] = json!("arn:aws:s3:::b");
        let mut one_principal = deny.clone();
        one_principal["Principal"] = json!({"AWS": "arn:aws:iam::111122223333:root"});
        for s in [allow, some_actions, bucket_only, one_principal] {
            assert!(!denies_insecure_transport(std::slice::from_ref(&s)), "{s}");
        }
    }
}
