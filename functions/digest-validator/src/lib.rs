//! The digest-validator Lambda: each CloudTrail digest validated as it lands, and years of
//! history at Lambda scale through S3 Batch Operations, with the engine `trailkeeper validate`
//! uses.

pub mod handler;
pub mod input;

pub use handler::{Config, Deps, HandlerError, RecordSink, Stdout, handle};
