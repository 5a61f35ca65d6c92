//! One account event in, that account's trail created or repaired, logging, out.

use lambda_runtime::{Diagnostic, LambdaEvent, tracing};
use serde_json::{Value, json};
use trailkeeper::events::{AccountEvent, EventError, Onboarding};
use trailkeeper::onboard::OnboardConfig;
use trailkeeper::trail::{Backoff, TrailAction, TrailEnabler, TrailError};

pub struct Deps {
    pub enabler: TrailEnabler,
}

impl Deps {
    /// Clients are made once per container; nothing here touches the network.
    pub fn new(aws: &aws_config::SdkConfig, config: OnboardConfig) -> Self {
        Self::with_backoff(aws, config, Backoff::SETTLING)
    }

    /// With another bound for accounts that are still settling (tests shorten it).
    pub fn with_backoff(
        aws: &aws_config::SdkConfig,
        config: OnboardConfig,
        backoff: Backoff,
    ) -> Self {
        Self {
            enabler: TrailEnabler::new(aws, config.trail_spec(), config.member_role, backoff),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Trail(#[from] TrailError),
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::Event(_) => "InvalidEvent",
            HandlerError::Trail(TrailError::Exhausted { .. }) => "AccountNotReady",
            HandlerError::Trail(_) => "TrailFailed",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// The events this function accepts (the same as the policy-updater's).
pub fn parse_event(event: &Value) -> Result<Onboarding, EventError> {
    AccountEvent::parse(event)
}

/// Converges the event's account; an event that is not for us succeeds with the reason.
pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
    let (account, source) = match parse_event(&event.payload)? {
        Onboarding::Ignored { reason } => {
            tracing::info!(%reason, "event ignored");
            return Ok(json!({ "status": "ignored", "reason": reason }));
        }
        Onboarding::Offboard { account, event } => {
            // The member role of an account outside the organization can no longer be assumed,
            // and its trail is the account's own business now: only the grant must go.
            let reason = format!(
                "{event}: account {account} left the organization or was closed; there is no trail to keep there (the policy-updater revokes its grant in the central policies)"
            );
            tracing::info!(%account, %reason, "event ignored");
            return Ok(json!({ "status": "ignored", "account": account, "reason": reason }));
        }
        Onboarding::Account { account, event } => (account, event),
    };
    tracing::info!(%account, event = %source, "enabling the account's trail");
    let report = deps.enabler.enable(account).await.inspect_err(|e| {
        tracing::error!(%account, error = %e, "trail not enabled");
    })?;
    if let TrailAction::Repair { drift } = &report.action {
        // The drift report: one line per setting, for alarms on the log group.
        tracing::warn!(%account, trail = %report.trail_arn, drift = ?drift, "trail had drifted and was repaired");
    }
    let mut out = json!({ "status": "enabled", "event": source.to_string() });
    if let (Some(o), Ok(Value::Object(r))) = (out.as_object_mut(), serde_json::to_value(&report)) {
        o.extend(r);
    }
    Ok(out)
}
