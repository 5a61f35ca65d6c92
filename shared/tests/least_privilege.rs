//! Least privilege, the code's half: every AWS operation a module of shared/src sends is declared
//! in one of its `pub const …CALLS: &[&str]` lists (IAM actions), every declared action is
//! called by the module or by a module it uses, and every `.send()` is an operation this test
//! knows. The template's half (each function's role allows exactly what its crate's `CALLS`
//! lists) is tests/lambda/template_checks.py, run by `make lint-template`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// SDK operation (the client's method) -> the IAM action it needs.
const OPERATIONS: &[(&str, &str)] = &[
    ("get_object", "s3:GetObject"),
    ("list_objects_v2", "s3:ListBucket"),
    ("get_bucket_policy", "s3:GetBucketPolicy"),
    ("put_bucket_policy", "s3:PutBucketPolicy"),
    ("get_key_policy", "kms:GetKeyPolicy"),
    ("put_key_policy", "kms:PutKeyPolicy"),
    ("list_accounts", "organizations:ListAccounts"),
    ("assume_role", "sts:AssumeRole"),
    ("describe_trails", "cloudtrail:DescribeTrails"),
    ("get_trail_status", "cloudtrail:GetTrailStatus"),
    ("create_trail", "cloudtrail:CreateTrail"),
    ("update_trail", "cloudtrail:UpdateTrail"),
    ("start_logging", "cloudtrail:StartLogging"),
    ("list_public_keys", "cloudtrail:ListPublicKeys"),
    ("publish", "sns:Publish"),
    ("list_object_versions", "s3:ListBucketVersions"),
    ("put_object", "s3:PutObject"),
    // retire names a version in every delete (`null` in an unversioned bucket).
    ("delete_objects", "s3:DeleteObjectVersion"),
    ("delete_bucket", "s3:DeleteBucket"),
    ("stop_logging", "cloudtrail:StopLogging"),
    ("delete_trail", "cloudtrail:DeleteTrail"),
    ("get_bucket_versioning", "s3:GetBucketVersioning"),
    (
        "get_object_lock_configuration",
        "s3:GetBucketObjectLockConfiguration",
    ),
    ("get_public_access_block", "s3:GetBucketPublicAccessBlock"),
    ("get_role", "iam:GetRole"),
    ("get_table", "glue:GetTable"),
    ("update_table", "glue:UpdateTable"),
    ("batch_import_findings", "securityhub:BatchImportFindings"),
    ("get_findings", "securityhub:GetFindings"),
    ("get_event_selectors", "cloudtrail:GetEventSelectors"),
    ("get_bucket_logging", "s3:GetBucketLogging"),
    ("put_event_selectors", "cloudtrail:PutEventSelectors"),
];

/// Modules whose AWS calls only the CLI makes, with its own credentials (no role of the
/// template is involved): their operations are not held to a `CALLS` list.
const CLI_ONLY: &[(&str, &str)] = &[(
    "consolidate",
    "`trailkeeper consolidate` copies history between buckets; no Lambda runs it",
)];

/// The `pub const …CALLS: &[&str]` lists a module declares, by name, read from its source (so
/// a new module's list is held to its code without being named here).
fn declared_lists(code: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("pub const ") {
        rest = &rest[at + "pub const ".len()..];
        let Some((name, tail)) = rest.split_once(':') else {
            break;
        };
        let tail = tail.trim_start();
        if !name.ends_with("CALLS") || !tail.starts_with("&[&str]") {
            continue;
        }
        let Some(end) = tail.find("];") else { break };
        let items = tail[..end]
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        out.push((name.trim().to_string(), items));
    }
    out
}

