//! Properties of the bucket and key policy edits, checked with a small evaluator written here
//! (for trailkeeper's statement shapes) and, for the key cases, with the `iam-rs` evaluator.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use trailkeeper::events::AccountId;
use trailkeeper::policy::*;

// ---- fixtures ------------------------------------------------------------------------------

const ACCOUNTS: [&str; 6] = [
    "111111111111",
    "222222222222",
    "012345678901",
    "999999999999",
    "123456789012",
    "000000000001",
];
const NAMES: [&str; 2] = ["trailkeeper", "audit-trail"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const ACL: &str = "bucket-owner-full-control";

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

fn trail(account: &str, region: &str, name: &str) -> TrailArn {
    TrailArn::new(
        RegionName::new(region).unwrap(),
        acct(account),
        TrailName::new(name).unwrap(),
    )
}

fn all_trails() -> Vec<TrailArn> {
    let mut out = Vec::new();
    for a in ACCOUNTS {
        for r in REGIONS {
            for n in NAMES {
                out.push(trail(a, r, n));
            }
        }
    }
    out
}

fn destination(prefix: bool) -> LogDestination {
    LogDestination::new(
        BucketName::new("central-logs").unwrap(),
        prefix.then(|| KeyPrefix::new("org/trails").unwrap()),
    )
}

fn object_key(dest: &LogDestination, account_segment: &str) -> String {
    format!(
        "arn:aws:s3:::{}/{}{}/CloudTrail/us-east-1/2024/01/01/{}_CloudTrail_us-east-1_20240101T0000Z_x.json.gz",
        dest.bucket,
        dest.logs_key_prefix(),
        account_segment,
        account_segment
    )
}

// ---- a small evaluator for the statement shapes trailkeeper writes -------------------------
//
// It over-approximates Allow: Deny statements are ignored, `Not*` elements and unknown
// condition operators count as matching. So "not allowed" here is a safe verdict for the
// cross-account property; for the positive cases our statements use only exact operators.

struct Request<'a> {
    action: &'a str,
    resource: String,
    context: Vec<(&'a str, String)>,
}

fn glob(text: &str, pattern: &str) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = (text.chars().collect(), pattern.chars().collect());
    let (mut ti, mut pi, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect(),
        other => vec![other.to_string()],
    }
}

fn principal_matches(s: &Map<String, Value>) -> bool {
    if s.contains_key("NotPrincipal") {
        return true;
    }
    match s.get("Principal") {
        Some(Value::String(p)) => p == "*",
        Some(Value::Object(m)) => {
            m.get("Service")
                .is_some_and(|v| strings(v).iter().any(|x| x == "cloudtrail.amazonaws.com"))
                || m.get("AWS")
                    .is_some_and(|v| strings(v).iter().any(|x| x == "*"))
        }
        _ => false,
    }
}

fn condition_holds(s: &Map<String, Value>, req: &Request) -> bool {
    let Some(Value::Object(block)) = s.get("Condition") else {
        return true;
    };
    block.iter().all(|(op, entries)| {
        let Value::Object(entries) = entries else {
            return true;
        };
        entries.iter().all(|(key, values)| {
            let wanted = strings(values);
            let actual = req
                .context
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v);
            let if_exists = op.ends_with("IfExists");
            let base = op.trim_end_matches("IfExists");
            match (base, actual) {
                (_, None) if if_exists => true,
                ("StringEquals" | "ArnEquals", None) | ("StringLike" | "ArnLike", None) => false,
                ("StringEquals" | "ArnEquals", Some(a)) => wanted.iter().any(|w| w == a),
                ("StringLike" | "ArnLike", Some(a)) => wanted.iter().any(|w| glob(a, w)),
                _ => true, // unknown operator: over-approximate
            }
        })
    })
}

/// Policy variables (`${aws:SourceAccount}`) replaced by the request's values, as IAM does; a
/// key the request lacks leaves nothing that can match (IAM: the statement does not apply).
fn interpolate(pattern: &str, req: &Request) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let Some(end) = rest[at..].find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let key = &rest[at + 2..at + end];
        match req
            .context
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some((_, v)) => out.push_str(v),
            None => return "\u{0}never matches".to_owned(),
        }
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    out
}

