//! The policy-updater Lambda: runs in the log-archive account and admits each new account of the
//! organization to the central bucket's policy (and to the KMS key's policy when logs are
//! encrypted), so that the account's trail may deliver there.

pub mod handler;

pub use handler::{Deps, HandlerError, handle, parse_event};

/// The IAM actions this function's role must allow, by the modules whose calls it makes;
/// tests/lambda/template_checks.py holds `PolicyUpdaterRole` in template.yaml to exactly these
/// (plus what AWS itself needs on the function's behalf, named there).
pub const CALLS: &[&[&str]] = &[
    trailkeeper::onboard::BUCKET_POLICY_CALLS,
    trailkeeper::onboard::KEY_POLICY_CALLS,
    trailkeeper::athena::CALLS,
];