/// The crate modules a module's code refers to (`crate::x`).
fn uses(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(at, m)| {
            code[at + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code outside `#[cfg(test)]` modules (tests mock the operations by name).
fn production_code(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

/// `.name()` calls with no arguments: every SDK operation starts that way.
fn empty_calls(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("()") {
        let before = &rest[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(0, |i| i + 1);
        if start > 0 && before.as_bytes()[start - 1] == b'.' && start < at {
            out.push(&before[start..]);
        }
        rest = &rest[at + 2..];
    }
    out
}

fn action(op: &str) -> Option<&'static str> {
    OPERATIONS.iter().find(|(o, _)| *o == op).map(|(_, a)| *a)
}

#[test]
fn each_module_declares_exactly_the_aws_calls_it_makes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    struct Module {
        name: String,
        called: BTreeSet<String>,
        declared: BTreeSet<String>,
        uses: BTreeSet<String>,
    }
    let mut problems = Vec::new();
    let mut modules = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let code = production_code(&text);
        let name = file
            .strip_prefix(&root)
            .unwrap()
            .with_extension("")
            .to_string_lossy()
            .replace('/', "::");
        let lists = declared_lists(code);
        // The parser reads what the compiler sees.
        let compiled: &[(&str, &str, &[&str])] = &[
            ("store", "CALLS", trailkeeper::store::CALLS),
            ("keys", "CALLS", trailkeeper::keys::CALLS),
            ("alerts", "CALLS", trailkeeper::alerts::CALLS),
            ("retire", "CALLS", trailkeeper::retire::CALLS),
            ("archive", "CALLS", trailkeeper::archive::CALLS),
            ("athena", "CALLS", trailkeeper::athena::CALLS),
            (
                "onboard",
                "BUCKET_POLICY_CALLS",
                trailkeeper::onboard::BUCKET_POLICY_CALLS,
            ),
            (
                "onboard",
                "KEY_POLICY_CALLS",
                trailkeeper::onboard::KEY_POLICY_CALLS,
            ),
            ("trail", "CALLS", trailkeeper::trail::CALLS),
            (
                "trail",
                "MEMBER_ROLE_CALLS",
                trailkeeper::trail::MEMBER_ROLE_CALLS,
            ),
        ];
        for (m, c, list) in compiled.iter().filter(|(m, _, _)| *m == name) {
            let want: BTreeSet<String> = list.iter().map(|s| s.to_string()).collect();
            assert!(
                lists.iter().any(|(n, items)| n == c && *items == want),
                "{m}::{c} read from the source as {lists:?}"
            );
        }
        let cli_only = CLI_ONLY.iter().any(|(m, _)| *m == name);
        // Every request sent is one of the known operations, in its own statement.
        let mut from = 0;
        while let Some(at) = code[from..].find(".send()") {
            let at = from + at;
            let statement_start = code[..at].rfind(';').map_or(0, |i| i + 1);
            let statement = &code[statement_start..at];
            if !cli_only
                && !empty_calls(statement)
                    .into_iter()
                    .any(|op| action(op).is_some())
            {
                let line = code[..at].lines().count();
                problems.push(format!(
                    "{name}.rs:{line}: a request whose operation is not in OPERATIONS: add it, and its IAM action to the module's CALLS (or the module to CLI_ONLY if no Lambda makes it)"
                ));
            }
            from = at + 1;
        }
        modules.push(Module {
            called: if cli_only {
                BTreeSet::new()
            } else {
                empty_calls(code)
                    .into_iter()
                    .filter_map(action)
                    .map(str::to_string)
                    .collect()
            },
            declared: lists.into_iter().flat_map(|(_, items)| items).collect(),
            uses: uses(code),
            name,
        });
    }
    for m in &modules {
        // No call the module's own code makes is missing from its CALLS...
        let undeclared: Vec<_> = m.called.difference(&m.declared).collect();
        if !undeclared.is_empty() {
            problems.push(format!(
                "{}: the code calls {undeclared:?}, which no `pub const …CALLS` of the module declares",
                m.name
            ));
        }
        // ...and nothing is declared that neither it nor a module it uses calls.
        let stale: Vec<_> = m
            .declared
            .iter()
            .filter(|a| {
                !m.called.contains(*a)
                    && !modules
                        .iter()
                        .filter(|o| m.uses.contains(&o.name))
                        .any(|o| o.called.contains(*a) || o.declared.contains(*a))
            })
            .collect();
        if !stale.is_empty() {
            problems.push(format!(
                "{}: CALLS declare {stale:?}, which neither its code nor a module it uses calls",
                m.name
            ));
        }
    }
    for m in ["store", "keys", "alerts", "onboard", "trail"] {
        assert!(modules.iter().any(|o| o.name == m), "no shared/src/{m}.rs");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_finds_operations_and_ignores_arguments() {
    let code = "let x = self.s3.get_object().bucket(&b).key(k).send().await; ct.describe_trails().trail_name_list(name).send(); self.sns.publish().topic_arn(t).customize().send()";
    let ops: Vec<&str> = empty_calls(code)
        .into_iter()
        .filter(|o| action(o).is_some())
        .collect();
    assert_eq!(ops, ["get_object", "describe_trails", "publish"]);
    assert_eq!(empty_calls("f() + a.b(c)"), Vec::<&str>::new());
}

// ---------------------------------------------------------------------------------------------
// The member accounts' audit role (templates/audit-member-role.yaml): the org-auditor and
// `trailkeeper audit` read each account's trails through it, never through the administrator
// member role.

/// The `read-trails` policy document of the audit role, with `Fn::Sub` resolved for `account`
/// in the `aws` partition. The template keeps that document in JSON flow style for this.
fn audit_role_policy(account: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/audit-member-role.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let at = text
        .find("PolicyName: read-trails")
        .and_then(|at| text[at..].find("PolicyDocument:").map(|d| at + d))
        .unwrap_or_else(|| panic!("{}: no read-trails PolicyDocument", path.display()));
    let start = at + text[at..].find('{').expect("a JSON policy document");
    let (mut depth, mut in_string, mut escaped, mut end) = (0, false, false, start);
    for (i, c) in text[start..].char_indices() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => in_string = !in_string,
            (false, _, '{') => depth += 1,
            (false, _, '}') => {
                depth -= 1;
                if depth == 0 {
                    end = start + i + 1;
                    break;
                }
            }
            _ => {}
        }
    }
    let mut doc: serde_json::Value = serde_json::from_str(&text[start..end])
        .unwrap_or_else(|e| panic!("{}: the PolicyDocument is not JSON: {e}", path.display()));
    fn resolve(v: &mut serde_json::Value, account: &str) {
        match v {
            serde_json::Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => {
                let s = m["Fn::Sub"].as_str().expect("Fn::Sub of a string");
                *v = serde_json::Value::String(
                    s.replace("${AWS::Partition}", "aws")
                        .replace("${AWS::AccountId}", account),
                );
            }
            serde_json::Value::Object(m) => m.values_mut().for_each(|x| resolve(x, account)),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| resolve(x, account)),
            _ => {}
        }
    }
    resolve(&mut doc, account);
    doc
}

fn audit_role_allows(policy: &serde_json::Value, action: &str, resource: &str) -> bool {
    use iam_rs::{Arn, Context, Decision, IAMPolicy, IAMRequest, Principal, PrincipalId};
    let policy = IAMPolicy::from_json(&policy.to_string()).expect("iam-rs parses the policy");
    let request = IAMRequest::new_with_context(
        Principal::Aws(PrincipalId::String(
            "arn:aws:sts::111122223333:assumed-role/trailkeeper-audit/org-auditor".into(),
        )),
        action,
        Arn::parse(resource).unwrap(),
        Context::new(),
    );
    iam_rs::evaluate_policy(&policy, &request).unwrap() == Decision::Allow
}

#[test]
fn the_audit_role_allows_exactly_the_audit_s_reads() {
    let policy = audit_role_policy("111122223333");
    let allowed: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().into()).collect(),
            x => vec![x.as_str().unwrap().to_owned()],
        })
        .collect();
    let calls: BTreeSet<String> = trailkeeper::audit::CALLS
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        allowed, calls,
        "the audit role must allow what the audit calls, no more"
    );
    for action in &calls {
        let verb = action.split(':').nth(1).unwrap();
        assert!(
            ["Describe", "Get", "List"]
                .iter()
                .any(|r| verb.starts_with(r)),
            "{action} is not a read: the audit only reads"
        );
    }
}

