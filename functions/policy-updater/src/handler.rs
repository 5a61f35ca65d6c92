//! One account event in, the bucket (and key) policy admitting that account out; or, for an
//! account that left the organization or was closed, the policies no longer admitting it.

use lambda_runtime::{Diagnostic, LambdaEvent, tracing};
use serde_json::{Value, json};
use trailkeeper::events::{AccountEvent, EventError, Onboarding};
use trailkeeper::onboard::{OnboardConfig, OnboardError, PolicyLoop, PolicyUpdater};

pub struct Deps {
    pub updater: PolicyUpdater,
}

impl Deps {
    /// Clients are made once per container; nothing here touches the network.
    pub fn new(aws: &aws_config::SdkConfig, config: OnboardConfig) -> Self {
        Self::with_bounds(aws, config, PolicyLoop::DEFAULT)
    }

    /// With other bounds for the read–write–verify loop (tests shorten the waits).
    pub fn with_bounds(
        aws: &aws_config::SdkConfig,
        config: OnboardConfig,
        bounds: PolicyLoop,
    ) -> Self {
        Self {
            updater: PolicyUpdater::new(aws, config, bounds),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Onboard(#[from] OnboardError),
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::Event(_) => "InvalidEvent",
            // Not worth an automatic retry: a person must look at the policy.
            HandlerError::Onboard(OnboardError::Policy { .. }) => "PolicyRefused",
            HandlerError::Onboard(_) => "PolicyUpdateFailed",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// The events this function accepts (the same as the trail-enabler's).
pub fn parse_event(event: &Value) -> Result<Onboarding, EventError> {
    AccountEvent::parse(event)
}

/// Admits the event's account, or offboards a departed one; an event that is not for us
/// succeeds with the reason.
pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
    let (account, source) = match parse_event(&event.payload)? {
        Onboarding::Ignored { reason } => {
            tracing::info!(%reason, "event ignored");
            return Ok(json!({ "status": "ignored", "reason": reason }));
        }
        Onboarding::Offboard { account, event } => {
            tracing::info!(%account, event = %event, "offboarding account");
            let policies = deps.updater.revoke(account).await.inspect_err(|e| {
                tracing::error!(%account, error = %e, "account not offboarded");
            })?;
            return Ok(json!({
                "status": "offboarded",
                "account": account,
                "event": event.to_string(),
                "policies": policies,
            }));
        }
        Onboarding::Account { account, event } => (account, event),
    };
    tracing::info!(%account, event = %source, "admitting account");
    let policies = deps.updater.admit(account).await.inspect_err(|e| {
        tracing::error!(%account, error = %e, "account not admitted");
    })?;
    Ok(json!({
        "status": "admitted",
        "account": account,
        "event": source.to_string(),
        "policies": policies,
    }))
}