fn allows(policy: &Value, req: &Request) -> bool {
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        obj @ Value::Object(_) => vec![obj.clone()],
        _ => vec![],
    };
    statements.iter().filter_map(Value::as_object).any(|s| {
        s.get("Effect") == Some(&json!("Allow"))
            && principal_matches(s)
            && (s.contains_key("NotAction")
                || s.get("Action").is_some_and(|a| {
                    strings(a)
                        .iter()
                        .any(|p| glob(&req.action.to_ascii_lowercase(), &p.to_ascii_lowercase()))
                }))
            && (s.contains_key("NotResource")
                || s.get("Resource").is_some_and(|r| {
                    strings(r)
                        .iter()
                        .any(|p| glob(&req.resource, &interpolate(p, req)))
                }))
            && condition_holds(s, req)
    })
}

fn owned_only(policy: &Value) -> Value {
    let statements: Vec<Value> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["Sid"]
                .as_str()
                .is_some_and(|sid| sid.starts_with(SID_PREFIX))
        })
        .cloned()
        .collect();
    json!({ "Statement": statements })
}

fn put(
    dest: &LogDestination,
    segment: &str,
    source: &TrailArn,
    acl: Option<&str>,
) -> Request<'static> {
    let mut context = vec![
        ("aws:SourceArn", source.to_string()),
        ("aws:SourceAccount", source.account().to_string()),
        ("aws:SecureTransport", "true".to_owned()),
    ];
    if let Some(a) = acl {
        context.push(("s3:x-amz-acl", a.to_owned()));
    }
    Request {
        action: "s3:PutObject",
        resource: object_key(dest, segment),
        context,
    }
}

fn get_acl(dest: &LogDestination, source: &TrailArn) -> Request<'static> {
    Request {
        action: "s3:GetBucketAcl",
        resource: dest.bucket_arn(),
        context: vec![
            ("aws:SourceArn", source.to_string()),
            ("aws:SourceAccount", source.account().to_string()),
        ],
    }
}

// ---- iam-rs ---------------------------------------------------------------------------------

mod iam_eval;

/// The iam-rs adapter (`iam_eval`), on this file's requests: CloudTrail asking alone.
mod iam {
    use super::*;
    pub use iam_rs::Decision;

    pub fn decide(policy_json: &str, req: &Request) -> Decision {
        super::iam_eval::decide(
            &[policy_json],
            &super::iam_eval::Caller::Service("cloudtrail.amazonaws.com"),
            req.action,
            &req.resource,
            &req.context
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect::<Vec<_>>(),
        )
    }

    pub fn allowed(policy_json: &str, req: &Request) -> bool {
        decide(policy_json, req) == Decision::Allow
    }
}

/// Both evaluators agree on a verdict and it is the expected one.
fn check(policy: &str, req: &Request, expected: bool, what: &str) {
    let value: Value = serde_json::from_str(policy).unwrap();
    assert_eq!(allows(&value, req), expected, "test evaluator: {what}");
    assert_eq!(iam::allowed(policy, req), expected, "iam-rs: {what}");
}

// ---- key cases, both evaluators ---------------------------------------------------------------

const CONTROL_TOWER_LIKE: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"AllowSSLRequestsOnly","Effect":"Deny","Principal":"*","Action":"s3:*",
   "Resource":["arn:aws:s3:::central-logs","arn:aws:s3:::central-logs/*"],
   "Condition":{"Bool":{"aws:SecureTransport":"false"}}},
  {"Sid":"Readers","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},
   "Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::central-logs","arn:aws:s3:::central-logs/*"]}]}"#;

