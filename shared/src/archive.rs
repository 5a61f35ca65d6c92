//! Who can reach the log archive: the central bucket's policy, the trust policy of the
//! log-archive account's member role, and the bucket's protections (versioning, MFA Delete,
//! Object Lock, public access block). `trailkeeper audit --archive` runs it with credentials
//! in the log-archive account; it only reads.
//!
//! The policies are read with [`BucketPolicy::parse`] (strict JSON, `Statement` as an array or
//! one object) and classified here, statement by statement, the way IAM reads them:
//! - a `Deny` never grants (it is listed, and it is not held against the `Allow`s: a flag on an
//!   `Allow` that a `Deny` happens to cancel is a statement to remove, not a false alarm);
//! - `NotPrincipal` with `Allow` is everyone but the few it names: always flagged;
//! - `NotAction` with `Allow` grants every action it does not name;
//! - actions match with IAM's wildcards (`*`, `?`), without regard to case, so `s3:*` and
//!   `s3:Delete*` both grant `s3:DeleteObject`;
//! - a condition restricts who is granted only if it is a positive match (`StringEquals`,
//!   `StringLike`, `ArnEquals`, `ArnLike`, with or without `IgnoreCase`/`ForAnyValue:`, never
//!   `…IfExists` or `ForAllValues:`, which pass when the key is absent) on an identity key
//!   ([`RESTRICTING_KEYS`]) with values that are not just `*`. `aws:SecureTransport` alone
//!   restricts nothing;
//! - `aws:PrincipalArn` with fixed values narrows the principals to those ARNs;
//! - `"AWS": "arn:aws:iam::<account>:root"` (or the bare account id) is every principal of that
//!   account whose IAM policies allow it, not the root user alone.
//!
//! Resources are not compared with the bucket: S3 accepts a bucket policy only when its
//! resources are that bucket and its objects.

use std::collections::BTreeSet;
use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde::Serialize;
use serde_json::Value;

use crate::events::{AccountId, log_safe_with};
use crate::policy::{BucketName, BucketPolicy, PolicyError};
use crate::store::describe_sdk_error;
use crate::trail::RoleName;

/// The IAM actions of an archive audit.
pub const CALLS: &[&str] = &[
    "s3:GetBucketPolicy",
    "s3:GetBucketVersioning",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketLogging",
    "iam:GetRole",
];

/// Condition keys that bind a grant to named identities or sources.
pub const RESTRICTING_KEYS: &[&str] = &[
    "aws:SourceArn",
    "aws:SourceAccount",
    "aws:SourceOrgID",
    "aws:PrincipalOrgID",
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
];

/// Positive matches; the others (`…Not…`, `…IfExists`, `ForAllValues:`) pass for principals
/// they do not name.
const RESTRICTING_OPERATORS: &[&str] = &[
    "StringEquals",
    "StringEqualsIgnoreCase",
    "StringLike",
    "ArnEquals",
    "ArnLike",
];

/// What a bucket-policy grant lets a principal do, by the S3 actions that do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    Delete,
    ChangePolicy,
    ChangeProtection,
}

impl Access {
    pub const ALL: [Access; 5] = [
        Self::Read,
        Self::Write,
        Self::Delete,
        Self::ChangePolicy,
        Self::ChangeProtection,
    ];

    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Self::Read => &[
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:ListBucket",
                "s3:ListBucketVersions",
            ],
            Self::Write => &["s3:PutObject", "s3:PutObjectAcl"],
            Self::Delete => &["s3:DeleteObject", "s3:DeleteObjectVersion"],
            // Deleting the policy removes its denies as surely as rewriting it.
            Self::ChangePolicy => &["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"],
            Self::ChangeProtection => &[
                "s3:PutLifecycleConfiguration",
                "s3:PutBucketVersioning",
                "s3:PutBucketObjectLockConfiguration",
                "s3:PutBucketPublicAccessBlock",
                "s3:BypassGovernanceRetention",
            ],
        }
    }

    /// Access that may destroy history or its protections: only trusted roles may have it.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Self::Delete | Self::ChangePolicy | Self::ChangeProtection
        )
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::ChangePolicy => "change the policy",
            Self::ChangeProtection => "change protections",
        })
    }
}

/// The actions a role's trust policy governs.
const ASSUME_ACTIONS: &[&str] = &[
    "sts:AssumeRole",
    "sts:AssumeRoleWithSAML",
    "sts:AssumeRoleWithWebIdentity",
];

// ---------------------------------------------------------------------------------------------
// Who the operator trusts

/// An operator-named principal that is not an IAM ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} {value}: {rule}")]
pub struct PrincipalNameError {
    pub option: &'static str,
    /// Log-safe.
    pub value: String,
    pub rule: &'static str,
}

/// The principals the audit does not flag: trailkeeper's own roles and the break-glass role
/// (for destructive bucket access), and the administrators (for the member role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedPrincipals {
    pub roles: BTreeSet<String>,
    pub break_glass: Option<String>,
    pub admins: BTreeSet<String>,
}

impl TrustedPrincipals {
    /// Checks each ARN: roles must be `arn:<partition>:iam::<account>:role/…`; administrators
    /// may be any IAM principal ARN or a bare account id (its `:root` ARN).
    pub fn new(
        roles: &[String],
        break_glass: Option<&str>,
        admins: &[String],
    ) -> Result<Self, PrincipalNameError> {
        let role = |option: &'static str, v: &str| {
            let normalized = normalize_aws_principal(v.trim());
            if is_role_arn(&normalized) {
                Ok(normalized)
            } else {
                Err(PrincipalNameError {
                    option,
                    value: log_safe_with(v, 160),
                    rule: "expected a role ARN, arn:aws:iam::<account>:role/<name>",
                })
            }
        };
        let admin = |v: &String| {
            let normalized = normalize_aws_principal(v.trim());
            match iam_arn_resource(&normalized) {
                Some(_) => Ok(normalized),
                None => Err(PrincipalNameError {
                    option: "--admin",
                    value: log_safe_with(v, 160),
                    rule: "expected an IAM principal ARN (arn:aws:iam::<account>:role/<name>, …:user/<name>, …:root) or a 12-digit account id",
                }),
            }
        };
        Ok(Self {
            roles: roles
                .iter()
                .map(|r| role("--trusted-role", r))
                .collect::<Result<_, _>>()?,
            break_glass: break_glass
                .map(|b| role("--break-glass-role", b))
                .transpose()?,
            admins: admins.iter().map(admin).collect::<Result<_, _>>()?,
        })
    }

    fn may_destroy(&self, arn: &str) -> bool {
        self.roles.contains(arn) || self.break_glass.as_deref() == Some(arn)
    }

    fn is_admin(&self, arn: &str) -> bool {
        self.admins.contains(arn)
    }
}

/// A bare account id in an `AWS` principal means that account's `:root`.
fn normalize_aws_principal(value: &str) -> String {
    match AccountId::new(value) {
        Ok(account) => format!("arn:aws:iam::{account}:root"),
        Err(_) => value.to_owned(),
    }
}

/// An IAM role ARN: `arn:<partition>:iam::<account>:role/<path and name>`.
pub fn is_role_arn(arn: &str) -> bool {
    iam_arn_resource(arn).is_some_and(|(_, resource)| {
        resource
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty())
    })
}

