//! `trailkeeper retire` on the emulator: an old bucket (versioned, with noncurrent versions and
//! delete markers) and the trails that wrote to it, one in the caller's account and one in a
//! member account, retired after `trailkeeper consolidate --all-versions` and a clean
//! `trailkeeper validate --manifest`; refused when one object lacks a verified copy; a plan that
//! changes nothing; objects that land after the check; an overwritten log's original, which
//! exists only as a noncurrent version, never destroyed.

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use serde_json::Value;
use trailkeeper::consolidate::Location;
use trailkeeper::events::AccountId;
use trailkeeper::onboard::OnboardConfig;
use trailkeeper::policy::TrailArn;
use trailkeeper::retire::{Retirer, TrailTarget, ValidationReport};
use trailkeeper::testdata::{Generator, TestKey, TrailLayout};
use trailkeeper::trail::TrailEnabler;
use trailkeeper_e2e::*;

/// moto's account for the test credentials: the caller's own account.
const CALLER: &str = "123456789012";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-05-01T10:05:31Z")
        .unwrap()
        .to_utc()
}

fn config(central: &str) -> OnboardConfig {
    onboard_config(&[("TRAILKEEPER_BUCKET", central.to_string())])
}

/// Every version and delete marker of a bucket, read with the SDK alone (not with the code
/// under test): `key version etag latest|noncurrent|marker`; None when the bucket is gone.
async fn versions(s3: &aws_sdk_s3::Client, bucket: &str) -> Option<Vec<String>> {
    let page = match s3.list_object_versions().bucket(bucket).send().await {
        Ok(p) => p,
        Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchBucket") => {
            return None;
        }
        Err(e) => panic!("list versions of {bucket}: {e:?}"),
    };
    assert_ne!(page.is_truncated(), Some(true), "one page in these tests");
    let mut all: Vec<String> = page
        .versions()
        .iter()
        .map(|v| {
            format!(
                "{} {} {} {}",
                v.key().unwrap(),
                v.version_id().unwrap_or("null"),
                v.e_tag().unwrap_or("-"),
                if v.is_latest() == Some(true) {
                    "latest"
                } else {
                    "noncurrent"
                }
            )
        })
        .chain(page.delete_markers().iter().map(|m| {
            format!(
                "{} {} - marker",
                m.key().unwrap(),
                m.version_id().unwrap_or("null")
            )
        }))
        .collect();
    all.sort();
    Some(all)
}

async fn put_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// A versioned old bucket with signed history of the caller's account, one log overwritten
/// (a noncurrent version) and a deleted object (a delete marker over a noncurrent version).
async fn old_bucket(s3: &aws_sdk_s3::Client, name: &str, hours: usize) -> (String, usize) {
    let key = TestKey::generate(
        t0() - chrono::Duration::days(1),
        t0() + chrono::Duration::days(30),
    );
    register_keys(&[&key]);
    let bucket = unique_bucket(name);
    create_bucket(s3, &bucket).await;
    enable_versioning(s3, &bucket).await;
    // The old trails' bucket let CloudTrail deliver, or they could not have been created.
    let_cloudtrail_deliver(s3, &bucket).await;
    let layout = TrailLayout::new(&bucket, CALLER, "us-east-1");
    let history = Generator::new(layout, &key, 7).chain(t0(), hours, None, |i| i % 2);
    upload(s3, &bucket, &history).await;
    // The same log written twice: its first version is noncurrent.
    let again = history.logs.first().expect("a log");
    put(s3, &bucket, again).await;
    put_bytes(s3, &bucket, "scratch/deleted.txt", b"gone").await;
    delete(s3, &bucket, "scratch/deleted.txt").await;
    (bucket, history.objects().count())
}

async fn central_bucket(s3: &aws_sdk_s3::Client, name: &str) -> String {
    let bucket = unique_bucket(name);
    create_bucket(s3, &bucket).await;
    bucket
}

/// Consolidates every state of the old bucket's history (`--all-versions`); the manifest.
async fn consolidate(old: &str, central: &str) -> String {
    let run = trailkeeper_consolidate(&["--from", old, "--to", central, "--all-versions"]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.lines, run.stderr);
    run.summary()["manifest"]
        .as_str()
        .expect("a manifest")
        .to_string()
}

