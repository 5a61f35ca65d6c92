//! The independent evaluator, `iam-rs`, as the policy tests use it: every policy that applies to
//! a request is evaluated together (an explicit Deny anywhere wins, then any Allow), which is how
//! IAM decides a request within one account. Shared by `policy_properties.rs` and
//! `policy_evaluation.rs` (a module of both, so there is one adapter).

use iam_rs::{
    Arn, Context, ContextValue, Decision, IAMPolicy, IAMRequest, PolicyEvaluator, Principal,
    PrincipalId,
};

/// Who asks.
#[derive(Debug, Clone)]
#[allow(dead_code)] // each test crate uses the kinds it needs
pub enum Caller {
    /// An AWS service principal, such as `cloudtrail.amazonaws.com`.
    Service(&'static str),
    /// An IAM principal by ARN (its `aws:PrincipalArn` is set to it).
    Aws(String),
}

/// The decision of `policies` (JSON documents) on `action` by `caller` on `resource`, with the
/// request context `context` (`aws:SecureTransport` is a boolean, everything else a string).
pub fn decide(
    policies: &[&str],
    caller: &Caller,
    action: &str,
    resource: &str,
    context: &[(&str, String)],
) -> Decision {
    let parsed: Vec<IAMPolicy> = policies
        .iter()
        .map(|p| IAMPolicy::from_json(p).unwrap_or_else(|e| panic!("iam-rs cannot parse {p}: {e}")))
        .collect();
    let mut ctx = Context::new();
    for (k, v) in context {
        let value = if *k == "aws:SecureTransport" {
            ContextValue::Boolean(v == "true")
        } else {
            ContextValue::String(v.clone())
        };
        ctx.insert((*k).to_owned(), value);
    }
    let principal = match caller {
        Caller::Service(name) => Principal::Service(PrincipalId::String((*name).into())),
        Caller::Aws(arn) => {
            ctx.insert("aws:PrincipalArn".into(), ContextValue::String(arn.clone()));
            Principal::Aws(PrincipalId::String(arn.clone()))
        }
    };
    let request = IAMRequest::new_with_context(
        principal,
        action,
        Arn::parse(resource).unwrap_or_else(|e| panic!("{resource}: {e}")),
        ctx,
    );
    PolicyEvaluator::with_policies(parsed)
        .evaluate(&request)
        .unwrap_or_else(|e| panic!("iam-rs on {action} {resource}: {e}"))
        .decision
}