#[test]
fn key_cases_with_both_evaluators() {
    for prefix in [false, true] {
        let d = destination(prefix);
        let a = trail("111111111111", "us-east-1", "trailkeeper");
        let b = trail("222222222222", "eu-west-1", "trailkeeper");
        let c = trail("333333333333", "us-east-1", "trailkeeper");
        let mut p = BucketPolicy::parse(CONTROL_TOWER_LIKE).unwrap();
        for t in [&a, &b] {
            if let PolicyEdit::Changed { policy, .. } =
                p.admit(&d, &Grant::Trail(t.clone())).unwrap()
            {
                p = policy;
            }
        }
        let text = p.to_json();
        check(
            &text,
            &put(&d, "111111111111", &a, Some(ACL)),
            true,
            "A writes under A",
        );
        check(
            &text,
            &put(&d, "222222222222", &b, Some(ACL)),
            true,
            "B writes under B",
        );
        check(
            &text,
            &put(&d, "222222222222", &a, Some(ACL)),
            false,
            "A under B",
        );
        check(
            &text,
            &put(&d, "111111111111", &b, Some(ACL)),
            false,
            "B under A",
        );
        check(&text, &put(&d, "111111111111", &a, None), false, "no ACL");
        check(
            &text,
            &put(&d, "111111111111", &a, Some("public-read")),
            false,
            "wrong ACL",
        );
        check(
            &text,
            &put(&d, "333333333333", &c, Some(ACL)),
            false,
            "unknown account under its own prefix",
        );
        check(
            &text,
            &put(&d, "111111111111", &c, Some(ACL)),
            false,
            "unknown account under A",
        );
        check(
            &text,
            &put(
                &d,
                "111111111111",
                &trail("111111111111", "us-east-1", "other"),
                Some(ACL),
            ),
            false,
            "another trail of A",
        );
        check(
            &text,
            &put(&d, "o-aa111bb222/111111111111", &a, Some(ACL)),
            false,
            "A under an org-trail path",
        );
        check(&text, &get_acl(&d, &a), true, "ACL check A");
        check(&text, &get_acl(&d, &c), false, "ACL check unknown account");
        // The foreign Deny still bites (iam-rs applies Deny; our evaluator ignores it by design).
        let mut insecure = put(&d, "111111111111", &a, Some(ACL));
        insecure
            .context
            .retain(|(k, _)| *k != "aws:SecureTransport");
        insecure
            .context
            .push(("aws:SecureTransport", "false".into()));
        assert_eq!(iam::decide(&text, &insecure), iam_rs::Decision::Deny);
    }
}

/// The evaluators do see the flaw this design avoids: AWS's documented multi-account form
/// lets a listed trail write under any listed account's prefix.
#[test]
fn documented_multi_account_form_is_cross_account() {
    let documented = r#"{"Version":"2012-10-17","Statement":[
      {"Sid":"AWSCloudTrailWrite20131101","Effect":"Allow","Principal":{"Service":"cloudtrail.amazonaws.com"},
       "Action":"s3:PutObject",
       "Resource":["arn:aws:s3:::central-logs/AWSLogs/111111111111/*","arn:aws:s3:::central-logs/AWSLogs/222222222222/*"],
       "Condition":{"StringEquals":{"aws:SourceArn":["arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper",
                                                    "arn:aws:cloudtrail:eu-west-1:222222222222:trail/trailkeeper"],
                                    "s3:x-amz-acl":"bucket-owner-full-control"}}}]}"#;
    let d = destination(false);
    let a = trail("111111111111", "us-east-1", "trailkeeper");
    check(
        documented,
        &put(&d, "222222222222", &a, Some(ACL)),
        true,
        "documented form: A under B",
    );
}

#[test]
fn organization_mode_with_both_evaluators() {
    let d = destination(true);
    let org = OrgId::new("o-aa111bb222").unwrap();
    let PolicyEdit::Changed { policy, .. } = BucketPolicy::parse(CONTROL_TOWER_LIKE)
        .unwrap()
        .admit(&d, &Grant::Organization(org))
        .unwrap()
    else {
        panic!("expected a change")
    };
    let text = policy.to_json();
    let a = trail("111111111111", "us-east-1", "trailkeeper");
    let with_org = |mut r: Request<'static>, org: &str| {
        r.context.push(("aws:SourceOrgID", org.to_owned()));
        r
    };
    check(
        &text,
        &with_org(put(&d, "111111111111", &a, Some(ACL)), "o-aa111bb222"),
        true,
        "org trail writes",
    );
    // trailkeeper's trails are each account's own: organization-trail paths are not granted.
    check(
        &text,
        &with_org(
            put(&d, "o-aa111bb222/111111111111", &a, Some(ACL)),
            "o-aa111bb222",
        ),
        false,
        "org-trail path",
    );
    check(
        &text,
        &with_org(put(&d, "111111111111", &a, None), "o-aa111bb222"),
        false,
        "org, no ACL",
    );
    check(
        &text,
        &with_org(put(&d, "111111111111", &a, Some(ACL)), "o-zz999yy888"),
        false,
        "other org",
    );
    check(
        &text,
        &put(&d, "111111111111", &a, Some(ACL)),
        false,
        "no org id in context",
    );
    check(
        &text,
        &with_org(get_acl(&d, &a), "o-aa111bb222"),
        true,
        "org ACL check",
    );
    // Constant size, and still each account under its own prefix only: the grant's Resource
    // is [prefix/]AWSLogs/${aws:SourceAccount}/* (issue 19).
    check(
        &text,
        &with_org(put(&d, "222222222222", &a, Some(ACL)), "o-aa111bb222"),
        false,
        "org: A under B",
    );
    check(
        &text,
        &with_org(
            put(
                &d,
                "222222222222",
                &trail("222222222222", "eu-west-1", "trailkeeper"),
                Some(ACL),
            ),
            "o-aa111bb222",
        ),
        true,
        "org: B under B",
    );
    // A request without aws:SourceAccount matches no prefix.
    let mut anonymous = with_org(put(&d, "111111111111", &a, Some(ACL)), "o-aa111bb222");
    anonymous.context.retain(|(k, _)| *k != "aws:SourceAccount");
    check(&text, &anonymous, false, "org: no aws:SourceAccount");
}

