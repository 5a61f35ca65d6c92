//! The trail-enabler Lambda: runs in the management account, assumes the member role in each new
//! account and gives it the organization's trail (multi-region, global service events, log-file
//! validation, into the central bucket), logging and verified.

pub mod handler;

pub use handler::{Deps, HandlerError, handle, parse_event};
