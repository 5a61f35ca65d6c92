//! Findings in Security Hub, on the emulator, whose BatchImportFindings refuses what Security Hub
//! refuses (tests/moto/server.py): the digest-validator imports each finding once per object
//! (a repeat updates it), and the organization audit keeps one coverage finding per account,
//! resolved once the account is covered again.

use std::collections::BTreeMap;

use aws_sdk_securityhub::types::{AwsSecurityFinding, RecordState, SeverityLabel, WorkflowStatus};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use trailkeeper::audit::AccountAudit;
use trailkeeper::events::AccountId;
use trailkeeper::securityhub::SecurityHub;
use trailkeeper::store::ObjectRef;
use trailkeeper::testdata::{Generator, TestKey, TrailLayout, gzip};
use trailkeeper_e2e::*;

#[derive(Default)]
struct Records(std::sync::Mutex<Vec<Value>>);

impl digest_validator::RecordSink for Records {
    fn write(&self, record: &Value) {
        self.0.lock().unwrap().push(record.clone());
    }
}

async fn hub_config(region: &'static str) -> aws_config::SdkConfig {
    aws_config()
        .await
        .to_builder()
        .region(aws_config::Region::new(region))
        .build()
}

async fn enable_security_hub(aws: &aws_config::SdkConfig) {
    let hub = aws_sdk_securityhub::Client::new(aws);
    hub.enable_security_hub()
        .send()
        .await
        .expect("EnableSecurityHub on the emulator");
}

/// Every finding in the hub of `aws`'s account and region whose id starts with `prefix`.
async fn findings(aws: &aws_config::SdkConfig, prefix: &str) -> Vec<AwsSecurityFinding> {
    let hub = aws_sdk_securityhub::Client::new(aws);
    let mut out = Vec::new();
    let mut pages = hub.get_findings().max_results(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        out.extend(
            page.expect("GetFindings")
                .findings()
                .iter()
                .filter(|f| f.id().is_some_and(|id| id.starts_with(prefix)))
                .cloned(),
        );
    }
    out
}