#[test]
fn key_policy_with_both_evaluators() {
    let base = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"kms:*","Resource":"*"}]}"#;
    let mut p = KeyPolicy::parse(base).unwrap();
    for a in ["111111111111", "222222222222"] {
        if let PolicyEdit::Changed { policy, .. } = p
            .admit(&Grant::Trail(trail(a, "us-east-1", "trailkeeper")))
            .unwrap()
        {
            p = policy;
        }
    }
    let text = p.to_json();
    let key =
        "arn:aws:kms:us-east-1:999988887777:key/1234abcd-12ab-34cd-56ef-1234567890ab".to_owned();
    let gen_key = |trail_arn: &str| Request {
        action: "kms:GenerateDataKey",
        resource: key.clone(),
        context: vec![(
            "kms:EncryptionContext:aws:cloudtrail:arn",
            trail_arn.to_owned(),
        )],
    };
    check(
        &text,
        &gen_key("arn:aws:cloudtrail:eu-west-1:111111111111:trail/any-name"),
        true,
        "account A, any trail",
    );
    check(
        &text,
        &gen_key("arn:aws:cloudtrail:us-east-1:333333333333:trail/trailkeeper"),
        false,
        "account C",
    );
    check(
        &text,
        &Request {
            action: "kms:GenerateDataKey",
            resource: key.clone(),
            context: vec![],
        },
        false,
        "no context",
    );
    check(
        &text,
        &Request {
            action: "kms:DescribeKey",
            resource: key.clone(),
            context: vec![],
        },
        true,
        "describe",
    );
    check(
        &text,
        &Request {
            action: "kms:Decrypt",
            resource: key,
            context: vec![],
        },
        false,
        "decrypt not granted",
    );
}

// ---- capacity ---------------------------------------------------------------------------------

struct Capacity {
    accounts: usize,
    first_bytes: usize,
    full_bytes: usize,
    per_account: usize,
}

