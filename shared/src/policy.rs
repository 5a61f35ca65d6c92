//! The central bucket's policy (and the optional KMS key's policy) and trailkeeper's edits.
//!
//! Model: a policy document is split into *foreign* statements (everything whose `Sid` does not
//! start with [`SID_PREFIX`]) and *owned* statements. Foreign statements are carried through
//! untouched, as JSON values, in their original order. Owned statements are read into a small
//! grants model (which trails may do what) and re-rendered from it, so an edit is "add to the
//! model; if the model did not change, there is nothing to write".
//!
//! Per-account mode (default), for account A with trail ARN T_A:
//! - one shared `TrailkeeperAclCheck` statement: `s3:GetBucketAcl` on the bucket when
//!   `aws:SourceArn` is one of the admitted trails (a list that grows);
//! - one `TrailkeeperWrite<A>` statement per account: `s3:PutObject` on
//!   `[prefix/]AWSLogs/<A>/*` when `aws:SourceArn` is T_A and `s3:x-amz-acl` is
//!   `bucket-owner-full-control`.
//!
//! IAM evaluates Resource and Condition independently inside one statement, so the documented
//! multi-account form (all prefixes and all trail ARNs in one statement) lets any listed trail
//! write under any listed prefix. Binding a prefix to its trail therefore needs one statement
//! per account; that is what costs the bytes (see the `capacity` test).
//!
//! Organization mode: `TrailkeeperOrgAclCheck` + `TrailkeeperOrgWrite` admit every trail whose
//! `aws:SourceOrgID` is the organization, writing under `[prefix/]AWSLogs/${aws:SourceAccount}/*`:
//! constant size, and still each account under its own prefix only. IAM resolves global condition
//! keys as policy variables in requests between services (IAM User Guide, "IAM policy elements:
//! Variables and tags"), and CloudTrail's request carries the trail owner as `aws:SourceAccount`.
//! The wide `[prefix/]AWSLogs/*` of earlier versions is still read, and narrowed by the next write.
//!
//! Offboarding ([`BucketPolicy::revoke`], [`KeyPolicy::revoke`]) takes one account out of the
//! model: its write statement, its trails in the shared ACL check, its encryption context. What
//! the account held is returned, for the result to name. Foreign statements stay as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use crate::events::{AccountId, log_safe_key, log_safe_with};
pub use crate::partition::Partition;

/// S3 bucket policies are limited to 20 KB.
pub const BUCKET_POLICY_LIMIT_BYTES: usize = 20 * 1024;
/// KMS key policies are limited to 32 KB.
pub const KEY_POLICY_LIMIT_BYTES: usize = 32 * 1024;

/// Statements whose Sid starts with this are trailkeeper's; all others are never modified.
/// Sids are kept to ASCII letters and digits, the strictest Sid alphabet among IAM, S3 and KMS.
pub const SID_PREFIX: &str = "Trailkeeper";
pub const SID_ACL_CHECK: &str = "TrailkeeperAclCheck";
/// Followed by the 12-digit account id.
pub const SID_WRITE_PREFIX: &str = "TrailkeeperWrite";
pub const SID_ORG_ACL_CHECK: &str = "TrailkeeperOrgAclCheck";
pub const SID_ORG_WRITE: &str = "TrailkeeperOrgWrite";
pub const SID_KMS_ENCRYPT: &str = "TrailkeeperKmsEncrypt";
pub const SID_KMS_DESCRIBE: &str = "TrailkeeperKmsDescribe";
pub const SID_KMS_ORG_ENCRYPT: &str = "TrailkeeperKmsOrgEncrypt";

pub const CLOUDTRAIL_SERVICE: &str = "cloudtrail.amazonaws.com";
pub const BUCKET_OWNER_FULL_CONTROL: &str = "bucket-owner-full-control";
const POLICY_VERSION: &str = "2012-10-17";
const KEY_SOURCE_ARN: &str = "aws:SourceArn";
const KEY_SOURCE_ORG_ID: &str = "aws:SourceOrgID";
const KEY_ACL: &str = "s3:x-amz-acl";
const KEY_KMS_TRAIL_CONTEXT: &str = "kms:EncryptionContext:aws:cloudtrail:arn";

/// Policy values (ARNs, Sids) are long: show up to 256 characters of them, escaped.
fn log_safe(value: &str) -> String {
    log_safe_with(value, 256)
}

// ---------------------------------------------------------------------------------------------
// Names from configuration

/// A configuration value that cannot be put into a policy safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value}: {rule}")]
pub struct ConfigError {
    pub what: &'static str,
    /// Log-safe rendering of the rejected value.
    pub value: String,
    pub rule: &'static str,
}

fn config_error(what: &'static str, value: &str, rule: &'static str) -> ConfigError {
    ConfigError {
        what,
        value: log_safe(value),
        rule,
    }
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = ConfigError;
            fn from_str(s: &str) -> Result<Self, ConfigError> {
                Self::new(s)
            }
        }
    };
}

string_newtype!(
    /// S3 bucket name (3-63 of `a-z 0-9 . -`, starting and ending with a letter or digit).
    BucketName
);
string_newtype!(
    /// CloudTrail `S3KeyPrefix`. No IAM wildcards (`*`, `?`) or policy variables (`$`): in a
    /// Resource ARN they would widen the grant.
    KeyPrefix
);
string_newtype!(
    /// AWS region code such as `us-east-1`.
    RegionName
);
string_newtype!(
    /// CloudTrail trail name (3-128 of `A-Z a-z 0-9 . _ -`, starting and ending alphanumeric).
    TrailName
);
string_newtype!(
    /// AWS Organizations id, `o-` followed by 10-32 lowercase letters or digits.
    OrgId
);

impl BucketName {
    pub fn new(s: &str) -> Result<Self, ConfigError> {
        let ok = (3..=63).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && starts_and_ends_alphanumeric(s)
            && !s.contains("..");
        ok.then(|| Self(s.to_owned())).ok_or_else(|| {
            config_error(
                "bucket name",
                s,
                "expected 3-63 characters of a-z 0-9 . - starting and ending with a letter or digit",
            )
        })
    }
}

impl KeyPrefix {
    pub fn new(s: &str) -> Result<Self, ConfigError> {
        let ok = (1..=200).contains(&s.len())
            && !s.starts_with('/')
            && !s.ends_with('/')
            && s.bytes().all(|b| {
                (0x20..0x7f).contains(&b) && !matches!(b, b'*' | b'?' | b'$' | b'"' | b'\\')
            });
        ok.then(|| Self(s.to_owned())).ok_or_else(|| {
            config_error(
                "S3 key prefix",
                s,
                "expected 1-200 printable ASCII characters without * ? $ \" \\ and without a leading or trailing /",
            )
        })
    }
}

impl RegionName {
    pub fn new(s: &str) -> Result<Self, ConfigError> {
        let ok = (4..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && s.contains('-')
            && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && s.as_bytes().last().is_some_and(u8::is_ascii_digit);
        ok.then(|| Self(s.to_owned()))
            .ok_or_else(|| config_error("region", s, "expected a region code such as us-east-1"))
    }
}

impl TrailName {
    pub fn new(s: &str) -> Result<Self, ConfigError> {
        let ok = (3..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && starts_and_ends_alphanumeric(s);
        ok.then(|| Self(s.to_owned())).ok_or_else(|| {
            config_error(
                "trail name",
                s,
                "expected 3-128 characters of A-Z a-z 0-9 . _ - starting and ending with a letter or digit",
            )
        })
    }
}

impl OrgId {
    pub fn new(s: &str) -> Result<Self, ConfigError> {
        let ok = s.strip_prefix("o-").is_some_and(|rest| {
            (10..=32).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        ok.then(|| Self(s.to_owned())).ok_or_else(|| {
            config_error(
                "organization id",
                s,
                "expected o- followed by 10-32 lowercase letters or digits",
            )
        })
    }
}

fn starts_and_ends_alphanumeric(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// `arn:<partition>:cloudtrail:<home region>:<account>:trail/<name>`: the `aws:SourceArn`
/// CloudTrail presents for every delivery of a (multi-region) trail, whatever region the event
/// came from. The partition is the home region's.
///
/// Ordered by account first, so rendered lists group by account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrailArn {
    account: AccountId,
    region: RegionName,
    name: TrailName,
    /// Always the region's ([`Partition::of_region`]).
    partition: Partition,
}

impl TrailArn {
    pub fn new(region: RegionName, account: AccountId, name: TrailName) -> Self {
        Self {
            partition: Partition::of_region(region.as_str()),
            account,
            region,
            name,
        }
    }

    pub fn partition(&self) -> Partition {
        self.partition
    }

    pub fn account(&self) -> AccountId {
        self.account
    }
    pub fn region(&self) -> &RegionName {
        &self.region
    }
    pub fn name(&self) -> &TrailName {
        &self.name
    }

    /// Strict inverse of `Display`: the partition must be the region's.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = || {
            config_error(
                "trail ARN",
                s,
                "expected arn:<partition>:cloudtrail:<region>:<account>:trail/<name>, the partition that of the region",
            )
        };
        let (partition, rest) = Partition::split_arn(s, "cloudtrail").ok_or_else(bad)?;
        let mut parts = rest.splitn(3, ':');
        let (Some(region), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let name = resource.strip_prefix("trail/").ok_or_else(bad)?;
        let trail = Self::new(
            RegionName::new(region)?,
            AccountId::new(account).map_err(|_| bad())?,
            TrailName::new(name)?,
        );
        if trail.partition != partition {
            return Err(bad());
        }
        Ok(trail)
    }
}

impl fmt::Display for TrailArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:cloudtrail:{}:{}:trail/{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

/// Where CloudTrail writes: `s3://<bucket>/[<prefix>/]AWSLogs/...`, in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDestination {
    pub bucket: BucketName,
    pub prefix: Option<KeyPrefix>,
    /// The partition of the bucket's ARNs: the configuration's ([`Partition::of_region`] of
    /// the function's region); [`Self::new`] starts in `aws`.
    pub partition: Partition,
}

impl LogDestination {
    pub fn new(bucket: BucketName, prefix: Option<KeyPrefix>) -> Self {
        Self {
            bucket,
            prefix,
            partition: Partition::Aws,
        }
    }

    pub fn in_partition(self, partition: Partition) -> Self {
        Self { partition, ..self }
    }

    pub fn bucket_arn(&self) -> String {
        format!("arn:{}:s3:::{}", self.partition, self.bucket)
    }

