//! The trail-enabler Lambda: runs in the management account, assumes the member role in each new
//! account and gives it the organization's trail (multi-region, global service events, log-file
//! validation, into the central bucket), logging and verified.

pub mod handler;

pub use handler::{Deps, HandlerError, handle, parse_event};

/// The IAM actions this function's role must allow, by the modules whose calls it makes;
/// tests/lambda/template_checks.py holds `TrailEnablerRole` in template.yaml to exactly these
/// (plus what AWS itself needs on the function's behalf, named there). The CloudTrail calls in
/// the member account use the member role: `trailkeeper::trail::MEMBER_ROLE_CALLS`.
pub const CALLS: &[&[&str]] = &[trailkeeper::trail::CALLS];