fn bucket_capacity(dest: &LogDestination, region: &str, name: &str) -> Capacity {
    let mut p = BucketPolicy::empty();
    let mut sizes = vec![p.len_bytes()];
    for n in 0.. {
        let t = trail(&format!("{:012}", 100_000_000_000u64 + n), region, name);
        match p.admit(dest, &Grant::Trail(t)) {
            Ok(PolicyEdit::Changed { policy, bytes }) => {
                sizes.push(bytes);
                p = policy;
            }
            Ok(PolicyEdit::Unchanged) => unreachable!(),
            Err(PolicyError::TooLarge { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let k = sizes.len() - 1;
    Capacity {
        accounts: k,
        first_bytes: sizes[1],
        full_bytes: sizes[k],
        per_account: sizes[k] - sizes[k - 1],
    }
}

#[test]
fn capacity() {
    let typical = bucket_capacity(&destination(false), "us-east-1", "trailkeeper");
    let long = bucket_capacity(
        &LogDestination::new(
            BucketName::new(&format!("central-cloudtrail-logs-{}", "x".repeat(39))).unwrap(),
            Some(KeyPrefix::new("organization/cloudtrail").unwrap()),
        ),
        "ap-southeast-2",
        "organization-audit-trail-0001",
    );
    let org = {
        let d = destination(false);
        let PolicyEdit::Changed { bytes, .. } = BucketPolicy::empty()
            .admit(
                &d,
                &Grant::Organization(OrgId::new("o-aa111bb222").unwrap()),
            )
            .unwrap()
        else {
            unreachable!()
        };
        bytes
    };
    let kms = {
        let mut p = KeyPolicy::parse(r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"kms:*","Resource":"*"}]}"#).unwrap();
        let mut n = 0u64;
        let mut sizes = vec![];
        while let Ok(PolicyEdit::Changed { policy, bytes }) = p.admit(&Grant::Trail(trail(
            &format!("{:012}", 100_000_000_000 + n),
            "us-east-1",
            "trailkeeper",
        ))) {
            p = policy;
            sizes.push(bytes);
            n += 1;
        }
        (n, sizes[sizes.len() - 1] - sizes[sizes.len() - 2])
    };
    eprintln!(
        "per-account, typical (bucket central-logs, no prefix, us-east-1, trail trailkeeper): {} accounts, {} B first account, {} B per further account, {} B at capacity",
        typical.accounts, typical.first_bytes, typical.per_account, typical.full_bytes
    );
    eprintln!(
        "per-account, long names (63-char bucket, 23-char prefix, ap-southeast-2, 29-char trail): {} accounts, {} B per further account",
        long.accounts, long.per_account
    );
    eprintln!("organization mode: {org} B, constant");
    eprintln!(
        "KMS key policy (default root statement + ours): {} accounts, {} B per account",
        kms.0, kms.1
    );
    // Pinned so that a change in the rendered shape is a visible decision.
    assert_eq!((typical.accounts, typical.per_account), (48, 407));
    assert!(long.accounts >= 30, "{}", long.accounts);
    assert!(org < 700);
    assert!(kms.0 >= 700, "{}", kms.0);
}

// ---- properties -------------------------------------------------------------------------------

fn foreign_sid() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("Readers".to_owned())), // small pool: duplicates happen
        Just(Some("AllowSSLRequestsOnly".to_owned())),
        Just(Some("trailkeeperLowercaseIsNotOurs".to_owned())),
        "[A-Z][A-Za-z0-9 ]{0,12}"
            .prop_filter("not ours", |s| !s.starts_with("Trailkeeper"))
            .prop_map(Some),
    ]
}

fn one_or_list(values: Vec<String>) -> impl Strategy<Value = Value> {
    let single = values[0].clone();
    prop_oneof![Just(json!(single)), Just(json!(values))]
}

fn condition() -> impl Strategy<Value = Option<Value>> {
    let value = prop_oneof![
        "[a-z0-9:/*-]{1,20}".prop_map(|s| json!(s)),
        "\\PC{0,12}".prop_map(|s| json!(s)),
        prop::collection::vec("[a-z0-9-]{1,10}", 1..3).prop_map(|v| json!(v)),
        any::<u32>().prop_map(|n| json!(n)),
        Just(json!(true)),
    ];
    prop::option::of(
        prop::collection::vec(
            (
                prop_oneof![
                    Just("StringEquals"),
                    Just("StringLike"),
                    Just("Bool"),
                    Just("NumericLessThan"),
                    Just("ForAnyValue:StringLike"),
                    Just("IpAddress")
                ],
                prop::collection::vec(("[a-z]{2,6}:[A-Za-z]{2,10}", value), 1..3),
            ),
            1..3,
        )
        .prop_map(|ops| {
            let mut block = Map::new();
            for (op, entries) in ops {
                block.insert(op.to_owned(), Value::Object(entries.into_iter().collect()));
            }
            Value::Object(block)
        }),
    )
}

