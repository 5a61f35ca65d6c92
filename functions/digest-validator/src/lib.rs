//! The digest-validator Lambda: each CloudTrail digest validated as it lands, and years of
//! history at Lambda scale through S3 Batch Operations, with the engine `trailkeeper validate`
//! uses; the tripwire on every other write or delete under `AWSLogs/`; and the scheduled
//! re-verification of all history.

pub mod handler;
pub mod input;

pub use handler::{Config, Deps, HandlerError, RecordSink, Stdout, handle};

/// The IAM actions this function's role must allow, by the modules whose calls it makes;
/// tests/lambda/template_checks.py holds `DigestValidatorRole` in template.yaml to exactly these
/// (plus what AWS itself needs on the function's behalf, named there).
pub const CALLS: &[&[&str]] = &[
    trailkeeper::store::CALLS,
    trailkeeper::keys::CALLS,
    trailkeeper::alerts::CALLS,
    trailkeeper::securityhub::IMPORT_CALLS,
    trailkeeper::tripwire::CALLS,
    trailkeeper::reverify::CALLS,
];
