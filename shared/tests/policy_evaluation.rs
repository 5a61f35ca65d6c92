//! The policies as AWS would judge them, not moto (issue 19): the base bucket policy deployed by
//! `template.yaml` together with every statement trailkeeper writes, evaluated by the independent
//! `iam-rs` evaluator (the same adapter as `policy_properties.rs`). moto applies no bucket policy
//! at all, so these are the only tests that hold the policies to who may write where.
//!
//! - CloudTrail, for each admitted trail, may write exactly its own prefix with
//!   `s3:x-amz-acl = bucket-owner-full-control`, and pass the `GetBucketAcl` check;
//! - it cannot write another account's prefix; a trail of an account never admitted, or of an
//!   offboarded one, cannot write at all; and TLS stays required;
//! - per-account and organization mode, with and without the KMS key;
//! - nobody but the policy-updater's role may `s3:PutBucketPolicy`: an operator role of the
//!   log-archive account with administrator rights is denied by the base policy (issue 19,
//!   defect 1, a fact of the template: the operator path must go through the policy-updater).

mod iam_eval;

use iam_eval::{Caller, decide};
use iam_rs::Decision;
use serde_json::{Map, Value, json};
use trailkeeper::events::AccountId;
use trailkeeper::policy::*;

const BUCKET: &str = "central-logs";
const ARCHIVE: &str = "222222222222";
const ORG: &str = "o-aa111bb222";
const ACL: &str = "bucket-owner-full-control";
/// Admitted in every scenario.
const A: &str = "111111111111";
const B: &str = "333333333333";
/// Never admitted.
const C: &str = "444444444444";
/// Admitted, then offboarded (it left the organization).
const D: &str = "555555555555";
const KEY: &str = "arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn updater_role() -> String {
    format!("arn:aws:iam::{ARCHIVE}:role/trailkeeper-PolicyUpdaterRole-1AB2C3D4")
}

fn operator_role() -> String {
    format!("arn:aws:iam::{ARCHIVE}:role/Operator")
}

// ---- the base policy, read from template.yaml ----------------------------------------------
//
// A reader for the block YAML of the `CentralBucketPolicy` resource only (maps, lists, scalars
// and the `!GetAtt` / `!Sub` tags it uses); anything else in that block stops the test, so a
// change of the template is seen here rather than silently skipped.

fn template() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of the resource's `PolicyDocument`, with their indentation.
fn policy_document_lines(template: &str) -> Vec<(usize, String)> {
    let mut lines = template.lines();
    lines
        .by_ref()
        .find(|l| l.trim_end() == "  CentralBucketPolicy:")
        .expect("template.yaml has CentralBucketPolicy");
    let doc_indent = lines
        .by_ref()
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .find(|l| l.trim() == "PolicyDocument:")
        .map(|l| l.len() - l.trim_start().len())
        .expect("CentralBucketPolicy has a PolicyDocument");
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > doc_indent)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| (l.len() - l.trim_start().len(), l.trim().to_owned()))
        .collect()
}

fn scalar(text: &str) -> Value {
    let arn_of = |name: &str| match name {
        "CentralBucket.Arn" => format!("arn:aws:s3:::{BUCKET}"),
        "PolicyUpdaterRole.Arn" => updater_role(),
        other => panic!("template: an attribute this test does not know: {other}"),
    };
    let unquote = |s: &str| s.trim_matches('"').to_owned();
    if let Some(name) = text.strip_prefix("!GetAtt ") {
        return json!(arn_of(name.trim()));
    }
    if let Some(body) = text.strip_prefix("!Sub ") {
        let mut s = unquote(body.trim());
        while let Some(at) = s.find("${") {
            let end = at + s[at..].find('}').expect("closed ${");
            let value = arn_of(&s[at + 2..end]);
            s.replace_range(at..=end, &value);
        }
        return json!(s);
    }
    assert!(
        !text.starts_with('!'),
        "template: a tag this test does not know: {text}"
    );
    json!(unquote(text))
}

