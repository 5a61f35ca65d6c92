//! `trailkeeper audit --archive` on the emulator: a bucket and a member role seeded with one
//! wide-open statement each are both flagged (exit 1); a bucket set up as template.yaml sets it
//! up, with a statement the policy-updater wrote, and a role only the named administrator may
//! assume, audit clean (exit 0); what cannot be read ends the audit incomplete (exit 2).

use aws_sdk_s3::types::{
    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
    ObjectLockRule, PublicAccessBlockConfiguration,
};
use serde_json::Value;
use trailkeeper::events::AccountId;
use trailkeeper::onboard::{OnboardConfig, PolicyUpdater};
use trailkeeper_e2e::*;

/// The log-archive account of these tests: moto's account for the `testing` key.
const ARCHIVE_ACCOUNT: &str = "123456789012";
const ADMIN: &str = "arn:aws:iam::111111111111:role/OrgAdmin";
const BREAK_GLASS: &str = "arn:aws:iam::123456789012:role/BreakGlass";

fn updater_role() -> String {
    format!("arn:aws:iam::{ARCHIVE_ACCOUNT}:role/trailkeeper-PolicyUpdaterRole-X1")
}

fn validator_role() -> String {
    format!("arn:aws:iam::{ARCHIVE_ACCOUNT}:role/trailkeeper-DigestValidatorRole-X2")
}

fn config(bucket: &str, member_role: &str) -> OnboardConfig {
    onboard_config(&[
        ("TRAILKEEPER_BUCKET", bucket.to_owned()),
        ("TRAILKEEPER_MEMBER_ROLE", member_role.to_owned()),
    ])
}

/// Runs `trailkeeper audit --archive` with the operator's usual options and `extra`.
async fn audit_archive(config: &OnboardConfig, extra: &[&str]) -> (i32, String, String) {
    use clap::Parser;
    let (updater, validator) = (updater_role(), validator_role());
    let mut argv = vec![
        "trailkeeper",
        "audit",
        "--archive",
        "--trusted-role",
        &updater,
        "--trusted-role",
        &validator,
        "--break-glass-role",
        BREAK_GLASS,
        "--admin",
        ADMIN,
    ];
    argv.extend_from_slice(extra);
    let cli = trailkeeper_cli::Cli::try_parse_from(&argv).unwrap();
    let trailkeeper_cli::Command::Audit(args) = cli.command else {
        panic!("not audit")
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let aws = aws_config().await;
    let code =
        trailkeeper_cli::audit::run_archive(args, config.clone(), &aws, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Each control's id and outcome, from the `controls` line.
fn outcomes(line: &Value) -> Vec<(&str, &str)> {
    line["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect()
}

/// The JSON lines by `type`, checking that each kind appears once, in the contract's order.
fn json_lines(out: &str) -> Vec<Value> {
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "bucket_policy",
            "member_role",
            "protections",
            "controls",
            "summary"
        ],
        "{out}"
    );
    lines
}

fn flag_codes(line: &Value) -> Vec<&str> {
    line["flags"]
        .as_array()
        .unwrap_or_else(|| panic!("no flags in {line}"))
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect()
}

/// template.yaml's base policy. (moto enforces the TLS-only statement on object uploads over
/// its plain HTTP, but not on the bucket-level reads of the audit nor on PutBucketPolicy.)
fn template_base_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[
        {{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*",
          "Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"],
          "Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}},
        {{"Sid":"OnlyPolicyUpdaterChangesPolicy","Effect":"Deny","Principal":"*",
          "Action":["s3:PutBucketPolicy","s3:DeleteBucketPolicy"],"Resource":"arn:aws:s3:::{bucket}",
          "Condition":{{"ArnNotEquals":{{"aws:PrincipalArn":"{}"}}}}}}]}}"#,
        updater_role()
    )
}

async fn put_policy(s3: &aws_sdk_s3::Client, bucket: &str, policy: &str) {
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(policy)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put the policy of {bucket}: {e:?}"));
}

async fn create_role(role: &str, trust: &str) {
    let iam = aws_sdk_iam::Client::new(&aws_config().await);
    iam.create_role()
        .role_name(role)
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create role {role}: {e:?}"));
}