/// `(account, resource)` of `arn:<partition>:iam::<account>:<resource>`.
fn iam_arn_resource(arn: &str) -> Option<(AccountId, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let ok = !partition.is_empty() && !resource.is_empty();
    ok.then_some(())?;
    Some((AccountId::new(account).ok()?, resource))
}

// ---------------------------------------------------------------------------------------------
// Statements, as IAM reads them

/// A principal as a policy names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Principal {
    /// `"*"` or `{"AWS": "*"}`.
    Everyone,
    /// An IAM ARN (a bare account id is normalized to its `:root` ARN).
    Aws(String),
    Service(String),
    Federated(String),
    CanonicalUser(String),
}

impl Principal {
    /// `{"AWS": "…"}` and so on, as in a policy.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Everyone => Value::String("*".into()),
            Self::Aws(v) => serde_json::json!({ "AWS": v }),
            Self::Service(v) => serde_json::json!({ "Service": v }),
            Self::Federated(v) => serde_json::json!({ "Federated": v }),
            Self::CanonicalUser(v) => serde_json::json!({ "CanonicalUser": v }),
        }
    }

    fn aws_arn(&self) -> Option<&str> {
        match self {
            Self::Aws(a) => Some(a),
            _ => None,
        }
    }
}

impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Everyone => f.write_str("everyone (*)"),
            Self::Aws(arn) => match iam_arn_resource(arn) {
                Some((account, "root")) => write!(
                    f,
                    "every principal of account {account} that its IAM policies allow ({})",
                    shown(arn)
                ),
                _ => f.write_str(&shown(arn)),
            },
            Self::Service(s) => write!(f, "service {}", shown(s)),
            Self::Federated(s) => write!(f, "federated {}", shown(s)),
            Self::CanonicalUser(s) => write!(f, "canonical user {}", shown(s)),
        }
    }
}

/// Policy text as is when it is plain, escaped and quoted when it is not (terminal safety).
fn shown(value: &str) -> String {
    if value.chars().all(|c| !c.is_control()) && value.len() <= 300 {
        value.to_owned()
    } else {
        log_safe_with(value, 300)
    }
}

/// One statement, read for an audit. Elements that are not what IAM accepts make the
/// statement unclassifiable, which is itself a flag (never a silent pass).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    index: usize,
    sid: Option<String>,
    allow: bool,
    /// `true`: `NotPrincipal` (everyone but `principals`).
    not_principal: bool,
    principals: Vec<Principal>,
    /// `true`: `NotAction` (every action but `actions`).
    not_action: bool,
    actions: Vec<String>,
    restriction: Restriction,
}

/// What a statement's conditions bind it to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Restriction {
    /// `key=value|value` for each restricting condition, in order.
    keys: Vec<String>,
    /// Fixed `aws:PrincipalArn` values, when a condition names them.
    principal_arns: Option<BTreeSet<String>>,
}

fn string_list(value: &Value, what: &str) -> Result<Vec<String>, String> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{what} holds a value that is not a string"))
            })
            .collect(),
        _ => Err(format!("{what} is not a string or a list of strings")),
    }
}

fn principals(value: &Value, what: &str) -> Result<Vec<Principal>, String> {
    match value {
        Value::String(s) if s == "*" => Ok(vec![Principal::Everyone]),
        Value::Object(map) => {
            let mut out = Vec::new();
            for (kind, ids) in map {
                for id in string_list(ids, &format!("{what}.{kind}"))? {
                    out.push(match kind.as_str() {
                        "AWS" if id == "*" => Principal::Everyone,
                        "AWS" => Principal::Aws(normalize_aws_principal(&id)),
                        "Service" => Principal::Service(id),
                        "Federated" => Principal::Federated(id),
                        "CanonicalUser" => Principal::CanonicalUser(id),
                        _ => return Err(format!("{what} has an unknown type {}", shown(kind))),
                    });
                }
            }
            Ok(out)
        }
        _ => Err(format!("{what} is neither \"*\" nor an object")),
    }
}

fn restriction(condition: Option<&Value>) -> Result<Restriction, String> {
    let mut out = Restriction::default();
    let Some(condition) = condition else {
        return Ok(out);
    };
    let Value::Object(block) = condition else {
        return Err("Condition is not an object".into());
    };
    for (operator, entries) in block {
        let Value::Object(entries) = entries else {
            return Err(format!("Condition.{} is not an object", shown(operator)));
        };
        let base = operator.strip_prefix("ForAnyValue:").unwrap_or(operator);
        if !RESTRICTING_OPERATORS.contains(&base) {
            continue;
        }
        for (key, values) in entries {
            let values = string_list(values, &format!("Condition.{operator}.{key}"))?;
            let Some(known) = RESTRICTING_KEYS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(key))
            else {
                continue;
            };
            if values.is_empty() || values.iter().any(|v| v.trim_matches('*').is_empty()) {
                continue;
            }
            out.keys.push(format!("{known}={}", values.join("|")));
            let exact = !base.ends_with("Like") || values.iter().all(|v| !v.contains(['*', '?']));
            if *known == "aws:PrincipalArn" && exact {
                let named: BTreeSet<String> = values.into_iter().collect();
                // Conditions are ANDed: each one narrows the set further.
                out.principal_arns = Some(match out.principal_arns.take() {
                    Some(before) => before.intersection(&named).cloned().collect(),
                    None => named,
                });
            }
        }
    }
    Ok(out)
}

impl Statement {
    fn read(index: usize, value: &Value) -> Result<Self, (Option<String>, String)> {
        let sid = value.get("Sid").map(|s| match s {
            Value::String(s) => shown(s),
            other => shown(&other.to_string()),
        });
        let fail = |reason: String| (sid.clone(), reason);
        let allow = match value.get("Effect").and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            _ => return Err(fail("Effect is neither Allow nor Deny".into())),
        };
        let (not_principal, principals) = match (value.get("Principal"), value.get("NotPrincipal"))
        {
            (Some(p), None) => (false, principals(p, "Principal").map_err(fail)?),
            (None, Some(p)) => (true, principals(p, "NotPrincipal").map_err(fail)?),
            _ => {
                return Err(fail(
                    "it has not exactly one of Principal and NotPrincipal".into(),
                ));
            }
        };
        let (not_action, actions) = match (value.get("Action"), value.get("NotAction")) {
            (Some(a), None) => (false, string_list(a, "Action").map_err(fail)?),
            (None, Some(a)) => (true, string_list(a, "NotAction").map_err(fail)?),
            _ => {
                return Err(fail(
                    "it has not exactly one of Action and NotAction".into(),
                ));
            }
        };
        Ok(Self {
            index,
            sid: sid.clone(),
            allow,
            not_principal,
            principals,
            not_action,
            actions,
            restriction: restriction(value.get("Condition")).map_err(fail)?,
        })
    }

    /// Whether the statement's action element covers `action`.
    fn covers(&self, action: &str) -> bool {
        let named = self.actions.iter().any(|p| action_matches(p, action));
        named != self.not_action
    }

    fn covers_any(&self, actions: &[&str]) -> bool {
        actions.iter().any(|a| self.covers(a))
    }

    /// Everyone, or everyone but some, with nothing binding it to identities.
    fn is_unrestricted_public(&self) -> bool {
        (self.not_principal || self.principals.contains(&Principal::Everyone))
            && self.restriction.keys.is_empty()
    }

    /// The principals this statement can reach, narrowed by `aws:PrincipalArn`; `None` when
    /// it is unbounded (`NotPrincipal`, or `*` not narrowed to ARNs).
    fn reach(&self) -> Option<Vec<Principal>> {
        if let Some(arns) = &self.restriction.principal_arns {
            return Some(arns.iter().cloned().map(Principal::Aws).collect());
        }
        if self.not_principal || self.principals.contains(&Principal::Everyone) {
            return None;
        }
        Some(self.principals.clone())
    }

    /// Each principal it names, as a report lists it.
    fn named(&self) -> impl Iterator<Item = StatementPrincipal> + '_ {
        self.principals.iter().map(|principal| StatementPrincipal {
            statement: self.index,
            sid: self.sid.clone(),
            principal: principal.clone(),
            not_principal: self.not_principal,
        })
    }

    /// The principals it reaches that `trusted` does not name; everyone when it is unbounded.
    fn outsiders(&self, trusted: impl Fn(&str) -> bool) -> Vec<Principal> {
        match self.reach() {
            None => vec![Principal::Everyone],
            Some(reach) => reach
                .into_iter()
                .filter(|p| !p.aws_arn().is_some_and(&trusted))
                .collect(),
        }
    }

    /// Who a flag names: everyone but the `NotPrincipal`s, or the outsiders it reaches.
    fn who(&self, outsiders: &[Principal]) -> String {
        if self.not_principal {
            format!("everyone except {}", list(&self.principals))
        } else {
            list(outsiders)
        }
    }

    fn name(&self) -> String {
        statement_name(self.index, self.sid.as_deref())
    }
}