/// Statements a user or another tool wrote. They never allow CloudTrail to write, so the
/// cross-account property is about trailkeeper's statements only.
fn foreign_statement() -> impl Strategy<Value = Value> {
    let principal = prop_oneof![
        Just(json!("*")),
        Just(json!({"AWS": "*"})),
        Just(json!({"AWS": "arn:aws:iam::111122223333:root"})),
        Just(json!({"AWS": ["arn:aws:iam::111122223333:role/Reader", "444455556666"]})),
        Just(json!({"Service": "config.amazonaws.com"})),
        Just(json!({"Service": ["cloudtrail.amazonaws.com"]})), // with a read-only action below
    ];
    let effect = prop_oneof![Just("Allow"), Just("Deny")];
    (
        foreign_sid(),
        effect,
        principal,
        condition(),
        0usize..3,
        any::<bool>(),
    )
        .prop_flat_map(|(sid, effect, principal, condition, action, list)| {
            let actions = ["s3:GetObject", "s3:ListBucket", "s3:GetBucketAcl"];
            let action: Value = if list {
                json!([actions[action], "s3:GetObjectVersion"])
            } else {
                json!(actions[action])
            };
            let mut members: Vec<(String, Value)> = vec![
                ("Effect".into(), json!(effect)),
                ("Principal".into(), principal),
                ("Action".into(), action),
            ];
            if let Some(sid) = sid {
                members.push(("Sid".into(), json!(sid)));
            }
            if let Some(c) = condition {
                members.push(("Condition".into(), c));
            }
            (
                Just(members),
                one_or_list(vec![
                    "arn:aws:s3:::central-logs/*".into(),
                    "arn:aws:s3:::central-logs".into(),
                ]),
            )
                .prop_map(|(mut members, resource)| {
                    members.push(("Resource".into(), resource));
                    members
                })
                // Any key order: it must survive as it is.
                .prop_shuffle()
                .prop_map(|members| Value::Object(members.into_iter().collect()))
        })
}

fn initial_policy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(foreign_statement(), 0..6),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(statements, with_id, pretty, single)| {
            let mut top = Map::new();
            if with_id {
                top.insert("Id".into(), json!("Policy1"));
            }
            top.insert("Version".into(), json!("2012-10-17"));
            let statement = if single && statements.len() == 1 {
                statements[0].clone()
            } else {
                json!(statements)
            };
            top.insert("Statement".into(), statement);
            let v = Value::Object(top);
            if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                v.to_string()
            }
        })
}

fn edit() -> impl Strategy<Value = TrailArn> {
    (0..ACCOUNTS.len(), 0..REGIONS.len(), 0..NAMES.len())
        .prop_map(|(a, r, n)| trail(ACCOUNTS[a], REGIONS[r], NAMES[n]))
}

fn apply(p: &BucketPolicy, d: &LogDestination, t: &TrailArn) -> (BucketPolicy, bool) {
    match p.admit(d, &Grant::Trail(t.clone())).unwrap() {
        PolicyEdit::Changed { policy, bytes } => {
            assert_eq!(bytes, policy.len_bytes());
            (policy, true)
        }
        PolicyEdit::Unchanged => (p.clone(), false),
    }
}

