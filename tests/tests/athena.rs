//! The Athena tables' account projection on the emulator: the policy-updater, once it has
//! admitted an account to the bucket policy, appends it to `projection.account.values` of each
//! table, changes nothing else in the table, writes nothing when the account is listed, and
//! names the table when it cannot.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use trailkeeper::onboard::{OnboardConfig, PolicyLoop};
use trailkeeper::trail::Backoff;
use trailkeeper_e2e::*;

/// Short waits: moto answers in milliseconds. `settle` still exceeds `fence` plus a call.
const TEST_LOOP: PolicyLoop = PolicyLoop {
    attempts: 10,
    fence: Duration::from_millis(400),
    settle: Duration::from_millis(800),
    backoff: Backoff {
        attempts: 10,
        first: Duration::from_millis(50),
        max: Duration::from_millis(500),
    },
};

/// The moto account, which owns the bucket and the catalog.
const ARCHIVE: &str = "123456789012";

fn config(bucket: &str, database: &str, tables: &str) -> OnboardConfig {
    let vars = [
        ("TRAILKEEPER_BUCKET", bucket.to_string()),
        ("TRAILKEEPER_HOME_REGION", "us-east-1".to_string()),
        ("TRAILKEEPER_ATHENA_DATABASE", database.to_string()),
        ("TRAILKEEPER_ATHENA_TABLES", tables.to_string()),
    ];
    OnboardConfig::from_vars(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("configuration")
}

/// A table shaped as template.yaml's (a few of its columns and parameters).
fn table_input(name: &str, bucket: &str, parameters: &[(&str, &str)]) -> TableInput {
    let column = |n: &str, t: &str| Column::builder().name(n).r#type(t).build().unwrap();
    TableInput::builder()
        .name(name)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
        .partition_keys(column("account", "string"))
        .partition_keys(column("region", "string"))
        .partition_keys(column("day", "string"))
        .storage_descriptor(
            StorageDescriptor::builder()
                .location(format!("s3://{bucket}/AWSLogs/"))
                .columns(column("eventversion", "string"))
                .columns(column("eventname", "string"))
                .input_format("com.amazon.emr.cloudtrail.CloudTrailInputFormat")
                .build(),
        )
        .build()
        .unwrap()
}

async fn table(glue: &aws_sdk_glue::Client, db: &str, name: &str) -> aws_sdk_glue::types::Table {
    glue.get_table()
        .database_name(db)
        .name(name)
        .send()
        .await
        .expect("get table")
        .table
        .expect("a table")
}

fn accounts(t: &aws_sdk_glue::types::Table) -> String {
    t.parameters.as_ref().unwrap()["projection.account.values"].clone()
}

async fn admit(deps: &policy_updater::Deps, account: &str) -> Result<Value, String> {
    policy_updater::handle(
        deps,
        LambdaEvent::new(json!({ "accountId": account }), Context::default()),
    )
    .await
    .map_err(|e| e.to_string())
}

fn statuses(out: &Value) -> HashMap<String, String> {
    out["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["policy"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn onboarding_projects_each_admitted_account_into_the_athena_tables() {
    let aws = aws_config().await;
    let s3 = s3().await;
    let glue = aws_sdk_glue::Client::new(&aws);
    let bucket = unique_bucket("athena");
    create_bucket(&s3, &bucket).await;
    let db = bucket.replace('-', "_");
    glue.create_database()
        .database_input(DatabaseInput::builder().name(&db).build().unwrap())
        .send()
        .await
        .expect("create database");
    let parameters = [
        ("projection.enabled", "true"),
        ("projection.account.type", "enum"),
        ("projection.account.values", ARCHIVE),
        ("projection.day.format", "yyyy/MM/dd"),
    ];
    for name in ["cloudtrail", "cloudtrail_org"] {
        glue.create_table()
            .database_name(&db)
            .table_input(table_input(name, &bucket, &parameters))
            .send()
            .await
            .expect("create table");
    }
    let before = table(&glue, &db, "cloudtrail").await;
    let deps = policy_updater::Deps::with_bounds(
        &aws,
        config(&bucket, &db, "cloudtrail,cloudtrail_org"),
        TEST_LOOP,
    );

    let out = admit(&deps, "111111111111").await.expect("admitted");
    let projected = |table: &str| format!("account projection of Athena table {db}.{table}");
    let s = statuses(&out);
    assert_eq!(s[&projected("cloudtrail")], "admitted", "{out}");
    assert_eq!(s[&projected("cloudtrail_org")], "admitted", "{out}");
    let after = table(&glue, &db, "cloudtrail").await;
    assert_eq!(accounts(&after), format!("{ARCHIVE},111111111111"));
    assert_eq!(
        accounts(&table(&glue, &db, "cloudtrail_org").await),
        accounts(&after)
    );
    // Nothing else of the table changed.
    let mut rest = after.parameters.clone().unwrap();
    rest.insert("projection.account.values".into(), ARCHIVE.into());
    assert_eq!(Some(rest), before.parameters);
    assert_eq!(after.storage_descriptor, before.storage_descriptor);
    assert_eq!(after.partition_keys, before.partition_keys);
    assert_eq!(after.table_type, before.table_type);

    // Again: already listed, no write.
    let out = admit(&deps, "111111111111").await.expect("admitted again");
    assert_eq!(statuses(&out)[&projected("cloudtrail")], "already_admitted");
    let again = table(&glue, &db, "cloudtrail").await;
    assert_eq!(
        again.version_id, after.version_id,
        "a write without a change"
    );

    // The next account goes last; the first stays.
    admit(&deps, "222222222222").await.expect("second account");
    assert_eq!(
        accounts(&table(&glue, &db, "cloudtrail").await),
        format!("{ARCHIVE},111111111111,222222222222")
    );

    // A table that does not project accounts: the error names it; the policy still admits.
    glue.create_table()
        .database_name(&db)
        .table_input(table_input(
            "cloudtrail_manual",
            &bucket,
            &[("projection.enabled", "false")],
        ))
        .send()
        .await
        .expect("create table");
    let deps = policy_updater::Deps::with_bounds(
        &aws,
        config(&bucket, &db, "cloudtrail_manual"),
        TEST_LOOP,
    );
    let e = admit(&deps, "333333333333")
        .await
        .expect_err("no projection");
    assert!(
        e.contains("333333333333")
            && e.contains(&format!("{db}.cloudtrail_manual"))
            && e.contains("projection.account.values"),
        "{e}"
    );
    let policy = bucket_policy(&s3, &bucket).await;
    assert!(policy.contains("AWSLogs/333333333333/"), "{policy}");

    // A table that does not exist: named too.
    let deps = policy_updater::Deps::with_bounds(
        &aws,
        config(&bucket, &db, "cloudtrail_missing"),
        TEST_LOOP,
    );
    let e = admit(&deps, "444444444444").await.expect_err("no table");
    assert!(
        e.contains(&format!("{db}.cloudtrail_missing")) && e.contains("EntityNotFound"),
        "{e}"
    );
}
