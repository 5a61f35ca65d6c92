//! CloudTrail digest files: key names, content, signatures and chains.

pub mod chain;
pub mod file;
pub mod key;
pub mod signature;