/// A role name no other test uses (IAM is account-wide on the shared emulator).
fn unique_role(name: &str) -> String {
    unique_bucket(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wide_open_bucket_statement_and_a_wide_open_trust_statement_are_both_flagged() {
    let s3 = s3().await;
    let bucket = unique_bucket("archive-open");
    create_bucket(&s3, &bucket).await;
    let mut policy: Value = serde_json::from_str(&template_base_policy(&bucket)).unwrap();
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "Sid": "WideOpen", "Effect": "Allow", "Principal": "*", "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
        }));
    put_policy(&s3, &bucket, &policy.to_string()).await;
    let role = unique_role("MemberRole");
    create_role(
        &role,
        &format!(
            r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":{{"AWS":"{ADMIN}"}},"Action":"sts:AssumeRole"}},
            {{"Sid":"AnyoneAssumes","Effect":"Allow","Principal":{{"AWS":"*"}},"Action":"sts:AssumeRole"}}]}}"#
        ),
    )
    .await;

    let (code, out, err) = audit_archive(&config(&bucket, &role), &["--format", "json"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err, "");
    let lines = json_lines(&out);
    let (policy, member, protections, summary) = (&lines[0], &lines[1], &lines[2], &lines[4]);
    assert_eq!(
        outcomes(&lines[3]),
        [
            ("CloudTrail.6", "fail"),
            ("CloudTrail.7", "fail"),
            // Its policy still denies requests without TLS.
            ("S3.5", "pass"),
            ("S3.14", "fail"),
            ("S3.15", "fail"),
            ("S3.20", "fail")
        ],
        "{}",
        lines[3]
    );

    assert_eq!(policy["bucket"], bucket.as_str());
    assert_eq!(policy["exists"], true);
    assert_eq!(policy["statements"], 3);
    assert_eq!(
        flag_codes(policy),
        ["public_principal", "destructive_access"],
        "{policy}"
    );
    for f in policy["flags"].as_array().unwrap() {
        assert_eq!(f["statement"], 2, "{f}");
        assert!(
            f["reason"].as_str().unwrap().contains("Sid WideOpen"),
            "{f}"
        );
    }
    assert_eq!(
        policy["denies"],
        serde_json::json!([
            {"statement": 0, "sid": "DenyInsecureTransport"},
            {"statement": 1, "sid": "OnlyPolicyUpdaterChangesPolicy"},
        ])
    );
    let grants = policy["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{policy}");
    assert_eq!(grants[0]["principal"], "*");
    assert_eq!(
        grants[0]["access"],
        serde_json::json!([
            "read",
            "write",
            "delete",
            "change_policy",
            "change_protection"
        ])
    );
    assert_eq!(grants[0]["restricted_by"], serde_json::json!([]));
    assert_eq!(policy["error"], Value::Null);

    assert_eq!(member["role"], role.as_str());
    assert_eq!(
        member["arn"],
        format!("arn:aws:iam::{ARCHIVE_ACCOUNT}:role/{role}")
    );
    assert_eq!(flag_codes(member), ["public_assume"], "{member}");
    assert_eq!(member["flags"][0]["statement"], 1);
    let trusted = member["trusted"].as_array().unwrap();
    assert_eq!(trusted.len(), 2, "{member}");
    assert_eq!(trusted[0]["principal"], serde_json::json!({ "AWS": ADMIN }));
    assert_eq!(trusted[0]["admin"], true);
    assert_eq!(trusted[1]["principal"], "*");
    assert_eq!(trusted[1]["admin"], false);

    // A bare bucket: versioning never enabled, no public access block, no Object Lock.
    assert_eq!(protections["versioning"], "Off");
    assert_eq!(protections["mfa_delete"], false);
    assert_eq!(protections["object_lock"], Value::Null);
    assert_eq!(protections["public_access_block"], Value::Null);
    assert_eq!(
        flag_codes(protections),
        ["versioning_off", "public_access_not_blocked"]
    );
    assert_eq!(protections["errors"], serde_json::json!([]));

    assert_eq!(summary["status"], "findings");
    assert_eq!(summary["flags"], 5);
    assert_eq!(summary["errors"], serde_json::json!([]));

    // The text form says the same to people.
    let (code, text, _) = audit_archive(&config(&bucket, &role), &[]).await;
    assert_eq!(code, 1);
    assert!(
        text.contains("FLAG public_assume: statement #1 (Sid AnyoneAssumes) lets everyone"),
        "{text}"
    );
    assert!(text.contains("FLAG destructive_access"), "{text}");
    assert!(text.contains("result: FINDINGS"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_set_up_like_the_template_and_an_admin_only_role_audit_clean() {
    let aws = aws_config().await;
    let s3 = s3().await;
    let bucket = unique_bucket("archive-clean");
    // Object Lock can only be turned on when the bucket is created.
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create a bucket with Object Lock");
    enable_versioning(&s3, &bucket).await;
    // Server access logs go to a bucket of their own, which lets S3's logging service write.
    let access_logs = unique_bucket("archive-access-logs");
    create_bucket(&s3, &access_logs).await;
    let logging_policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": format!("arn:aws:s3:::{access_logs}/*")}]});
    s3.put_bucket_policy()
        .bucket(&access_logs)
        .policy(logging_policy.to_string())
        .send()
        .await
        .expect("the access-log bucket's policy");
    s3.put_bucket_logging()
        .bucket(&bucket)
        .bucket_logging_status(
            aws_sdk_s3::types::BucketLoggingStatus::builder()
                .logging_enabled(
                    aws_sdk_s3::types::LoggingEnabled::builder()
                        .target_bucket(&access_logs)
                        .target_prefix(format!("{bucket}/"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .expect("server access logging");
    s3.put_object_lock_configuration()
        .bucket(&bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Governance)
                                .days(30)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("object lock");
    s3.put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .expect("public access block");
    put_policy(&s3, &bucket, &template_base_policy(&bucket)).await;
    let role = unique_role("MemberRole");
    create_role(
        &role,
        &format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{ADMIN}"}},"Action":"sts:AssumeRole"}}]}}"#
        ),
    )
    .await;
    // The policy-updater admits an account, as it does for every new account.
    let config = config(&bucket, &role);
    let member = AccountId::new("333333333333").unwrap();
    PolicyUpdater::new(&aws, config.clone(), FAST_LOOP)
        .admit(member)
        .await
        .expect("admit");

    let (code, out, err) = audit_archive(&config, &["--format", "json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines = json_lines(&out);
    let (policy, member_role, protections, summary) = (&lines[0], &lines[1], &lines[2], &lines[4]);
    // Set up like the template: every control but MFA delete, which only the root user sets.
    assert_eq!(
        outcomes(&lines[3]),
        [
            ("CloudTrail.6", "pass"),
            ("CloudTrail.7", "pass"),
            ("S3.5", "pass"),
            ("S3.14", "pass"),
            ("S3.15", "pass"),
            ("S3.20", "fail")
        ],
        "{}",
        lines[3]
    );
    assert_eq!(flag_codes(policy), Vec::<&str>::new(), "{policy}");
    assert_eq!(policy["statements"], 4);
    // CloudTrail is the writer, bound to the admitted trail.
    let trail = format!("arn:aws:cloudtrail:us-east-1:{member}:trail/trailkeeper");
    let grants = policy["grants"].as_array().unwrap();
    let writer = grants
        .iter()
        .find(|g| g["access"] == serde_json::json!(["write"]))
        .unwrap_or_else(|| panic!("no writer in {policy}"));
    assert_eq!(
        writer["principal"],
        serde_json::json!({"Service": "cloudtrail.amazonaws.com"})
    );
    assert_eq!(
        writer["restricted_by"],
        serde_json::json!([format!("aws:SourceArn={trail}")])
    );
    assert_eq!(writer["sid"], format!("TrailkeeperWrite{member}"));
    assert!(
        grants
            .iter()
            .any(|g| g["actions"] == serde_json::json!(["s3:GetBucketAcl"])
                && g["access"] == serde_json::json!([])),
        "{policy}"
    );
    assert_eq!(flag_codes(member_role), Vec::<&str>::new(), "{member_role}");
    assert_eq!(member_role["trusted"][0]["admin"], true);
    assert_eq!(protections["versioning"], "Enabled");
    assert_eq!(
        protections["object_lock"],
        serde_json::json!({"enabled": true, "mode": "GOVERNANCE", "days": 30, "years": null})
    );
    assert_eq!(
        protections["public_access_block"],
        serde_json::json!({
            "block_public_acls": true, "ignore_public_acls": true,
            "block_public_policy": true, "restrict_public_buckets": true,
        })
    );
    assert_eq!(flag_codes(protections), Vec::<&str>::new());
    assert_eq!(summary["status"], "clean");
    assert_eq!(summary["flags"], 0);

    let (code, text, _) = audit_archive(&config, &[]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "service cloudtrail.amazonaws.com: write [when aws:SourceArn={trail}]"
        )),
        "{text}"
    );
    assert!(
        text.contains("Object Lock on, GOVERNANCE 30 days"),
        "{text}"
    );
    assert!(text.contains("(administrator)"), "{text}");
    assert!(
        text.ends_with("result: CLEAN: nothing flagged (0 flags, 0 errors)\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_read_is_named_and_what_is_absent_is_reported() {
    // No such bucket: every bucket read fails, naming the call and the bucket (exit 2). A
    // member role that does not exist is reported as such: nobody can assume it.
    let bucket = unique_bucket("archive-missing");
    let role = unique_role("NoSuchRole");
    let (code, out, err) = audit_archive(&config(&bucket, &role), &["--format", "json"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "could not read s3:GetBucketPolicy on s3://{bucket}: NoSuchBucket"
        )),
        "{err}"
    );
    let lines = json_lines(&out);
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("s3:GetBucketPolicy on s3://"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["arn"], Value::Null);
    assert_eq!(lines[1]["error"], Value::Null);
    assert_eq!(flag_codes(&lines[1]), Vec::<&str>::new());
    assert_eq!(
        lines[2]["errors"].as_array().unwrap().len(),
        4,
        "{}",
        lines[2]
    );
    assert_eq!(lines[4]["status"], "incomplete");
    assert_eq!(lines[4]["errors"].as_array().unwrap().len(), 5);
    // What could not be read fails its control, saying so.
    let controls = lines[3]["controls"].as_array().unwrap();
    assert!(
        controls.iter().all(|c| c["outcome"] == "fail"
            && c["reason"].as_str().unwrap().contains("could not be read")),
        "{}",
        lines[3]
    );

    // A bucket with no policy at all: reported as such, not an error.
    let s3 = s3().await;
    let bare = unique_bucket("archive-nopolicy");
    create_bucket(&s3, &bare).await;
    let (code, out, err) = audit_archive(&config(&bare, &role), &[]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err, "");
    assert!(
        out.contains(&format!("bucket policy of s3://{bare}: none")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "member role {role}: does not exist in this account"
        )),
        "{out}"
    );
}