    /// `[prefix/]AWSLogs/`
    pub fn logs_key_prefix(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/AWSLogs/"),
            None => "AWSLogs/".to_owned(),
        }
    }

    /// The objects one account's trail may write: `arn:<partition>:s3:::<bucket>/[prefix/]AWSLogs/<acct>/*`.
    pub fn account_objects_arn(&self, account: AccountId) -> String {
        format!(
            "{}/{}{}/*",
            self.bucket_arn(),
            self.logs_key_prefix(),
            account
        )
    }

    /// What organization mode grants: each trail writes under its own account's prefix,
    /// `arn:<partition>:s3:::<bucket>/[prefix/]AWSLogs/${aws:SourceAccount}/*`, resolved by IAM
    /// per request. (The prefix cannot hold `$`, so this is the only variable.)
    pub fn source_account_objects_arn(&self) -> String {
        format!(
            "{}/{}${{aws:SourceAccount}}/*",
            self.bucket_arn(),
            self.logs_key_prefix()
        )
    }

    /// Everything under `[prefix/]AWSLogs/`: the organization grant of earlier versions, which
    /// let any trail of the organization write under any account's prefix. Only read, never
    /// written.
    pub fn all_logs_arn(&self) -> String {
        format!("{}/{}*", self.bucket_arn(), self.logs_key_prefix())
    }
}

/// What to admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Per-account mode: this trail, writing only under its own account's prefix.
    Trail(TrailArn),
    /// Organization mode: any trail whose `aws:SourceOrgID` is this organization.
    Organization(OrgId),
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trail(t) => write!(f, "account {} (trail {t})", t.account()),
            Self::Organization(o) => write!(f, "organization {o}"),
        }
    }
}

/// Whether trailkeeper's statements admit a grant, part by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Bucket policy: `s3:GetBucketAcl`. Key policy: `kms:DescribeKey`.
    pub check: bool,
    /// Bucket policy: `s3:PutObject`. Key policy: `kms:GenerateDataKey*`.
    pub write: bool,
}

impl Admission {
    pub fn is_complete(&self) -> bool {
        self.check && self.write
    }
}

/// The result of an edit. `Unchanged` means: do not call PutBucketPolicy / PutKeyPolicy.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyEdit<P> {
    Unchanged,
    Changed { policy: P, bytes: usize },
}

/// What offboarding one account does to a policy: the edit, and each grant the account lost
/// (empty when the policy held none for it, and then the edit is `Unchanged`).
#[derive(Debug, Clone, PartialEq)]
pub struct Revocation<P> {
    pub edit: PolicyEdit<P>,
    pub revoked: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Bucket,
    Key,
}

impl PolicyKind {
    pub fn limit_bytes(self) -> usize {
        match self {
            Self::Bucket => BUCKET_POLICY_LIMIT_BYTES,
            Self::Key => KEY_POLICY_LIMIT_BYTES,
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bucket => "S3 bucket policy",
            Self::Key => "KMS key policy",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON, or JSON that could not be rewritten without loss (a repeated key, a
    /// non-integer number). The caller must not overwrite such a policy.
    #[error("{kind} cannot be read, so trailkeeper will not overwrite it: {detail}")]
    Unreadable { kind: PolicyKind, detail: String },
    #[error("{kind} is not a policy trailkeeper can edit, so it will not overwrite it: {detail}")]
    NotAPolicy { kind: PolicyKind, detail: String },
    #[error(
        "{kind} statement #{index} has Sid {sid}, which is reserved for trailkeeper, but is not a statement trailkeeper writes ({reason}); nothing was written: fix or remove that statement by hand"
    )]
    UnrecognizedOwnedStatement {
        kind: PolicyKind,
        index: usize,
        sid: String,
        reason: String,
    },
    #[error(
        "{kind} has Sid {sid} twice (statements #{first} and #{second}); nothing was written: merge or remove one by hand"
    )]
    DuplicateOwnedSid {
        kind: PolicyKind,
        sid: String,
        first: usize,
        second: usize,
    },
    #[error(
        "{kind} already admits organization {existing}, not the configured {requested}; nothing was written"
    )]
    OrganizationMismatch {
        kind: PolicyKind,
        existing: OrgId,
        requested: OrgId,
    },
    #[error(
        "{kind} would be {needed} bytes after admitting {grant}, over the {limit}-byte limit{} (it is {current} bytes now and admits {accounts} accounts one by one); nothing was written and nothing was dropped. {way_out}",
        reserve_note(*.reserved)
    )]
    TooLarge {
        kind: PolicyKind,
        grant: String,
        limit: usize,
        /// Bytes of the limit kept free in per-account mode for the organization statements.
        reserved: usize,
        current: usize,
        needed: usize,
        /// Accounts admitted one by one now (before the refused edit).
        accounts: usize,
        way_out: &'static str,
    },
}

fn reserve_note(reserved: usize) -> String {
    if reserved == 0 {
        String::new()
    } else {
        format!(
            " less {reserved} bytes kept free so that the switch to organization mode always fits"
        )
    }
}

const WAY_OUT_ORG_MODE: &str = "Set TRAILKEEPER_POLICY_MODE=organization (with TRAILKEEPER_ORG_ID): it admits every trail of the organization through aws:SourceOrgID in constant space.";
const WAY_OUT_ROOM_THEN_ORG_MODE: &str = "Other statements leave no room for the organization statements either: remove statements that are no longer needed, then set TRAILKEEPER_POLICY_MODE=organization (with TRAILKEEPER_ORG_ID).";
const WAY_OUT_SHRINK: &str = "Make room first: remove per-account Trailkeeper statements that the organization statements now cover, or other statements that are no longer needed.";

// ---------------------------------------------------------------------------------------------
// Strict JSON: serde_json silently keeps the last of repeated keys and rounds big or fractional
// numbers. Either would change a statement we promise to keep exactly, so both are refused.

struct StrictValue<'p> {
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(E::custom(format_args!(
            "{}: the number {v} is fractional or too large to be kept exactly",
            self.path
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(StrictValue { path: &path })? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let path = format!("{}.{}", self.path, log_safe_key(&key));
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "{path}: the key appears twice in one object (JSON parsers keep only one of them)"
                )));
            }
            let value = access.next_value_seed(StrictValue { path: &path })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictValue { path: "$" }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// The document

/// A statement of the policy worth a look in an audit (see [`BucketPolicy::wide_statements`],
/// [`BucketPolicy::foreign_cloudtrail_statements`]). Reported, never copied, never changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementSummary {
    pub index: usize,
    /// Log-safe.
    pub sid: Option<String>,
    /// Log-safe; `Allow` ones are the ones to look at.
    pub effect: String,
    pub has_condition: bool,
}

/// A Sid used by more than one foreign statement (reported; the statements are kept as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateSid {
    /// Log-safe.
    pub sid: String,
    pub indexes: Vec<usize>,
}

/// (index in `Statement`, Sid, statement body) of a statement in trailkeeper's Sid namespace.
type OwnedStatement<'a> = (usize, &'a str, &'a Map<String, Value>);

#[derive(Debug, Clone, PartialEq)]
struct PolicyDocument {
    kind: PolicyKind,
    /// Top-level members in their original order (`Version`, `Id`, `Statement`, ...).
    top: Map<String, Value>,
    statements: Vec<Value>,
    /// `"Statement": {...}` is valid IAM; kept as such until an edit adds a statement.
    single_statement_object: bool,
}

impl PolicyDocument {
    fn parse(kind: PolicyKind, text: &str) -> Result<Self, PolicyError> {
        let value = parse_strict(text).map_err(|e| PolicyError::Unreadable {
            kind,
            detail: e.to_string(),
        })?;
        let not_a_policy = |detail: String| PolicyError::NotAPolicy { kind, detail };
        let Value::Object(top) = value else {
            return Err(not_a_policy("the document is not a JSON object".into()));
        };
        let (statements, single_statement_object) = match top.get("Statement") {
            Some(Value::Array(items)) => (items.clone(), false),
            Some(obj @ Value::Object(_)) => (vec![obj.clone()], true),
            Some(_) => {
                return Err(not_a_policy(
                    "`Statement` is neither an array nor an object".into(),
                ));
            }
            None => return Err(not_a_policy("there is no `Statement`".into())),
        };
        if let Some(index) = statements.iter().position(|s| !s.is_object()) {
            return Err(not_a_policy(format!(
                "statement #{index} is not a JSON object"
            )));
        }
        // The statements live in `statements`; `top` keeps only the member's position.
        let mut top = top;
        top.insert("Statement".into(), Value::Null);
        Ok(Self {
            kind,
            top,
            statements,
            single_statement_object,
        })
    }

    fn empty(kind: PolicyKind) -> Self {
        let mut top = Map::new();
        top.insert("Version".into(), Value::String(POLICY_VERSION.into()));
        top.insert("Statement".into(), Value::Null);
        Self {
            kind,
            top,
            statements: Vec::new(),
            single_statement_object: false,
        }
    }

    fn to_value(&self) -> Value {
        let mut top = self.top.clone();
        let statements = match (self.single_statement_object, self.statements.as_slice()) {
            (true, [only]) => only.clone(),
            _ => Value::Array(self.statements.clone()),
        };
        // Replacing an existing key keeps its position (preserve_order).
        top.insert("Statement".into(), statements);
        Value::Object(top)
    }

    /// Compact JSON, the form trailkeeper writes and the form whose size is checked.
    fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    fn sid(statement: &Value) -> Option<&str> {
        statement.get("Sid").and_then(Value::as_str)
    }

    fn is_owned(statement: &Value) -> bool {
        Self::sid(statement).is_some_and(|s| s.starts_with(SID_PREFIX))
    }