fn statement_name(index: usize, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("statement #{index} (Sid {sid})"),
        None => format!("statement #{index}"),
    }
}

/// Reads each statement in order: the readable ones go to `classify` with their text, the
/// others are flagged `unreadable_statement` where they stand among the flags.
fn each_statement(
    values: &[Value],
    flags: &mut Vec<Flag>,
    mut classify: impl FnMut(Statement, &Value, &mut Vec<Flag>),
) {
    for (index, value) in values.iter().enumerate() {
        match Statement::read(index, value) {
            Ok(s) => classify(s, value, flags),
            Err((sid, why)) => flags.push(unreadable(index, sid, &why)),
        }
    }
}

/// IAM action matching: `*` is any run of characters, `?` one; case does not matter.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let a: Vec<char> = action.to_ascii_lowercase().chars().collect();
    // Iterative glob with backtracking to the last `*`.
    let (mut pi, mut ai) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ai < a.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == a[ai]) {
            pi += 1;
            ai += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ai));
            pi += 1;
        } else if let Some((sp, sa)) = star {
            pi = sp + 1;
            ai = sa + 1;
            star = Some((sp, sa + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Statements of a document read by [`BucketPolicy::parse`].
fn statements(policy: &BucketPolicy) -> Vec<Value> {
    match policy.to_value().get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Findings

/// A reason to look: each one makes the audit exit 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// `public_principal`, `not_principal`, `destructive_access`, `unreadable_statement`,
    /// `untrusted_assume`, `public_assume`, `versioning_off`, `public_access_not_blocked`.
    pub code: &'static str,
    /// The statement at fault, when there is one.
    pub statement: Option<usize>,
    pub reason: String,
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// One principal as one statement names it: the leading fields of a bucket grant and of a
/// role trust alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementPrincipal {
    pub statement: usize,
    pub sid: Option<String>,
    pub principal: Principal,
    /// `true`: granted to everyone **but** this principal (`NotPrincipal`).
    pub not_principal: bool,
}

// A grant's and a trust's `StatementPrincipal` fields read as their own (`grant.principal`).
impl std::ops::Deref for BucketGrant {
    type Target = StatementPrincipal;
    fn deref(&self) -> &StatementPrincipal {
        &self.named
    }
}
impl std::ops::Deref for RoleTrust {
    type Target = StatementPrincipal;
    fn deref(&self) -> &StatementPrincipal {
        &self.named
    }
}

/// One principal an `Allow` of the bucket policy reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketGrant {
    /// Flattened: the JSON keeps `statement`, `sid`, `principal`, `not_principal` first.
    #[serde(flatten)]
    pub named: StatementPrincipal,
    pub access: Vec<Access>,
    /// As written; with `not_action`, the actions it does not grant.
    pub actions: Vec<String>,
    pub not_action: bool,
    /// The restricting conditions, `key=value|value`.
    pub restricted_by: Vec<String>,
}

/// The bucket policy's reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketPolicyReport {
    /// `false`: the bucket has no policy (`NoSuchBucketPolicy`).
    pub exists: bool,
    pub statements: usize,
    pub grants: Vec<BucketGrant>,
    /// `Deny` statements (index, Sid): they grant nothing.
    pub denies: Vec<(usize, Option<String>)>,
    pub flags: Vec<Flag>,
    /// A `Deny` of every request without TLS (Security Hub's S3.5).
    pub denies_insecure_transport: bool,
}

/// Classifies every statement of the central bucket's policy.
pub fn classify_bucket_policy(
    policy: Option<&BucketPolicy>,
    trusted: &TrustedPrincipals,
) -> BucketPolicyReport {
    let mut report = BucketPolicyReport {
        exists: policy.is_some(),
        statements: 0,
        grants: Vec::new(),
        denies: Vec::new(),
        flags: Vec::new(),
        denies_insecure_transport: false,
    };
    let Some(policy) = policy else {
        return report;
    };
    let values = statements(policy);
    report.statements = values.len();
    report.denies_insecure_transport = crate::controls::denies_insecure_transport(&values);
    each_statement(&values, &mut report.flags, |s, value, flags| {
        if !s.allow {
            report.denies.push((s.index, s.sid.clone()));
            return;
        }
        let access: Vec<Access> = Access::ALL
            .into_iter()
            .filter(|a| s.covers_any(a.actions()))
            .collect();
        report.grants.extend(s.named().map(|named| BucketGrant {
            named,
            access: access.clone(),
            actions: s.actions.clone(),
            not_action: s.not_action,
            restricted_by: s.restriction.keys.clone(),
        }));
        if s.not_principal {
            flags.push(Flag {
                code: "not_principal",
                statement: Some(s.index),
                reason: format!(
                    "{} allows everyone except {} (NotPrincipal with Allow)",
                    s.name(),
                    list(&s.principals)
                ),
            });
        } else if s.is_unrestricted_public() {
            flags.push(Flag {
                code: "public_principal",
                statement: Some(s.index),
                reason: format!(
                    "{} allows everyone (Principal \"*\") {} with no condition restricting who{}",
                    s.name(),
                    access_words(&access, &s),
                    secure_transport_note(value)
                ),
            });
        }
        let destructive: Vec<Access> = access
            .iter()
            .copied()
            .filter(|a| a.is_destructive())
            .collect();
        if destructive.is_empty() {
            return;
        }
        let outsiders = s.outsiders(|a| trusted.may_destroy(a));
        if !outsiders.is_empty() {
            let granted: Vec<String> = destructive
                .iter()
                .flat_map(|a| a.actions())
                .filter(|a| s.covers(a))
                .map(|a| (*a).to_owned())
                .collect();
            flags.push(Flag {
                code: "destructive_access",
                statement: Some(s.index),
                reason: format!(
                    "{} allows {} to {} ({}){}, and only trailkeeper's roles and the break-glass role may",
                    s.name(),
                    s.who(&outsiders),
                    list(&destructive),
                    granted.join(", "),
                    restricted_note(&s)
                ),
            });
        }
    });
    report
}

fn unreadable(index: usize, sid: Option<String>, why: &str) -> Flag {
    let name = statement_name(index, sid.as_deref());
    Flag {
        code: "unreadable_statement",
        statement: Some(index),
        reason: format!("{name} cannot be classified ({why}); read it by hand"),
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn access_words(access: &[Access], s: &Statement) -> String {
    if access.is_empty() {
        format!("the actions {}", s.actions.join(", "))
    } else {
        format!("to {}", list(access))
    }
}

fn restricted_note(s: &Statement) -> String {
    if s.restriction.keys.is_empty() {
        String::new()
    } else {
        format!(" (restricted only by {})", s.restriction.keys.join(", "))
    }
}

fn secure_transport_note(statement: &Value) -> &'static str {
    let text = statement
        .get("Condition")
        .map(Value::to_string)
        .unwrap_or_default();
    if text.to_ascii_lowercase().contains("aws:securetransport") {
        " (aws:SecureTransport only requires TLS, it does not restrict who)"
    } else {
        ""
    }
}

/// One principal the member role's trust policy lets assume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleTrust {
    /// Flattened, as in [`BucketGrant`].
    #[serde(flatten)]
    pub named: StatementPrincipal,
    /// The assume actions granted (`sts:AssumeRole`, `…WithSAML`, `…WithWebIdentity`).
    pub actions: Vec<String>,
    pub restricted_by: Vec<String>,
    /// Whether every principal it reaches is a named administrator.
    pub admin: bool,
}

/// Who can assume the log-archive account's member role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRoleReport {
    pub role: String,
    /// The role's ARN; `None` when the role does not exist (`NoSuchEntity`: nobody assumes it).
    pub arn: Option<String>,
    pub trusted: Vec<RoleTrust>,
    pub flags: Vec<Flag>,
}