fn foreign_bytes(p: &BucketPolicy) -> Vec<String> {
    p.foreign_statements()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn edits_keep_foreign_statements_are_idempotent_and_never_cross_accounts(
        initial in initial_policy(),
        edits in prop::collection::vec(edit(), 1..10),
        prefix in any::<bool>(),
    ) {
        let d = destination(prefix);
        let start = BucketPolicy::parse(&initial).unwrap();
        let foreign_before = foreign_bytes(&start);
        let foreign_values: Vec<Value> = start.foreign_statements().into_iter().cloned().collect();
        let wide_before = start.wide_statements();
        let dups_before = start.duplicate_sids();

        let mut p = start.clone();
        let mut admitted: Vec<TrailArn> = Vec::new();
        for t in &edits {
            let (next, changed) = apply(&p, &d, t);
            prop_assert_eq!(changed, !admitted.contains(t), "changed iff new");
            p = next;
            if !admitted.contains(t) { admitted.push(t.clone()); }

            // Foreign statements: same values, same order, same key order.
            prop_assert_eq!(foreign_bytes(&p), foreign_before.clone());
            let now: Vec<Value> = p.foreign_statements().into_iter().cloned().collect();
            prop_assert_eq!(&now, &foreign_values);
            prop_assert_eq!(p.wide_statements().len(), wide_before.len());
            prop_assert_eq!(p.duplicate_sids(), dups_before.clone());

            // Idempotent, also after a round trip through text.
            prop_assert_eq!(p.admit(&d, &Grant::Trail(t.clone())).unwrap(), PolicyEdit::Unchanged);
            let reread = BucketPolicy::parse(&p.to_json()).unwrap();
            prop_assert_eq!(reread.to_json(), p.to_json());
            for a in &admitted {
                prop_assert_eq!(reread.admit(&d, &Grant::Trail(a.clone())).unwrap(), PolicyEdit::Unchanged);
                prop_assert!(reread.admits(&d, &Grant::Trail(a.clone())).unwrap());
            }
        }

        // Who may write where: exactly the admitted trails, each under its own prefix, with the
        // ACL. (Foreign statements never grant PutObject to CloudTrail, but may well grant
        // GetBucketAcl to "*": the ACL check is judged on trailkeeper's statements.)
        let value = p.to_value();
        let ours = owned_only(&value);
        for t in all_trails() {
            let is_admitted = admitted.contains(&t);
            prop_assert_eq!(allows(&ours, &get_acl(&d, &t)), is_admitted);
            for owner in ACCOUNTS {
                let mine = owner == t.account().as_str();
                prop_assert_eq!(allows(&value, &put(&d, owner, &t, Some(ACL))), is_admitted && mine,
                    "{} writing under {}", t, owner);
                prop_assert!(!allows(&value, &put(&d, owner, &t, None)));
                prop_assert!(!allows(&value, &put(&d, owner, &t, Some("public-read"))));
            }
            let org_trail_path = format!("o-aa111bb222/{}", t.account());
            prop_assert!(!allows(&value, &put(&d, &org_trail_path, &t, Some(ACL))));
        }

        // Arrival order does not matter.
        let mut q = start;
        for t in edits.iter().rev() {
            q = apply(&q, &d, t).0;
        }
        prop_assert_eq!(q.to_json(), p.to_json());
    }

    /// The same cross-account property, judged by iam-rs (with random foreign statements too).
    #[test]
    fn iam_rs_agrees_on_cross_account_writes(
        initial in initial_policy(),
        edits in prop::collection::vec(edit(), 1..6),
        prefix in any::<bool>(),
    ) {
        let d = destination(prefix);
        let mut p = BucketPolicy::parse(&initial).unwrap();
        for t in &edits {
            p = apply(&p, &d, t).0;
        }
        let text = p.to_json();
        for t in all_trails().iter().step_by(3) {
            for owner in ACCOUNTS {
                let expected = edits.contains(t) && owner == t.account().as_str();
                prop_assert_eq!(iam::allowed(&text, &put(&d, owner, t, Some(ACL))), expected, "{} under {}", t, owner);
            }
        }
    }

    #[test]
    fn key_policy_edits_keep_foreign_and_are_idempotent(
        initial in initial_policy(),
        edits in prop::collection::vec(edit(), 1..10),
    ) {
        let start = KeyPolicy::parse(&initial).unwrap();
        let foreign: Vec<String> = start.foreign_statements().iter().map(|s| s.to_string()).collect();
        let mut p = start;
        let mut accounts = std::collections::BTreeSet::new();
        for t in &edits {
            let new = accounts.insert(t.account());
            match p.admit(&Grant::Trail(t.clone())).unwrap() {
                PolicyEdit::Changed { policy, .. } => { prop_assert!(new); p = policy; }
                PolicyEdit::Unchanged => prop_assert!(!new),
            }
            prop_assert_eq!(p.foreign_statements().iter().map(|s| s.to_string()).collect::<Vec<_>>(), foreign.clone());
            prop_assert_eq!(KeyPolicy::parse(&p.to_json()).unwrap().admit(&Grant::Trail(t.clone())).unwrap(), PolicyEdit::Unchanged);
        }
        prop_assert_eq!(p.admitted_accounts().unwrap(), accounts.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn organization_grant_keeps_foreign_and_is_idempotent(initial in initial_policy(), edits in prop::collection::vec(edit(), 0..4)) {
        let d = destination(true);
        let org = Grant::Organization(OrgId::new("o-aa111bb222").unwrap());
        let start = BucketPolicy::parse(&initial).unwrap();
        let mut p = start.clone();
        for t in &edits { p = apply(&p, &d, t).0; }
        let (p, changed) = match p.admit(&d, &org).unwrap() {
            PolicyEdit::Changed { policy, .. } => (policy, true),
            PolicyEdit::Unchanged => (p, false),
        };
        prop_assert!(changed);
        prop_assert_eq!(p.admit(&d, &org).unwrap(), PolicyEdit::Unchanged);
        prop_assert_eq!(foreign_bytes(&p), foreign_bytes(&start));
        // Per-account grants are kept when switching modes.
        for t in &edits { prop_assert!(p.admits(&d, &Grant::Trail(t.clone())).unwrap()); }
    }

    /// Offboarding one account: its grants go, nobody else's; foreign statements stay byte for
    /// byte; a second revocation, or one of an account never admitted, writes nothing; the
    /// result names what was revoked.
    #[test]
    fn revocation_takes_out_one_account_and_nothing_else(
        initial in initial_policy(),
        edits in prop::collection::vec(edit(), 1..8),
        pick in 0usize..8,
        prefix in any::<bool>(),
    ) {
        let d = destination(prefix);
        let start = BucketPolicy::parse(&initial).unwrap();
        let mut p = start.clone();
        for t in &edits { p = apply(&p, &d, t).0; }
        let gone = edits[pick % edits.len()].account();
        let Revocation { edit, revoked } = p.revoke(&d, gone).unwrap();
        let PolicyEdit::Changed { policy: q, bytes } = edit else {
            panic!("an admitted account was not revoked");
        };
        prop_assert_eq!(bytes, q.len_bytes());
        prop_assert!(revoked.iter().any(|r| r.contains(&format!("{SID_WRITE_PREFIX}{gone}"))), "{:?}", revoked);
        prop_assert!(!q.holds_account(&d, gone).unwrap());
        prop_assert!(!q.to_json().contains(gone.as_str()));
        prop_assert_eq!(foreign_bytes(&q), foreign_bytes(&start));
        for t in &edits {
            prop_assert_eq!(q.admits(&d, &Grant::Trail(t.clone())).unwrap(), t.account() != gone, "{}", t);
        }
        // Who may write where, after: the others under their own prefix, the departed nowhere.
        let value = q.to_value();
        for t in all_trails() {
            for owner in ACCOUNTS {
                let expected = edits.contains(&t) && t.account() != gone && owner == t.account().as_str();
                prop_assert_eq!(allows(&value, &put(&d, owner, &t, Some(ACL))), expected, "{} under {}", t, owner);
            }
        }
        let again = q.revoke(&d, gone).unwrap();
        prop_assert_eq!(again.edit, PolicyEdit::Unchanged);
        prop_assert!(again.revoked.is_empty());
        // Admitting again is the same policy as never having left (order does not matter).
        let mut back = q.clone();
        for t in edits.iter().filter(|t| t.account() == gone) { back = apply(&back, &d, t).0; }
        prop_assert_eq!(back.to_json(), p.to_json());
    }

    #[test]
    fn key_policy_revocation_keeps_everything_else(
        initial in initial_policy(),
        edits in prop::collection::vec(edit(), 1..8),
        pick in 0usize..8,
    ) {
        let start = KeyPolicy::parse(&initial).unwrap();
        let mut p = start.clone();
        for t in &edits {
            if let PolicyEdit::Changed { policy, .. } = p.admit(&Grant::Trail(t.clone())).unwrap() { p = policy; }
        }
        let gone = edits[pick % edits.len()].account();
        let Revocation { edit, revoked } = p.revoke(gone).unwrap();
        let PolicyEdit::Changed { policy: q, .. } = edit else { panic!("not revoked") };
        prop_assert_eq!(revoked.len(), 1);
        prop_assert!(!q.holds_account(gone).unwrap());
        let left: Vec<AccountId> = p.admitted_accounts().unwrap().into_iter().filter(|a| *a != gone).collect();
        prop_assert_eq!(q.admitted_accounts().unwrap(), left);
        prop_assert_eq!(
            q.foreign_statements().iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            start.foreign_statements().iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
        prop_assert_eq!(q.revoke(gone).unwrap().edit, PolicyEdit::Unchanged);
    }

    /// Arbitrary text never panics the parser, and anything it accepts round-trips.
    #[test]
    fn parser_is_total(text in "\\PC{0,300}") {
        if let Ok(p) = BucketPolicy::parse(&text) {
            prop_assert_eq!(BucketPolicy::parse(&p.to_json()).unwrap(), p);
        }
    }
}
