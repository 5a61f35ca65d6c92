//! Account lifecycle events → the account to onboard, or to offboard.
//!
//! Accepted inputs (design, "Account events the onboarding functions accept"):
//! - Organizations `CreateAccountResult` service events (EventBridge envelope),
//! - Organizations `AccountJoinedOrganization` (`joinedMethod` `Created` or `Invited`): the only
//!   event for an invited account,
//! - Control Tower `CreateManagedAccount` / `UpdateManagedAccount` service events,
//! - a direct invocation `{"accountId": "123456789012"}` (manual run or backfill);
//!
//! and, to offboard ([`Onboarding::Offboard`]):
//! - Organizations `AccountDepartedOrganization` (`departedMethod` `Left`, `Removed`, `Cleaned`),
//! - Organizations `CloseAccountResult` in state `SUCCEEDED`.
//!
//! Everything else is [`Onboarding::Ignored`] with a reason the caller logs. An event that is
//! recognisably one of the kinds above but cannot be read is an [`EventError`] naming the
//! JSON field at fault, so the function fails loudly instead of silently skipping an account.

use std::fmt;
use std::str::FromStr;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// `source` of Organizations events on EventBridge.
pub const ORGANIZATIONS_SOURCE: &str = "aws.organizations";
/// `source` of Control Tower lifecycle events on EventBridge.
pub const CONTROL_TOWER_SOURCE: &str = "aws.controltower";
/// `detail-type` of CloudTrail *service* events (not "AWS API Call via CloudTrail").
pub const SERVICE_EVENT_DETAIL_TYPE: &str = "AWS Service Event via CloudTrail";
/// The only state on which we act.
pub const SUCCEEDED: &str = "SUCCEEDED";

/// How much of a hostile value an error message repeats.
const LOG_PREVIEW_CHARS: usize = 32;

/// Renders an untrusted string for a log line or an error message: at most
/// [`LOG_PREVIEW_CHARS`] characters, every non-printable-ASCII character escaped (`\u{202e}`,
/// `\"`, `\n`), so a value can neither forge log lines nor hide behind bidi controls.
pub fn log_safe(value: &str) -> String {
    log_safe_with(value, LOG_PREVIEW_CHARS)
}

/// [`log_safe`] with a longer preview, for values that are long by nature (ARNs).
pub fn log_safe_with(value: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max_chars * 2) + 2);
    out.push('"');
    let mut chars = value.chars();
    for c in chars.by_ref().take(max_chars) {
        out.extend(c.escape_default());
    }
    out.push('"');
    if chars.next().is_some() {
        out.push_str(&format!("... ({} bytes)", value.len()));
    }
    out
}

/// An AWS account id: exactly 12 ASCII digits (leading zeros are significant).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId([u8; 12]);

/// A string that is not an account id. `value` is already log-safe (escaped, truncated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account id {value} is not exactly 12 ASCII digits")]
pub struct InvalidAccountId {
    pub value: String,
}

