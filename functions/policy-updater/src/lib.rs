//! The policy-updater Lambda: runs in the log-archive account and admits each new account of the
//! organization to the central bucket's policy (and to the KMS key's policy when logs are
//! encrypted), so that the account's trail may deliver there.

pub mod handler;

pub use handler::{Deps, HandlerError, handle, parse_event};