#[tokio::test]
async fn a_tampered_log_is_one_critical_finding_that_a_repeat_updates() {
    let t0 = DateTime::parse_from_rfc3339("2026-05-06T07:08:09Z")
        .unwrap()
        .to_utc();
    let s3 = s3().await;
    let bucket = unique_bucket("hub-tamper");
    create_bucket(&s3, &bucket).await;
    let key = TestKey::generate(t0 - Duration::days(1), t0 + Duration::days(20));
    register_keys(&[&key]);
    // An account no other test uses, so the finding ids are this test's alone.
    let account = "314159265358";
    let layout = TrailLayout::new(&bucket, account, "eu-central-1");
    let mut history = Generator::new(layout, &key, 31).chain(t0, 2, None, |_| 2);
    let tampered = history.digests[1].json.log_files[0].s3_object.clone();
    let i = history.logs.iter().position(|l| l.key == tampered).unwrap();
    history.logs[i].body = gzip(b"{\"Records\":[]}");
    upload(&s3, &bucket, &history).await;
    let digest = ObjectRef::new(&bucket, &history.digests[1].object.key);

    let aws = hub_config("us-west-2").await;
    let deps = digest_validator::Deps::new(
        &aws,
        digest_validator::Config {
            central_bucket: Some(bucket.clone()),
            alert_topic_arn: None,
            security_hub: true,
            concurrency: 4,
            ..Default::default()
        },
        Records::default(),
    );

    deps.security_hub
        .as_ref()
        .unwrap()
        .identify("arn:aws:lambda:us-west-2:123456789012:function:digest-validator")
        .unwrap();
    // Security Hub is not enabled in that region yet: AWS refuses the import, and the
    // invocation fails (to be retried) naming Security Hub; the finding is not lost quietly.
    let err = deps
        .process(&digest)
        .await
        .err()
        .expect("an import into a hub that is not enabled fails");
    assert!(
        err.contains("Security Hub") && err.contains("BatchImportFindings"),
        "{err}"
    );
    assert!(err.contains("product/123456789012/default"), "{err}");

    enable_security_hub(&aws).await;
    let prefix = format!("trailkeeper/log/{account}/");
    for run in 0..2 {
        deps.process(&digest).await.expect("validated and imported");
        let found = findings(&aws, &prefix).await;
        assert_eq!(
            found.len(),
            1,
            "run {run}: one finding per object: {found:#?}"
        );
        let f = &found[0];
        assert_eq!(
            f.severity().and_then(|s| s.label()),
            Some(&SeverityLabel::Critical)
        );
        assert_eq!(
            f.aws_account_id(),
            Some("123456789012"),
            "the importing account"
        );
        assert_eq!(
            f.product_arn(),
            Some("arn:aws:securityhub:us-west-2:123456789012:product/123456789012/default")
        );
        assert_eq!(f.resources()[0].r#type(), Some("AwsS3Object"));
        assert_eq!(
            f.resources()[0].id(),
            Some(format!("arn:aws:s3:::{bucket}/{tampered}").as_str())
        );
        assert_eq!(
            f.title(),
            Some(
                format!("trailkeeper: log file hash_mismatch in account {account} eu-central-1")
                    .as_str()
            )
        );
        let fix = f
            .remediation()
            .and_then(|r| r.recommendation())
            .and_then(|r| r.text())
            .unwrap_or_default();
        assert!(
            fix.contains(&format!(
                "trailkeeper validate --bucket {bucket} --account {account} --region eu-central-1"
            )),
            "{fix}"
        );
        assert_eq!(
            f.product_fields()
                .and_then(|p| p.get("trailkeeper/status"))
                .map(String::as_str),
            Some("hash_mismatch")
        );
    }

    // A valid hour imports nothing.
    let valid = ObjectRef::new(&bucket, &history.digests[0].object.key);
    deps.process(&valid).await.expect("validated");
    assert_eq!(
        findings(&aws, &format!("trailkeeper/digest/{account}/"))
            .await
            .len(),
        0
    );
    assert_eq!(findings(&aws, &prefix).await.len(), 1);
}

fn audit_of(account: AccountId, findings: &[&str]) -> AccountAudit {
    AccountAudit {
        account,
        trail: None,
        admitted: BTreeMap::new(),
        other_trails: vec![],
        streams: None,
        reverification: None,
        controls: Vec::new(),
        findings: findings.iter().map(|f| f.to_string()).collect(),
        error: None,
    }
}

#[tokio::test]
async fn an_account_finding_is_resolved_once_the_account_is_covered() {
    let aws = hub_config("ap-southeast-2").await;
    enable_security_hub(&aws).await;
    let hub = SecurityHub::new(&aws);
    let err = hub.import_audits(&[], Utc::now()).await.err();
    assert!(
        matches!(
            err,
            Some(trailkeeper::securityhub::SecurityHubError::Identity(_))
        ),
        "{err:?}"
    );
    hub.identify("arn:aws:lambda:ap-southeast-2:123456789012:function:org-auditor")
        .unwrap();
    let uncovered = AccountId::new("271828182845").unwrap();
    let always_covered = AccountId::new("161803398874").unwrap();
    let no_trail = "no trail arn:aws:cloudtrail:us-east-1:271828182845:trail/trailkeeper";
    let day = |n: i64| Utc::now() + Duration::days(n);

    hub.import_audits(
        &[
            audit_of(uncovered, &[no_trail]),
            audit_of(always_covered, &[]),
        ],
        day(0),
    )
    .await
    .expect("imported");
    let found = findings(&aws, "trailkeeper/account/").await;
    assert_eq!(
        found.len(),
        1,
        "a covered account that never had a finding gets none: {found:#?}"
    );
    assert_eq!(
        found[0].id(),
        Some("trailkeeper/account/271828182845/coverage")
    );
    assert_eq!(
        found[0].severity().and_then(|s| s.label()),
        Some(&SeverityLabel::High)
    );
    assert_eq!(found[0].record_state(), Some(&RecordState::Active));
    assert!(
        found[0]
            .description()
            .unwrap_or_default()
            .contains(no_trail)
    );
    assert_eq!(
        hub.active_account_findings()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["271828182845".to_string()]
    );

    // The next day the same finding again: still one record.
    hub.import_audits(&[audit_of(uncovered, &[no_trail])], day(1))
        .await
        .expect("imported");
    assert_eq!(findings(&aws, "trailkeeper/account/").await.len(), 1);

    // Covered again: the record is resolved and archived, not deleted or duplicated.
    hub.import_audits(
        &[audit_of(uncovered, &[]), audit_of(always_covered, &[])],
        day(2),
    )
    .await
    .expect("imported");
    let found = findings(&aws, "trailkeeper/account/").await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].record_state(), Some(&RecordState::Archived));
    assert_eq!(
        found[0].workflow().and_then(|w| w.status()),
        Some(&WorkflowStatus::Resolved)
    );
    assert!(hub.active_account_findings().await.unwrap().is_empty());
}