/// Classifies a role's trust policy (`None`: the role does not exist).
pub fn classify_trust_policy(
    role: &RoleName,
    found: Option<(String, &BucketPolicy)>,
    trusted: &TrustedPrincipals,
) -> MemberRoleReport {
    let mut report = MemberRoleReport {
        role: role.to_string(),
        arn: None,
        trusted: Vec::new(),
        flags: Vec::new(),
    };
    let Some((arn, policy)) = found else {
        return report;
    };
    report.arn = Some(arn);
    each_statement(&statements(policy), &mut report.flags, |s, _, flags| {
        let actions: Vec<String> = ASSUME_ACTIONS
            .iter()
            .filter(|a| s.covers(a))
            .map(|a| (*a).to_owned())
            .collect();
        if !s.allow || actions.is_empty() {
            return;
        }
        let outsiders = s.outsiders(|a| trusted.is_admin(a));
        report.trusted.extend(s.named().map(|named| RoleTrust {
            named,
            actions: actions.clone(),
            restricted_by: s.restriction.keys.clone(),
            admin: outsiders.is_empty(),
        }));
        if s.is_unrestricted_public() {
            flags.push(Flag {
                code: "public_assume",
                statement: Some(s.index),
                reason: format!(
                    "{} lets everyone{} assume role {} ({}) with no condition restricting who: any AWS principal anywhere",
                    s.name(),
                    if s.not_principal {
                        format!(" except {}", list(&s.principals))
                    } else {
                        String::new()
                    },
                    report.role,
                    actions.join(", ")
                ),
            });
        } else if !outsiders.is_empty() {
            flags.push(Flag {
                code: "untrusted_assume",
                statement: Some(s.index),
                reason: format!(
                    "{} lets {} assume role {} ({}){}, and only the named administrators may{}",
                    s.name(),
                    s.who(&outsiders),
                    report.role,
                    actions.join(", "),
                    restricted_note(&s),
                    if trusted.admins.is_empty() {
                        " (none is named: --admin)"
                    } else {
                        ""
                    }
                ),
            });
        }
    });
    report
}

// ---------------------------------------------------------------------------------------------
// Protections

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    pub fn is_complete(&self) -> bool {
        self.block_public_acls
            && self.ignore_public_acls
            && self.block_public_policy
            && self.restrict_public_buckets
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectLock {
    pub enabled: bool,
    /// `GOVERNANCE` or `COMPLIANCE`, when a default retention is set.
    pub mode: Option<String>,
    pub days: Option<i32>,
    pub years: Option<i32>,
}

/// The bucket's protections; `None` fields could not be read (see the report's errors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Protections {
    /// `Enabled`, `Suspended`, or `Off` (never enabled).
    pub versioning: Option<String>,
    pub mfa_delete: Option<bool>,
    /// `Some(None)`: no Object Lock configuration.
    pub object_lock: Option<Option<ObjectLock>>,
    /// `Some(None)`: no public access block configuration on the bucket.
    pub public_access_block: Option<Option<PublicAccessBlock>>,
    /// Where S3 server access logs of the bucket go (`s3://target/prefix`); `Some(None)`: off.
    pub access_logging: Option<Option<String>>,
    pub flags: Vec<Flag>,
    /// The reads that failed, each naming the call and the bucket.
    pub errors: Vec<String>,
}