#[test]
fn the_audit_role_reads_the_account_s_trails_and_changes_nothing() {
    let policy = audit_role_policy("111122223333");
    let own = "arn:aws:cloudtrail:us-east-1:111122223333:trail/trailkeeper";
    let other = "arn:aws:cloudtrail:us-east-1:444455556666:trail/trailkeeper";
    assert!(audit_role_allows(&policy, "cloudtrail:DescribeTrails", own));
    assert!(audit_role_allows(&policy, "cloudtrail:GetTrailStatus", own));
    assert!(!audit_role_allows(
        &policy,
        "cloudtrail:GetTrailStatus",
        other
    ));
    for write in [
        "cloudtrail:CreateTrail",
        "cloudtrail:UpdateTrail",
        "cloudtrail:StartLogging",
        "cloudtrail:StopLogging",
        "cloudtrail:DeleteTrail",
        "cloudtrail:PutEventSelectors",
    ] {
        assert!(!audit_role_allows(&policy, write, own), "{write}");
    }
    for (action, resource) in [
        ("s3:GetObject", "arn:aws:s3:::central-logs/AWSLogs/x"),
        ("s3:PutBucketPolicy", "arn:aws:s3:::central-logs"),
        (
            "sts:AssumeRole",
            "arn:aws:iam::111122223333:role/OrganizationAccountAccessRole",
        ),
        ("iam:PassRole", "arn:aws:iam::111122223333:role/any"),
        (
            "organizations:ListAccounts",
            "arn:aws:organizations::111122223333:account/o-x/1",
        ),
    ] {
        assert!(!audit_role_allows(&policy, action, resource), "{action}");
    }
}