/// `trailkeeper validate --manifest` of the copied history, which must be clean, saved as retire
/// reads it; the file's path.
async fn validated(central: &str, manifest: &str) -> String {
    let v = trailkeeper_validate(&["--bucket", central, "--manifest", manifest]).await;
    assert_eq!(v.code, 0, "{:?}\n{}", v.not_valid(), v.stderr);
    let path = std::env::temp_dir().join(format!("{central}-validation.jsonl"));
    std::fs::write(
        &path,
        v.lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .expect("write the validation");
    path.to_string_lossy().into_owned()
}

/// A trail named `name` writing to `bucket`, in the caller's account; its ARN.
async fn own_trail(mgmt: &aws_config::SdkConfig, name: &str, bucket: &str) -> String {
    let ct = aws_sdk_cloudtrail::Client::new(mgmt);
    trail_in(&ct, name, bucket).await
}

async fn trail_in(ct: &aws_sdk_cloudtrail::Client, name: &str, bucket: &str) -> String {
    let out = ct
        .create_trail()
        .name(name)
        .s3_bucket_name(bucket)
        .is_multi_region_trail(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create trail {name}: {e:?}"));
    ct.start_logging().name(name).send().await.expect("start");
    out.trail_arn().expect("arn").to_string()
}

/// A CloudTrail client as `account` (through the member role, as retire does).
async fn member_cloudtrail(
    mgmt: &aws_config::SdkConfig,
    central: &str,
    account: AccountId,
) -> aws_sdk_cloudtrail::Client {
    let c = config(central);
    TrailEnabler::new(mgmt, c.trail_spec(), c.member_role.clone(), FAST_BACKOFF)
        .member_cloudtrail(account)
        .await
        .expect("member role")
        .0
}

async fn trail_exists(ct: &aws_sdk_cloudtrail::Client, arn: &str) -> bool {
    let name = arn.rsplit('/').next().unwrap();
    ct.describe_trails()
        .trail_name_list(name)
        .send()
        .await
        .expect("describe trails")
        .trail_list()
        .iter()
        .any(|t| t.trail_arn() == Some(arn))
}

/// Runs `trailkeeper retire --format json` in-process; every line must be JSON.
async fn retire(
    central: &str,
    mgmt: &aws_config::SdkConfig,
    args: &[&str],
) -> (i32, Vec<Value>, String) {
    use clap::Parser;
    let mut argv = vec!["trailkeeper", "retire", "--format", "json"];
    argv.extend_from_slice(args);
    let cli = trailkeeper_cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{e}"));
    let trailkeeper_cli::Command::Retire(a) = cli.command else {
        panic!("not retire")
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let setup = trailkeeper_cli::OrgSetup {
        config: config(central),
        aws: mgmt.clone(),
        backoff: FAST_BACKOFF,
    };
    let code = trailkeeper_cli::retire::run_with(a, setup, &mut out, &mut err).await;
    let lines = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (code, lines, String::from_utf8_lossy(&err).into_owned())
}

fn summary(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["type"] == "summary")
        .unwrap_or_else(|| panic!("a summary: {lines:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consolidated_bucket_and_its_trails_are_retired_after_a_plan_that_changes_nothing() {
    let mgmt = aws_config().await;
    let s3 = s3().await;
    let (old, objects) = old_bucket(&s3, "retire-old", 4).await;
    let central = central_bucket(&s3, "retire-central").await;
    let manifest = consolidate(&old, &central).await;
    let validation = validated(&central, &manifest).await;
    let own = own_trail(&mgmt, &unique_bucket("legacy"), &old).await;
    let member = AccountId::new(&create_accounts(&mgmt, "retire", 1).await[0]).unwrap();
    let member_ct = member_cloudtrail(&mgmt, &central, member).await;
    let theirs = trail_in(&member_ct, &unique_bucket("legacy-member"), &old).await;
    let own_ct = aws_sdk_cloudtrail::Client::new(&mgmt);

    let old_before = versions(&s3, &old).await.expect("the old bucket");
    let central_before = versions(&s3, &central).await.expect("the central bucket");
    // The history, the log's earlier version, and the deleted object's version and marker.
    assert_eq!(old_before.len(), objects + 3, "{old_before:#?}");

    // The plan: everything is verified, nothing is changed.
    let from = format!("s3://{old}");
    let args = [
        "--from",
        from.as_str(),
        "--trail",
        own.as_str(),
        "--trail",
        theirs.as_str(),
        "--validation",
        validation.as_str(),
    ];
    let (code, lines, err) = retire(&central, &mgmt, &args).await;
    assert_eq!(code, 0, "{lines:#?}\n{err}");
    let s = summary(&lines);
    assert_eq!(s["status"], "plan", "{s}");
    assert_eq!(s["current_objects"], objects as u64);
    assert_eq!(s["verified"], objects as u64);
    assert_eq!(s["unverified"], 0);
    assert_eq!(s["manifests"].as_array().unwrap().len(), 1, "{s}");
    let planned: Vec<&Value> = lines.iter().filter(|l| l["type"] == "trail").collect();
    assert_eq!(planned.len(), 2);
    assert!(
        planned.iter().all(|t| t["status"] == "to_delete"),
        "{planned:?}"
    );
    let bucket_line = lines.iter().find(|l| l["type"] == "bucket").unwrap();
    assert_eq!(bucket_line["noncurrent_versions"], 2, "{bucket_line}");
    assert_eq!(bucket_line["delete_markers"], 1, "{bucket_line}");
    assert_eq!(versions(&s3, &old).await.as_ref(), Some(&old_before));
    assert_eq!(
        versions(&s3, &central).await.as_ref(),
        Some(&central_before)
    );
    assert!(trail_exists(&own_ct, &own).await);
    assert!(trail_exists(&member_ct, &theirs).await);

    // The retirement: trails, every version and marker, the bucket; the central copies stay.
    let mut yes = args.to_vec();
    yes.push("--yes");
    let (code, lines, err) = retire(&central, &mgmt, &yes).await;
    assert_eq!(code, 0, "{lines:#?}\n{err}");
    let s = summary(&lines);
    assert_eq!(s["status"], "retired", "{s}");
    assert_eq!(s["trails_deleted"], 2);
    assert_eq!(s["versions_deleted"], old_before.len() as u64);
    assert_eq!(s["bucket_gone"], true);
    assert_eq!(versions(&s3, &old).await, None, "the old bucket is gone");
    assert_eq!(
        versions(&s3, &central).await.as_ref(),
        Some(&central_before)
    );
    assert!(!trail_exists(&own_ct, &own).await, "{own} is gone");
    assert!(!trail_exists(&member_ct, &theirs).await, "{theirs} is gone");

    // Again: everything is already gone, and that is success.
    let (code, lines, err) = retire(&central, &mgmt, &yes).await;
    assert_eq!(code, 0, "{lines:#?}\n{err}");
    assert_eq!(summary(&lines)["status"], "retired");
    assert!(
        lines
            .iter()
            .filter(|l| l["type"] == "trail")
            .all(|t| t["status"] == "already_gone" || t["status"] == "deleted"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "bucket" && l["status"] == "already_gone")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_object_without_a_verified_copy_refuses_the_whole_retirement_and_changes_nothing() {
    let mgmt = aws_config().await;
    let s3 = s3().await;
    let (old, objects) = old_bucket(&s3, "refused-old", 3).await;
    let central = central_bucket(&s3, "refused-central").await;
    consolidate(&old, &central).await;
    // Not CloudTrail's, so consolidate never copied it.
    put_bytes(&s3, &old, "notes/handover.txt", b"keep me").await;
    // A copy that no longer matches its source.
    let tampered = list_keys(&s3, &central, "AWSLogs/")
        .await
        .into_iter()
        .find(|k| k.contains("/CloudTrail/"))
        .expect("a copied log");
    put_bytes(&s3, &central, &tampered, b"not the log").await;
    let trail = own_trail(&mgmt, &unique_bucket("refused"), &old).await;
    let old_before = versions(&s3, &old).await.unwrap();
    let central_before = versions(&s3, &central).await.unwrap();

    let from = format!("s3://{old}");
    for extra in [None, Some("--yes")] {
        let mut args = vec!["--from", from.as_str(), "--trail", trail.as_str()];
        args.extend(extra);
        let (code, lines, err) = retire(&central, &mgmt, &args).await;
        assert_eq!(code, 1, "{args:?}: {lines:#?}\n{err}");
        let s = summary(&lines);
        assert_eq!(s["status"], "refused", "{s}");
        assert_eq!(s["current_objects"], objects as u64 + 1);
        assert_eq!(s["unverified"], 2);
        let unverified: Vec<(&str, &str)> = lines
            .iter()
            .filter(|l| l["status"] == "unverified")
            .map(|l| (l["key"].as_str().unwrap(), l["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(unverified.len(), 2, "{unverified:?}");
        let (key, why) = unverified
            .iter()
            .find(|(k, _)| *k == "notes/handover.txt")
            .expect("the object consolidate never copied");
        assert!(why.contains("no consolidation manifest"), "{key}: {why}");
        assert!(why.contains("not a CloudTrail log"), "{why}");
        let (_, why) = unverified
            .iter()
            .find(|(k, _)| *k == tampered)
            .expect("the object whose copy was changed");
        assert!(why.contains(&format!("s3://{central}/{tampered}")), "{why}");
        assert!(why.contains("differs"), "{why}");
        assert_eq!(versions(&s3, &old).await.as_ref(), Some(&old_before));
        assert_eq!(
            versions(&s3, &central).await.as_ref(),
            Some(&central_before)
        );
        assert!(trail_exists(&aws_sdk_cloudtrail::Client::new(&mgmt), &trail).await);
    }

    // A bucket nobody consolidated: every object is named (and the overwritten log's earlier
    // version under AWSLogs/), and nothing is deleted.
    let (never, n) = old_bucket(&s3, "never", 2).await;
    let never_before = versions(&s3, &never).await;
    let from = format!("s3://{never}");
    let (code, lines, _) = retire(&central, &mgmt, &["--from", &from, "--yes"]).await;
    assert_eq!(code, 1);
    assert_eq!(summary(&lines)["unverified"], n as u64 + 1);
    assert_eq!(versions(&s3, &never).await, never_before);

    // The central bucket itself, or a trail that writes elsewhere, is refused as an error.
    let (code, _, err) = retire(&central, &mgmt, &["--from", &format!("s3://{central}")]).await;
    assert_eq!(code, 2);
    assert!(err.contains("is the central bucket"), "{err}");
    let_cloudtrail_deliver(&s3, &central).await;
    let elsewhere = own_trail(&mgmt, &unique_bucket("elsewhere"), &central).await;
    let (code, _, err) = retire(
        &central,
        &mgmt,
        &[
            "--from",
            &format!("s3://{old}"),
            "--trail",
            &elsewhere,
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains(&elsewhere) && err.contains("not to s3://"),
        "{err}"
    );
    assert!(trail_exists(&aws_sdk_cloudtrail::Client::new(&mgmt), &elsewhere).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_that_lands_after_the_check_stops_the_deletion_after_the_trails() {
    let mgmt = aws_config().await;
    let s3 = s3().await;
    let (old, _) = old_bucket(&s3, "landed-old", 2).await;
    let central = central_bucket(&s3, "landed-central").await;
    let manifest = consolidate(&old, &central).await;
    let validation = validated(&central, &manifest).await;
    let report =
        ValidationReport::parse(&validation, &std::fs::read_to_string(&validation).unwrap())
            .unwrap();
    let arn = own_trail(&mgmt, &unique_bucket("landed"), &old).await;
    let c = config(&central);
    let trail = TrailTarget::new(
        &mgmt,
        &c.trail_spec(),
        &c.member_role,
        Some(AccountId::new(CALLER).unwrap()),
        TrailArn::parse(&arn).unwrap(),
        FAST_BACKOFF,
    )
    .await
    .expect("trail");
    let trails = [trail];
    let retirer = Retirer::new(s3.clone(), 8);
    let plan = retirer
        .plan(&old, &Location::new(&central, None), &trails, Some(&report))
        .await
        .expect("plan");
    assert!(!plan.refused(), "{:?}", plan.unverified);

    // The old trail delivers one more log between the check and its deletion.
    let late = format!(
        "AWSLogs/{CALLER}/CloudTrail/us-east-1/2025/05/01/{CALLER}_CloudTrail_us-east-1_20250501T2355Z_late.json.gz"
    );
    put_bytes(&s3, &old, &late, b"late").await;
    let before = versions(&s3, &old).await.unwrap();
    let retired = retirer.retire(&plan, &trails).await.expect("retire");
    assert_eq!(retired.trails_deleted, std::slice::from_ref(&arn));
    assert_eq!(retired.landed.len(), 1, "{:?}", retired.landed);
    assert_eq!(retired.landed[0].object.key, late);
    assert!(retired.landed[0].reason.contains("appeared after"));
    assert_eq!(retired.deleted, 0);
    assert!(!retired.bucket_gone);
    assert_eq!(versions(&s3, &old).await, Some(before), "nothing deleted");
    assert!(!trail_exists(&aws_sdk_cloudtrail::Client::new(&mgmt), &arn).await);

    // Consolidated again, the same retirement goes through (the trail is already gone).
    consolidate(&old, &central).await;
    let from = format!("s3://{old}");
    let (code, lines, err) = retire(
        &central,
        &mgmt,
        &[
            "--from",
            &from,
            "--trail",
            &arn,
            "--yes",
            "--validation",
            &validation,
        ],
    )
    .await;
    assert_eq!(code, 0, "{lines:#?}\n{err}");
    assert_eq!(summary(&lines)["status"], "retired");
    assert_eq!(summary(&lines)["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(versions(&s3, &old).await, None);
}

/// The version ids of `key` in `bucket` that are not its current version, and the ids of the
/// delete markers over it (read with the SDK alone).
async fn earlier_states(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> (Vec<String>, Vec<String>) {
    let page = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("list versions of {bucket}/{key}: {e:?}"));
    let noncurrent = page
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key) && v.is_latest() != Some(true))
        .map(|v| v.version_id().unwrap_or("null").to_string())
        .collect();
    let markers = page
        .delete_markers()
        .iter()
        .filter(|m| m.key() == Some(key))
        .map(|m| m.version_id().unwrap_or("null").to_string())
        .collect();
    (noncurrent, markers)
}

/// Attack 5: in an old bucket where a log was overwritten (and another deleted), the originals
/// exist only as noncurrent versions. Retire must not destroy them: it refuses until
/// `consolidate --all-versions` has copied them (keyed by version id, outside `AWSLogs/`) and a
/// clean `validate --manifest` of the copied history is shown; here the history is not clean
/// (the overwritten log's copy is the forgery), so it stays refused, naming what is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn retire_never_destroys_the_only_untampered_copy_of_an_overwritten_log() {
    let mgmt = aws_config().await;
    let s3 = s3().await;
    let key = TestKey::generate(
        t0() - chrono::Duration::days(1),
        t0() + chrono::Duration::days(30),
    );
    register_keys(&[&key]);
    let old = unique_bucket("evidence-old");
    create_bucket(&s3, &old).await;
    enable_versioning(&s3, &old).await;
    let layout = TrailLayout::new(&old, CALLER, "us-east-1");
    let history = Generator::new(layout, &key, 11).chain(t0(), 3, None, |_| 2);
    upload(&s3, &old, &history).await;
    let overwritten = history.logs[0].clone();
    let deleted = history.logs[1].key.clone();
    put_bytes(
        &s3,
        &old,
        &overwritten.key,
        &trailkeeper::testdata::gzip(b"{\"Records\":[]}"),
    )
    .await;
    delete(&s3, &old, &deleted).await;
    let (original, _) = earlier_states(&s3, &old, &overwritten.key).await;
    assert_eq!(original.len(), 1, "the original is one noncurrent version");
    let (deleted_versions, deleted_markers) = earlier_states(&s3, &old, &deleted).await;
    assert_eq!((deleted_versions.len(), deleted_markers.len()), (1, 1));
    let central = central_bucket(&s3, "evidence-central").await;
    // The current state only, as consolidate copies without --all-versions.
    let run = trailkeeper_consolidate(&["--from", &old, "--to", &central]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.lines, run.stderr);
    let old_before = versions(&s3, &old).await.expect("the old bucket");
    let from = format!("s3://{old}");

    // Only the current state was copied, and nothing validated it: refused, naming the
    // original of the overwritten log, the deleted log's version and its delete marker.
    let (code, lines, err) = retire(&central, &mgmt, &["--from", &from, "--yes"]).await;
    assert_eq!(code, 1, "{lines:#?}\n{err}");
    assert_eq!(summary(&lines)["status"], "refused", "{lines:#?}");
    assert_eq!(
        versions(&s3, &old).await.as_ref(),
        Some(&old_before),
        "nothing deleted"
    );
    let blocked = |lines: &[Value], key: &str, version: &str| -> String {
        lines
            .iter()
            .find(|l| l["status"] == "unverified" && l["key"] == key && l["version_id"] == version)
            .unwrap_or_else(|| panic!("{key} version {version} is named: {lines:#?}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let why = blocked(&lines, &overwritten.key, &original[0]);
    assert!(
        why.contains("noncurrent version") && why.contains("consolidate --all-versions"),
        "{why}"
    );
    let why = blocked(&lines, &deleted, &deleted_versions[0]);
    assert!(why.contains("noncurrent version"), "{why}");
    let why = blocked(&lines, &deleted, &deleted_markers[0]);
    assert!(why.contains("delete marker"), "{why}");
    let validation = lines
        .iter()
        .find(|l| l["type"] == "validation")
        .unwrap_or_else(|| panic!("the missing validation is named: {lines:#?}"));
    assert_eq!(validation["status"], "missing", "{validation}");
    assert!(
        validation["reason"]
            .as_str()
            .unwrap()
            .contains("--manifest"),
        "{validation}"
    );

    // Every earlier state copied, by version id, outside AWSLogs/, byte for byte.
    let run = trailkeeper_consolidate(&["--from", &old, "--to", &central, "--all-versions"]).await;
    assert_eq!(run.code, 0, "{:?}\n{}", run.lines, run.stderr);
    assert_eq!(run.summary()["delete_markers"], 1, "{}", run.summary());
    let manifest = run.summary()["manifest"].as_str().unwrap().to_string();
    let kept = format!(
        "trailkeeper-versions/{old}/{}/{}",
        original[0], overwritten.key
    );
    let body = s3
        .get_object()
        .bucket(&central)
        .key(&kept)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the original at {kept}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(
        body.as_ref(),
        overwritten.body.as_slice(),
        "the untampered bytes"
    );
    assert_eq!(
        list_keys(&s3, &central, &format!("trailkeeper-versions/{old}/"))
            .await
            .len(),
        2,
        "the two noncurrent versions"
    );

    // The copied history does not validate: the overwritten log's copy is the forgery, the
    // deleted one was never copied. Retire stays refused, naming both and the findings.
    let v = trailkeeper_validate(&["--bucket", &central, "--manifest", &manifest]).await;
    assert_eq!(v.code, 1, "{:?}", v.not_valid());
    let report = std::env::temp_dir().join(format!("{old}-validation.jsonl"));
    std::fs::write(
        &report,
        v.lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let report = report.to_string_lossy().into_owned();
    let (code, lines, err) = retire(
        &central,
        &mgmt,
        &["--from", &from, "--yes", "--validation", &report],
    )
    .await;
    assert_eq!(code, 1, "{lines:#?}\n{err}");
    assert_eq!(summary(&lines)["status"], "refused");
    assert!(
        !lines
            .iter()
            .any(|l| l["status"] == "unverified" && l["version_id"].is_string()),
        "every earlier state has its verified copy: {lines:#?}"
    );
    let validation = lines
        .iter()
        .find(|l| l["type"] == "validation")
        .expect("named");
    assert_eq!(validation["status"], "not_clean", "{validation}");
    let reason = validation["reason"].as_str().unwrap();
    assert!(
        reason.contains("hash_mismatch") && reason.contains(&overwritten.key),
        "{reason}"
    );
    let current = lines
        .iter()
        .find(|l| l["status"] == "unverified" && l["key"] == overwritten.key.as_str())
        .unwrap_or_else(|| panic!("the overwritten log is named: {lines:#?}"));
    assert!(
        current["reason"]
            .as_str()
            .unwrap()
            .contains("hash_mismatch"),
        "{current}"
    );
    assert_eq!(
        versions(&s3, &old).await.as_ref(),
        Some(&old_before),
        "nothing deleted"
    );
}