impl Protections {
    /// Versioning off and public access not fully blocked are flags; MFA Delete and Object
    /// Lock are reported (the template sets neither: both need the root user or a new bucket).
    fn judge(&mut self, bucket: &BucketName) {
        if let Some(v) = &self.versioning
            && v != "Enabled"
        {
            self.flags.push(Flag {
                code: "versioning_off",
                statement: None,
                reason: format!(
                    "versioning of s3://{bucket} is {v}: an overwritten or deleted log is gone"
                ),
            });
        }
        match &self.public_access_block {
            Some(None) => self.flags.push(Flag {
                code: "public_access_not_blocked",
                statement: None,
                reason: format!(
                    "s3://{bucket} has no public access block configuration (an account-level block is not read)"
                ),
            }),
            Some(Some(b)) if !b.is_complete() => self.flags.push(Flag {
                code: "public_access_not_blocked",
                statement: None,
                reason: format!(
                    "the public access block of s3://{bucket} is not complete: {}",
                    [
                        ("BlockPublicAcls", b.block_public_acls),
                        ("IgnorePublicAcls", b.ignore_public_acls),
                        ("BlockPublicPolicy", b.block_public_policy),
                        ("RestrictPublicBuckets", b.restrict_public_buckets),
                    ]
                    .iter()
                    .filter(|(_, on)| !on)
                    .map(|(n, _)| format!("{n} is off"))
                    .collect::<Vec<_>>()
                    .join(", ")
                ),
            }),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The audit

/// What `trailkeeper audit --archive` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveAudit {
    pub bucket: String,
    /// `None` when the policy could not be read (`bucket_policy_error`).
    pub bucket_policy: Option<BucketPolicyReport>,
    pub bucket_policy_error: Option<String>,
    pub member_role: Option<MemberRoleReport>,
    pub member_role_error: Option<String>,
    pub protections: Protections,
    /// CloudTrail.6, S3.5, S3.14, S3.15 and S3.20 of the bucket (`crate::controls`).
    pub controls: Vec<crate::controls::Control>,
}

impl ArchiveAudit {
    pub fn flags(&self) -> impl Iterator<Item = &Flag> {
        let policy = self.bucket_policy.iter().flat_map(|p| &p.flags);
        let role = self.member_role.iter().flat_map(|r| &r.flags);
        policy.chain(role).chain(&self.protections.flags)
    }

    /// What could not be read, each naming the call and the bucket or role.
    pub fn errors(&self) -> impl Iterator<Item = &String> {
        let policy = self.bucket_policy_error.iter();
        policy
            .chain(&self.member_role_error)
            .chain(&self.protections.errors)
    }
}

/// Reads the archive's policies and protections with credentials of the log-archive account.
pub struct ArchiveAuditor {
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    bucket: BucketName,
    member_role: RoleName,
    trusted: TrustedPrincipals,
}

impl ArchiveAuditor {
    pub fn new(
        aws: &aws_config::SdkConfig,
        bucket: BucketName,
        member_role: RoleName,
        trusted: TrustedPrincipals,
    ) -> Self {
        Self {
            s3: crate::store::s3_client(aws),
            iam: aws_sdk_iam::Client::new(aws),
            bucket,
            member_role,
            trusted,
        }
    }

    /// Every part is read even when another fails; what failed is in `errors`.
    pub async fn audit(&self) -> ArchiveAudit {
        let (bucket_policy, bucket_policy_error) = match self.bucket_policy().await {
            Ok(policy) => (
                Some(classify_bucket_policy(policy.as_ref(), &self.trusted)),
                None,
            ),
            Err(e) => (None, Some(e)),
        };
        let (member_role, member_role_error) = match self.trust_policy().await {
            Ok(found) => (
                Some(classify_trust_policy(
                    &self.member_role,
                    found.as_ref().map(|(arn, p)| (arn.clone(), p)),
                    &self.trusted,
                )),
                None,
            ),
            Err(e) => (None, Some(e)),
        };
        let mut errors = Vec::new();
        let mut protections = Protections::default();
        match self.versioning().await {
            Ok((status, mfa)) => {
                protections.versioning = Some(status);
                protections.mfa_delete = Some(mfa);
            }
            Err(e) => errors.push(e),
        }
        match self.object_lock().await {
            Ok(lock) => protections.object_lock = Some(lock),
            Err(e) => errors.push(e),
        }
        match self.public_access_block().await {
            Ok(block) => protections.public_access_block = Some(block),
            Err(e) => errors.push(e),
        }
        match self.access_logging().await {
            Ok(target) => protections.access_logging = Some(target),
            Err(e) => errors.push(e),
        }
        protections.errors = errors;
        protections.judge(&self.bucket);
        let mut audit = ArchiveAudit {
            bucket: self.bucket.to_string(),
            bucket_policy,
            bucket_policy_error,
            member_role,
            member_role_error,
            protections,
            controls: Vec::new(),
        };
        audit.controls = crate::controls::bucket_controls(&audit);
        audit
    }

    fn failed<E>(&self, call: &str, e: &SdkError<E, HttpResponse>) -> String
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        format!("{call} on s3://{}: {}", self.bucket, describe_sdk_error(e))
    }

    /// `None`: the bucket has no policy.
    async fn bucket_policy(&self) -> Result<Option<BucketPolicy>, String> {
        let text = match self
            .s3
            .get_bucket_policy()
            .bucket(self.bucket.as_str())
            .send()
            .await
        {
            Ok(out) => out.policy().map(str::to_owned),
            Err(e) if e.code() == Some("NoSuchBucketPolicy") => None,
            Err(e) => return Err(self.failed("s3:GetBucketPolicy", &e)),
        };
        text.map(|t| {
            BucketPolicy::parse(&t)
                .map_err(|e| format!("the bucket policy of s3://{}: {e}", self.bucket))
        })
        .transpose()
    }

    /// `None`: the role does not exist.
    async fn trust_policy(&self) -> Result<Option<(String, BucketPolicy)>, String> {
        let role = match self
            .iam
            .get_role()
            .role_name(self.member_role.as_str())
            .send()
            .await
        {
            Ok(out) => out.role,
            Err(e) if e.code() == Some("NoSuchEntity") => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "iam:GetRole {}: {}",
                    self.member_role,
                    describe_sdk_error(&e)
                ));
            }
        };
        let Some(role) = role else {
            return Err(format!(
                "iam:GetRole {}: the answer has no role",
                self.member_role
            ));
        };
        let encoded = role.assume_role_policy_document().ok_or_else(|| {
            format!(
                "iam:GetRole {}: the answer has no trust policy",
                self.member_role
            )
        })?;
        let policy = parse_trust_policy(encoded)
            .map_err(|e| format!("the trust policy of role {}: {e}", role.arn()))?;
        Ok(Some((role.arn().to_owned(), policy)))
    }

    /// (`Enabled`|`Suspended`|`Off`, MFA Delete on).
    async fn versioning(&self) -> Result<(String, bool), String> {
        let out = self
            .s3
            .get_bucket_versioning()
            .bucket(self.bucket.as_str())
            .send()
            .await
            .map_err(|e| self.failed("s3:GetBucketVersioning", &e))?;
        let status = out
            .status()
            .map_or_else(|| "Off".to_owned(), |s| s.as_str().to_owned());
        let mfa = out
            .mfa_delete()
            .is_some_and(|m| m.as_str().eq_ignore_ascii_case("Enabled"));
        Ok((status, mfa))
    }

    async fn object_lock(&self) -> Result<Option<ObjectLock>, String> {
        match self
            .s3
            .get_object_lock_configuration()
            .bucket(self.bucket.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(out.object_lock_configuration().map(|c| {
                let retention = c.rule().and_then(|r| r.default_retention());
                ObjectLock {
                    enabled: c
                        .object_lock_enabled()
                        .is_some_and(|e| e.as_str() == "Enabled"),
                    mode: retention
                        .and_then(|r| r.mode())
                        .map(|m| m.as_str().to_owned()),
                    // A rule has days or years; the other is absent (moto says 0).
                    days: retention.and_then(|r| r.days()).filter(|d| *d > 0),
                    years: retention.and_then(|r| r.years()).filter(|y| *y > 0),
                }
            })),
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Ok(None),
            Err(e) => Err(self.failed("s3:GetObjectLockConfiguration", &e)),
        }
    }

    async fn public_access_block(&self) -> Result<Option<PublicAccessBlock>, String> {
        match self
            .s3
            .get_public_access_block()
            .bucket(self.bucket.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(out
                .public_access_block_configuration()
                .map(|c| PublicAccessBlock {
                    block_public_acls: c.block_public_acls() == Some(true),
                    ignore_public_acls: c.ignore_public_acls() == Some(true),
                    block_public_policy: c.block_public_policy() == Some(true),
                    restrict_public_buckets: c.restrict_public_buckets() == Some(true),
                })),
            Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => Ok(None),
            Err(e) => Err(self.failed("s3:GetPublicAccessBlock", &e)),
        }
    }

    async fn access_logging(&self) -> Result<Option<String>, String> {
        let out = self
            .s3
            .get_bucket_logging()
            .bucket(self.bucket.as_str())
            .send()
            .await
            .map_err(|e| self.failed("s3:GetBucketLogging", &e))?;
        Ok(out
            .logging_enabled()
            .map(|l| format!("s3://{}/{}", l.target_bucket(), l.target_prefix())))
    }
}