    /// Owned statements with their index; a repeated owned Sid is an error.
    fn owned(&self) -> Result<Vec<OwnedStatement<'_>>, PolicyError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut owned = Vec::new();
        for (index, statement) in self.statements.iter().enumerate() {
            let (Some(sid), Some(body)) = (Self::sid(statement), statement.as_object()) else {
                continue;
            };
            if !sid.starts_with(SID_PREFIX) {
                continue;
            }
            if let Some(first) = seen.insert(sid, index) {
                return Err(PolicyError::DuplicateOwnedSid {
                    kind: self.kind,
                    sid: log_safe(sid),
                    first,
                    second: index,
                });
            }
            owned.push((index, sid, body));
        }
        Ok(owned)
    }

    /// Foreign statements in their order, then the owned ones as rendered.
    fn with_owned(&self, owned: Vec<Value>) -> Self {
        let mut statements: Vec<Value> = self
            .statements
            .iter()
            .filter(|s| !Self::is_owned(s))
            .cloned()
            .collect();
        statements.extend(owned);
        Self {
            kind: self.kind,
            top: self.top.clone(),
            statements,
            single_statement_object: false,
        }
    }

    fn foreign_statements(&self) -> Vec<&Value> {
        self.statements
            .iter()
            .filter(|s| !Self::is_owned(s))
            .collect()
    }

    fn summary(index: usize, s: &Value) -> StatementSummary {
        StatementSummary {
            index,
            sid: s.get("Sid").map(|v| match v {
                Value::String(sid) => log_safe(sid),
                other => log_safe(&other.to_string()),
            }),
            effect: s
                .get("Effect")
                .map(|e| {
                    e.as_str()
                        .map_or_else(|| log_safe(&e.to_string()), log_safe)
                })
                .unwrap_or_else(|| "(none)".into()),
            has_condition: s.get("Condition").is_some(),
        }
    }

    /// Foreign statements naming CloudTrail's service principal: they may admit trails beyond
    /// what trailkeeper's statements do (the documented multi-account statement, for one).
    fn foreign_cloudtrail_statements(&self) -> Vec<StatementSummary> {
        let names_cloudtrail = |p: &Value| {
            p.get("Service").is_some_and(|svc| match svc {
                Value::Array(items) => items.iter().any(|i| i.as_str() == Some(CLOUDTRAIL_SERVICE)),
                other => other.as_str() == Some(CLOUDTRAIL_SERVICE),
            })
        };
        self.statements
            .iter()
            .enumerate()
            .filter(|(_, s)| !Self::is_owned(s) && s.get("Principal").is_some_and(names_cloudtrail))
            .map(|(index, s)| Self::summary(index, s))
            .collect()
    }

    /// Statements admitting everyone (`Principal: "*"`, `{"AWS": "*"}`) or everyone but some
    /// (`NotPrincipal`).
    fn wide_statements(&self) -> Vec<StatementSummary> {
        let is_star = |v: &Value| v.as_str() == Some("*");
        let wide_principal = |p: &Value| match p {
            Value::String(s) => s == "*",
            Value::Object(m) => m.get("AWS").is_some_and(|aws| match aws {
                Value::Array(items) => items.iter().any(is_star),
                other => is_star(other),
            }),
            _ => false,
        };
        self.statements
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.get("Principal").is_some_and(wide_principal) || s.get("NotPrincipal").is_some()
            })
            .map(|(index, s)| StatementSummary {
                index,
                sid: s.get("Sid").map(|v| match v {
                    Value::String(sid) => log_safe(sid),
                    other => log_safe(&other.to_string()),
                }),
                effect: s
                    .get("Effect")
                    .map(|e| {
                        e.as_str()
                            .map_or_else(|| log_safe(&e.to_string()), log_safe)
                    })
                    .unwrap_or_else(|| "(none)".into()),
                has_condition: s.get("Condition").is_some(),
            })
            .collect()
    }

    fn duplicate_sids(&self) -> Vec<DuplicateSid> {
        let mut by_sid: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, statement) in self.statements.iter().enumerate() {
            if let Some(sid) = Self::sid(statement) {
                by_sid.entry(sid).or_default().push(index);
            }
        }
        by_sid
            .into_iter()
            .filter(|(_, indexes)| indexes.len() > 1)
            .map(|(sid, indexes)| DuplicateSid {
                sid: log_safe(sid),
                indexes,
            })
            .collect()
    }

    /// Renders `after`, an edit that only removes grants: no size check (it can only shrink).
    fn shrink<P>(
        &self,
        changed: bool,
        owned: Vec<Value>,
        wrap: impl FnOnce(PolicyDocument) -> P,
    ) -> PolicyEdit<P> {
        if !changed {
            return PolicyEdit::Unchanged;
        }
        let doc = self.with_owned(owned);
        let bytes = doc.to_json().len();
        PolicyEdit::Changed {
            policy: wrap(doc),
            bytes,
        }
    }

    /// Renders `after`, checks the size limit (keeping `reserved` bytes free), and says
    /// whether anything changed.
    fn edit<P>(
        &self,
        changed: bool,
        owned: Vec<Value>,
        grant: &Grant,
        accounts: usize,
        reserved: usize,
        wrap: impl FnOnce(PolicyDocument) -> P,
    ) -> Result<PolicyEdit<P>, PolicyError> {
        if !changed {
            return Ok(PolicyEdit::Unchanged);
        }
        let doc = self.with_owned(owned);
        let bytes = doc.to_json().len();
        let limit = self.kind.limit_bytes();
        if bytes.saturating_add(reserved) > limit {
            return Err(PolicyError::TooLarge {
                kind: self.kind,
                grant: grant.to_string(),
                limit,
                reserved,
                current: self.to_json().len(),
                needed: bytes,
                accounts,
                way_out: match grant {
                    // Other statements can fill the policy past the reserve: then the switch
                    // to organization mode needs room first, and saying only "switch" misleads.
                    Grant::Trail(_) if self.to_json().len().saturating_add(reserved) > limit => {
                        WAY_OUT_ROOM_THEN_ORG_MODE
                    }
                    Grant::Trail(_) => WAY_OUT_ORG_MODE,
                    Grant::Organization(_) => WAY_OUT_SHRINK,
                },
            });
        }
        Ok(PolicyEdit::Changed {
            policy: wrap(doc),
            bytes,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reading owned statements: lenient about representation (string or one-element list, any key
// order), strict about meaning. Anything else under our Sid is refused, never "repaired".

type Reason = String;

fn expect_members(body: &Map<String, Value>, with_condition: bool) -> Result<(), Reason> {
    let mut expected = vec!["Sid", "Effect", "Principal", "Action", "Resource"];
    if with_condition {
        expected.push("Condition");
    }
    if let Some(extra) = body.keys().find(|k| !expected.contains(&k.as_str())) {
        return Err(format!("unexpected element {}", log_safe(extra)));
    }
    if let Some(missing) = expected.iter().find(|k| !body.contains_key(**k)) {
        return Err(format!("missing element {missing}"));
    }
    Ok(())
}

/// A string, or a non-empty array of strings.
fn strings(value: &Value, what: &str) -> Result<Vec<String>, Reason> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{what} holds a non-string"))
            })
            .collect(),
        _ => Err(format!("{what} is not a string or a list of strings")),
    }
}

fn expect_one(
    value: Option<&Value>,
    what: &str,
    expected: &str,
    ignore_case: bool,
) -> Result<(), Reason> {
    let found = strings(value.unwrap_or(&Value::Null), what)?;
    match found.as_slice() {
        [one] if one == expected || (ignore_case && one.eq_ignore_ascii_case(expected)) => Ok(()),
        _ => Err(format!(
            "{what} is {}, expected {expected}",
            log_safe(&found.join(","))
        )),
    }
}

fn expect_common(body: &Map<String, Value>, action: &str, resource: &str) -> Result<(), Reason> {
    expect_one(body.get("Effect"), "Effect", "Allow", false)?;
    match body.get("Principal") {
        Some(Value::Object(p)) if p.len() == 1 => expect_one(
            p.get("Service"),
            "Principal.Service",
            CLOUDTRAIL_SERVICE,
            false,
        )?,
        _ => {
            return Err(format!(
                "Principal is not {{\"Service\": \"{CLOUDTRAIL_SERVICE}\"}}"
            ));
        }
    }
    // Action names are case-insensitive in IAM.
    expect_one(body.get("Action"), "Action", action, true)?;
    expect_one(body.get("Resource"), "Resource", resource, false)
}

/// The Condition block as (operator, key) → values, which must have exactly `keys`.
fn condition(
    body: &Map<String, Value>,
    keys: &[(&str, &str)],
) -> Result<BTreeMap<(String, String), Vec<String>>, Reason> {
    let Some(Value::Object(block)) = body.get("Condition") else {
        return Err("Condition is not an object".into());
    };
    let mut found = BTreeMap::new();
    for (operator, entries) in block {
        let Value::Object(entries) = entries else {
            return Err(format!("Condition.{} is not an object", log_safe(operator)));
        };
        for (key, values) in entries {
            let what = format!("Condition.{}.{}", log_safe(operator), log_safe(key));
            if !keys.contains(&(operator.as_str(), key.as_str())) {
                return Err(format!("unexpected condition {what}"));
            }
            found.insert((operator.clone(), key.clone()), strings(values, &what)?);
        }
    }
    if let Some((op, key)) = keys
        .iter()
        .find(|(op, key)| !found.contains_key(&((*op).to_owned(), (*key).to_owned())))
    {
        return Err(format!("missing condition Condition.{op}.{key}"));
    }
    Ok(found)
}

fn take(found: &mut BTreeMap<(String, String), Vec<String>>, op: &str, key: &str) -> Vec<String> {
    found
        .remove(&(op.to_owned(), key.to_owned()))
        .unwrap_or_default()
}

fn trail_arns(values: Vec<String>, partition: Partition) -> Result<BTreeSet<TrailArn>, Reason> {
    values
        .iter()
        .map(|v| {
            let trail = TrailArn::parse(v).map_err(|e| format!("aws:SourceArn value: {e}"))?;
            if trail.partition() != partition {
                return Err(format!(
                    "aws:SourceArn {trail} is not in the bucket's partition {partition}"
                ));
            }
            Ok(trail)
        })
        .collect()
}

fn single_org(values: Vec<String>) -> Result<OrgId, Reason> {
    match values.as_slice() {
        [one] => OrgId::new(one).map_err(|e| e.to_string()),
        _ => Err("aws:SourceOrgID must name exactly one organization".into()),
    }
}

fn expect_acl(values: Vec<String>) -> Result<(), Reason> {
    match values.as_slice() {
        [one] if one == BUCKET_OWNER_FULL_CONTROL => Ok(()),
        _ => Err(format!(
            "s3:x-amz-acl must be exactly {BUCKET_OWNER_FULL_CONTROL}"
        )),
    }
}

/// A string for one value, a list for several (the usual IAM spelling).
fn one_or_many<I: IntoIterator<Item = String>>(values: I) -> Value {
    let mut values: Vec<Value> = values.into_iter().map(Value::String).collect();
    if values.len() == 1 {
        values.remove(0)
    } else {
        Value::Array(values)
    }
}

