//! The org-auditor Lambda: runs daily in the management account (an EventBridge schedule) and
//! audits every ACTIVE account of the organization as `trailkeeper audit` does: its trail
//! (there, multi-region, validated, logging, delivering) and its admission to the central bucket
//! (and key) policy. The findings go out as embedded metrics and one SNS alert per account that
//! is not covered. Hourly (a second schedule, `{"check": "freshness"}`) it checks that every
//! admitted account's digests keep arriving in every region (`trailkeeper::freshness`), with
//! one alert per stale stream.

pub mod handler;

pub use handler::{Config, Deps, HandlerError, RecordSink, Stdout, handle};

/// The IAM actions this function's role must allow, by the modules whose calls it makes;
/// tests/lambda/template_checks.py holds `OrgAuditorRole` in template.yaml to exactly these.
/// The management account's own trail is read with these credentials (it has no member role);
/// other accounts' trails with the read-only audit role (templates/audit-member-role.yaml,
/// exactly `trailkeeper::audit::CALLS`: shared/tests/least_privilege.rs), and the policies
/// with the log-archive account's reader role ([`ARCHIVE_READER_CALLS`]).
pub const CALLS: &[&[&str]] = &[
    trailkeeper::onboard::ORGANIZATION_CALLS,
    trailkeeper::trail::CALLS,
    trailkeeper::audit::CALLS,
    trailkeeper::alerts::CALLS,
    trailkeeper::securityhub::IMPORT_CALLS,
    trailkeeper::securityhub::RESOLVE_CALLS,
];

/// What the log-archive account's `AuditReaderRole` must allow: reading the policies, listing
/// the digest keys for the hourly freshness check, and reading re-verification's state object.
pub const ARCHIVE_READER_CALLS: &[&[&str]] = &[
    trailkeeper::audit::POLICY_READ_CALLS,
    trailkeeper::freshness::CALLS,
    trailkeeper::reverify::STATE_READ_CALLS,
];