/// Parses the node at `lines[*at]` (indentation `indent`) and those below it.
fn node(lines: &[(usize, String)], at: &mut usize, indent: usize) -> Value {
    if lines[*at].1.starts_with("- ") {
        let mut items = Vec::new();
        while *at < lines.len() && lines[*at].0 == indent && lines[*at].1.starts_with("- ") {
            let rest = lines[*at].1[2..].to_owned();
            if rest.contains(": ") || rest.ends_with(':') {
                // A map item: its first key is on the dash's line, the others two further in.
                let mut item = lines.to_vec();
                item[*at] = (indent + 2, rest);
                items.push(node(&item, at, indent + 2));
            } else {
                items.push(scalar(&rest));
                *at += 1;
            }
        }
        return Value::Array(items);
    }
    let mut map = Map::new();
    while *at < lines.len() && lines[*at].0 == indent && !lines[*at].1.starts_with("- ") {
        let line = lines[*at].1.clone();
        // A key ends at ": " or at the line's end (keys such as aws:SecureTransport hold ':').
        let (key, value) = line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
            .expect("key: value");
        *at += 1;
        let value = value.trim();
        let v = if value.is_empty() {
            let child = lines[*at].0;
            assert!(child > indent || lines[*at].1.starts_with("- "), "{line}");
            node(lines, at, child)
        } else {
            scalar(value)
        };
        map.insert(key.trim().to_owned(), v);
    }
    Value::Object(map)
}

/// The base policy as CloudFormation writes it, for this test's bucket and role.
fn base_policy() -> String {
    let lines = policy_document_lines(&template());
    let mut at = 0;
    let doc = node(&lines, &mut at, lines[0].0);
    assert_eq!(at, lines.len(), "the whole PolicyDocument was read");
    doc.to_string()
}

#[test]
fn the_base_policy_is_read_from_the_template_as_deployed() {
    let v: Value = serde_json::from_str(&base_policy()).unwrap();
    let sids: Vec<&str> = v["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    assert_eq!(
        sids,
        ["DenyInsecureTransport", "OnlyPolicyUpdaterChangesPolicy"]
    );
    assert_eq!(
        v["Statement"][1]["Condition"],
        json!({"ArnNotEquals": {"aws:PrincipalArn": updater_role()}})
    );
    assert_eq!(
        v["Statement"][0]["Resource"],
        json!([
            format!("arn:aws:s3:::{BUCKET}"),
            format!("arn:aws:s3:::{BUCKET}/*")
        ])
    );
}

// ---- the policies trailkeeper writes on top ---------------------------------------------------

fn trail(account: &str) -> TrailArn {
    TrailArn::new(
        RegionName::new("us-east-1").unwrap(),
        AccountId::new(account).unwrap(),
        TrailName::new("trailkeeper").unwrap(),
    )
}

fn dest(prefix: bool) -> LogDestination {
    LogDestination::new(
        BucketName::new(BUCKET).unwrap(),
        prefix.then(|| KeyPrefix::new("org").unwrap()),
    )
}

fn changed<P>(edit: PolicyEdit<P>) -> P {
    match edit {
        PolicyEdit::Changed { policy, .. } => policy,
        PolicyEdit::Unchanged => panic!("expected a change"),
    }
}

fn account(a: &str) -> AccountId {
    AccountId::new(a).unwrap()
}

/// The deployed bucket policy after onboarding A, B and D, then offboarding D.
fn bucket_policy(d: &LogDestination, organization: bool) -> String {
    let mut p = BucketPolicy::parse(&base_policy()).unwrap();
    for a in [A, B, D] {
        let grant = if organization {
            Grant::Organization(OrgId::new(ORG).unwrap())
        } else {
            Grant::Trail(trail(a))
        };
        if let PolicyEdit::Changed { policy, .. } = p.admit(d, &grant).unwrap() {
            p = policy;
        }
    }
    if !organization {
        p = changed(p.revoke(d, account(D)).unwrap().edit);
    }
    p.to_json()
}

/// The key's default policy (the account administers the key through IAM) after the same.
fn key_policy(organization: bool) -> String {
    let default = format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ARCHIVE}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    let mut p = KeyPolicy::parse(&default).unwrap();
    for a in [A, B, D] {
        let grant = if organization {
            Grant::Organization(OrgId::new(ORG).unwrap())
        } else {
            Grant::Trail(trail(a))
        };
        if let PolicyEdit::Changed { policy, .. } = p.admit(&grant).unwrap() {
            p = policy;
        }
    }
    if !organization {
        p = changed(p.revoke(account(D)).unwrap().edit);
    }
    p.to_json()
}