fn cloudtrail_statement(
    sid: &str,
    action: &str,
    resource: &str,
    condition: Option<Value>,
) -> Value {
    let mut s = Map::new();
    s.insert("Sid".into(), json!(sid));
    s.insert("Effect".into(), json!("Allow"));
    s.insert("Principal".into(), json!({ "Service": CLOUDTRAIL_SERVICE }));
    s.insert("Action".into(), json!(action));
    s.insert("Resource".into(), json!(resource));
    if let Some(c) = condition {
        s.insert("Condition".into(), c);
    }
    Value::Object(s)
}

// ---------------------------------------------------------------------------------------------
// Bucket policy

/// What trailkeeper's bucket statements grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct BucketGrants {
    acl_check: BTreeSet<TrailArn>,
    writes: BTreeMap<AccountId, BTreeSet<TrailArn>>,
    org_acl_check: Option<OrgId>,
    org_write: Option<OrgId>,
    /// `org_write` was read in the wide form ([`LogDestination::all_logs_arn`]).
    org_write_wide: bool,
}

impl BucketGrants {
    fn read(doc: &PolicyDocument, dest: &LogDestination) -> Result<Self, PolicyError> {
        let mut grants = Self::default();
        for (index, sid, body) in doc.owned()? {
            let refuse = |reason: Reason| PolicyError::UnrecognizedOwnedStatement {
                kind: PolicyKind::Bucket,
                index,
                sid: log_safe(sid),
                reason,
            };
            grants.read_one(sid, body, dest).map_err(refuse)?;
        }
        Ok(grants)
    }

    fn read_one(
        &mut self,
        sid: &str,
        body: &Map<String, Value>,
        dest: &LogDestination,
    ) -> Result<(), Reason> {
        expect_members(body, true)?;
        let bucket = dest.bucket_arn();
        match sid {
            SID_ACL_CHECK => {
                expect_common(body, "s3:GetBucketAcl", &bucket)?;
                let mut c = condition(body, &[("StringEquals", KEY_SOURCE_ARN)])?;
                self.acl_check =
                    trail_arns(take(&mut c, "StringEquals", KEY_SOURCE_ARN), dest.partition)?;
            }
            SID_ORG_ACL_CHECK => {
                expect_common(body, "s3:GetBucketAcl", &bucket)?;
                let mut c = condition(body, &[("StringEquals", KEY_SOURCE_ORG_ID)])?;
                self.org_acl_check =
                    Some(single_org(take(&mut c, "StringEquals", KEY_SOURCE_ORG_ID))?);
            }
            SID_ORG_WRITE => {
                let wide = strings(body.get("Resource").unwrap_or(&Value::Null), "Resource")
                    .is_ok_and(|r| r == [dest.all_logs_arn()]);
                let resource = if wide {
                    dest.all_logs_arn()
                } else {
                    dest.source_account_objects_arn()
                };
                expect_common(body, "s3:PutObject", &resource)?;
                let mut c = condition(
                    body,
                    &[
                        ("StringEquals", KEY_SOURCE_ORG_ID),
                        ("StringEquals", KEY_ACL),
                    ],
                )?;
                expect_acl(take(&mut c, "StringEquals", KEY_ACL))?;
                self.org_write = Some(single_org(take(&mut c, "StringEquals", KEY_SOURCE_ORG_ID))?);
                self.org_write_wide = wide;
            }
            _ => {
                let account = sid
                    .strip_prefix(SID_WRITE_PREFIX)
                    .and_then(|a| AccountId::new(a).ok())
                    .ok_or_else(|| "not a Sid trailkeeper uses".to_owned())?;
                expect_common(body, "s3:PutObject", &dest.account_objects_arn(account))?;
                let mut c = condition(
                    body,
                    &[("StringEquals", KEY_SOURCE_ARN), ("StringEquals", KEY_ACL)],
                )?;
                expect_acl(take(&mut c, "StringEquals", KEY_ACL))?;
                let trails =
                    trail_arns(take(&mut c, "StringEquals", KEY_SOURCE_ARN), dest.partition)?;
                // The whole point of per-account statements: a prefix binds only its own trails.
                if let Some(other) = trails.iter().find(|t| t.account() != account) {
                    return Err(format!(
                        "aws:SourceArn {other} belongs to another account than the statement's {account}"
                    ));
                }
                self.writes.insert(account, trails);
            }
        }
        Ok(())
    }

    /// Takes `account` out; returns what it held, described.
    fn revoke(&mut self, dest: &LogDestination, account: AccountId) -> Vec<String> {
        let mut revoked = Vec::new();
        if let Some(trails) = self.writes.remove(&account) {
            let trails: Vec<String> = trails.iter().map(ToString::to_string).collect();
            revoked.push(format!(
                "statement {SID_WRITE_PREFIX}{account}: s3:PutObject on {} for aws:SourceArn {}",
                dest.account_objects_arn(account),
                trails.join(", ")
            ));
        }
        let checks: Vec<TrailArn> = self
            .acl_check
            .iter()
            .filter(|t| t.account() == account)
            .cloned()
            .collect();
        for trail in checks {
            self.acl_check.remove(&trail);
            revoked.push(format!(
                "statement {SID_ACL_CHECK}: s3:GetBucketAcl for aws:SourceArn {trail}"
            ));
        }
        revoked
    }

    fn holds(&self, account: AccountId) -> bool {
        self.writes.contains_key(&account) || self.acl_check.iter().any(|t| t.account() == account)
    }

    fn render(&self, dest: &LogDestination) -> Vec<Value> {
        let bucket = dest.bucket_arn();
        let mut out = Vec::new();
        if !self.acl_check.is_empty() {
            out.push(cloudtrail_statement(
                SID_ACL_CHECK,
                "s3:GetBucketAcl",
                &bucket,
                Some(json!({ "StringEquals": {
                    KEY_SOURCE_ARN: one_or_many(self.acl_check.iter().map(ToString::to_string))
                }})),
            ));
        }
        for (account, trails) in &self.writes {
            out.push(cloudtrail_statement(
                &format!("{SID_WRITE_PREFIX}{account}"),
                "s3:PutObject",
                &dest.account_objects_arn(*account),
                Some(json!({ "StringEquals": {
                    KEY_SOURCE_ARN: one_or_many(trails.iter().map(ToString::to_string)),
                    KEY_ACL: BUCKET_OWNER_FULL_CONTROL,
                }})),
            ));
        }
        if let Some(org) = &self.org_acl_check {
            out.push(cloudtrail_statement(
                SID_ORG_ACL_CHECK,
                "s3:GetBucketAcl",
                &bucket,
                Some(json!({ "StringEquals": { KEY_SOURCE_ORG_ID: org.as_str() } })),
            ));
        }
        if let Some(org) = &self.org_write {
            out.push(cloudtrail_statement(
                SID_ORG_WRITE,
                "s3:PutObject",
                &dest.source_account_objects_arn(),
                Some(json!({ "StringEquals": {
                    KEY_SOURCE_ORG_ID: org.as_str(),
                    KEY_ACL: BUCKET_OWNER_FULL_CONTROL,
                }})),
            ));
        }
        out
    }
}

fn set_org(
    kind: PolicyKind,
    slot: &mut Option<OrgId>,
    requested: &OrgId,
) -> Result<(), PolicyError> {
    match slot {
        Some(existing) if existing != requested => Err(PolicyError::OrganizationMismatch {
            kind,
            existing: existing.clone(),
            requested: requested.clone(),
        }),
        _ => {
            *slot = Some(requested.clone());
            Ok(())
        }
    }
}

/// The longest organization id; sizes the room kept for organization mode.
fn longest_org_id() -> OrgId {
    OrgId(format!("o-{}", "a".repeat(32)))
}

/// Bytes that adding `statements` to a non-empty statement array costs (with the commas).
fn statements_bytes(statements: &[Value]) -> usize {
    statements.iter().map(|s| s.to_string().len() + 1).sum()
}

/// The central bucket's policy.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketPolicy {
    doc: PolicyDocument,
}

