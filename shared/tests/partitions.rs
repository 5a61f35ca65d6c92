//! Every partition (issue 19, defect 5): in GovCloud (`aws-us-gov`) and China (`aws-cn`) the
//! functions must take a valid key ARN at start-up, and every ARN they write into a policy must
//! name the partition of the function's own region, or it never matches anything.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde_json::Value;
use trailkeeper::events::AccountId;
use trailkeeper::onboard::{Admit, OnboardConfig, PolicyLoop, PolicyTarget, PolicyUpdater};
use trailkeeper::policy::TrailArn;
use trailkeeper::trail::KmsKeyArn;

/// (partition, a region of it)
const PARTITIONS: [(&str, &str); 3] = [
    ("aws", "us-east-1"),
    ("aws-us-gov", "us-gov-west-1"),
    ("aws-cn", "cn-north-1"),
];
const MEMBER: &str = "444455556666";
const KEY_OWNER: &str = "999988887777";

fn key_arn(partition: &str, region: &str) -> String {
    format!("arn:{partition}:kms:{region}:{KEY_OWNER}:key/1234abcd-12ab-34cd-56ef-1234567890ab")
}

/// The log-archive function's configuration in `region`, as the template sets it.
fn config(partition: &str, region: &str, mode: Option<&str>) -> OnboardConfig {
    let key = key_arn(partition, region);
    OnboardConfig::from_vars(|name| match name {
        "TRAILKEEPER_BUCKET" => Some("central-logs".into()),
        "TRAILKEEPER_PREFIX" => Some("org".into()),
        "TRAILKEEPER_KMS_KEY_ARN" => Some(key.clone()),
        "AWS_REGION" => Some(region.into()),
        "TRAILKEEPER_POLICY_MODE" => mode.map(str::to_owned),
        "TRAILKEEPER_ORG_ID" => Some("o-aa111bb222".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{partition} ({region}): {e}"))
}

fn sdk(region: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .build()
}

fn member() -> AccountId {
    AccountId::new(MEMBER).unwrap()
}

/// The policy an edit of `target` writes, from a key's default policy or a bucket without one.
fn written(target: &PolicyTarget, partition: &str, grant: &trailkeeper::policy::Grant) -> String {
    let key_default = format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:{partition}:iam::{KEY_OWNER}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    let before = match target {
        PolicyTarget::Bucket { .. } => None,
        PolicyTarget::Key { .. } => Some(key_default.as_str()),
    };
    match target.admit(before, grant).unwrap() {
        Admit::Changed { text, .. } => {
            // What was written is understood when read back (the verify step of the loop).
            assert!(target.admits(Some(&text), grant).unwrap(), "{text}");
            text
        }
        Admit::Unchanged => panic!("{target}: nothing written"),
    }
}

/// Every ARN in a policy, by the JSON strings that start with `arn:`.
fn arns(text: &str) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.starts_with("arn:") => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(m) => m.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&serde_json::from_str(text).unwrap(), &mut out);
    out
}

#[test]
fn key_arns_of_every_partition_are_accepted_at_start_up() {
    for (partition, region) in PARTITIONS {
        let arn = key_arn(partition, region);
        let key = KmsKeyArn::new(&arn).unwrap_or_else(|e| panic!("{arn}: {e}"));
        assert_eq!(key.as_str(), arn);
        assert_eq!(key.region(), region);
        assert_eq!(config(partition, region, None).kms_key, Some(key));
    }
    // Not a partition.
    assert!(KmsKeyArn::new("arn:aws-mars:kms:us-east-1:999988887777:key/1234abcd").is_err());
}

#[test]
fn trail_arns_name_the_partition_of_their_region() {
    for (partition, region) in PARTITIONS {
        let c = config(partition, region, None);
        let arn = format!("arn:{partition}:cloudtrail:{region}:{MEMBER}:trail/trailkeeper");
        assert_eq!(c.trail_spec().trail_arn(member()).to_string(), arn);
        assert_eq!(TrailArn::parse(&arn).unwrap().to_string(), arn);
    }
    // A region and a partition that do not go together are no trail ARN.
    for wrong in [
        "arn:aws:cloudtrail:cn-north-1:444455556666:trail/trailkeeper",
        "arn:aws-cn:cloudtrail:us-east-1:444455556666:trail/trailkeeper",
        "arn:aws-us-gov:cloudtrail:eu-west-1:444455556666:trail/trailkeeper",
    ] {
        assert!(TrailArn::parse(wrong).is_err(), "{wrong}");
    }
}

#[test]
fn bucket_and_key_policies_name_resources_of_the_partition() {
    for (partition, region) in PARTITIONS {
        for mode in [None, Some("organization")] {
            let c = config(partition, region, mode);
            let updater = PolicyUpdater::new(&sdk(region), c.clone(), PolicyLoop::DEFAULT);
            let grant = c.grant(member());
            let mut seen = Vec::new();
            for target in &updater.targets {
                let text = written(target, partition, &grant);
                for arn in arns(&text) {
                    assert!(
                        arn.starts_with(&format!("arn:{partition}:")),
                        "{partition} {mode:?}: {arn} in {text}"
                    );
                }
                seen.push(text);
            }
            let all = seen.join("\n");
            let bucket = format!("arn:{partition}:s3:::central-logs");
            assert!(all.contains(&format!("\"{bucket}\"")), "{all}");
            let expected = match mode {
                None => vec![
                    format!("{bucket}/org/AWSLogs/{MEMBER}/*"),
                    format!("arn:{partition}:cloudtrail:{region}:{MEMBER}:trail/trailkeeper"),
                    format!("arn:{partition}:cloudtrail:*:{MEMBER}:trail/*"),
                ],
                Some(_) => vec![format!("arn:{partition}:cloudtrail:*:*:trail/*")],
            };
            for e in expected {
                assert!(
                    all.contains(&format!("\"{e}\"")),
                    "{partition} {mode:?}: no {e} in {all}"
                );
            }
        }
    }
}

#[test]
fn member_role_arns_name_the_partition() {
    for (partition, region) in PARTITIONS {
        let c = config(partition, region, None);
        assert_eq!(
            c.member_role.arn(c.partition(), member()),
            format!("arn:{partition}:iam::{MEMBER}:role/OrganizationAccountAccessRole")
        );
    }
}

/// One partition per deployment: a key or a home region of another is refused at start-up,
/// naming the variable.
#[test]
fn settings_of_another_partition_are_refused_naming_the_variable() {
    let vars = |home: &str, key: &str| {
        let (home, key) = (home.to_owned(), key.to_owned());
        OnboardConfig::from_vars(move |name| match name {
            "TRAILKEEPER_BUCKET" => Some("central-logs".into()),
            "AWS_REGION" => Some("cn-north-1".into()),
            "TRAILKEEPER_HOME_REGION" => Some(home.clone()),
            "TRAILKEEPER_KMS_KEY_ARN" => Some(key.clone()),
            _ => None,
        })
    };
    let cn_key = key_arn("aws-cn", "cn-north-1");
    assert!(vars("cn-northwest-1", &cn_key).is_ok());
    let e = vars("us-east-1", &cn_key).unwrap_err();
    assert_eq!(e.variable, "TRAILKEEPER_HOME_REGION", "{e}");
    assert!(e.to_string().contains("aws-cn"), "{e}");
    let e = vars("cn-north-1", &key_arn("aws", "us-east-1")).unwrap_err();
    assert_eq!(e.variable, "TRAILKEEPER_KMS_KEY_ARN", "{e}");
}
