//! `trailkeeper audit` on the emulator, over accounts that Organizations created: each way an
//! account can fall out of coverage is reported for that account, and only for it.

use serde_json::Value;
use trailkeeper::events::AccountId;
use trailkeeper::onboard::{OnboardConfig, PolicyUpdater};
use trailkeeper::trail::TrailEnabler;
use trailkeeper_e2e::*;

const TRAIL: &str = "audited";

async fn audit(
    config: &OnboardConfig,
    mgmt: &aws_config::SdkConfig,
    args: &[&str],
) -> (i32, String, String) {
    use clap::Parser;
    let mut argv = vec!["trailkeeper", "audit"];
    argv.extend_from_slice(args);
    let cli = trailkeeper_cli::Cli::try_parse_from(&argv).unwrap();
    let trailkeeper_cli::Command::Audit(a) = cli.command else {
        panic!("not audit")
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let setup = trailkeeper_cli::OrgSetup {
        config: config.clone(),
        aws: mgmt.clone(),
        backoff: FAST_BACKOFF,
    };
    let code = trailkeeper_cli::audit::run_with(a, setup, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// `n` accounts that Organizations created, a central bucket, and the onboarding parts.
struct Org {
    mgmt: aws_config::SdkConfig,
    ids: Vec<String>,
    s3: aws_sdk_s3::Client,
    bucket: String,
    config: OnboardConfig,
    policies: PolicyUpdater,
    trails: TrailEnabler,
}

async fn org(name: &str, n: usize) -> Org {
    let mgmt = aws_config().await;
    let ids = create_accounts(&mgmt, name, n).await;
    let s3 = s3().await;
    let bucket = unique_bucket(&format!("{name}-central"));
    create_bucket(&s3, &bucket).await;
    let config = onboard_config(&[
        ("TRAILKEEPER_BUCKET", bucket.clone()),
        ("TRAILKEEPER_TRAIL_NAME", TRAIL.into()),
    ]);
    let policies = PolicyUpdater::new(&mgmt, config.clone(), FAST_LOOP);
    let trails = TrailEnabler::new(
        &mgmt,
        config.trail_spec(),
        config.member_role.clone(),
        FAST_BACKOFF,
    );
    Org {
        mgmt,
        ids,
        s3,
        bucket,
        config,
        policies,
        trails,
    }
}

/// The org-auditor as deployed, alerting to `topic`.
fn freshness_auditor(
    mgmt: &aws_config::SdkConfig,
    config: &OnboardConfig,
    topic: &str,
) -> org_auditor::Deps<Records> {
    let mut deps = org_auditor::Deps::new(
        mgmt,
        config.clone(),
        org_auditor::Config {
            audit_role: trailkeeper::trail::RoleName::new("trailkeeper-audit").unwrap(),
            archive_role_arn: None,
            alert_topic_arn: Some(topic.to_string()),
            security_hub: false,
            concurrency: 8,
        },
        Records::default(),
    );
    deps.backoff = FAST_BACKOFF;
    deps
}

/// The hourly `{"check": "freshness"}` invocation, with `maxDigestAgeMinutes` when given.
async fn freshness_check(deps: &org_auditor::Deps<Records>, max_age: Option<u32>) -> Value {
    let mut context = lambda_runtime::Context::default();
    context.invoked_function_arn =
        "arn:aws:lambda:us-east-1:123456789012:function:org-auditor".into();
    let mut event = serde_json::json!({"check": "freshness"});
    if let Some(minutes) = max_age {
        event["maxDigestAgeMinutes"] = serde_json::json!(minutes);
    }
    org_auditor::handle(deps, lambda_runtime::LambdaEvent::new(event, context))
        .await
        .expect("the freshness check ran")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_account_out_of_coverage_is_reported_with_its_reason() {
    let Org {
        mgmt,
        ids,
        s3,
        bucket,
        config,
        policies,
        trails,
    } = org("audit", 5).await;
    let [covered, no_trail, stopped, not_admitted, leftover] =
        [0, 1, 2, 3, 4].map(|i| AccountId::new(&ids[i]).unwrap());
    let old = unique_bucket("audit-old");
    create_bucket(&s3, &old).await;
    for a in [covered, no_trail, stopped, not_admitted, leftover] {
        policies.admit(a).await.expect("admit");
    }
    // CloudTrail accepts a trail only while the policy admits it (as the emulator does now);
    // then someone removes not_admitted's statement by hand: its trail exists, unadmitted.
    for a in [covered, stopped, not_admitted, leftover] {
        trails.enable(a).await.expect("enable");
    }
    let text = bucket_policy(&s3, &bucket).await;
    let mut policy: Value = serde_json::from_str(&text).unwrap();
    let sid = format!("TrailkeeperWrite{not_admitted}");
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["Sid"] != sid.as_str());
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy.to_string())
        .send()
        .await
        .expect("remove not_admitted's statement");
    let arn = |a: AccountId| config.trail_spec().trail_arn(a).to_string();
    trails
        .member_cloudtrail(stopped)
        .await
        .unwrap()
        .0
        .stop_logging()
        .name(arn(stopped))
        .send()
        .await
        .expect("stop logging");
    let_cloudtrail_deliver(&s3, &old).await;
    let (ct, _) = trails.member_cloudtrail(leftover).await.unwrap();
    ct.create_trail()
        .name("legacy-trail")
        .s3_bucket_name(&old)
        .s3_key_prefix("old/logs")
        .send()
        .await
        .expect("a left-over trail");

    // The digest-validator's re-verification finished a pass over `covered` three hours ago.
    let since = chrono::Utc::now() - chrono::Duration::hours(3);
    let state = serde_json::json!({
        "trailkeeper_reverification": 1,
        "pass_started": null,
        "verified_since": {covered.to_string(): trailkeeper::digest::file::format_time(since)},
    });
    put_json(&s3, &bucket, trailkeeper::reverify::STATE_KEY, &state).await;

    let ids: Vec<String> = [covered, no_trail, stopped, not_admitted, leftover]
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut args = vec!["--format", "json"];
    for id in &ids {
        args.extend(["--account", id.as_str()]);
    }
    let (code, out, err) = audit(&config, &mgmt, &args).await;
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |a: AccountId| {
        lines
            .iter()
            .find(|l| l["type"] == "account" && l["account"] == a.to_string())
            .unwrap_or_else(|| panic!("no line for {a}: {out}"))
    };
    let findings = |a: AccountId| -> Vec<String> {
        of(a)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };

    assert_eq!(of(covered)["covered"], true, "{out}");
    assert!(findings(covered).is_empty());
    assert_eq!(of(covered)["trail"]["logging"], true);
    assert_eq!(of(covered)["trail"]["multi_region"], true);
    assert_eq!(of(covered)["trail"]["log_file_validation"], true);
    assert!(of(covered)["trail"]["latest_delivery"].is_string(), "{out}");
    let reverified = &of(covered)["reverification"];
    assert_eq!(reverified["age_hours"], 3.0, "{out}");
    assert!(reverified["error"].is_null(), "{out}");
    assert!(
        of(no_trail)["reverification"]["verified_since"].is_null(),
        "{out}"
    );

    // The controls of trailkeeper's trail: no KMS key is configured in this test.
    let controls = |a: AccountId| -> Vec<(String, String)> {
        of(a)["controls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().into(),
                    c["outcome"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let pairs = |v: [(&str, &str); 3]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        controls(covered),
        pairs([
            ("CloudTrail.1", "pass"),
            ("CloudTrail.2", "fail"),
            ("CloudTrail.4", "pass")
        ])
    );
    assert_eq!(
        controls(no_trail),
        pairs([
            ("CloudTrail.1", "fail"),
            ("CloudTrail.2", "fail"),
            ("CloudTrail.4", "fail")
        ])
    );
    assert_eq!(of(no_trail)["covered"], false);
    assert_eq!(findings(no_trail), [format!("no trail {}", arn(no_trail))]);
    assert!(of(no_trail)["trail"].is_null());

    assert_eq!(of(stopped)["covered"], false);
    assert_eq!(
        findings(stopped),
        [format!("trail {} is not logging", arn(stopped))]
    );

    assert_eq!(of(not_admitted)["covered"], false);
    assert_eq!(
        findings(not_admitted),
        [format!(
            "the bucket policy of s3://{bucket} does not admit the account"
        )]
    );

    assert_eq!(of(leftover)["covered"], true, "{out}");
    let others = of(leftover)["other_trails"].as_array().unwrap().clone();
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0]["bucket"], old.as_str());
    assert!(
        others[0]["arn"]
            .as_str()
            .unwrap()
            .ends_with(":trail/legacy-trail")
    );

    let summary = lines.iter().find(|l| l["type"] == "summary").unwrap();
    assert_eq!(summary["accounts"], 5);
    assert_eq!(summary["covered"], 2);
    assert_eq!(summary["not_covered"], 3);
    assert_eq!(summary["errors"], 0);
    assert_eq!(
        summary["consolidate_from"],
        serde_json::json!([format!("s3://{old}/old/logs")])
    );

    // The table for people says the same.
    let table_args: Vec<&str> = args[2..].to_vec();
    let (code, table, _) = audit(&config, &mgmt, &table_args).await;
    assert_eq!(code, 1);
    assert!(table.starts_with("ACCOUNT"), "{table}");
    assert!(
        table.contains("accounts: 5 (2 covered, 3 not covered, 0 not audited)"),
        "{table}"
    );
    assert!(
        table.contains(&format!("{no_trail}: no trail {}", arn(no_trail))),
        "{table}"
    );
    assert!(
        table.contains(&format!("{covered}: history re-verified 3h00m ago")),
        "{table}"
    );
    assert!(
        table.contains(&format!("{no_trail}: history not re-verified yet")),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "trailkeeper consolidate --from s3://{old}/old/logs --to s3://{bucket}\n"
        )),
        "{table}"
    );

    // The covered accounts alone: exit 0.
    let (code, out, err) = audit(
        &config,
        &mgmt,
        &["--account", &ids[0], "--account", &ids[4]],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");

    // The daily org-auditor Lambda over the whole organization (ListAccounts: other tests'
    // accounts too): the same findings for these five, one alert per uncovered account, and
    // one metrics record.
    let topic = create_topic(&unique_bucket("audit-alerts")).await;
    let mut deps = org_auditor::Deps::new(
        &mgmt,
        config.clone(),
        org_auditor::Config {
            audit_role: trailkeeper::trail::RoleName::new("trailkeeper-audit").unwrap(),
            archive_role_arn: None,
            alert_topic_arn: Some(topic.clone()),
            security_hub: false,
            concurrency: 8,
        },
        Records::default(),
    );
    deps.backoff = FAST_BACKOFF;
    let mut context = lambda_runtime::Context::default();
    context.invoked_function_arn =
        "arn:aws:lambda:us-east-1:123456789012:function:org-auditor".into();
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../events/org-auditor/scheduled-event.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let result = org_auditor::handle(&deps, lambda_runtime::LambdaEvent::new(event, context))
        .await
        .expect("the audit ran");
    assert_eq!(result["status"], "not_covered");
    let audited = |a: AccountId| {
        result["audits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["account"] == a.to_string())
            .unwrap_or_else(|| panic!("the org-auditor did not audit {a}"))
            .clone()
    };
    for a in [covered, no_trail, stopped, not_admitted, leftover] {
        assert_eq!(audited(a)["findings"], of(a)["findings"], "{a}");
    }
    let alerts = published(&topic);
    for a in [no_trail, stopped, not_admitted] {
        let (subject, message) = alerts
            .iter()
            .find(|(s, _)| s.contains(&a.to_string()))
            .unwrap_or_else(|| panic!("no alert for {a}: {alerts:?}"));
        assert_eq!(subject, &format!("trailkeeper: account {a} is not covered"));
        assert!(message.contains(&findings(a)[0]), "{message}");
        assert!(message.contains(&format!("trailkeeper audit --account {a}")));
    }
    for a in [covered, leftover] {
        assert!(
            !alerts.iter().any(|(s, _)| s.contains(&a.to_string())),
            "an alert for covered {a}: {alerts:?}"
        );
    }
    assert_eq!(result["alerts"], alerts.len(), "{alerts:?}");
    let records = deps.records.0.lock().unwrap();
    assert_eq!(records.len(), 1);
    let not_covered = records[0]["notCovered"].as_array().unwrap();
    for a in [no_trail, stopped, not_admitted] {
        assert!(not_covered.contains(&Value::from(a.to_string())), "{a}");
    }
    assert_eq!(records[0]["AccountsAudited"], result["accounts"]);
}

/// The org-auditor's metrics records, kept for the test.
#[derive(Default)]
struct Records(std::sync::Mutex<Vec<Value>>);

impl org_auditor::RecordSink for Records {
    fn write(&self, record: &Value) {
        self.0.lock().unwrap().push(record.clone());
    }
}

/// Attack 4: the newest digests (and their logs) of one region are deleted. No surviving digest
/// names them, so validation cannot see it; the freshness watchdog (the org-auditor's hourly
/// check, and `trailkeeper audit --freshness`) sees that stream's newest digest grow old: a
/// finding, and an alert naming the account and the region. The other region stays fresh.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_newest_digests_of_a_region_makes_its_stream_stale_a_finding_and_an_alert() {
    use trailkeeper::testdata::{Generator, TestKey, TrailLayout};
    let mgmt = aws_config().await;
    let ids = create_accounts(&mgmt, "fresh", 1).await;
    let account = AccountId::new(&ids[0]).unwrap();
    let s3 = s3().await;
    let bucket = unique_bucket("fresh-central");
    create_bucket(&s3, &bucket).await;
    let trail = "watched";
    let config = onboard_config(&[
        ("TRAILKEEPER_BUCKET", bucket.clone()),
        ("TRAILKEEPER_TRAIL_NAME", trail.into()),
    ]);
    PolicyUpdater::new(&mgmt, config.clone(), FAST_LOOP)
        .admit(account)
        .await
        .expect("admit");
    TrailEnabler::new(
        &mgmt,
        config.trail_spec(),
        config.member_role.clone(),
        FAST_BACKOFF,
    )
    .enable(account)
    .await
    .expect("enable");
    // Six hours of history up to ten minutes ago, in two regions, as the trail delivers it.
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::minutes(6 * 60 + 10);
    let key = TestKey::generate(
        now - chrono::Duration::days(2),
        now + chrono::Duration::days(30),
    );
    let mut histories = Vec::new();
    for (seed, region) in [(1, "us-east-1"), (2, "eu-west-1")] {
        let mut layout = TrailLayout::new(&bucket, account.as_str(), region);
        layout.trail = trail.into();
        let history = Generator::new(layout, &key, seed).chain(start, 6, None, |_| 1);
        upload(&s3, &bucket, &history).await;
        histories.push(history);
    }

    let topic = create_topic(&unique_bucket("fresh-alerts")).await;
    let deps = freshness_auditor(&mgmt, &config, &topic);
    let hourly = || freshness_check(&deps, Some(120));
    let ours = |alerts: Vec<(String, String)>| -> Vec<(String, String)> {
        alerts
            .into_iter()
            .filter(|(s, m)| s.contains(account.as_str()) || m.contains(account.as_str()))
            .collect()
    };

    // Fed: no alert for the account.
    hourly().await;
    assert_eq!(ours(published(&topic)), Vec::<(String, String)>::new());

    // The attacker deletes the newest three hours of eu-west-1, digests and logs.
    let eu = &histories[1];
    for i in 3..6 {
        delete(&s3, &bucket, &eu.digests[i].object.key).await;
        for log in logs_of(eu, i) {
            delete(&s3, &bucket, &log).await;
        }
    }
    let survivor = &eu.digests[2].object.key;
    let result = hourly().await;
    let alerts = ours(published(&topic));
    assert_eq!(alerts.len(), 1, "{alerts:#?}\n{result:#}");
    let (subject, message) = &alerts[0];
    assert!(
        subject.starts_with(&format!(
            "trailkeeper: account {account} region eu-west-1: "
        )),
        "{subject}"
    );
    assert!(message.contains(survivor), "{message}");
    assert!(
        message.contains("3h1"),
        "the age of the newest digest: {message}"
    );
    assert!(
        message.contains(&format!(
            "trailkeeper audit --account {account} --freshness"
        )),
        "{message}"
    );
    assert!(!message.contains("us-east-1:"), "{message}");

    // trailkeeper audit --freshness reports the same, per region, with the age.
    let (code, out, err) = audit(
        &config,
        &mgmt,
        &[
            "--account",
            account.as_str(),
            "--freshness",
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["covered"], false, "{line:#}");
    let streams = line["streams"].as_array().expect("streams");
    let region = |r: &str| {
        streams
            .iter()
            .find(|s| s["region"] == r)
            .unwrap_or_else(|| panic!("{r}: {streams:?}"))
    };
    assert_eq!(region("eu-west-1")["stale"], true);
    assert_eq!(region("eu-west-1")["newest_digest"], survivor.as_str());
    let age = region("eu-west-1")["age_seconds"].as_i64().unwrap();
    assert!((3 * 3600 + 600..3 * 3600 + 900).contains(&age), "{age}");
    assert_eq!(region("us-east-1")["stale"], false);
    assert!(region("us-east-1")["age_seconds"].as_i64().unwrap() < 900);
    let findings: Vec<&str> = line["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].starts_with(&format!("account {account} region eu-west-1: ")),
        "{findings:?}"
    );
    assert!(
        message.contains(findings[0]),
        "the alert says what the audit says"
    );
}

/// An administrator of a member account keeps the trail logging, and its digests arriving, but
/// has it record no management events, or only reads: the audit says so for that account, and
/// the trail-enabler puts the selectors back.
#[tokio::test(flavor = "multi_thread")]
async fn a_trail_whose_selectors_leave_management_events_out_is_not_covered_and_is_repaired() {
    use aws_sdk_cloudtrail::types::{
        AdvancedEventSelector, AdvancedFieldSelector, DataResource, EventSelector, ReadWriteType,
    };
    let Org {
        mgmt,
        ids,
        bucket,
        config,
        policies,
        trails,
        ..
    } = org("selectors", 2).await;
    let [none, reads] = [0, 1].map(|i| AccountId::new(&ids[i]).unwrap());
    for a in [none, reads] {
        policies.admit(a).await.expect("admit");
        trails.enable(a).await.expect("enable");
    }
    let args = [
        "--format",
        "json",
        "--account",
        &ids[0],
        "--account",
        &ids[1],
    ];
    let (code, out, err) = audit(&config, &mgmt, &args).await;
    assert_eq!(
        code, 0,
        "a new trail records every management event: {out}{err}"
    );

    let arn = |a: AccountId| config.trail_spec().trail_arn(a).to_string();
    let (ct, _) = trails.member_cloudtrail(none).await.unwrap();
    ct.put_event_selectors()
        .trail_name(arn(none))
        .event_selectors(
            EventSelector::builder()
                .read_write_type(ReadWriteType::All)
                .include_management_events(false)
                .data_resources(
                    DataResource::builder()
                        .r#type("AWS::S3::Object")
                        .values(format!("arn:aws:s3:::{bucket}/"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("no management events");
    let (ct, _) = trails.member_cloudtrail(reads).await.unwrap();
    let field = |name: &str, value: &str| {
        AdvancedFieldSelector::builder()
            .field(name)
            .equals(value)
            .build()
            .unwrap()
    };
    ct.put_event_selectors()
        .trail_name(arn(reads))
        .advanced_event_selectors(
            AdvancedEventSelector::builder()
                .name("reads only")
                .field_selectors(field("eventCategory", "Management"))
                .field_selectors(field("readOnly", "true"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("read events only");

    let (code, out, err) = audit(&config, &mgmt, &args).await;
    assert_eq!(code, 1, "{out}{err}");
    let findings = |a: AccountId| -> Vec<String> {
        let line: Value = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|l| l["type"] == "account" && l["account"] == a.to_string())
            .unwrap_or_else(|| panic!("no line for {a}: {out}"));
        line["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    let expected = "expected \"all management events, read and write\"";
    assert_eq!(
        findings(none),
        [format!(
            "trail {}: EventSelectors is \"no management events\", {expected}",
            arn(none)
        )]
    );
    assert_eq!(
        findings(reads),
        [format!(
            "trail {}: EventSelectors is \"read management events only\", {expected}",
            arn(reads)
        )]
    );
    let cloudtrail_1 = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["type"] == "account")
        .map(|l| l["controls"][0].clone())
        .collect::<Vec<_>>();
    assert_eq!(cloudtrail_1.len(), 2);
    for c in &cloudtrail_1 {
        assert_eq!(c["id"], "CloudTrail.1");
        assert_eq!(c["outcome"], "fail", "{c}");
    }

    for a in [none, reads] {
        let report = trails.enable(a).await.expect("repair");
        let trailkeeper::trail::TrailAction::Repair { drift } = &report.action else {
            panic!("{report:?}")
        };
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].setting, "EventSelectors");
    }
    let (code, out, err) = audit(&config, &mgmt, &args).await;
    assert_eq!(code, 0, "{out}{err}");
}

/// The hourly check does not wait for the daily audit: a trail whose selectors were narrowed is
/// alerted within the hour, though it logs and its digests arrive.
#[tokio::test(flavor = "multi_thread")]
async fn the_hourly_check_alerts_a_trail_whose_selectors_were_narrowed() {
    use aws_sdk_cloudtrail::types::{EventSelector, ReadWriteType};
    let Org {
        mgmt,
        ids,
        config,
        policies,
        trails,
        ..
    } = org("narrowed", 1).await;
    let account = AccountId::new(&ids[0]).unwrap();
    policies.admit(account).await.expect("admit");
    trails.enable(account).await.expect("enable");
    let topic = create_topic(&unique_bucket("narrowed-alerts")).await;
    let deps = freshness_auditor(&mgmt, &config, &topic);
    let hourly = || freshness_check(&deps, None);
    // No history in the bucket: the streams are stale; only the selectors' alert is looked at.
    let narrowed = || -> Vec<(String, String)> {
        published(&topic)
            .into_iter()
            .filter(|(s, _)| s.contains(account.as_str()) && s.contains("the trail records"))
            .collect()
    };
    hourly().await;
    assert_eq!(narrowed(), Vec::<(String, String)>::new());

    let arn = config.trail_spec().trail_arn(account).to_string();
    let (ct, _) = trails.member_cloudtrail(account).await.unwrap();
    ct.put_event_selectors()
        .trail_name(&arn)
        .event_selectors(
            EventSelector::builder()
                .read_write_type(ReadWriteType::ReadOnly)
                .include_management_events(true)
                .build(),
        )
        .send()
        .await
        .expect("reads only");
    hourly().await;
    let alerts = narrowed();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let (subject, message) = &alerts[0];
    assert_eq!(
        subject,
        &format!("trailkeeper: account {account}: the trail records read management events only")
    );
    assert!(message.contains(&arn), "{message}");
    assert!(
        message.contains(&format!("trailkeeper onboard --account {account}")),
        "{message}"
    );
}