impl BucketPolicy {
    /// Parses the text GetBucketPolicy returned. Any error means: do not write this bucket's
    /// policy.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        PolicyDocument::parse(PolicyKind::Bucket, text).map(|doc| Self { doc })
    }

    /// The policy of a bucket that has none (`NoSuchBucketPolicy`).
    pub fn empty() -> Self {
        Self {
            doc: PolicyDocument::empty(PolicyKind::Bucket),
        }
    }

    /// The compact JSON to send to PutBucketPolicy.
    pub fn to_json(&self) -> String {
        self.doc.to_json()
    }

    pub fn to_value(&self) -> Value {
        self.doc.to_value()
    }

    pub fn len_bytes(&self) -> usize {
        self.to_json().len()
    }

    /// Admits a trail (per-account mode) or the organization (organization mode).
    /// `Unchanged` means the policy already grants it: skip PutBucketPolicy.
    pub fn admit(
        &self,
        dest: &LogDestination,
        grant: &Grant,
    ) -> Result<PolicyEdit<Self>, PolicyError> {
        let before = BucketGrants::read(&self.doc, dest)?;
        let mut after = before.clone();
        match grant {
            Grant::Trail(trail) => {
                after.acl_check.insert(trail.clone());
                after
                    .writes
                    .entry(trail.account())
                    .or_default()
                    .insert(trail.clone());
            }
            Grant::Organization(org) => {
                set_org(PolicyKind::Bucket, &mut after.org_acl_check, org)?;
                set_org(PolicyKind::Bucket, &mut after.org_write, org)?;
                // The wide grant of earlier versions becomes the per-account one.
                after.org_write_wide = false;
            }
        }
        let accounts = before.writes.len();
        // Per-account mode keeps room for the organization statements, so that the way out
        // named by `TooLarge` works on a full policy without deleting anything first.
        let reserved = match grant {
            Grant::Trail(_) if after.org_write.is_none() => {
                let org = BucketGrants {
                    org_acl_check: Some(longest_org_id()),
                    org_write: Some(longest_org_id()),
                    ..BucketGrants::default()
                };
                statements_bytes(&org.render(dest))
            }
            _ => 0,
        };
        self.doc.edit(
            after != before,
            after.render(dest),
            grant,
            accounts,
            reserved,
            |doc| Self { doc },
        )
    }

    /// Takes `account`'s grants out of trailkeeper's statements (offboarding): its write
    /// statement and its trails in the ACL check. Organization statements stay: they admit by
    /// `aws:SourceOrgID`, which an account that left no longer has. `Unchanged` means the policy
    /// holds nothing for the account: skip PutBucketPolicy.
    pub fn revoke(
        &self,
        dest: &LogDestination,
        account: AccountId,
    ) -> Result<Revocation<Self>, PolicyError> {
        let before = BucketGrants::read(&self.doc, dest)?;
        let mut after = before.clone();
        let revoked = after.revoke(dest, account);
        let edit = self
            .doc
            .shrink(after != before, after.render(dest), |doc| Self { doc });
        Ok(Revocation { edit, revoked })
    }

    /// Whether trailkeeper's statements grant `account` anything (a write or an ACL check).
    pub fn holds_account(
        &self,
        dest: &LogDestination,
        account: AccountId,
    ) -> Result<bool, PolicyError> {
        Ok(BucketGrants::read(&self.doc, dest)?.holds(account))
    }

    /// What trailkeeper's statements grant to `grant`: for verification after a write and for
    /// audits. Other statements are not considered (see [`Self::wide_statements`]).
    pub fn admission(
        &self,
        dest: &LogDestination,
        grant: &Grant,
    ) -> Result<Admission, PolicyError> {
        let grants = BucketGrants::read(&self.doc, dest)?;
        Ok(match grant {
            Grant::Trail(trail) => Admission {
                check: grants.acl_check.contains(trail),
                write: grants
                    .writes
                    .get(&trail.account())
                    .is_some_and(|t| t.contains(trail)),
            },
            Grant::Organization(org) => Admission {
                check: grants.org_acl_check.as_ref() == Some(org),
                // The wide form admits, but not as trailkeeper admits now: rewrite it.
                write: grants.org_write.as_ref() == Some(org) && !grants.org_write_wide,
            },
        })
    }

    /// Shorthand: both the ACL check and the write are granted.
    pub fn admits(&self, dest: &LogDestination, grant: &Grant) -> Result<bool, PolicyError> {
        self.admission(dest, grant).map(|a| a.is_complete())
    }

    /// Accounts with a per-account write statement, in order.
    pub fn admitted_accounts(&self, dest: &LogDestination) -> Result<Vec<AccountId>, PolicyError> {
        Ok(BucketGrants::read(&self.doc, dest)?
            .writes
            .into_keys()
            .collect())
    }

    /// Pre-existing statements that admit everyone; left alone, reported.
    pub fn wide_statements(&self) -> Vec<StatementSummary> {
        self.doc.wide_statements()
    }

    /// Foreign statements that name `cloudtrail.amazonaws.com`; left alone, reported, because
    /// they can admit more than trailkeeper's own statements do.
    pub fn foreign_cloudtrail_statements(&self) -> Vec<StatementSummary> {
        self.doc.foreign_cloudtrail_statements()
    }

    /// Sids used more than once (reported; foreign ones are kept as they are, owned ones
    /// make [`Self::admit`] fail).
    pub fn duplicate_sids(&self) -> Vec<DuplicateSid> {
        self.doc.duplicate_sids()
    }

    /// The statements trailkeeper does not own, as they are.
    pub fn foreign_statements(&self) -> Vec<&Value> {
        self.doc.foreign_statements()
    }
}

// ---------------------------------------------------------------------------------------------
// KMS key policy

/// What trailkeeper's key statements grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyGrants {
    /// The key's partition: that of every encryption context pattern.
    partition: Partition,
    encrypt: BTreeSet<AccountId>,
    describe: bool,
    org_encrypt: Option<OrgId>,
}

/// `arn:<partition>:cloudtrail:*:<acct>:trail/*`: the encryption context CloudTrail sets is the trail
/// ARN, so this admits every trail of one account (in any region) and nothing of another.
fn account_trail_context(partition: Partition, account: AccountId) -> String {
    format!("{}*:{account}:trail/*", partition.arn_prefix("cloudtrail"))
}

/// `arn:<partition>:cloudtrail:*:*:trail/*`: every trail of the partition (organization mode).
fn any_trail_context(partition: Partition) -> String {
    format!("{}*:*:trail/*", partition.arn_prefix("cloudtrail"))
}

impl KeyGrants {
    fn read(doc: &PolicyDocument, partition: Partition) -> Result<Self, PolicyError> {
        let mut grants = Self {
            partition,
            ..Self::default()
        };
        for (index, sid, body) in doc.owned()? {
            let refuse = |reason: Reason| PolicyError::UnrecognizedOwnedStatement {
                kind: PolicyKind::Key,
                index,
                sid: log_safe(sid),
                reason,
            };
            grants.read_one(sid, body).map_err(refuse)?;
        }
        Ok(grants)
    }

    fn read_one(&mut self, sid: &str, body: &Map<String, Value>) -> Result<(), Reason> {
        match sid {
            SID_KMS_ENCRYPT => {
                expect_members(body, true)?;
                expect_common(body, "kms:GenerateDataKey*", "*")?;
                let mut c = condition(body, &[("StringLike", KEY_KMS_TRAIL_CONTEXT)])?;
                let start = format!("{}*:", self.partition.arn_prefix("cloudtrail"));
                for pattern in take(&mut c, "StringLike", KEY_KMS_TRAIL_CONTEXT) {
                    let account = pattern
                        .strip_prefix(start.as_str())
                        .and_then(|r| r.strip_suffix(":trail/*"))
                        .and_then(|a| AccountId::new(a).ok())
                        .ok_or_else(|| {
                            format!(
                                "encryption context pattern {} is not {start}<account>:trail/*",
                                log_safe(&pattern)
                            )
                        })?;
                    self.encrypt.insert(account);
                }
            }
            SID_KMS_DESCRIBE => {
                expect_members(body, false)?;
                expect_common(body, "kms:DescribeKey", "*")?;
                self.describe = true;
            }
            SID_KMS_ORG_ENCRYPT => {
                expect_members(body, true)?;
                expect_common(body, "kms:GenerateDataKey*", "*")?;
                let mut c = condition(
                    body,
                    &[
                        ("StringEquals", KEY_SOURCE_ORG_ID),
                        ("StringLike", KEY_KMS_TRAIL_CONTEXT),
                    ],
                )?;
                expect_one(
                    Some(&one_or_many(take(
                        &mut c,
                        "StringLike",
                        KEY_KMS_TRAIL_CONTEXT,
                    ))),
                    "encryption context",
                    &any_trail_context(self.partition),
                    false,
                )?;
                self.org_encrypt =
                    Some(single_org(take(&mut c, "StringEquals", KEY_SOURCE_ORG_ID))?);
            }
            _ => return Err("not a Sid trailkeeper uses".into()),
        }
        Ok(())
    }

    fn render(&self) -> Vec<Value> {
        let mut out = Vec::new();
        if !self.encrypt.is_empty() {
            out.push(cloudtrail_statement(
                SID_KMS_ENCRYPT,
                "kms:GenerateDataKey*",
                "*",
                Some(json!({ "StringLike": {
                    KEY_KMS_TRAIL_CONTEXT: one_or_many(self.encrypt.iter().map(|a| account_trail_context(self.partition, *a)))
                }})),
            ));
        }
        if let Some(org) = &self.org_encrypt {
            out.push(cloudtrail_statement(
                SID_KMS_ORG_ENCRYPT,
                "kms:GenerateDataKey*",
                "*",
                Some(json!({
                    "StringEquals": { KEY_SOURCE_ORG_ID: org.as_str() },
                    "StringLike": { KEY_KMS_TRAIL_CONTEXT: any_trail_context(self.partition) },
                })),
            ));
        }
        if self.describe {
            out.push(cloudtrail_statement(
                SID_KMS_DESCRIBE,
                "kms:DescribeKey",
                "*",
                None,
            ));
        }
        out
    }
}

/// The optional SSE-KMS key's policy.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPolicy {
    doc: PolicyDocument,
    /// The key's partition ([`crate::trail::KmsKeyArn::partition`]); `parse` starts in `aws`.
    partition: Partition,
}