/// CloudTrail's request as it delivers for `source`'s trail (in the organization, or not).
fn cloudtrail_context(
    source: &str,
    in_org: bool,
    acl: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut c = vec![
        ("aws:SourceArn", trail(source).to_string()),
        ("aws:SourceAccount", source.to_owned()),
        ("aws:SecureTransport", "true".to_owned()),
    ];
    if in_org {
        c.push(("aws:SourceOrgID", ORG.to_owned()));
    }
    if let Some(a) = acl {
        c.push(("s3:x-amz-acl", a.to_owned()));
    }
    c
}

fn log_object(d: &LogDestination, owner: &str) -> String {
    format!(
        "arn:aws:s3:::{BUCKET}/{}{owner}/CloudTrail/eu-west-1/2026/06/01/{owner}_CloudTrail_eu-west-1_20260601T0000Z_a1.json.gz",
        d.logs_key_prefix()
    )
}

const CLOUDTRAIL: Caller = Caller::Service("cloudtrail.amazonaws.com");

fn put_log(
    policy: &str,
    d: &LogDestination,
    source: &str,
    owner: &str,
    in_org: bool,
    acl: Option<&str>,
) -> Decision {
    decide(
        &[policy],
        &CLOUDTRAIL,
        "s3:PutObject",
        &log_object(d, owner),
        &cloudtrail_context(source, in_org, acl),
    )
}

fn acl_check(policy: &str, source: &str, in_org: bool) -> Decision {
    decide(
        &[policy],
        &CLOUDTRAIL,
        "s3:GetBucketAcl",
        &format!("arn:aws:s3:::{BUCKET}"),
        &cloudtrail_context(source, in_org, None),
    )
}

fn generate_data_key(policy: &str, source: &str, in_org: bool) -> Decision {
    let mut context = vec![(
        "kms:EncryptionContext:aws:cloudtrail:arn",
        trail(source).to_string(),
    )];
    context.extend(cloudtrail_context(source, in_org, None));
    decide(&[policy], &CLOUDTRAIL, "kms:GenerateDataKey", KEY, &context)
}

/// Who may write where, for both modes, with and without a prefix: the admitted trails under
/// their own prefix only, with the ACL; nobody else.
#[test]
fn cloudtrail_of_each_admitted_trail_writes_exactly_its_own_prefix() {
    for prefix in [false, true] {
        let d = dest(prefix);
        for organization in [false, true] {
            let policy = bucket_policy(&d, organization);
            let mode = if organization {
                "organization"
            } else {
                "per-account"
            };
            // In organization mode the departed account D no longer carries the org id.
            let member = |a: &str| a != C && (a != D || !organization);
            for source in [A, B] {
                assert_eq!(
                    acl_check(&policy, source, true),
                    Decision::Allow,
                    "{mode}: ACL check of {source}"
                );
                for owner in [A, B, C, D] {
                    let want = if owner == source {
                        Decision::Allow
                    } else {
                        Decision::NotApplicable
                    };
                    assert_eq!(
                        put_log(&policy, &d, source, owner, true, Some(ACL)),
                        want,
                        "{mode}, prefix {prefix}: {source} writing under {owner}\n{policy}"
                    );
                }
                assert_ne!(
                    put_log(&policy, &d, source, source, true, None),
                    Decision::Allow,
                    "{mode}: no ACL"
                );
                assert_ne!(
                    put_log(&policy, &d, source, source, true, Some("public-read")),
                    Decision::Allow,
                    "{mode}: another ACL"
                );
                // Organization trail paths are not trailkeeper's.
                assert_ne!(
                    put_log(
                        &policy,
                        &d,
                        source,
                        &format!("{ORG}/{source}"),
                        true,
                        Some(ACL)
                    ),
                    Decision::Allow,
                    "{mode}: org-trail path"
                );
            }
            // A trail of an account never admitted, or offboarded, writes nowhere.
            for source in [C, D] {
                let in_org = member(source);
                assert_ne!(
                    acl_check(&policy, source, in_org),
                    Decision::Allow,
                    "{mode}: ACL check of {source}"
                );
                for owner in [A, B, C, D] {
                    assert_ne!(
                        put_log(&policy, &d, source, owner, in_org, Some(ACL)),
                        Decision::Allow,
                        "{mode}: {source} under {owner}\n{policy}"
                    );
                }
            }
            // Organization mode: a trail of another organization.
            if organization {
                let mut other = cloudtrail_context(A, false, Some(ACL));
                other.push(("aws:SourceOrgID", "o-zz999yy888".to_owned()));
                assert_ne!(
                    decide(
                        &[&policy],
                        &CLOUDTRAIL,
                        "s3:PutObject",
                        &log_object(&d, A),
                        &other
                    ),
                    Decision::Allow
                );
            }
            // The base policy's TLS rule still bites.
            let mut plain = cloudtrail_context(A, true, Some(ACL));
            plain.retain(|(k, _)| *k != "aws:SecureTransport");
            plain.push(("aws:SecureTransport", "false".to_owned()));
            assert_eq!(
                decide(
                    &[&policy],
                    &CLOUDTRAIL,
                    "s3:PutObject",
                    &log_object(&d, A),
                    &plain
                ),
                Decision::Deny,
                "{mode}: without TLS"
            );
        }
    }
}