impl AccountId {
    pub fn new(value: &str) -> Result<Self, InvalidAccountId> {
        let bytes = value.as_bytes();
        match <[u8; 12]>::try_from(bytes) {
            Ok(digits) if digits.iter().all(u8::is_ascii_digit) => Ok(Self(digits)),
            _ => Err(InvalidAccountId {
                value: log_safe(value),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        // The bytes are ASCII digits by construction, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.as_str())
    }
}

impl FromStr for AccountId {
    type Err = InvalidAccountId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for AccountId {
    type Error = InvalidAccountId;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only strings: a JSON number would already have lost leading zeros.
        let s = String::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Which accepted input an account came from (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountEvent {
    OrganizationsCreateAccountResult,
    OrganizationsAccountJoined(JoinedMethod),
    OrganizationsAccountDeparted(DepartedMethod),
    OrganizationsCloseAccountResult,
    ControlTowerCreateManagedAccount,
    ControlTowerUpdateManagedAccount,
    DirectInvoke,
}

/// `joinedMethod` of `AccountJoinedOrganization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinedMethod {
    /// `CreateAccount` in the organization.
    Created,
    /// An accepted invitation (handshake).
    Invited,
}

/// `departedMethod` of `AccountDepartedOrganization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DepartedMethod {
    /// `LeaveOrganization`, by the member.
    Left,
    /// `RemoveAccountFromOrganization`, by the management account.
    Removed,
    /// A closed account at the end of its 90-day wait.
    Cleaned,
}

impl JoinedMethod {
    const ALL: [(&'static str, Self); 2] = [("Created", Self::Created), ("Invited", Self::Invited)];
}

impl DepartedMethod {
    const ALL: [(&'static str, Self); 3] = [
        ("Left", Self::Left),
        ("Removed", Self::Removed),
        ("Cleaned", Self::Cleaned),
    ];
}

impl fmt::Display for AccountEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn name<M: PartialEq>(all: &[(&'static str, M)], m: &M) -> &'static str {
            all.iter().find(|(_, v)| v == m).map_or("?", |(n, _)| *n)
        }
        match self {
            Self::OrganizationsCreateAccountResult => {
                f.write_str("Organizations CreateAccountResult")
            }
            Self::OrganizationsAccountJoined(m) => write!(
                f,
                "Organizations AccountJoinedOrganization (joinedMethod {})",
                name(&JoinedMethod::ALL, m)
            ),
            Self::OrganizationsAccountDeparted(m) => write!(
                f,
                "Organizations AccountDepartedOrganization (departedMethod {})",
                name(&DepartedMethod::ALL, m)
            ),
            Self::OrganizationsCloseAccountResult => {
                f.write_str("Organizations CloseAccountResult")
            }
            Self::ControlTowerCreateManagedAccount => {
                f.write_str("Control Tower CreateManagedAccount")
            }
            Self::ControlTowerUpdateManagedAccount => {
                f.write_str("Control Tower UpdateManagedAccount")
            }
            Self::DirectInvoke => f.write_str("direct invocation"),
        }
    }
}

/// What the onboarding functions should do with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Onboarding {
    /// Onboard this account.
    Account {
        account: AccountId,
        event: AccountEvent,
    },
    /// Offboard this account: it left the organization, or was closed.
    Offboard {
        account: AccountId,
        event: AccountEvent,
    },
    /// Not for us (or not yet): log the reason and succeed.
    Ignored { reason: String },
}

impl Onboarding {
    /// The account to onboard, if any.
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Self::Account { account, .. } => Some(*account),
            Self::Offboard { .. } | Self::Ignored { .. } => None,
        }
    }

    /// The account to offboard, if any.
    pub fn departed(&self) -> Option<AccountId> {
        match self {
            Self::Offboard { account, .. } => Some(*account),
            Self::Account { .. } | Self::Ignored { .. } => None,
        }
    }

    fn ignored(reason: impl Into<String>) -> Self {
        Self::Ignored {
            reason: reason.into(),
        }
    }
}

/// An input the onboarding functions must not silently skip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The text is not JSON at all (only from [`AccountEvent::parse_str`]; the Lambda runtime
    /// never delivers such a payload, a CLI user might).
    #[error("event is not valid JSON: {0}")]
    InvalidJson(String),
    /// A recognised kind of event with a missing, mistyped or invalid field.
    #[error("malformed {event} event: field `{path}`: {problem}")]
    Malformed {
        event: String,
        /// Dotted JSON path, e.g. `detail.serviceEventDetails.createAccountStatus.accountId`.
        path: String,
        problem: String,
    },
}

impl EventError {
    fn malformed(event: impl fmt::Display, path: &str, problem: impl fmt::Display) -> Self {
        Self::Malformed {
            event: event.to_string(),
            path: path.to_owned(),
            problem: problem.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Typed `detail` of the CloudTrail service events. Only the fields we read are declared, so
// everything else (`requestParameters: "None"` in real Control Tower captures, timestamps in
// "May 15, 2023 8:26:54 AM" format, ...) is ignored rather than rejected.

/// The part of a CloudTrail record common to the events we read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceEvent<D> {
    event_name: String,
    service_event_details: D,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAccountResultDetails {
    create_account_status: CreateAccountStatus,
}

/// Mirrors `DescribeCreateAccountStatus`; `accountId` is absent when the creation failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAccountStatus {
    state: String,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
}

/// `AccountJoinedOrganization` / `AccountDepartedOrganization`: the member account and how it
/// joined or departed (events/account-events/SOURCES.md, "Membership events").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountJoinedDetails {
    account_id: String,
    joined_method: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountDepartedDetails {
    account_id: String,
    departed_method: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloseAccountResultDetails {
    close_account_status: CloseAccountStatus,
}

/// `accountId` is there in every state (the closure of a known account was asked for).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloseAccountStatus {
    state: String,
    account_id: String,
    #[serde(default)]
    failure_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateManagedAccountDetails {
    create_managed_account_status: ManagedAccountStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateManagedAccountDetails {
    update_managed_account_status: ManagedAccountStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedAccountStatus {
    state: String,
    #[serde(default)]
    account: Option<ManagedAccount>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedAccount {
    account_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectInvoke {
    account_id: String,
}

// ---------------------------------------------------------------------------------------------

impl AccountEvent {
    /// The event's name without what it carries (for errors about the carried value itself).
    fn name(&self) -> &'static str {
        match self {
            Self::OrganizationsCreateAccountResult => "Organizations CreateAccountResult",
            Self::OrganizationsAccountJoined(_) => "Organizations AccountJoinedOrganization",
            Self::OrganizationsAccountDeparted(_) => "Organizations AccountDepartedOrganization",
            Self::OrganizationsCloseAccountResult => "Organizations CloseAccountResult",
            Self::ControlTowerCreateManagedAccount => "Control Tower CreateManagedAccount",
            Self::ControlTowerUpdateManagedAccount => "Control Tower UpdateManagedAccount",
            Self::DirectInvoke => "direct invocation",
        }
    }

    /// Classifies and reads an event given as text (CLI, tests).
    pub fn parse_str(text: &str) -> Result<Onboarding, EventError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventError::InvalidJson(e.to_string()))?;
        Self::parse(&value)
    }

    /// Classifies and reads an event as the Lambda runtime delivers it.
    pub fn parse(value: &Value) -> Result<Onboarding, EventError> {
        let Some(object) = value.as_object() else {
            return Ok(Onboarding::ignored(format!(
                "event is a JSON {}, not an object",
                json_kind(value)
            )));
        };
        let looks_like_envelope = ["source", "detail-type", "detail"]
            .iter()
            .any(|k| object.contains_key(*k));
        if looks_like_envelope {
            return parse_envelope(value);
        }
        if object.contains_key("accountId") {
            let event = AccountEvent::DirectInvoke;
            let direct: DirectInvoke = parse_located(value, event)?;
            let account = account_id_at(&direct.account_id, event, "accountId")?;
            return Ok(Onboarding::Account { account, event });
        }
        Ok(Onboarding::ignored(
            "neither an EventBridge event (no `source`) nor a direct invocation (no `accountId`)",
        ))
    }
}

fn parse_envelope(value: &Value) -> Result<Onboarding, EventError> {
    // Classify with plain lookups first: a hostile or unrelated event must be ignored, not
    // fail on a field we would never read.
    let Some(source) = value.get("source").and_then(Value::as_str) else {
        return Ok(Onboarding::ignored(
            "EventBridge event without a string `source`",
        ));
    };
    if source != ORGANIZATIONS_SOURCE && source != CONTROL_TOWER_SOURCE {
        return Ok(Onboarding::ignored(format!(
            "source {} is not handled",
            log_safe(source)
        )));
    }
    let detail_type = value.get("detail-type").and_then(Value::as_str);
    if detail_type != Some(SERVICE_EVENT_DETAIL_TYPE) {
        return Ok(Onboarding::ignored(format!(
            "{source} event with detail-type {} is not handled (only {SERVICE_EVENT_DETAIL_TYPE:?})",
            detail_type.map_or_else(|| "(none)".to_owned(), log_safe)
        )));
    }
    // From here on it is a service event of a source we subscribe to: every such CloudTrail
    // record has an eventName, so its absence is a malformed event, not an unrelated one.
    let event_name = match value.get("detail").and_then(|d| d.get("eventName")) {
        Some(Value::String(name)) => name.as_str(),
        Some(other) => {
            return Err(EventError::malformed(
                format!("{source} service"),
                "detail.eventName",
                format!("expected a string, found a JSON {}", json_kind(other)),
            ));
        }
        None => {
            return Err(EventError::malformed(
                format!("{source} service"),
                "detail.eventName",
                "missing",
            ));
        }
    };
    match (source, event_name) {
        (ORGANIZATIONS_SOURCE, "CreateAccountResult") => {
            let event = AccountEvent::OrganizationsCreateAccountResult;
            let parsed: EventBridgeEvent<ServiceEvent<CreateAccountResultDetails>> =
                parse_located(value, event)?;
            let status = parsed.detail.service_event_details.create_account_status;
            const AT: &str = "detail.serviceEventDetails.createAccountStatus";
            if status.state != SUCCEEDED {
                return Ok(Onboarding::ignored(format!(
                    "{event} in state {}{}",
                    log_safe(&status.state),
                    status
                        .failure_reason
                        .map(|r| format!(" (failureReason {})", log_safe(&r)))
                        .unwrap_or_default()
                )));
            }
            let Some(raw) = status.account_id else {
                return Err(EventError::malformed(
                    event,
                    &format!("{AT}.accountId"),
                    "missing although state is SUCCEEDED",
                ));
            };
            let account = account_id_at(&raw, event, &format!("{AT}.accountId"))?;
            Ok(Onboarding::Account { account, event })
        }
        (ORGANIZATIONS_SOURCE, "AccountJoinedOrganization") => {
            const AT: &str = "detail.serviceEventDetails";
            let probe = AccountEvent::OrganizationsAccountJoined(JoinedMethod::Created);
            let parsed: EventBridgeEvent<ServiceEvent<AccountJoinedDetails>> =
                parse_located(value, probe)?;
            let details = parsed.detail.service_event_details;
            let method = method_at(
                &JoinedMethod::ALL,
                &details.joined_method,
                probe,
                &format!("{AT}.joinedMethod"),
            )?;
            let event = AccountEvent::OrganizationsAccountJoined(method);
            let account = account_id_at(&details.account_id, event, &format!("{AT}.accountId"))?;
            Ok(Onboarding::Account { account, event })
        }
        (ORGANIZATIONS_SOURCE, "AccountDepartedOrganization") => {
            const AT: &str = "detail.serviceEventDetails";
            let probe = AccountEvent::OrganizationsAccountDeparted(DepartedMethod::Left);
            let parsed: EventBridgeEvent<ServiceEvent<AccountDepartedDetails>> =
                parse_located(value, probe)?;
            let details = parsed.detail.service_event_details;
            let method = method_at(
                &DepartedMethod::ALL,
                &details.departed_method,
                probe,
                &format!("{AT}.departedMethod"),
            )?;
            let event = AccountEvent::OrganizationsAccountDeparted(method);
            let account = account_id_at(&details.account_id, event, &format!("{AT}.accountId"))?;
            Ok(Onboarding::Offboard { account, event })
        }
        (ORGANIZATIONS_SOURCE, "CloseAccountResult") => {
            const AT: &str = "detail.serviceEventDetails.closeAccountStatus";
            let event = AccountEvent::OrganizationsCloseAccountResult;
            let parsed: EventBridgeEvent<ServiceEvent<CloseAccountResultDetails>> =
                parse_located(value, event)?;
            let status = parsed.detail.service_event_details.close_account_status;
            let account = account_id_at(&status.account_id, event, &format!("{AT}.accountId"))?;
            if status.state != SUCCEEDED {
                // A failed closure leaves the account open and in the organization.
                return Ok(Onboarding::ignored(format!(
                    "{event} for account {account} in state {}{}",
                    log_safe(&status.state),
                    status
                        .failure_reason
                        .map(|r| format!(" (failureReason {})", log_safe(&r)))
                        .unwrap_or_default()
                )));
            }
            Ok(Onboarding::Offboard { account, event })
        }
        (CONTROL_TOWER_SOURCE, "CreateManagedAccount") => {
            let event = AccountEvent::ControlTowerCreateManagedAccount;
            let parsed: EventBridgeEvent<ServiceEvent<CreateManagedAccountDetails>> =
                parse_located(value, event)?;
            managed_account(
                parsed
                    .detail
                    .service_event_details
                    .create_managed_account_status,
                event,
                "detail.serviceEventDetails.createManagedAccountStatus",
            )
        }
        (CONTROL_TOWER_SOURCE, "UpdateManagedAccount") => {
            // Control Tower emits Update (not Create) when a failed enrolment is retried.
            let event = AccountEvent::ControlTowerUpdateManagedAccount;
            let parsed: EventBridgeEvent<ServiceEvent<UpdateManagedAccountDetails>> =
                parse_located(value, event)?;
            managed_account(
                parsed
                    .detail
                    .service_event_details
                    .update_managed_account_status,
                event,
                "detail.serviceEventDetails.updateManagedAccountStatus",
            )
        }
        _ => Ok(Onboarding::ignored(format!(
            "{source} event {} is not handled",
            log_safe(event_name)
        ))),
    }
}

fn managed_account(
    status: ManagedAccountStatus,
    event: AccountEvent,
    at: &str,
) -> Result<Onboarding, EventError> {
    if status.state != SUCCEEDED {
        return Ok(Onboarding::ignored(format!(
            "{event} in state {}{}",
            log_safe(&status.state),
            status
                .message
                .map(|m| format!(" ({})", log_safe(&m)))
                .unwrap_or_default()
        )));
    }
    let Some(account) = status.account else {
        return Err(EventError::malformed(
            event,
            &format!("{at}.account"),
            "missing although state is SUCCEEDED",
        ));
    };
    let account = account_id_at(
        &account.account_id,
        event,
        &format!("{at}.account.accountId"),
    )?;
    Ok(Onboarding::Account { account, event })
}

/// One of the documented values of a method field; anything else is malformed (an undocumented
/// value might mean something else, so it is for a person to read, not for a guess).
fn method_at<M: Copy>(
    all: &[(&'static str, M)],
    raw: &str,
    event: AccountEvent,
    path: &str,
) -> Result<M, EventError> {
    all.iter()
        .find(|(n, _)| *n == raw)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            let expected: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
            EventError::malformed(
                event.name(),
                path,
                format!(
                    "is {}, expected one of {}",
                    log_safe(raw),
                    expected.join(", ")
                ),
            )
        })
}

fn account_id_at(raw: &str, event: AccountEvent, path: &str) -> Result<AccountId, EventError> {
    AccountId::new(raw).map_err(|e| EventError::malformed(event, path, e))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Most keys probed per object, and deepest level, when locating a field at fault; bounds the
/// work a hostile event can cause on the (rare) error path.
const LOCATE_MAX_KEYS: usize = 64;
const LOCATE_MAX_DEPTH: usize = 12;
const LOCATE_MAX_PROBES: usize = 256;

/// Deserializes `T` from `value`; on failure, names the JSON path at fault.
///
/// serde_json reports *what* is wrong ("invalid type: integer `5`, expected a string",
/// "missing field `state`") but not *where* when reading from a `Value`. We find the place by
/// probing, only on this (rare) error path:
/// - a missing field `x`: the object where inserting `x` changes the error is the one that
///   lacks it (objects where `x` is not a field ignore it);
/// - anything else: serde's derived visitors stop at the first bad member, so removing the
///   culprit (or an ancestor of it) changes the error and removing a healthy sibling does not;
///   we descend one level at a time.
fn parse_located<T: DeserializeOwned>(value: &Value, event: AccountEvent) -> Result<T, EventError> {
    let first = match T::deserialize(value) {
        Ok(parsed) => return Ok(parsed),
        Err(e) => e.to_string(),
    };
    let changes = |trial: &Value| match T::deserialize(trial) {
        Ok(_) => true,
        Err(e) => e.to_string() != first,
    };
    let missing = first
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    let path = match missing {
        Some(field) => locate_missing(value, field, changes),
        None => locate_culprit(value, changes),
    };
    let dotted = if path.is_empty() {
        "(event root)".to_owned()
    } else {
        path.iter()
            .map(|k| log_safe_key(k))
            .collect::<Vec<_>>()
            .join(".")
    };
    Err(EventError::malformed(event.name(), &dotted, first))
}

fn locate_missing(value: &Value, field: &str, changes: impl Fn(&Value) -> bool) -> Vec<String> {
    // Breadth-first over objects, bounded.
    let mut queue: std::collections::VecDeque<Vec<String>> = [Vec::new()].into();
    let mut probes = 0;
    while let Some(path) = queue.pop_front() {
        let Some(node) = pointer(value, &path) else {
            continue;
        };
        if let Value::Object(map) = node
            && !map.contains_key(field)
        {
            probes += 1;
            let mut trial = value.clone();
            if let Some(Value::Object(target)) = pointer_mut(&mut trial, &path) {
                target.insert(field.to_owned(), Value::Null);
            }
            if changes(&trial) {
                let mut found = path;
                found.push(field.to_owned());
                return found;
            }
        }
        if probes >= LOCATE_MAX_PROBES || path.len() >= LOCATE_MAX_DEPTH {
            break;
        }
        let children: Vec<String> = match node {
            Value::Object(map) => map.keys().take(LOCATE_MAX_KEYS).cloned().collect(),
            Value::Array(items) => (0..items.len().min(LOCATE_MAX_KEYS))
                .map(|i| i.to_string())
                .collect(),
            _ => Vec::new(),
        };
        for child in children {
            let mut next = path.clone();
            next.push(child);
            queue.push_back(next);
        }
    }
    vec![field.to_owned()]
}

fn locate_culprit(value: &Value, changes: impl Fn(&Value) -> bool) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    'descend: while path.len() < LOCATE_MAX_DEPTH {
        let Some(node) = pointer(value, &path) else {
            break;
        };
        let keys: Vec<String> = match node {
            Value::Object(map) => map.keys().take(LOCATE_MAX_KEYS).cloned().collect(),
            Value::Array(items) => (0..items.len().min(LOCATE_MAX_KEYS))
                .map(|i| i.to_string())
                .collect(),
            _ => break,
        };
        for key in keys {
            let mut trial = value.clone();
            remove_at(&mut trial, &path, &key);
            if changes(&trial) {
                path.push(key);
                continue 'descend;
            }
        }
        break;
    }
    path
}

/// Keys are usually plain identifiers; escape anything else so a hostile key cannot forge text.
pub(crate) fn log_safe_key(key: &str) -> String {
    if !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'/'))
    {
        key.to_owned()
    } else {
        log_safe(key)
    }
}

fn pointer<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |node, key| match node {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn pointer_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |node, key| match node {
        Value::Object(map) => map.get_mut(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

fn remove_at(value: &mut Value, path: &[String], key: &str) {
    let Some(node) = pointer_mut(value, path) else {
        return;
    };
    match node {
        // shift_remove keeps the order of the other keys (preserve_order is on).
        Value::Object(map) => {
            map.shift_remove(key);
        }
        Value::Array(items) => {
            if let Some(i) = key.parse::<usize>().ok().filter(|i| *i < items.len()) {
                items.remove(i);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The one place the test vectors are found; change it when the module moves.
    const VECTOR_ROOT: &str = crate::test_vectors::ROOT;

    fn vector(relative: &str) -> String {
        let path = format!("{VECTOR_ROOT}/{relative}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    /// The AWS docs samples are JSON with `//` comments; drop comments outside strings.
    fn strip_line_comments(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let (mut in_string, mut escaped) = (false, false);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '/' && chars.peek() == Some(&'/') {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            } else {
                in_string = c == '"';
                out.push(c);
            }
        }
        out
    }

    fn vector_json(relative: &str) -> Value {
        let text = vector(relative);
        let text = if relative.ends_with(".jsonc") {
            strip_line_comments(&text)
        } else {
            text
        };
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    /// Several samples are only the CloudTrail record (the EventBridge `detail`).
    fn envelope(source: &str, detail_type: &str, detail: Value) -> Value {
        json!({
            "version": "0",
            "id": "68679d28-343e-d8ec-4a8c-cdd430223a5d",
            "detail-type": detail_type,
            "source": source,
            "account": "111122223333",
            "time": "2023-05-15T08:27:14Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        })
    }

    fn account(s: &str) -> AccountId {
        AccountId::new(s).expect("valid account id in test")
    }

    fn expect_account(result: Result<Onboarding, EventError>, id: &str, event: AccountEvent) {
        assert_eq!(
            result,
            Ok(Onboarding::Account {
                account: account(id),
                event
            })
        );
    }

    fn expect_ignored(result: Result<Onboarding, EventError>) -> String {
        match result {
            Ok(Onboarding::Ignored { reason }) => reason,
            other => panic!("expected Ignored, got {other:?}"),
        }
    }

    fn expect_malformed(result: Result<Onboarding, EventError>, path: &str) -> String {
        match result {
            Err(EventError::Malformed {
                path: p, problem, ..
            }) => {
                assert_eq!(p, path, "problem was: {problem}");
                problem
            }
            other => panic!("expected Malformed at {path}, got {other:?}"),
        }
    }

    const ORG_ID_PATH: &str = "detail.serviceEventDetails.createAccountStatus.accountId";
    const CT_ID_PATH: &str =
        "detail.serviceEventDetails.createManagedAccountStatus.account.accountId";

    // ---- AccountId ---------------------------------------------------------------------

    #[test]
    fn account_id_accepts_exactly_twelve_ascii_digits() {
        assert_eq!(account("012345678901").to_string(), "012345678901");
        assert_eq!(account("999999999999").as_str(), "999999999999");
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            " 12345678901",
            "12345678901 ",
            "12345678901*",
            "************",
            "1234-5678-90",
            "١٢٣٤٥٦٧٨٩٠١٢", // Arabic-Indic digits are digits, not ASCII digits
            "１２３４５６７８９０１２", // fullwidth
            "12345678901\"",
            "{\"a\":1234567}",
            "12345678901\n",
            "INSERT_ACCOUNT_ID",
        ] {
            assert!(AccountId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn account_id_error_is_escaped_and_truncated() {
        let err = AccountId::new("12\"3\n\u{202e}4").unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(r#""12\"3\n\u{202e}4""#), "{shown}");
        assert!(!shown.contains('\n') && !shown.contains('\u{202e}'));

        let long = "9".repeat(10_000);
        let shown = AccountId::new(&long).unwrap_err().to_string();
        assert!(shown.len() < 120, "{shown}");
        assert!(shown.contains("(10000 bytes)"), "{shown}");
    }

    #[test]
    fn account_id_serde_is_a_string_only() {
        let id: AccountId = serde_json::from_value(json!("000000000001")).unwrap();
        assert_eq!(serde_json::to_value(id).unwrap(), json!("000000000001"));
        assert!(serde_json::from_value::<AccountId>(json!(123456789012u64)).is_err());
        assert!(serde_json::from_value::<AccountId>(json!("12345678901x")).is_err());
    }

    // ---- real samples ------------------------------------------------------------------

    #[test]
    fn nuvibit_create_account_result_placeholder_id_is_malformed_not_ignored() {
        let event = vector_json(
            "eventbridge-organizations/nuvibit_CreateAccountResult_eventbridge_2023-05-15.json",
        );
        let problem = expect_malformed(AccountEvent::parse(&event), ORG_ID_PATH);
        assert!(problem.contains("INSERT_ACCOUNT_ID"), "{problem}");

        let mut fixed = event.clone();
        fixed["detail"]["serviceEventDetails"]["createAccountStatus"]["accountId"] =
            json!("123456789012");
        expect_account(
            AccountEvent::parse(&fixed),
            "123456789012",
            AccountEvent::OrganizationsCreateAccountResult,
        );
    }

    #[test]
    fn aws_docs_create_account_result_succeeded() {
        let detail = vector_json(
            "eventbridge-organizations/awsdocs_CreateAccountResult_SUCCEEDED_cloudtrail.json",
        );
        let event = envelope(
            ORGANIZATIONS_SOURCE,
            SERVICE_EVENT_DETAIL_TYPE,
            detail.clone(),
        );
        expect_account(
            AccountEvent::parse(&event),
            "444455556666",
            AccountEvent::OrganizationsCreateAccountResult,
        );
        // The bare CloudTrail record is not an accepted input.
        expect_ignored(AccountEvent::parse(&detail));
    }

    #[test]
    fn aws_docs_create_account_result_failed_is_ignored_with_reason() {
        let text = vector(
            "eventbridge-organizations/awsdocs_CreateAccountResult_FAILED_cloudtrail.INVALID-JSON.txt",
        );
        // As published it is not JSON: an error, not a silent skip.
        assert!(matches!(
            AccountEvent::parse_str(&text),
            Err(EventError::InvalidJson(_))
        ));
        let repaired = text
            .replace(
                ": Jun 21, 2018 10:06:27 PM",
                ": \"Jun 21, 2018 10:06:27 PM\"",
            )
            .replace(
                ": Jun 21, 2018 10:07:15 PM",
                ": \"Jun 21, 2018 10:07:15 PM\"",
            );
        let detail: Value = serde_json::from_str(&repaired).unwrap();
        let reason = expect_ignored(AccountEvent::parse(&envelope(
            ORGANIZATIONS_SOURCE,
            SERVICE_EVENT_DETAIL_TYPE,
            detail,
        )));
        assert!(
            reason.contains("FAILED") && reason.contains("EMAIL_ALREADY_EXISTS"),
            "{reason}"
        );
    }

    #[test]
    fn control_tower_create_managed_account_from_the_docs() {
        let event = vector_json("controltower/awsdocs_lifecycle_CreateManagedAccount.jsonc");
        // The docs sample keeps the placeholder XXXXXXXXXXXX.
        let problem = expect_malformed(AccountEvent::parse(&event), CT_ID_PATH);
        assert!(problem.contains("XXXXXXXXXXXX"), "{problem}");

        let mut fixed = event.clone();
        fixed["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"] =
            json!("210987654321");
        expect_account(
            AccountEvent::parse(&fixed),
            "210987654321",
            AccountEvent::ControlTowerCreateManagedAccount,
        );
    }

    #[test]
    fn control_tower_update_managed_account_from_the_docs_and_a_capture() {
        expect_account(
            AccountEvent::parse(&vector_json(
                "controltower/awsdocs_lifecycle_UpdateManagedAccount.jsonc",
            )),
            "624281831893",
            AccountEvent::ControlTowerUpdateManagedAccount,
        );
        // Real capture whose requestParameters/responseElements are the string "None".
        let capture =
            vector_json("controltower/hs_UpdateManagedAccount_eventbridge_2023-08-01.json");
        assert_eq!(capture["detail"]["requestParameters"], json!("None"));
        expect_account(
            AccountEvent::parse(&capture),
            "411314715538",
            AccountEvent::ControlTowerUpdateManagedAccount,
        );
        let text = vector("controltower/hs_UpdateManagedAccount_eventbridge_2023-08-01.json");
        assert_eq!(
            AccountEvent::parse_str(&text).unwrap().account(),
            Some(account("411314715538"))
        );
    }

    /// Every sample in both folders has a known outcome and none panics.
    #[test]
    fn every_sample_has_the_expected_outcome() {
        enum Want {
            Account(&'static str),
            Offboard(&'static str),
            Ignored,
            Malformed(&'static str),
            /// Published with `...` elisions or missing commas: not JSON even without comments.
            NotJson,
        }
        use Want::*;
        /// (file, wrap into an envelope with (source, detail-type), outcome)
        type Case = (&'static str, Option<(&'static str, &'static str)>, Want);
        let cases: &[Case] = &[
            // (file, wrap into an envelope with (source, detail-type), outcome)
            (
                "eventbridge-organizations/asea_RemoveAccountFromOrganization_eventbridge_2020-07-28.json",
                None,
                Ignored,
            ),
            (
                "eventbridge-organizations/awsdocs_AttachPolicy_error_cloudtrail.json",
                Some((ORGANIZATIONS_SOURCE, "AWS API Call via CloudTrail")),
                Ignored,
            ),
            (
                "eventbridge-organizations/awsdocs_CloseAccountResult_cloudtrail.json",
                Some((ORGANIZATIONS_SOURCE, SERVICE_EVENT_DETAIL_TYPE)),
                Offboard("555555555555"),
            ),
            (
                "eventbridge-organizations/awsdocs_CloseAccount_cloudtrail.json",
                Some((ORGANIZATIONS_SOURCE, "AWS API Call via CloudTrail")),
                Ignored,
            ),
            (
                "eventbridge-organizations/awsdocs_CreateAccountResult_SUCCEEDED_cloudtrail.json",
                Some((ORGANIZATIONS_SOURCE, SERVICE_EVENT_DETAIL_TYPE)),
                Account("444455556666"),
            ),
            (
                "eventbridge-organizations/awsdocs_CreateAccount_cloudtrail.json",
                Some((ORGANIZATIONS_SOURCE, "AWS API Call via CloudTrail")),
                Ignored,
            ),
            // A broken rule (API-call event labelled as a service event) still does not onboard on IN_PROGRESS.
            (
                "eventbridge-organizations/awsdocs_CreateAccount_cloudtrail.json",
                Some((ORGANIZATIONS_SOURCE, SERVICE_EVENT_DETAIL_TYPE)),
                Ignored,
            ),
            (
                "eventbridge-organizations/awsdocs_CreateOrganizationalUnit_cloudtrail.json",
                Some((ORGANIZATIONS_SOURCE, "AWS API Call via CloudTrail")),
                Ignored,
            ),
            (
                "eventbridge-organizations/awsdocs_InviteAccountToOrganization_cloudtrail.json",
                Some((ORGANIZATIONS_SOURCE, "AWS API Call via CloudTrail")),
                Ignored,
            ),
            // The placeholder account id of a closure is an error, not a silent skip.
            (
                "eventbridge-organizations/nuvibit_CloseAccountResult_eventbridge.json",
                None,
                Malformed("detail.serviceEventDetails.closeAccountStatus.accountId"),
            ),
            (
                "eventbridge-organizations/nuvibit_CreateAccountResult_eventbridge_2023-05-15.json",
                None,
                Malformed(ORG_ID_PATH),
            ),
            (
                "controltower/awsdocs_lifecycle_CreateManagedAccount.jsonc",
                None,
                Malformed(CT_ID_PATH),
            ),
            (
                "controltower/awsdocs_lifecycle_DeregisterOrganizationalUnit.jsonc",
                None,
                Ignored,
            ),
            (
                "controltower/awsdocs_lifecycle_DisableGuardrail.json",
                None,
                Ignored,
            ),
            (
                "controltower/awsdocs_lifecycle_EnableGuardrail.jsonc",
                None,
                Ignored,
            ),
            (
                "controltower/awsdocs_lifecycle_PrecheckOrganizationalUnit.jsonc",
                None,
                NotJson,
            ),
            (
                "controltower/awsdocs_lifecycle_RegisterOrganizationalUnit.jsonc",
                None,
                NotJson,
            ),
            (
                "controltower/awsdocs_lifecycle_SetupLandingZone.jsonc",
                None,
                NotJson,
            ),
            (
                "controltower/awsdocs_lifecycle_UpdateLandingZone.jsonc",
                None,
                NotJson,
            ),
            (
                "controltower/awsdocs_lifecycle_UpdateManagedAccount.jsonc",
                None,
                Account("624281831893"),
            ),
            (
                "controltower/hs_UpdateLandingZone_eventbridge_2023-08-02.json",
                None,
                Ignored,
            ),
            (
                "controltower/hs_UpdateManagedAccount_eventbridge_2023-08-01.json",
                None,
                Account("411314715538"),
            ),
        ];
        // Every file of both folders is covered (except the non-JSON one, tested above).
        for dir in ["eventbridge-organizations", "controltower"] {
            for entry in std::fs::read_dir(format!("{VECTOR_ROOT}/{dir}")).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name == "SOURCES.md" || name.contains("INVALID-JSON") {
                    continue;
                }
                let rel = format!("{dir}/{name}");
                assert!(
                    cases.iter().any(|(f, _, _)| *f == rel),
                    "{rel} has no expected outcome"
                );
            }
        }
        for (file, wrap, want) in cases {
            if let NotJson = want {
                let text = strip_line_comments(&vector(file));
                assert!(
                    matches!(
                        AccountEvent::parse_str(&text),
                        Err(EventError::InvalidJson(_))
                    ),
                    "{file} parsed"
                );
                continue;
            }
            let raw = vector_json(file);
            let event = match wrap {
                Some((source, detail_type)) => envelope(source, detail_type, raw),
                None => raw,
            };
            let got = AccountEvent::parse(&event);
            match want {
                Account(id) => assert_eq!(
                    got.clone().ok().and_then(|o| o.account()),
                    Some(account(id)),
                    "{file}: {got:?}"
                ),
                Offboard(id) => assert_eq!(
                    got.clone().ok().and_then(|o| o.departed()),
                    Some(account(id)),
                    "{file}: {got:?}"
                ),
                Ignored => assert!(
                    matches!(got, Ok(Onboarding::Ignored { .. })),
                    "{file}: {got:?}"
                ),
                Malformed(path) => assert!(
                    matches!(&got, Err(EventError::Malformed { path: p, .. }) if p == path),
                    "{file}: {got:?}"
                ),
                NotJson => unreachable!(),
            }
        }
    }

    // ---- membership events (issue 19) -----------------------------------------------------

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/account-events");

    fn sample(name: &str) -> Value {
        let path = format!("{SAMPLES}/{name}");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Invited accounts join through `AccountJoinedOrganization` only; both joined methods onboard.
    #[test]
    fn account_joined_organization_onboards_created_and_invited_accounts() {
        for name in [
            "organizations-account-joined-created.json",
            "organizations-account-joined-invited.json",
        ] {
            let got = AccountEvent::parse(&sample(name));
            assert_eq!(
                got.clone().ok().and_then(|o| o.account()),
                Some(account("444455556666")),
                "{name}: {got:?}"
            );
        }
    }

    /// A departed or closed account must not be ignored: its grant has to go.
    #[test]
    fn departures_and_closures_are_not_ignored() {
        for name in [
            "organizations-account-departed-left.json",
            "organizations-account-departed-removed.json",
            "organizations-close-account-result.json",
        ] {
            let got = AccountEvent::parse(&sample(name));
            assert!(
                !matches!(got, Ok(Onboarding::Ignored { .. })),
                "{name}: {got:?}"
            );
            assert_eq!(
                got.clone().ok().and_then(|o| o.account()),
                None,
                "{name} must not onboard: {got:?}"
            );
            assert_eq!(
                got.clone().ok().and_then(|o| o.departed()),
                Some(account("444455556666")),
                "{name}: {got:?}"
            );
        }
    }

    fn membership(name: &str, details: Value) -> Value {
        envelope(
            ORGANIZATIONS_SOURCE,
            SERVICE_EVENT_DETAIL_TYPE,
            json!({"eventName": name, "eventSource": "organizations.amazonaws.com", "serviceEventDetails": details}),
        )
    }

    #[test]
    fn membership_events_name_the_field_at_fault() {
        const AT: &str = "detail.serviceEventDetails";
        expect_account(
            AccountEvent::parse(&membership(
                "AccountJoinedOrganization",
                json!({"accountId": "012345678901", "joinedMethod": "Invited"}),
            )),
            "012345678901",
            AccountEvent::OrganizationsAccountJoined(JoinedMethod::Invited),
        );
        assert_eq!(
            AccountEvent::parse(&membership(
                "AccountDepartedOrganization",
                json!({"accountId": "012345678901", "departedMethod": "Cleaned"}),
            )),
            Ok(Onboarding::Offboard {
                account: account("012345678901"),
                event: AccountEvent::OrganizationsAccountDeparted(DepartedMethod::Cleaned),
            })
        );
        // An undocumented method is for a person to read, not a guess either way.
        let problem = expect_malformed(
            AccountEvent::parse(&membership(
                "AccountJoinedOrganization",
                json!({"accountId": "012345678901", "joinedMethod": "invited\n"}),
            )),
            &format!("{AT}.joinedMethod"),
        );
        assert!(problem.contains("Created, Invited"), "{problem}");
        expect_malformed(
            AccountEvent::parse(&membership(
                "AccountDepartedOrganization",
                json!({"accountId": "012345678901", "departedMethod": "Suspended"}),
            )),
            &format!("{AT}.departedMethod"),
        );
        expect_malformed(
            AccountEvent::parse(&membership(
                "AccountDepartedOrganization",
                json!({"departedMethod": "Left"}),
            )),
            &format!("{AT}.accountId"),
        );
        expect_malformed(
            AccountEvent::parse(&membership(
                "AccountJoinedOrganization",
                json!({"accountId": "*", "joinedMethod": "Created"}),
            )),
            &format!("{AT}.accountId"),
        );
        // A nesting other than the one we read fails loudly (SOURCES.md, "Membership events").
        expect_malformed(
            AccountEvent::parse(&membership(
                "AccountJoinedOrganization",
                json!({"accountJoinedOrganization": {"accountId": "012345678901", "joinedMethod": "Created"}}),
            )),
            &format!("{AT}.accountId"),
        );
        // A failed closure leaves the account where it is.
        let reason = expect_ignored(AccountEvent::parse(&membership(
            "CloseAccountResult",
            json!({"closeAccountStatus": {"accountId": "012345678901", "state": "FAILED", "failureReason": "PENDING_HANDSHAKE"}}),
        )));
        assert!(
            reason.contains("FAILED") && reason.contains("012345678901"),
            "{reason}"
        );
        expect_malformed(
            AccountEvent::parse(&membership(
                "CloseAccountResult",
                json!({"closeAccountStatus": {"state": "SUCCEEDED"}}),
            )),
            "detail.serviceEventDetails.closeAccountStatus.accountId",
        );
    }

    // ---- direct invocation and hostile input ---------------------------------------------

    #[test]
    fn direct_invoke() {
        expect_account(
            AccountEvent::parse(&json!({"accountId": "123456789012"})),
            "123456789012",
            AccountEvent::DirectInvoke,
        );
        expect_account(
            AccountEvent::parse(&json!({"accountId": "000000000042", "note": "backfill"})),
            "000000000042",
            AccountEvent::DirectInvoke,
        );
        for bad in [
            json!(123456789012u64),
            json!(null),
            json!("*"),
            json!("12345678901\""),
            json!("{\"accountId\":\"123456789012\"}"),
            json!("１２３４５６７８９０１２"),
            json!(["123456789012"]),
            json!({"id": "123456789012"}),
        ] {
            let problem = expect_malformed(
                AccountEvent::parse(&json!({ "accountId": bad })),
                "accountId",
            );
            assert!(!problem.contains('\n'), "{problem}");
        }
        // A typo is not an accepted input: ignored with a reason (and logged by the caller).
        expect_ignored(AccountEvent::parse(&json!({"accountID": "123456789012"})));
    }

    #[test]
    fn not_objects_and_unrelated_events_are_ignored() {
        for v in [
            json!(null),
            json!(1),
            json!("123456789012"),
            json!([{"accountId": "123456789012"}]),
            json!({}),
        ] {
            expect_ignored(AccountEvent::parse(&v));
        }
        let reason = expect_ignored(AccountEvent::parse(
            &json!({"source": "aws.s3\u{202e}\n", "detail": {}}),
        ));
        assert!(reason.contains("\\u{202e}\\n"), "{reason}");
        expect_ignored(AccountEvent::parse(
            &json!({"source": 5, "detail-type": SERVICE_EVENT_DETAIL_TYPE}),
        ));
        expect_ignored(AccountEvent::parse(
            &json!({"source": ORGANIZATIONS_SOURCE}),
        ));
        expect_ignored(AccountEvent::parse(
            &json!({"source": ORGANIZATIONS_SOURCE, "detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "CreateAccountResult"}}),
        ));
        // Control Tower does not emit CreateAccountResult; Organizations does not emit CreateManagedAccount.
        expect_ignored(AccountEvent::parse(
            &json!({"source": CONTROL_TOWER_SOURCE, "detail-type": SERVICE_EVENT_DETAIL_TYPE, "detail": {"eventName": "CreateAccountResult"}}),
        ));
        expect_ignored(AccountEvent::parse(
            &json!({"source": ORGANIZATIONS_SOURCE, "detail-type": SERVICE_EVENT_DETAIL_TYPE, "detail": {"eventName": "CreateManagedAccount"}}),
        ));
        assert!(matches!(
            AccountEvent::parse_str("{\"accountId\": "),
            Err(EventError::InvalidJson(_))
        ));
    }

    fn org_event(status: Value) -> Value {
        envelope(
            ORGANIZATIONS_SOURCE,
            SERVICE_EVENT_DETAIL_TYPE,
            json!({
                "eventName": "CreateAccountResult",
                "requestParameters": "None",
                "serviceEventDetails": { "createAccountStatus": status },
            }),
        )
    }

    #[test]
    fn malformed_known_events_name_the_field() {
        let at = "detail.serviceEventDetails.createAccountStatus";
        expect_malformed(
            AccountEvent::parse(&org_event(json!({"accountId": "123456789012"}))),
            &format!("{at}.state"),
        );
        expect_malformed(
            AccountEvent::parse(&org_event(json!({"state": 1, "accountId": "123456789012"}))),
            &format!("{at}.state"),
        );
        expect_malformed(
            AccountEvent::parse(&org_event(
                json!({"state": "SUCCEEDED", "accountId": 123456789012u64}),
            )),
            &format!("{at}.accountId"),
        );
        expect_malformed(
            AccountEvent::parse(&org_event(json!({"state": "SUCCEEDED"}))),
            &format!("{at}.accountId"),
        );
        expect_malformed(AccountEvent::parse(&org_event(json!("SUCCEEDED"))), at);

        let mut no_details = org_event(json!({}));
        no_details["detail"]
            .as_object_mut()
            .unwrap()
            .shift_remove("serviceEventDetails");
        expect_malformed(
            AccountEvent::parse(&no_details),
            "detail.serviceEventDetails",
        );

        let mut bad_time = org_event(json!({"state": "SUCCEEDED", "accountId": "123456789012"}));
        bad_time["time"] = json!("May 15, 2023 8:26:54 AM");
        expect_malformed(AccountEvent::parse(&bad_time), "time");

        let mut bad_resources =
            org_event(json!({"state": "SUCCEEDED", "accountId": "123456789012"}));
        bad_resources["resources"] = json!(["arn:ok", 7]);
        expect_malformed(AccountEvent::parse(&bad_resources), "resources.1");

        let mut no_name = org_event(json!({}));
        no_name["detail"]
            .as_object_mut()
            .unwrap()
            .shift_remove("eventName");
        expect_malformed(AccountEvent::parse(&no_name), "detail.eventName");
        no_name["detail"]["eventName"] = json!(["CreateAccountResult"]);
        expect_malformed(AccountEvent::parse(&no_name), "detail.eventName");
    }

    #[test]
    fn only_succeeded_acts() {
        for state in ["FAILED", "IN_PROGRESS", "succeeded", "SUCCEEDED ", ""] {
            let reason = expect_ignored(AccountEvent::parse(&org_event(
                json!({"state": state, "accountId": "123456789012"}),
            )));
            assert!(reason.contains("state"), "{reason}");
        }
        // FAILED events carry no accountId and must not be an error.
        expect_ignored(AccountEvent::parse(&org_event(
            json!({"state": "FAILED", "failureReason": "EMAIL_ALREADY_EXISTS"}),
        )));
    }

    fn ct_event(name: &str, details: Value) -> Value {
        envelope(
            CONTROL_TOWER_SOURCE,
            SERVICE_EVENT_DETAIL_TYPE,
            json!({"eventName": name, "requestParameters": "None", "responseElements": "None", "serviceEventDetails": details}),
        )
    }

    #[test]
    fn control_tower_shapes() {
        let ok = json!({"state": "SUCCEEDED", "account": {"accountName": "x", "accountId": "123456789012"}});
        expect_account(
            AccountEvent::parse(&ct_event(
                "CreateManagedAccount",
                json!({"createManagedAccountStatus": ok.clone()}),
            )),
            "123456789012",
            AccountEvent::ControlTowerCreateManagedAccount,
        );
        // Create with the Update member (and vice versa) is malformed at the member it lacks.
        expect_malformed(
            AccountEvent::parse(&ct_event(
                "CreateManagedAccount",
                json!({"updateManagedAccountStatus": ok.clone()}),
            )),
            "detail.serviceEventDetails.createManagedAccountStatus",
        );
        expect_malformed(
            AccountEvent::parse(&ct_event(
                "UpdateManagedAccount",
                json!({"createManagedAccountStatus": ok}),
            )),
            "detail.serviceEventDetails.updateManagedAccountStatus",
        );
        expect_malformed(
            AccountEvent::parse(&ct_event(
                "CreateManagedAccount",
                json!({"createManagedAccountStatus": {"state": "SUCCEEDED"}}),
            )),
            "detail.serviceEventDetails.createManagedAccountStatus.account",
        );
        expect_malformed(
            AccountEvent::parse(&ct_event(
                "CreateManagedAccount",
                json!({"createManagedAccountStatus": {"state": "SUCCEEDED", "account": {"accountName": "x"}}}),
            )),
            CT_ID_PATH,
        );
        expect_malformed(
            AccountEvent::parse(&ct_event(
                "CreateManagedAccount",
                json!({"createManagedAccountStatus": {"state": "SUCCEEDED", "account": {"accountId": "1234567890*2"}}}),
            )),
            CT_ID_PATH,
        );
        expect_ignored(AccountEvent::parse(&ct_event(
            "CreateManagedAccount",
            json!({"createManagedAccountStatus": {"state": "FAILED", "message": "AWS Control Tower could not create\u{0007}"}}),
        )));
    }

    proptest! {
        #[test]
        fn account_id_accepts_iff_twelve_ascii_digits(s in "\\PC{0,20}|[0-9]{10,14}") {
            let ok = s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(AccountId::new(&s).is_ok(), ok);
            if let Err(e) = AccountId::new(&s) {
                prop_assert!(!e.to_string().chars().any(|c| c.is_control()));
            }
        }

        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            let _ = AccountEvent::parse(&v);
            let _ = AccountEvent::parse(&json!({"accountId": v.clone()}));
            let _ = AccountEvent::parse(&org_event(v.clone()));
            let _ = AccountEvent::parse(&ct_event("UpdateManagedAccount", json!({"updateManagedAccountStatus": v})));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = AccountEvent::parse_str(&s);
        }

        /// Replace any one node of a valid event by an arbitrary value: never a panic, and
        /// an Account result always carries a valid id.
        #[test]
        fn mutated_real_event_never_panics(pick in 0usize..64, v in arb_json()) {
            let mut event = vector_json("controltower/hs_UpdateManagedAccount_eventbridge_2023-08-01.json");
            let mut paths = Vec::new();
            collect_paths(&event, String::new(), &mut paths);
            let target = &paths[pick % paths.len()];
            if let Some(node) = event.pointer_mut(target) {
                *node = v;
            }
            if let Ok(Onboarding::Account { account, .. }) = AccountEvent::parse(&event) {
                prop_assert_eq!(account.as_str().len(), 12);
            }
        }
    }

    fn collect_paths(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, c)| collect_paths(c, format!("{at}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, c)| collect_paths(c, format!("{at}/{i}"), out)),
            _ => {}
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[0-9]{12}".prop_map(Value::String),
            "\\PC{0,16}".prop_map(Value::String),
            Just(json!("SUCCEEDED")),
            Just(json!("*")),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("accountId".to_owned()),
                        Just("state".to_owned()),
                        Just("account".to_owned()),
                        Just("source".to_owned()),
                        Just("detail".to_owned()),
                        "[a-zA-Z]{1,8}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