/// GetRole returns the trust policy URL-encoded (RFC 3986); it is read with the same strict
/// reader as bucket policies, whose errors name a bucket policy, so only their detail is kept.
pub fn parse_trust_policy(encoded: &str) -> Result<BucketPolicy, String> {
    let text = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|e| format!("it is not UTF-8 once URL-decoded: {e}"))?;
    BucketPolicy::parse(&text).map_err(|e| match e {
        PolicyError::Unreadable { detail, .. } => format!("it is not valid JSON: {detail}"),
        PolicyError::NotAPolicy { detail, .. } => format!("it is not a policy: {detail}"),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Grant, LogDestination, PolicyEdit, TrailArn};

    const BUCKET: &str = "central-logs";
    const UPDATER: &str = "arn:aws:iam::222222222222:role/trailkeeper-PolicyUpdaterRole-1AB2C3";
    const VALIDATOR: &str = "arn:aws:iam::222222222222:role/trailkeeper-DigestValidatorRole-4D5E6F";
    const BREAK_GLASS: &str = "arn:aws:iam::222222222222:role/BreakGlass";
    const ADMIN: &str = "arn:aws:iam::111111111111:role/OrgAdmin";

    fn trusted() -> TrustedPrincipals {
        TrustedPrincipals::new(
            &[UPDATER.into(), VALIDATOR.into()],
            Some(BREAK_GLASS),
            &[ADMIN.into()],
        )
        .unwrap()
    }

    /// template.yaml's base policy, with the policy-updater's statements for one account.
    fn template_policy() -> BucketPolicy {
        let base = format!(
            r#"{{"Version":"2012-10-17","Statement":[
            {{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*",
              "Resource":["arn:aws:s3:::{BUCKET}","arn:aws:s3:::{BUCKET}/*"],
              "Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}},
            {{"Sid":"OnlyPolicyUpdaterChangesPolicy","Effect":"Deny","Principal":"*",
              "Action":["s3:PutBucketPolicy","s3:DeleteBucketPolicy"],"Resource":"arn:aws:s3:::{BUCKET}",
              "Condition":{{"ArnNotEquals":{{"aws:PrincipalArn":"{UPDATER}"}}}}}}]}}"#
        );
        let policy = BucketPolicy::parse(&base).unwrap();
        let dest = LogDestination::new(BucketName::new(BUCKET).unwrap(), None);
        let trail =
            TrailArn::parse("arn:aws:cloudtrail:us-east-1:333333333333:trail/trailkeeper").unwrap();
        match policy.admit(&dest, &Grant::Trail(trail)).unwrap() {
            PolicyEdit::Changed { policy, .. } => policy,
            PolicyEdit::Unchanged => panic!("the trail was not admitted"),
        }
    }

    /// The template policy plus one statement.
    fn with(statement: &str) -> BucketPolicy {
        let mut value = template_policy().to_value();
        value["Statement"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::from_str(statement).unwrap());
        BucketPolicy::parse(&value.to_string()).unwrap()
    }

    fn codes(flags: &[Flag]) -> Vec<&'static str> {
        flags.iter().map(|f| f.code).collect()
    }

    fn bucket_flags(statement: &str) -> Vec<Flag> {
        classify_bucket_policy(Some(&with(statement)), &trusted()).flags
    }

    #[test]
    fn a_bucket_from_the_template_audits_clean_and_names_cloudtrail_as_writer() {
        let report = classify_bucket_policy(Some(&template_policy()), &trusted());
        assert_eq!(report.flags, [], "{report:#?}");
        assert!(report.exists);
        assert_eq!(report.statements, 4);
        assert_eq!(
            report.denies,
            [
                (0, Some("DenyInsecureTransport".to_string())),
                (1, Some("OnlyPolicyUpdaterChangesPolicy".to_string()))
            ]
        );
        let cloudtrail = Principal::Service("cloudtrail.amazonaws.com".into());
        let write = report
            .grants
            .iter()
            .find(|g| g.access == [Access::Write])
            .expect("a writer");
        assert_eq!(write.principal, cloudtrail);
        assert_eq!(
            write.restricted_by,
            ["aws:SourceArn=arn:aws:cloudtrail:us-east-1:333333333333:trail/trailkeeper"]
        );
        let acl_check = report.grants.iter().find(|g| g.access.is_empty()).unwrap();
        assert_eq!(acl_check.principal, cloudtrail);
        assert_eq!(acl_check.actions, ["s3:GetBucketAcl"]);
        assert!(classify_bucket_policy(None, &trusted()).flags.is_empty());
    }

    /// `--format json` prints these as they are: the flattened fields stay first, in order.
    #[test]
    fn grants_and_trusts_serialize_with_flat_keys_in_order() {
        let report = classify_bucket_policy(Some(&template_policy()), &trusted());
        let grant = serde_json::to_string(&report.grants[0]).unwrap();
        let at = |key: &str| grant.find(&format!(r#""{key}":"#)).expect(key);
        let keys = [
            "statement",
            "sid",
            "principal",
            "not_principal",
            "access",
            "actions",
            "not_action",
            "restricted_by",
        ];
        assert!(grant.starts_with(r#"{"statement":"#), "{grant}");
        assert!(keys.windows(2).all(|k| at(k[0]) < at(k[1])), "{grant}");
        let trust = serde_json::to_string(&trust(&format!(
            r#"[{{"Sid":"A","Effect":"Allow","Principal":{{"AWS":"{ADMIN}"}},"Action":"sts:AssumeRole"}}]"#
        )).trusted[0])
        .unwrap();
        assert_eq!(
            trust,
            format!(
                r#"{{"statement":0,"sid":"A","principal":{{"AWS":"{ADMIN}"}},"not_principal":false,"actions":["sts:AssumeRole"],"restricted_by":[],"admin":true}}"#
            )
        );
    }

    #[test]
    fn everyone_without_a_restricting_condition_is_flagged() {
        let open = r#"{"Sid":"Open","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*"}"#;
        let flags = bucket_flags(open);
        assert_eq!(codes(&flags), ["public_principal"]);
        assert_eq!(flags[0].statement, Some(4));
        assert!(flags[0].reason.contains("Sid Open"), "{}", flags[0].reason);
        assert!(flags[0].reason.contains("to read"), "{}", flags[0].reason);
        // {"AWS": "*"} is the same; TLS alone restricts nothing, and says so.
        let tls_only = r#"{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::central-logs","Condition":{"Bool":{"aws:SecureTransport":"true"}}}"#;
        let flags = bucket_flags(tls_only);
        assert_eq!(codes(&flags), ["public_principal"]);
        assert!(
            flags[0]
                .reason
                .contains("aws:SecureTransport only requires TLS")
        );
        // Identity keys restrict, with positive operators and fixed values only.
        for condition in [
            r#"{"StringEquals":{"aws:PrincipalOrgID":"o-abcdefghij"}}"#,
            r#"{"StringEquals":{"aws:SourceAccount":"333333333333"}}"#,
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:cloudtrail:*:333333333333:trail/*"}}"#,
            r#"{"ForAnyValue:StringLike":{"aws:PrincipalOrgPaths":"o-a/*","aws:sourceorgid":"o-abcdefghij"}}"#,
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::444444444444:role/Reader"}}"#,
        ] {
            let s = format!(
                r#"{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*","Condition":{condition}}}"#
            );
            assert_eq!(bucket_flags(&s), [], "{condition}");
        }
        for condition in [
            r#"{"StringNotEquals":{"aws:PrincipalOrgID":"o-abcdefghij"}}"#,
            r#"{"StringEqualsIfExists":{"aws:PrincipalOrgID":"o-abcdefghij"}}"#,
            r#"{"ForAllValues:StringEquals":{"aws:PrincipalOrgID":"o-abcdefghij"}}"#,
            r#"{"StringLike":{"aws:PrincipalArn":"*"}}"#,
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
        ] {
            let s = format!(
                r#"{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*","Condition":{condition}}}"#
            );
            assert_eq!(
                codes(&bucket_flags(&s)),
                ["public_principal"],
                "{condition}"
            );
        }
    }

    #[test]
    fn destructive_access_is_only_for_trailkeepers_roles_and_break_glass() {
        let to = |principal: &str, actions: &str| {
            format!(
                r#"{{"Sid":"X","Effect":"Allow","Principal":{principal},"Action":{actions},"Resource":["arn:aws:s3:::central-logs","arn:aws:s3:::central-logs/*"]}}"#
            )
        };
        let other = r#"{"AWS":"arn:aws:iam::222222222222:role/Ops"}"#;
        for actions in [
            r#""s3:DeleteObject""#,
            r#""s3:deleteobjectversion""#,
            r#""s3:Delete*""#,
            r#""s3:DeleteObject*""#,
            r#""s3:*""#,
            r#""*""#,
            r#"["s3:GetObject","s3:PutBucketPolicy"]"#,
            r#""s3:DeleteBucketPolicy""#,
            r#""s3:PutLifecycleConfiguration""#,
            r#""s3:PutBucketVersioning""#,
            r#""s3:Put*""#,
            r#""s3:PutBucket?ersioning""#,
        ] {
            let flags = bucket_flags(&to(other, actions));
            assert_eq!(codes(&flags), ["destructive_access"], "{actions}");
            assert!(flags[0].reason.contains("role/Ops"), "{}", flags[0].reason);
        }
        for harmless in [r#""s3:GetObject""#, r#""s3:PutObject""#, r#""s3:List*""#] {
            assert_eq!(bucket_flags(&to(other, harmless)), [], "{harmless}");
        }
        // Trusted roles and the break-glass role may; an account root or a bare id may not.
        for principal in [
            format!(r#"{{"AWS":"{UPDATER}"}}"#),
            format!(r#"{{"AWS":["{VALIDATOR}","{BREAK_GLASS}"]}}"#),
        ] {
            assert_eq!(
                bucket_flags(&to(&principal, r#""s3:*""#)),
                [],
                "{principal}"
            );
        }
        for principal in [
            r#"{"AWS":"arn:aws:iam::222222222222:root"}"#,
            r#"{"AWS":"222222222222"}"#,
            r#"{"Service":"cloudtrail.amazonaws.com"}"#,
        ] {
            let flags = bucket_flags(&to(principal, r#""s3:DeleteObject""#));
            assert_eq!(codes(&flags), ["destructive_access"], "{principal}");
        }
        let flags = bucket_flags(&to(r#"{"AWS":"222222222222"}"#, r#""s3:DeleteObject""#));
        assert!(
            flags[0]
                .reason
                .contains("every principal of account 222222222222"),
            "{}",
            flags[0].reason
        );
        // "*" narrowed by aws:PrincipalArn to trusted roles is fine; to others it is not,
        // and an organization-wide condition still reaches outsiders.
        let narrowed = |arn: &str| {
            format!(
                r#"{{"Effect":"Allow","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::central-logs/*","Condition":{{"ArnEquals":{{"aws:PrincipalArn":"{arn}"}}}}}}"#
            )
        };
        assert_eq!(bucket_flags(&narrowed(BREAK_GLASS)), []);
        assert_eq!(
            codes(&bucket_flags(&narrowed(
                "arn:aws:iam::222222222222:role/Ops"
            ))),
            ["destructive_access"]
        );
        let org = r#"{"Effect":"Allow","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::central-logs/*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abcdefghij"}}}"#;
        let flags = bucket_flags(org);
        assert_eq!(codes(&flags), ["destructive_access"]);
        assert!(
            flags[0]
                .reason
                .contains("restricted only by aws:PrincipalOrgID")
        );
        // Wide open: both flags.
        assert_eq!(
            codes(&bucket_flags(&to(r#""*""#, r#""s3:*""#))),
            ["public_principal", "destructive_access"]
        );
    }

    #[test]
    fn not_action_and_not_principal_with_allow_are_wide_and_deny_grants_nothing() {
        let not_action = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:role/Ops"},"NotAction":"s3:GetObject","Resource":"*"}"#;
        let report = classify_bucket_policy(Some(&with(not_action)), &trusted());
        assert_eq!(codes(&report.flags), ["destructive_access"]);
        let grant = report.grants.last().unwrap();
        assert!(grant.not_action);
        assert_eq!(
            grant.access,
            [
                Access::Read,
                Access::Write,
                Access::Delete,
                Access::ChangePolicy,
                Access::ChangeProtection
            ]
        );
        let read_only = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:role/Ops"},"NotAction":"s3:*","Resource":"*"}"#;
        assert_eq!(bucket_flags(read_only), []);

        let not_principal = format!(
            r#"{{"Effect":"Allow","NotPrincipal":{{"AWS":"{UPDATER}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*"}}"#
        );
        assert_eq!(codes(&bucket_flags(&not_principal)), ["not_principal"]);
        let not_principal_delete = format!(
            r#"{{"Effect":"Allow","NotPrincipal":{{"AWS":"{UPDATER}"}},"Action":"s3:DeleteObject","Resource":"arn:aws:s3:::central-logs/*"}}"#
        );
        let flags = bucket_flags(&not_principal_delete);
        assert_eq!(codes(&flags), ["not_principal", "destructive_access"]);
        assert!(flags[1].reason.contains("everyone except"));

        let deny = r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}"#;
        let report = classify_bucket_policy(Some(&with(deny)), &trusted());
        assert_eq!(report.flags, []);
        assert_eq!(report.denies.last(), Some(&(4, None)));
    }

    #[test]
    fn a_statement_that_cannot_be_read_is_flagged_not_passed() {
        for bad in [
            r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}"#,
            r#"{"Effect":"Allow","Principal":{"AWS":5},"Action":"s3:GetObject","Resource":"*"}"#,
            r#"{"Effect":"allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}"#,
            r#"{"Effect":"Allow","Principal":{"Robot":"x"},"Action":"s3:GetObject","Resource":"*"}"#,
            r#"{"Sid":"Odd","Effect":"Allow","Principal":"*","Action":"s3:GetObject","NotAction":"s3:PutObject","Resource":"*"}"#,
        ] {
            let flags = bucket_flags(bad);
            assert_eq!(codes(&flags), ["unreadable_statement"], "{bad}");
            assert_eq!(flags[0].statement, Some(4));
        }
    }

    #[test]
    fn iam_action_wildcards() {
        assert!(action_matches("s3:*", "s3:DeleteObject"));
        assert!(action_matches("*", "s3:DeleteObject"));
        assert!(action_matches("S3:delete*", "s3:DeleteObjectVersion"));
        assert!(action_matches(
            "s3:Delete*Version",
            "s3:DeleteObjectVersion"
        ));
        assert!(action_matches("s3:*Object*", "s3:DeleteObject"));
        assert!(action_matches("s3:DeleteObjec?", "s3:DeleteObject"));
        assert!(!action_matches("s3:DeleteObjec?", "s3:DeleteObjectVersion"));
        assert!(!action_matches("s3:Get*", "s3:DeleteObject"));
        assert!(!action_matches("s3:DeleteObject", "s3:DeleteObjectVersion"));
        assert!(!action_matches("sts:*", "s3:DeleteObject"));
        assert!(!action_matches("", "s3:DeleteObject"));
    }

    fn role() -> RoleName {
        RoleName::new("OrganizationAccountAccessRole").unwrap()
    }

    fn trust(statements: &str) -> MemberRoleReport {
        let policy = BucketPolicy::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":{statements}}}"#
        ))
        .unwrap();
        classify_trust_policy(
            &role(),
            Some((
                "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole".into(),
                &policy,
            )),
            &trusted(),
        )
    }

    #[test]
    fn the_member_role_may_be_assumed_by_the_named_administrators_only() {
        let admin_only = format!(
            r#"[{{"Effect":"Allow","Principal":{{"AWS":"{ADMIN}"}},"Action":"sts:AssumeRole"}}]"#
        );
        let report = trust(&admin_only);
        assert_eq!(report.flags, []);
        assert_eq!(report.trusted.len(), 1);
        assert!(report.trusted[0].admin);

        // Organizations' default: the management account's root, i.e. all of its principals.
        let root = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"sts:AssumeRole"}"#;
        let report = trust(&format!("[{root}]"));
        assert_eq!(codes(&report.flags), ["untrusted_assume"]);
        assert!(
            report.flags[0]
                .reason
                .contains("every principal of account 111111111111"),
            "{}",
            report.flags[0].reason
        );
        assert!(!report.trusted[0].admin);
        // ... unless the root is what the operator named, or aws:PrincipalArn narrows it.
        let root_admin = TrustedPrincipals::new(&[], None, &["111111111111".into()]).unwrap();
        let policy = BucketPolicy::parse(&format!(r#"{{"Statement":[{root}]}}"#)).unwrap();
        assert_eq!(
            classify_trust_policy(&role(), Some(("arn".into(), &policy)), &root_admin).flags,
            []
        );
        let narrowed = format!(
            r#"[{{"Effect":"Allow","Principal":{{"AWS":"111111111111"}},"Action":"sts:AssumeRole","Condition":{{"ArnEquals":{{"aws:PrincipalArn":"{ADMIN}"}}}}}}]"#
        );
        assert_eq!(trust(&narrowed).flags, []);

        // The worst case, in its spellings; an org-wide condition is not an administrator.
        for everyone in [
            r#"[{"Sid":"Open","Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}]"#,
            r#"[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:*"}]"#,
            r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["sts:AssumeRole*"],"Condition":{"Bool":{"aws:SecureTransport":"true"}}}"#,
        ] {
            assert_eq!(
                codes(&trust(everyone).flags),
                ["public_assume"],
                "{everyone}"
            );
        }
        let org = r#"[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abcdefghij"}}}]"#;
        assert_eq!(codes(&trust(org).flags), ["untrusted_assume"]);
        let service = r#"[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]"#;
        assert_eq!(codes(&trust(service).flags), ["untrusted_assume"]);
        let saml = r#"[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::222222222222:saml-provider/Okta"},"Action":"sts:AssumeRoleWithSAML"}]"#;
        assert_eq!(codes(&trust(saml).flags), ["untrusted_assume"]);
        let not_principal = format!(
            r#"[{{"Effect":"Allow","NotPrincipal":{{"AWS":"{ADMIN}"}},"Action":"sts:AssumeRole"}}]"#
        );
        assert_eq!(codes(&trust(&not_principal).flags), ["public_assume"]);

        // Denies and statements about other actions do not let anyone in.
        let other = r#"[{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"},
            {"Effect":"Allow","Principal":"*","Action":"sts:TagSession"}]"#;
        let report = trust(other);
        assert_eq!(report.flags, []);
        assert_eq!(report.trusted, []);

        let none = classify_trust_policy(&role(), None, &trusted());
        assert_eq!((none.arn, none.flags), (None, vec![]));
    }

    #[test]
    fn trust_policies_come_url_encoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22AWS%22%3A%22arn%3Aaws%3Aiam%3A%3A111111111111%3Aroot%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D";
        let policy = parse_trust_policy(encoded).unwrap();
        assert_eq!(
            policy.to_value()["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::111111111111:root"
        );
        let err = parse_trust_policy("%7B%22a%22%3A1%2C%22a%22%3A2%7D").unwrap_err();
        assert!(err.starts_with("it is not valid JSON"), "{err}");
        assert!(!err.contains("bucket"), "{err}");
        let err = parse_trust_policy("%5B%5D").unwrap_err();
        assert!(err.starts_with("it is not a policy"), "{err}");
    }

    #[test]
    fn operator_named_principals_are_checked() {
        let err = TrustedPrincipals::new(&["PolicyUpdaterRole".into()], None, &[]).unwrap_err();
        assert_eq!(err.option, "--trusted-role");
        let err = TrustedPrincipals::new(&[], Some("arn:aws:iam::222222222222:user/bob"), &[])
            .unwrap_err();
        assert_eq!(err.option, "--break-glass-role");
        let err = TrustedPrincipals::new(&[], None, &["admin".into()]).unwrap_err();
        assert_eq!(err.option, "--admin");
        let ok = TrustedPrincipals::new(&[], None, &[" 111111111111 ".into()]).unwrap();
        assert!(ok.admins.contains("arn:aws:iam::111111111111:root"));
    }

    #[test]
    fn protections_flag_versioning_off_and_public_access_not_blocked() {
        let bucket = BucketName::new(BUCKET).unwrap();
        let all = PublicAccessBlock {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        };
        let judged = |versioning: &str, block: Option<PublicAccessBlock>| {
            let mut p = Protections {
                versioning: Some(versioning.into()),
                mfa_delete: Some(false),
                object_lock: Some(None),
                public_access_block: Some(block),
                access_logging: Some(None),
                flags: Vec::new(),
                errors: Vec::new(),
            };
            p.judge(&bucket);
            p.flags
        };
        assert_eq!(judged("Enabled", Some(all.clone())), []);
        assert_eq!(
            codes(&judged("Suspended", Some(all.clone()))),
            ["versioning_off"]
        );
        assert_eq!(codes(&judged("Off", Some(all.clone()))), ["versioning_off"]);
        assert_eq!(
            codes(&judged("Enabled", None)),
            ["public_access_not_blocked"]
        );
        let partial = PublicAccessBlock {
            restrict_public_buckets: false,
            ..all
        };
        let flags = judged("Enabled", Some(partial));
        assert!(flags[0].reason.ends_with("RestrictPublicBuckets is off"));
        // What could not be read is not judged.
        let mut unknown = Protections::default();
        unknown.judge(&bucket);
        assert_eq!(unknown.flags, []);
    }
}
