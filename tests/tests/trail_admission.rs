//! CloudTrail refuses a trail whose bucket policy does not admit it, and S3 refuses a policy
//! change that the current policy denies: the emulator (tests/moto/server.py) now does both, as
//! AWS does, so the order and the retries of the two onboarding functions are tested for real.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_cloudtrail::error::ProvideErrorMetadata;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use trailkeeper::events::AccountId;
use trailkeeper::onboard::PolicyUpdater;
use trailkeeper::trail::Backoff;
use trailkeeper_e2e::*;

const INSUFFICIENT: &str = "InsufficientS3BucketPolicyException";

async fn as_account(mgmt: &SdkConfig, account: &str, role: &str) -> SdkConfig {
    trailkeeper::trail::assume_role(
        mgmt,
        &format!("arn:aws:iam::{account}:role/{role}"),
        "trailkeeper-test",
    )
    .await
    .unwrap_or_else(|e| panic!("assume {role} in {account}: {e}"))
}

fn direct(account: &str) -> LambdaEvent<Value> {
    LambdaEvent::new(json!({ "accountId": account }), Context::default())
}

/// A log-archive account owning a fresh bucket, and `n` member accounts.
async fn landscape(tag: &str, n: usize) -> (SdkConfig, SdkConfig, String, Vec<String>) {
    let mgmt = aws_config().await;
    let mut accounts = create_accounts(&mgmt, tag, n + 1).await;
    let archive_id = accounts.remove(0);
    let archive = as_account(&mgmt, &archive_id, "OrganizationAccountAccessRole").await;
    let bucket = unique_bucket(tag);
    create_bucket(&trailkeeper::store::s3_client(&archive), &bucket).await;
    (mgmt, archive, bucket, accounts)
}

async fn create_trail(
    ct: &aws_sdk_cloudtrail::Client,
    bucket: &str,
    prefix: Option<&str>,
) -> Result<(), (Option<String>, String)> {
    ct.create_trail()
        .name("trailkeeper")
        .s3_bucket_name(bucket)
        .set_s3_key_prefix(prefix.map(str::to_owned))
        .is_multi_region_trail(true)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| (e.code().map(str::to_owned), format!("{e:?}")))
}

#[tokio::test]
async fn create_trail_is_refused_until_the_bucket_policy_admits_that_trail() {
    let (mgmt, archive, bucket, members) = landscape("admission", 2).await;
    let config = onboard_config(&[
        ("TRAILKEEPER_BUCKET", bucket.clone()),
        ("TRAILKEEPER_PREFIX", "org".into()),
    ]);
    let (admitted, other) = (&members[0], &members[1]);
    let ct = |a: String| {
        let mgmt = mgmt.clone();
        async move {
            aws_sdk_cloudtrail::Client::new(
                &as_account(&mgmt, &a, "OrganizationAccountAccessRole").await,
            )
        }
    };
    let (ct_admitted, ct_other) = (ct(admitted.clone()).await, ct(other.clone()).await);

    // No policy at all: refused, naming the bucket, as CloudTrail words it.
    let (code, message) = create_trail(&ct_admitted, &bucket, Some("org"))
        .await
        .unwrap_err();
    assert_eq!(code.as_deref(), Some(INSUFFICIENT), "{message}");
    assert!(
        message.contains(&format!(
            "Incorrect S3 bucket policy is detected for bucket: {bucket}"
        )),
        "{message}"
    );

    PolicyUpdater::new(&archive, config.clone(), FAST_LOOP)
        .admit(AccountId::new(admitted).unwrap())
        .await
        .expect("admit");
    // The admitted account's trail, under its prefix: accepted.
    create_trail(&ct_admitted, &bucket, Some("org"))
        .await
        .expect("an admitted trail");
    // Another account's trail into the same bucket: its statement is not there.
    let (code, _) = create_trail(&ct_other, &bucket, Some("org"))
        .await
        .unwrap_err();
    assert_eq!(code.as_deref(), Some(INSUFFICIENT));
    // The admitted account's trail under another prefix: the statement binds the prefix.
    let (code, _) = ct_admitted
        .update_trail()
        .name("trailkeeper")
        .s3_key_prefix("elsewhere")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| (e.code().map(str::to_owned), format!("{e:?}")))
        .unwrap_err();
    assert_eq!(code.as_deref(), Some(INSUFFICIENT));
    // An update that keeps the destination is not checked again (CloudTrail checks a new one).
    ct_admitted
        .update_trail()
        .name("trailkeeper")
        .enable_log_file_validation(true)
        .send()
        .await
        .expect("an update that keeps bucket and prefix");
}

#[tokio::test]
async fn organization_mode_admits_the_organization_s_trails_and_no_others() {
    let (mgmt, archive, bucket, members) = landscape("orgadmit", 1).await;
    let org_id = aws_sdk_organizations::Client::new(&mgmt)
        .describe_organization()
        .send()
        .await
        .expect("describe organization")
        .organization()
        .and_then(|o| o.id())
        .expect("organization id")
        .to_owned();
    let config = onboard_config(&[
        ("TRAILKEEPER_BUCKET", bucket.clone()),
        ("TRAILKEEPER_POLICY_MODE", "organization".into()),
        ("TRAILKEEPER_ORG_ID", org_id.clone()),
    ]);
    PolicyUpdater::new(&archive, config, FAST_LOOP)
        .admit(AccountId::new(&members[0]).unwrap())
        .await
        .expect("admit");
    let member = aws_sdk_cloudtrail::Client::new(
        &as_account(&mgmt, &members[0], "OrganizationAccountAccessRole").await,
    );
    create_trail(&member, &bucket, None)
        .await
        .expect("a trail of the organization");
    // An account outside the organization (moto lets any role be assumed): aws:SourceOrgID
    // is not the organization's, so CloudTrail refuses it.
    let outsider =
        aws_sdk_cloudtrail::Client::new(&as_account(&mgmt, "999988887777", "Anyone").await);
    let (code, message) = create_trail(&outsider, &bucket, None).await.unwrap_err();
    assert_eq!(code.as_deref(), Some(INSUFFICIENT), "{message}");
}

