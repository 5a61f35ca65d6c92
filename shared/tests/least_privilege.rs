//! Least privilege, the code's half: the IAM actions each module of shared/src declares in its
//! `CALLS` constants are exactly the AWS operations its code sends, and every `.send()` is an
//! operation this test knows. The template's half (each function's role allows exactly what its
//! crate's `CALLS` lists) is tests/lambda/template_checks.py, run by `make lint-template`.

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
];

/// Modules whose AWS calls only the CLI makes, with its own credentials (no role of the
/// template is involved): their operations are not held to a `CALLS` list.
const CLI_ONLY: &[(&str, &str)] = &[(
    "consolidate",
    "`trailkeeper consolidate` copies history between buckets; no Lambda runs it",
)];

/// What each module declares (modules not listed declare nothing and must call nothing).
fn declared(module: &str) -> BTreeSet<&'static str> {
    use trailkeeper::*;
    let lists: &[&[&str]] = match module {
        "store" => &[store::CALLS],
        "keys" => &[keys::CALLS],
        "alerts" => &[alerts::CALLS],
        "onboard" => &[
            onboard::BUCKET_POLICY_CALLS,
            onboard::KEY_POLICY_CALLS,
            onboard::ORGANIZATION_CALLS,
        ],
        "trail" => &[trail::CALLS, trail::MEMBER_ROLE_CALLS],
        _ => &[],
    };
    lists.iter().flat_map(|l| l.iter().copied()).collect()
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
    let mut problems = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let code = production_code(&text);
        let module = file
            .strip_prefix(&root)
            .unwrap()
            .with_extension("")
            .to_string_lossy()
            .replace('/', "::");
        seen_modules.insert(module.clone());
        if CLI_ONLY.iter().any(|(m, _)| *m == module) {
            continue;
        }
        let called: BTreeSet<&str> = empty_calls(code).into_iter().filter_map(action).collect();
        // Every request sent is one of the known operations, in its own statement.
        let mut from = 0;
        while let Some(at) = code[from..].find(".send()") {
            let at = from + at;
            let statement_start = code[..at].rfind(';').map_or(0, |i| i + 1);
            let statement = &code[statement_start..at];
            if !empty_calls(statement)
                .into_iter()
                .any(|op| action(op).is_some())
            {
                let line = code[..at].lines().count();
                problems.push(format!(
                    "{module}.rs:{line}: a request whose operation is not in OPERATIONS: add it, and its IAM action to the module's CALLS (or the module to CLI_ONLY if no Lambda makes it)"
                ));
            }
            from = at + 1;
        }
        let declared = declared(&module);
        if called != declared {
            problems.push(format!(
                "{module}: the code calls {called:?} but the module's CALLS declare {declared:?}"
            ));
        }
    }
    for m in ["store", "keys", "alerts", "onboard", "trail"] {
        assert!(seen_modules.contains(m), "no shared/src/{m}.rs");
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