#[test]
fn cloudtrail_encrypts_only_for_admitted_accounts() {
    for organization in [false, true] {
        let policy = key_policy(organization);
        let mode = if organization {
            "organization"
        } else {
            "per-account"
        };
        for source in [A, B] {
            assert_eq!(
                generate_data_key(&policy, source, true),
                Decision::Allow,
                "{mode}: {source}\n{policy}"
            );
            assert_eq!(
                decide(
                    &[&policy],
                    &CLOUDTRAIL,
                    "kms:DescribeKey",
                    KEY,
                    &cloudtrail_context(source, true, None)
                ),
                Decision::Allow,
                "{mode}: describe"
            );
        }
        assert_ne!(
            generate_data_key(&policy, C, false),
            Decision::Allow,
            "{mode}: never admitted"
        );
        assert_ne!(
            generate_data_key(&policy, D, false),
            Decision::Allow,
            "{mode}: offboarded\n{policy}"
        );
        assert_ne!(
            decide(
                &[&policy],
                &CLOUDTRAIL,
                "kms:Decrypt",
                KEY,
                &cloudtrail_context(A, true, None)
            ),
            Decision::Allow,
            "{mode}: decrypt is not CloudTrail's"
        );
    }
}

/// Same-account requests: the caller's identity policy and the bucket policy together.
#[test]
fn nobody_but_the_policy_updaters_role_may_change_the_bucket_policy() {
    let d = dest(false);
    let policy = bucket_policy(&d, false);
    let bucket = format!("arn:aws:s3:::{BUCKET}");
    let updater_identity = json!({"Version": "2012-10-17", "Statement": [{"Sid": "BucketPolicy",
        "Effect": "Allow", "Action": ["s3:GetBucketPolicy", "s3:PutBucketPolicy"], "Resource": bucket}]})
    .to_string();
    let administrator = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        .to_string();
    let tls = vec![("aws:SecureTransport", "true".to_owned())];
    for action in ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"] {
        // An operator role of the log-archive account, administrator or not, is denied: the
        // operator path has to go through the policy-updater (issue 19, defect 1).
        assert_eq!(
            decide(
                &[&policy, &administrator],
                &Caller::Aws(operator_role()),
                action,
                &bucket,
                &tls
            ),
            Decision::Deny,
            "{action} by an administrator role"
        );
        // CloudTrail, and any other service, gets nothing.
        assert_ne!(
            decide(&[&policy], &CLOUDTRAIL, action, &bucket, &tls),
            Decision::Allow
        );
    }
    assert_eq!(
        decide(
            &[&policy, &updater_identity],
            &Caller::Aws(updater_role()),
            "s3:PutBucketPolicy",
            &bucket,
            &tls
        ),
        Decision::Allow,
        "the policy-updater's role"
    );
    // The role is named exactly: a look-alike role is denied too.
    assert_eq!(
        decide(
            &[&policy, &administrator],
            &Caller::Aws(format!("{}-copy", updater_role())),
            "s3:PutBucketPolicy",
            &bucket,
            &tls
        ),
        Decision::Deny
    );
    // The deny is only for changing the policy: the operator still reads it.
    assert_eq!(
        decide(
            &[&policy, &administrator],
            &Caller::Aws(operator_role()),
            "s3:GetBucketPolicy",
            &bucket,
            &tls
        ),
        Decision::Allow
    );
}