/// The trail-enabler gets the account event before the policy-updater has admitted it (the
/// two rules deliver independently): it backs off, and succeeds once the policy lands.
#[tokio::test]
async fn the_trail_enabler_run_before_the_policy_updater_succeeds_once_the_policy_lands() {
    let (mgmt, archive, bucket, members) = landscape("order", 1).await;
    let account = members[0].clone();
    let config = onboard_config(&[("TRAILKEEPER_BUCKET", bucket.clone())]);
    let bound = Backoff {
        attempts: 10,
        first: Duration::from_millis(400),
        max: Duration::from_secs(2),
    };
    let trails = trail_enabler::Deps::with_backoff(&mgmt, config.clone(), bound);
    let enabling = tokio::spawn({
        let account = account.clone();
        async move { trail_enabler::handle(&trails, direct(&account)).await }
    });
    // Let the trail-enabler be refused at least once before the policy is written.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !enabling.is_finished(),
        "the trail-enabler finished before any admission"
    );
    let policy = policy_updater::Deps::with_bounds(&archive, config, FAST_LOOP);
    let out = policy_updater::handle(&policy, direct(&account))
        .await
        .expect("policy-updater");
    assert_eq!(out["status"], "admitted", "{out}");
    let out = enabling
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("trail-enabler after admission: {e}"));
    assert_eq!(out["status"], "enabled", "{out}");
    assert_eq!(out["action"], "create", "{out}");
    assert!(out["retries"].as_u64().unwrap() >= 1, "{out}");
}

#[tokio::test]
async fn a_policy_that_never_lands_fails_naming_the_account_and_the_bucket() {
    let (mgmt, _archive, bucket, members) = landscape("neverlands", 1).await;
    let config = onboard_config(&[("TRAILKEEPER_BUCKET", bucket.clone())]);
    let trails = trail_enabler::Deps::with_backoff(&mgmt, config, FAST_BACKOFF);
    let error = trail_enabler::handle(&trails, direct(&members[0]))
        .await
        .unwrap_err()
        .to_string();
    for part in [
        format!("account {}", members[0]),
        "cloudtrail:CreateTrail still refused after 3 attempts".to_owned(),
        INSUFFICIENT.to_owned(),
        format!("bucket: {bucket}"),
    ] {
        assert!(error.contains(&part), "{part:?} not in: {error}");
    }
}

/// The deployed base policy lets only the policy-updater's role change the policy (and the
/// bucket owner's root user, whom S3 always lets): another role of the same account is refused.
#[tokio::test]
async fn a_locked_bucket_policy_is_changed_only_by_the_policy_updater_role() {
    let mgmt = aws_config().await;
    let owner = aws_sdk_sts::Client::new(&mgmt)
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .account()
        .unwrap()
        .to_owned();
    let root = s3().await;
    let bucket = unique_bucket("locked");
    create_bucket(&root, &bucket).await;
    let updater = format!("arn:aws:iam::{owner}:role/trailkeeper-PolicyUpdaterRole-TEST");
    let lock = |extra: &str| {
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "OnlyPolicyUpdaterChangesPolicy", "Effect": "Deny", "Principal": "*",
             "Action": ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"],
             "Resource": format!("arn:aws:s3:::{bucket}"),
             "Condition": {"ArnNotEquals": {"aws:PrincipalArn": updater}}},
            {"Sid": extra, "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
             "Resource": format!("arn:aws:s3:::{bucket}/x")}]})
        .to_string()
    };
    let put = |s3: aws_sdk_s3::Client, text: String| {
        let bucket = bucket.clone();
        async move {
            s3.put_bucket_policy()
                .bucket(bucket)
                .policy(text)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }
    };
    put(root.clone(), lock("First"))
        .await
        .expect("the first policy");
    let operator =
        trailkeeper::store::s3_client(&as_account(&mgmt, &owner, "SecurityOperator").await);
    let refused = put(operator.clone(), lock("ByOperator")).await.unwrap_err();
    assert!(
        refused.contains("AccessDenied")
            && refused.contains(&format!("arn:aws:iam::{owner}:role/SecurityOperator"))
            && refused.contains("OnlyPolicyUpdaterChangesPolicy"),
        "{refused}"
    );
    let deleted = operator.delete_bucket_policy().bucket(&bucket).send().await;
    assert!(deleted.is_err(), "DeleteBucketPolicy by the operator");
    let as_updater = trailkeeper::store::s3_client(
        &as_account(&mgmt, &owner, "trailkeeper-PolicyUpdaterRole-TEST").await,
    );
    put(as_updater, lock("ByUpdater"))
        .await
        .expect("the policy-updater's role");
    put(root.clone(), lock("ByRoot"))
        .await
        .expect("the bucket owner's root user");
    assert!(bucket_policy(&root, &bucket).await.contains("ByRoot"));
}