impl KeyPolicy {
    /// Parses the text GetKeyPolicy returned (a key always has a policy).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        PolicyDocument::parse(PolicyKind::Key, text).map(|doc| Self {
            doc,
            partition: Partition::Aws,
        })
    }

    /// The policy of a key in `partition`: the encryption contexts name its trails.
    pub fn in_partition(self, partition: Partition) -> Self {
        Self { partition, ..self }
    }

    fn with_doc(&self, doc: PolicyDocument) -> Self {
        Self {
            doc,
            partition: self.partition,
        }
    }

    pub fn to_json(&self) -> String {
        self.doc.to_json()
    }

    pub fn to_value(&self) -> Value {
        self.doc.to_value()
    }

    pub fn len_bytes(&self) -> usize {
        self.to_json().len()
    }

    /// Lets CloudTrail encrypt for the grant's account (or organization) and describe the key.
    pub fn admit(&self, grant: &Grant) -> Result<PolicyEdit<Self>, PolicyError> {
        let before = KeyGrants::read(&self.doc, self.partition)?;
        let mut after = before.clone();
        after.describe = true;
        match grant {
            Grant::Trail(trail) => {
                after.encrypt.insert(trail.account());
            }
            Grant::Organization(org) => set_org(PolicyKind::Key, &mut after.org_encrypt, org)?,
        }
        let accounts = before.encrypt.len();
        let reserved = match grant {
            Grant::Trail(_) if after.org_encrypt.is_none() => {
                let org = KeyGrants {
                    partition: self.partition,
                    org_encrypt: Some(longest_org_id()),
                    ..KeyGrants::default()
                };
                statements_bytes(&org.render())
            }
            _ => 0,
        };
        self.doc.edit(
            after != before,
            after.render(),
            grant,
            accounts,
            reserved,
            |doc| self.with_doc(doc),
        )
    }

    /// Takes `account` out of the encryption statement (offboarding). `TrailkeeperKmsDescribe`
    /// stays: it names no account.
    pub fn revoke(&self, account: AccountId) -> Result<Revocation<Self>, PolicyError> {
        let before = KeyGrants::read(&self.doc, self.partition)?;
        let mut after = before.clone();
        let mut revoked = Vec::new();
        if after.encrypt.remove(&account) {
            revoked.push(format!(
                "statement {SID_KMS_ENCRYPT}: kms:GenerateDataKey* for {KEY_KMS_TRAIL_CONTEXT} {}",
                account_trail_context(self.partition, account)
            ));
        }
        let edit = self
            .doc
            .shrink(after != before, after.render(), |doc| self.with_doc(doc));
        Ok(Revocation { edit, revoked })
    }

    /// Whether trailkeeper's statements let `account`'s trails encrypt.
    pub fn holds_account(&self, account: AccountId) -> Result<bool, PolicyError> {
        Ok(KeyGrants::read(&self.doc, self.partition)?
            .encrypt
            .contains(&account))
    }

    /// `check` is DescribeKey, `write` is GenerateDataKey* for the grant.
    pub fn admission(&self, grant: &Grant) -> Result<Admission, PolicyError> {
        let grants = KeyGrants::read(&self.doc, self.partition)?;
        Ok(Admission {
            check: grants.describe,
            write: match grant {
                Grant::Trail(trail) => grants.encrypt.contains(&trail.account()),
                Grant::Organization(org) => grants.org_encrypt.as_ref() == Some(org),
            },
        })
    }

    pub fn admits(&self, grant: &Grant) -> Result<bool, PolicyError> {
        self.admission(grant).map(|a| a.is_complete())
    }

    pub fn admitted_accounts(&self) -> Result<Vec<AccountId>, PolicyError> {
        Ok(KeyGrants::read(&self.doc, self.partition)?
            .encrypt
            .into_iter()
            .collect())
    }

    pub fn wide_statements(&self) -> Vec<StatementSummary> {
        self.doc.wide_statements()
    }

    pub fn foreign_cloudtrail_statements(&self) -> Vec<StatementSummary> {
        self.doc.foreign_cloudtrail_statements()
    }

    pub fn duplicate_sids(&self) -> Vec<DuplicateSid> {
        self.doc.duplicate_sids()
    }

    pub fn foreign_statements(&self) -> Vec<&Value> {
        self.doc.foreign_statements()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn acct(s: &str) -> AccountId {
        AccountId::new(s).expect("test account id")
    }

    fn trail(account: &str) -> TrailArn {
        trail_named(account, "us-east-1", "trailkeeper")
    }

    fn trail_named(account: &str, region: &str, name: &str) -> TrailArn {
        TrailArn::new(
            RegionName::new(region).unwrap(),
            acct(account),
            TrailName::new(name).unwrap(),
        )
    }

    fn dest() -> LogDestination {
        LogDestination::new(BucketName::new("central-logs").unwrap(), None)
    }

    fn dest_with_prefix() -> LogDestination {
        LogDestination::new(
            BucketName::new("central-logs").unwrap(),
            Some(KeyPrefix::new("org/trails").unwrap()),
        )
    }

    fn org() -> OrgId {
        OrgId::new("o-aa111bb222").unwrap()
    }

    fn changed<P: fmt::Debug>(edit: PolicyEdit<P>) -> P {
        match edit {
            PolicyEdit::Changed { policy, .. } => policy,
            PolicyEdit::Unchanged => panic!("expected a change"),
        }
    }

    fn admit(p: &BucketPolicy, d: &LogDestination, t: &TrailArn) -> BucketPolicy {
        changed(p.admit(d, &Grant::Trail(t.clone())).expect("admit"))
    }

    /// A Control Tower-like log archive policy: foreign statements of every flavour.
    const EXISTING: &str = r#"{
      "Version": "2012-10-17",
      "Id": "central-logs-policy",
      "Statement": [
        {"Sid": "AllowSSLRequestsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": ["arn:aws:s3:::central-logs", "arn:aws:s3:::central-logs/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "AWSConfigBucketExistenceCheck", "Effect": "Allow",
         "Principal": {"Service": "config.amazonaws.com"}, "Action": "s3:ListBucket",
         "Resource": "arn:aws:s3:::central-logs",
         "Condition": {"StringEquals": {"aws:SourceOrgID": ["o-aa111bb222"]}}},
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/Reader"},
         "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::central-logs/*",
         "Condition": {"NumericLessThan": {"s3:max-keys": 10}}}
      ]
    }"#;

    // ---- names ---------------------------------------------------------------------------

    #[test]
    fn configuration_names_are_checked() {
        assert!(BucketName::new("central-logs").is_ok());
        for bad in [
            "",
            "ab",
            "Central",
            "a_b",
            "-abc",
            "abc-",
            "a..b",
            "a*b",
            &"a".repeat(64),
        ] {
            assert!(BucketName::new(bad).is_err(), "{bad}");
        }
        assert!(KeyPrefix::new("org/trails").is_ok());
        for bad in [
            "",
            "/x",
            "x/",
            "a*",
            "a?",
            "${aws:username}",
            "a\"b",
            "a\\b",
            "a\nb",
            "é",
        ] {
            assert!(KeyPrefix::new(bad).is_err(), "{bad:?}");
        }
        assert!(RegionName::new("ap-southeast-2").is_ok());
        assert!(RegionName::new("us-gov-west-1").is_ok());
        for bad in ["", "us", "US-EAST-1", "us-east-*", "us-east-1 ", "-us-1"] {
            assert!(RegionName::new(bad).is_err(), "{bad}");
        }
        assert!(TrailName::new("trailkeeper").is_ok());
        for bad in ["ab", "-trail", "trail-", "tr*il", "tr/il", "trail name"] {
            assert!(TrailName::new(bad).is_err(), "{bad}");
        }
        assert!(OrgId::new("o-aa111bb222").is_ok());
        for bad in ["o-short", "O-AA111BB222", "aa111bb222", "o-aa111bb22*"] {
            assert!(OrgId::new(bad).is_err(), "{bad}");
        }
        let err = KeyPrefix::new("x\u{202e}*").unwrap_err().to_string();
        assert!(
            err.contains("\\u{202e}") && !err.contains('\u{202e}'),
            "{err}"
        );
    }

    #[test]
    fn trail_arn_round_trips_and_rejects_wildcards() {
        let t = trail("111111111111");
        assert_eq!(
            t.to_string(),
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper"
        );
        assert_eq!(TrailArn::parse(&t.to_string()).unwrap(), t);
        for bad in [
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/*",
            "arn:aws:cloudtrail:*:111111111111:trail/trailkeeper",
            "arn:aws:cloudtrail:us-east-1:*:trail/trailkeeper",
            // The partition must be the region's (tests/partitions.rs has the valid ones).
            "arn:aws-cn:cloudtrail:us-east-1:111111111111:trail/trailkeeper",
            "arn:aws:cloudtrail:cn-north-1:111111111111:trail/trailkeeper",
            "arn:aws-moon:cloudtrail:us-east-1:111111111111:trail/trailkeeper",
            "arn:aws:cloudtrail:us-east-1:111111111111:eventdatastore/x",
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/a:b",
        ] {
            assert!(TrailArn::parse(bad).is_err(), "{bad}");
        }
    }

    // ---- per-account mode ----------------------------------------------------------------

    #[test]
    fn first_account_on_an_empty_policy_exact_json() {
        let p = admit(
            &BucketPolicy::empty(),
            &dest_with_prefix(),
            &trail("111111111111"),
        );
        let expected = json!({
          "Version": "2012-10-17",
          "Statement": [
            {"Sid": "TrailkeeperAclCheck", "Effect": "Allow",
             "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:GetBucketAcl",
             "Resource": "arn:aws:s3:::central-logs",
             "Condition": {"StringEquals": {"aws:SourceArn": "arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper"}}},
            {"Sid": "TrailkeeperWrite111111111111", "Effect": "Allow",
             "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::central-logs/org/trails/AWSLogs/111111111111/*",
             "Condition": {"StringEquals": {
                "aws:SourceArn": "arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper",
                "s3:x-amz-acl": "bucket-owner-full-control"}}}
          ]
        });
        // Byte-exact, key order included.
        assert_eq!(p.to_json(), expected.to_string());
        assert!(
            p.admits(&dest_with_prefix(), &Grant::Trail(trail("111111111111")))
                .unwrap()
        );
    }

    #[test]
    fn admitting_twice_is_unchanged() {
        let d = dest();
        let once = admit(
            &BucketPolicy::parse(EXISTING).unwrap(),
            &d,
            &trail("111111111111"),
        );
        assert_eq!(
            once.admit(&d, &Grant::Trail(trail("111111111111")))
                .unwrap(),
            PolicyEdit::Unchanged
        );
        // Also after a round trip through the text S3 would return.
        let reread = BucketPolicy::parse(&once.to_json()).unwrap();
        assert_eq!(
            reread
                .admit(&d, &Grant::Trail(trail("111111111111")))
                .unwrap(),
            PolicyEdit::Unchanged
        );
    }

    #[test]
    fn accounts_get_their_own_write_statement_and_a_shared_acl_list() {
        let d = dest();
        let mut p = BucketPolicy::empty();
        for a in ["333333333333", "111111111111", "222222222222"] {
            p = admit(&p, &d, &trail(a));
        }
        let v = p.to_value();
        let statements = v["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 4);
        assert_eq!(
            statements[0]["Condition"]["StringEquals"]["aws:SourceArn"],
            json!([
                "arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper",
                "arn:aws:cloudtrail:us-east-1:222222222222:trail/trailkeeper",
                "arn:aws:cloudtrail:us-east-1:333333333333:trail/trailkeeper"
            ])
        );
        for (i, a) in ["111111111111", "222222222222", "333333333333"]
            .iter()
            .enumerate()
        {
            let s = &statements[i + 1];
            assert_eq!(s["Sid"], json!(format!("TrailkeeperWrite{a}")));
            assert_eq!(
                s["Resource"],
                json!(format!("arn:aws:s3:::central-logs/AWSLogs/{a}/*"))
            );
            assert_eq!(
                s["Condition"]["StringEquals"]["aws:SourceArn"],
                json!(format!(
                    "arn:aws:cloudtrail:us-east-1:{a}:trail/trailkeeper"
                ))
            );
        }
        assert_eq!(
            p.admitted_accounts(&d).unwrap(),
            vec![
                acct("111111111111"),
                acct("222222222222"),
                acct("333333333333")
            ]
        );
        // Arrival order does not matter.
        let mut q = BucketPolicy::empty();
        for a in ["222222222222", "333333333333", "111111111111"] {
            q = admit(&q, &d, &trail(a));
        }
        assert_eq!(p.to_json(), q.to_json());
    }

    #[test]
    fn a_second_trail_of_the_same_account_is_added_not_swapped() {
        let d = dest();
        let p = admit(&BucketPolicy::empty(), &d, &trail("111111111111"));
        let renamed = trail_named("111111111111", "eu-west-1", "audit");
        let p = admit(&p, &d, &renamed);
        let v = p.to_value();
        assert_eq!(
            v["Statement"][1]["Condition"]["StringEquals"]["aws:SourceArn"],
            json!([
                "arn:aws:cloudtrail:eu-west-1:111111111111:trail/audit",
                "arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper"
            ])
        );
        assert!(p.admits(&d, &Grant::Trail(renamed)).unwrap());
        assert!(p.admits(&d, &Grant::Trail(trail("111111111111"))).unwrap());
    }

    #[test]
    fn foreign_statements_and_top_level_members_are_kept_exactly() {
        let before = BucketPolicy::parse(EXISTING).unwrap();
        let original: Value = serde_json::from_str(EXISTING).unwrap();
        let after = admit(&before, &dest(), &trail("111111111111"));
        let v = after.to_value();
        // Top level: same members, same order.
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["Version", "Id", "Statement"]
        );
        assert_eq!(v["Id"], original["Id"]);
        let old = original["Statement"].as_array().unwrap();
        let new = v["Statement"].as_array().unwrap();
        assert_eq!(&new[..3], &old[..]);
        for (a, b) in old.iter().zip(new) {
            assert_eq!(a.to_string(), b.to_string(), "key order changed");
        }
        assert_eq!(after.foreign_statements(), before.foreign_statements());
    }

    #[test]
    fn statement_may_be_a_single_object() {
        let text = r#"{"Version":"2012-10-17","Statement":{"Sid":"Keep","Effect":"Deny","Principal":"*","Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::central-logs"}}"#;
        let p = BucketPolicy::parse(text).unwrap();
        assert_eq!(p.to_json(), text);
        let after = admit(&p, &dest(), &trail("111111111111"));
        let v = after.to_value();
        let statements = v["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 3);
        assert_eq!(
            statements[0],
            serde_json::from_str::<Value>(text).unwrap()["Statement"]
        );
    }

    // ---- unreadable policies are never overwritten --------------------------------------

    #[test]
    fn unreadable_policies_are_refused() {
        let unreadable = [
            ("", "EOF"),
            ("{\"Version\": \"2012-10-17\", \"Statement\": [", "EOF"),
            ("{} trailing", "trailing"),
            (
                r#"{"Statement":[{"Condition":{"NumericLessThan":{"k":1.5}}}]}"#,
                "$.Statement[0].Condition.NumericLessThan.k: the number 1.5",
            ),
            (
                r#"{"Statement":[{"Condition":{"NumericLessThan":{"k":123456789012345678901234567890}}}]}"#,
                "too large",
            ),
            // The AWS-doc style repeated key: a parser keeps one of the two conditions.
            (
                r#"{"Statement":[{"Sid":"AWSCloudTrailWrite","Condition":{"StringEquals":{"s3:x-amz-acl":"bucket-owner-full-control"},"StringEquals":{"aws:SourceArn":"arn:aws:cloudtrail:us-east-1:111111111111:trail/t"}}}]}"#,
                "$.Statement[0].Condition.StringEquals: the key appears twice",
            ),
        ];
        for (text, needle) in unreadable {
            match BucketPolicy::parse(text) {
                Err(e @ PolicyError::Unreadable { .. }) => {
                    assert!(e.to_string().contains(needle), "{e}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in [
            "[]",
            "\"policy\"",
            r#"{"Version":"2012-10-17"}"#,
            r#"{"Statement":"s3:*"}"#,
            r#"{"Statement":[{"Sid":"a"}, "b"]}"#,
            r#"{"Statement":null}"#,
        ] {
            assert!(
                matches!(
                    BucketPolicy::parse(text),
                    Err(PolicyError::NotAPolicy { .. })
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn conditions_written_as_lists_or_strings_are_understood() {
        // Our own statements as another tool (or AWS normalisation) might spell them.
        let text = r#"{"Version":"2012-10-17","Statement":[
          {"Condition":{"StringEquals":{"aws:SourceArn":["arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper"]}},
           "Resource":["arn:aws:s3:::central-logs"],"Action":["s3:getbucketacl"],
           "Principal":{"Service":["cloudtrail.amazonaws.com"]},"Effect":"Allow","Sid":"TrailkeeperAclCheck"},
          {"Sid":"TrailkeeperWrite111111111111","Effect":"Allow","Principal":{"Service":"cloudtrail.amazonaws.com"},
           "Action":"s3:PutObject","Resource":"arn:aws:s3:::central-logs/AWSLogs/111111111111/*",
           "Condition":{"StringEquals":{"s3:x-amz-acl":["bucket-owner-full-control"],
             "aws:SourceArn":"arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper"}}}]}"#;
        let p = BucketPolicy::parse(text).unwrap();
        let g = Grant::Trail(trail("111111111111"));
        assert!(p.admits(&dest(), &g).unwrap());
        assert_eq!(p.admit(&dest(), &g).unwrap(), PolicyEdit::Unchanged);
        // The next real change re-renders them canonically.
        let q = admit(&p, &dest(), &trail("222222222222"));
        assert!(q.to_json().contains(r#""Action":"s3:GetBucketAcl""#));
    }

    fn with_owned(statement: Value) -> String {
        json!({"Version": "2012-10-17", "Statement": [statement]}).to_string()
    }

    fn write_statement(account: &str) -> Value {
        json!({"Sid": format!("TrailkeeperWrite{account}"), "Effect": "Allow",
               "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:PutObject",
               "Resource": format!("arn:aws:s3:::central-logs/AWSLogs/{account}/*"),
               "Condition": {"StringEquals": {
                   "aws:SourceArn": format!("arn:aws:cloudtrail:us-east-1:{account}:trail/trailkeeper"),
                   "s3:x-amz-acl": "bucket-owner-full-control"}}})
    }

    #[test]
    fn tampered_owned_statements_stop_the_edit() {
        let ok = write_statement("111111111111");
        assert!(
            BucketPolicy::parse(&with_owned(ok.clone()))
                .unwrap()
                .admit(&dest(), &Grant::Trail(trail("222222222222")))
                .is_ok()
        );

        let mut cases: Vec<(Value, &str)> = Vec::new();
        let mut v = ok.clone();
        v["Condition"]["StringEquals"]["aws:SourceArn"] = json!([
            "arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper",
            "arn:aws:cloudtrail:us-east-1:222222222222:trail/trailkeeper"
        ]);
        cases.push((v, "belongs to another account"));
        let mut v = ok.clone();
        v["Resource"] = json!("arn:aws:s3:::central-logs/AWSLogs/*");
        cases.push((v, "Resource"));
        let mut v = ok.clone();
        v["Effect"] = json!("Deny");
        cases.push((v, "Effect"));
        let mut v = ok.clone();
        v["Principal"] = json!("*");
        cases.push((v, "Principal"));
        let mut v = ok.clone();
        v["Condition"]["StringEquals"]["aws:SourceAccount"] = json!("111111111111");
        cases.push((v, "unexpected condition"));
        let mut v = ok.clone();
        v["Condition"]["StringEquals"]
            .as_object_mut()
            .unwrap()
            .shift_remove("s3:x-amz-acl");
        cases.push((v, "missing condition"));
        let mut v = ok.clone();
        v["Condition"]["StringEquals"]["s3:x-amz-acl"] =
            json!(["bucket-owner-full-control", "public-read"]);
        cases.push((v, "x-amz-acl"));
        let mut v = ok.clone();
        v["Condition"] = json!({"StringLike": {"aws:SourceArn": "arn:aws:cloudtrail:*:111111111111:trail/*", "s3:x-amz-acl": "bucket-owner-full-control"}});
        cases.push((v, "unexpected condition"));
        let mut v = ok.clone();
        v["NotResource"] = json!("x");
        cases.push((v, "unexpected element"));
        let mut v = ok.clone();
        v["Sid"] = json!("TrailkeeperWrite22222222222x");
        cases.push((v, "not a Sid trailkeeper uses"));
        let mut v = ok.clone();
        v["Sid"] = json!("TrailkeeperReadOnlyForAuditors");
        cases.push((v, "not a Sid trailkeeper uses"));
        let mut v = ok;
        v["Condition"]["StringEquals"]["aws:SourceArn"] =
            json!("arn:aws:cloudtrail:us-east-1:111111111111:trail/*");
        cases.push((v, "aws:SourceArn value"));

        for (statement, needle) in cases {
            let p = BucketPolicy::parse(&with_owned(statement.clone())).unwrap();
            for result in [
                p.admit(&dest(), &Grant::Trail(trail("111111111111")))
                    .map(|_| ()),
                p.admission(&dest(), &Grant::Trail(trail("111111111111")))
                    .map(|_| ()),
            ] {
                match result {
                    Err(e @ PolicyError::UnrecognizedOwnedStatement { .. }) => {
                        assert!(e.to_string().contains(needle), "{needle}: {e}")
                    }
                    other => panic!("{statement}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn owned_statements_of_another_destination_are_refused() {
        let p = admit(&BucketPolicy::empty(), &dest(), &trail("111111111111"));
        let err = p
            .admit(&dest_with_prefix(), &Grant::Trail(trail("222222222222")))
            .unwrap_err();
        assert!(
            matches!(err, PolicyError::UnrecognizedOwnedStatement { .. }),
            "{err}"
        );
    }

    #[test]
    fn duplicate_sids() {
        let owned_twice = json!({"Version":"2012-10-17","Statement":[write_statement("111111111111"), write_statement("111111111111")]}).to_string();
        let err = BucketPolicy::parse(&owned_twice)
            .unwrap()
            .admit(&dest(), &Grant::Trail(trail("111111111111")))
            .unwrap_err();
        assert!(
            matches!(
                err,
                PolicyError::DuplicateOwnedSid {
                    first: 0,
                    second: 1,
                    ..
                }
            ),
            "{err}"
        );

        let foreign = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"Read","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*"},
            {"Sid":"Read","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*"}]}"#;
        let p = BucketPolicy::parse(foreign).unwrap();
        assert_eq!(
            p.duplicate_sids(),
            vec![DuplicateSid {
                sid: "\"Read\"".into(),
                indexes: vec![0, 1]
            }]
        );
        let after = admit(&p, &dest(), &trail("111111111111"));
        // Both kept, unmerged, in place.
        assert_eq!(after.foreign_statements(), p.foreign_statements());
        assert_eq!(after.duplicate_sids(), p.duplicate_sids());
    }

    #[test]
    fn wide_statements_are_reported_and_left_alone() {
        let text = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"Deny","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::central-logs/*","Condition":{"Bool":{"aws:SecureTransport":"false"}}},
            {"Sid":"Public","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:root","*"]},"Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*"},
            {"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*"},
            {"Sid":"Narrow","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::central-logs/*"}]}"#;
        let p = BucketPolicy::parse(text).unwrap();
        let wide = p.wide_statements();
        assert_eq!(
            wide.iter().map(|w| w.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(wide[1].effect, "\"Allow\"");
        assert!(wide[0].has_condition && !wide[1].has_condition);
        assert_eq!(wide[2].sid, None);
        let after = admit(&p, &dest(), &trail("111111111111"));
        assert_eq!(
            after.wide_statements(),
            wide,
            "ours added no wide statement, theirs unchanged"
        );
    }

    #[test]
    fn foreign_cloudtrail_grants_are_reported() {
        let documented = r#"{"Version":"2012-10-17","Statement":[
          {"Sid":"AWSCloudTrailWrite20131101","Effect":"Allow","Principal":{"Service":["cloudtrail.amazonaws.com"]},
           "Action":"s3:PutObject","Resource":["arn:aws:s3:::central-logs/AWSLogs/111111111111/*","arn:aws:s3:::central-logs/AWSLogs/222222222222/*"],
           "Condition":{"StringEquals":{"s3:x-amz-acl":"bucket-owner-full-control"}}},
          {"Sid":"Config","Effect":"Allow","Principal":{"Service":"config.amazonaws.com"},"Action":"s3:GetBucketAcl","Resource":"arn:aws:s3:::central-logs"}]}"#;
        let p = admit(
            &BucketPolicy::parse(documented).unwrap(),
            &dest(),
            &trail("111111111111"),
        );
        let found = p.foreign_cloudtrail_statements();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].sid.as_deref(),
            Some("\"AWSCloudTrailWrite20131101\"")
        );
        assert_eq!(found[0].index, 0);
    }

    #[test]
    fn partial_admission_is_reported_and_repaired() {
        // Someone removed the trail from the shared ACL list.
        let text = json!({"Version":"2012-10-17","Statement":[write_statement("111111111111")]})
            .to_string();
        let p = BucketPolicy::parse(&text).unwrap();
        let g = Grant::Trail(trail("111111111111"));
        assert_eq!(
            p.admission(&dest(), &g).unwrap(),
            Admission {
                check: false,
                write: true
            }
        );
        let fixed = changed(p.admit(&dest(), &g).unwrap());
        assert!(fixed.admits(&dest(), &g).unwrap());
        assert!(
            !fixed
                .admits(&dest(), &Grant::Trail(trail("222222222222")))
                .unwrap()
        );
        assert!(!fixed.admits(&dest(), &Grant::Organization(org())).unwrap());
    }

    // ---- the 20 KB limit ------------------------------------------------------------------

    #[test]
    fn crossing_the_limit_is_refused_with_the_way_out() {
        let d = dest();
        let mut p = BucketPolicy::parse(EXISTING).unwrap();
        let mut n = 0u64;
        let err = loop {
            let t = trail(&format!("{:012}", 100_000_000_000 + n));
            match p.admit(&d, &Grant::Trail(t)) {
                Ok(PolicyEdit::Changed { policy, bytes }) => {
                    assert!(bytes <= BUCKET_POLICY_LIMIT_BYTES);
                    assert_eq!(bytes, policy.len_bytes());
                    p = policy;
                    n += 1;
                }
                Ok(PolicyEdit::Unchanged) => panic!("new account unchanged"),
                Err(e) => break e,
            }
        };
        match &err {
            PolicyError::TooLarge {
                limit,
                reserved,
                current,
                needed,
                accounts,
                kind,
                ..
            } => {
                assert_eq!(*limit, 20_480);
                assert_eq!(*current, p.len_bytes());
                assert!(*needed + *reserved > 20_480 && *current + *reserved <= 20_480);
                assert!((500..700).contains(reserved), "{reserved}");
                assert_eq!(*accounts as u64, n);
                assert_eq!(*kind, PolicyKind::Bucket);
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        for needle in [
            "20480",
            "organization",
            "TRAILKEEPER_POLICY_MODE",
            "nothing was written",
            "nothing was dropped",
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }
        // Everything admitted so far is still there; the way out works on this very policy,
        // even with the longest organization id.
        assert_eq!(p.admitted_accounts(&d).unwrap().len() as u64, n);
        let longest = OrgId::new(&format!("o-{}", "z".repeat(32))).unwrap();
        let org_policy = changed(
            p.admit(&d, &Grant::Organization(longest))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(org_policy.admitted_accounts(&d).unwrap().len() as u64, n);
        assert!(org_policy.len_bytes() <= BUCKET_POLICY_LIMIT_BYTES);
    }

    // ---- organization mode ------------------------------------------------------------------

    #[test]
    fn organization_mode() {
        let d = dest_with_prefix();
        let g = Grant::Organization(org());
        let p = changed(BucketPolicy::empty().admit(&d, &g).unwrap());
        let expected = json!({"Version":"2012-10-17","Statement":[
            {"Sid":"TrailkeeperOrgAclCheck","Effect":"Allow","Principal":{"Service":"cloudtrail.amazonaws.com"},
             "Action":"s3:GetBucketAcl","Resource":"arn:aws:s3:::central-logs",
             "Condition":{"StringEquals":{"aws:SourceOrgID":"o-aa111bb222"}}},
            {"Sid":"TrailkeeperOrgWrite","Effect":"Allow","Principal":{"Service":"cloudtrail.amazonaws.com"},
             "Action":"s3:PutObject","Resource":"arn:aws:s3:::central-logs/org/trails/AWSLogs/${aws:SourceAccount}/*",
             "Condition":{"StringEquals":{"aws:SourceOrgID":"o-aa111bb222","s3:x-amz-acl":"bucket-owner-full-control"}}}]});
        assert_eq!(p.to_json(), expected.to_string());
        // The grant of earlier versions, every member under every prefix, is understood and
        // narrowed at the next organization admission.
        let wide = p
            .to_json()
            .replace("AWSLogs/${aws:SourceAccount}/*", "AWSLogs/*");
        let old = BucketPolicy::parse(&wide).unwrap();
        assert!(
            !old.admits(&d, &g).unwrap(),
            "the wide grant is not the admission"
        );
        assert_eq!(changed(old.admit(&d, &g).unwrap()).to_json(), p.to_json());
        // ...and whenever the policy is written for another reason (a per-account admission).
        let t = Grant::Trail(trail("111111111111"));
        let with_trail = changed(old.admit(&d, &t).unwrap());
        assert!(
            with_trail
                .to_json()
                .contains("AWSLogs/${aws:SourceAccount}/*")
        );
        assert!(p.admits(&d, &g).unwrap());
        assert_eq!(p.admit(&d, &g).unwrap(), PolicyEdit::Unchanged);
        let other = Grant::Organization(OrgId::new("o-zz999yy888").unwrap());
        assert!(matches!(
            p.admit(&d, &other),
            Err(PolicyError::OrganizationMismatch { .. })
        ));
        assert!(!p.admits(&d, &other).unwrap());
    }

    // ---- KMS key policy --------------------------------------------------------------------

    const DEFAULT_KEY_POLICY: &str = r#"{
      "Version": "2012-10-17",
      "Id": "key-default-1",
      "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::999988887777:root"}, "Action": "kms:*", "Resource": "*"}
      ]
    }"#;

    #[test]
    fn key_policy_grows_one_list() {
        let p = KeyPolicy::parse(DEFAULT_KEY_POLICY).unwrap();
        let p = changed(p.admit(&Grant::Trail(trail("111111111111"))).unwrap());
        let p = changed(
            p.admit(&Grant::Trail(trail_named(
                "222222222222",
                "eu-west-1",
                "other",
            )))
            .unwrap(),
        );
        // Any trail of an admitted account is covered by the account pattern: unchanged.
        assert_eq!(
            p.admit(&Grant::Trail(trail_named(
                "111111111111",
                "eu-west-1",
                "x-y"
            )))
            .unwrap(),
            PolicyEdit::Unchanged
        );
        let expected = json!({"Version":"2012-10-17","Id":"key-default-1","Statement":[
            {"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"kms:*","Resource":"*"},
            {"Sid":"TrailkeeperKmsEncrypt","Effect":"Allow","Principal":{"Service":"cloudtrail.amazonaws.com"},
             "Action":"kms:GenerateDataKey*","Resource":"*",
             "Condition":{"StringLike":{"kms:EncryptionContext:aws:cloudtrail:arn":[
                "arn:aws:cloudtrail:*:111111111111:trail/*","arn:aws:cloudtrail:*:222222222222:trail/*"]}}},
            {"Sid":"TrailkeeperKmsDescribe","Effect":"Allow","Principal":{"Service":"cloudtrail.amazonaws.com"},
             "Action":"kms:DescribeKey","Resource":"*"}]});
        assert_eq!(p.to_json(), expected.to_string());
        assert!(p.admits(&Grant::Trail(trail("222222222222"))).unwrap());
        assert!(!p.admits(&Grant::Trail(trail("333333333333"))).unwrap());
        assert_eq!(
            p.admitted_accounts().unwrap(),
            vec![acct("111111111111"), acct("222222222222")]
        );

        let o = changed(p.admit(&Grant::Organization(org())).unwrap());
        assert!(o.admits(&Grant::Organization(org())).unwrap());
        assert_eq!(
            o.admit(&Grant::Organization(org())).unwrap(),
            PolicyEdit::Unchanged
        );
        assert_eq!(KeyPolicy::parse(&o.to_json()).unwrap(), o);
    }

    #[test]
    fn key_policy_tamper_and_limit() {
        let p = changed(
            KeyPolicy::parse(DEFAULT_KEY_POLICY)
                .unwrap()
                .admit(&Grant::Trail(trail("111111111111")))
                .unwrap(),
        );
        let widened = p.to_json().replace(
            "arn:aws:cloudtrail:*:111111111111:trail/*",
            "arn:aws:cloudtrail:*:*:trail/*",
        );
        let err = KeyPolicy::parse(&widened)
            .unwrap()
            .admit(&Grant::Trail(trail("111111111111")))
            .unwrap_err();
        assert!(
            matches!(
                err,
                PolicyError::UnrecognizedOwnedStatement {
                    kind: PolicyKind::Key,
                    ..
                }
            ),
            "{err}"
        );

        let mut p = KeyPolicy::parse(DEFAULT_KEY_POLICY).unwrap();
        let mut n = 0u64;
        let err = loop {
            match p.admit(&Grant::Trail(trail(&format!(
                "{:012}",
                100_000_000_000 + n
            )))) {
                Ok(PolicyEdit::Changed { policy, .. }) => {
                    p = policy;
                    n += 1;
                }
                Ok(PolicyEdit::Unchanged) => panic!("unchanged"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, PolicyError::TooLarge { limit: 32_768, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("KMS key policy"));
        eprintln!("KMS key policy (default root statement + ours): {n} accounts fit in 32 KB");
    }
}
