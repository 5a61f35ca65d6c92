//! trailkeeper's domain library: CloudTrail digest validation, public keys, object access and
//! findings. No Lambda types live here; the functions and the CLI are thin layers over it.

pub mod alerts;
pub mod archive;
pub mod athena;
pub mod audit;
pub mod config;
pub mod consolidate;
pub mod controls;
pub mod coverage;
pub mod digest;
pub mod event_selectors;
pub mod events;
pub mod freshness;
pub mod gzip;
pub mod keys;
pub mod onboard;
pub mod partition;
pub mod policy;
pub mod report;
pub mod retire;
pub mod reverify;
pub mod securityhub;
pub mod store;
pub mod trail;
pub mod tripwire;
pub mod validate;

#[cfg(any(test, feature = "testdata"))]
pub mod testdata;

#[cfg(test)]
pub(crate) mod test_vectors {
    /// Real events, keys and digests, each with its source (tests/vectors/*/SOURCES.md).
    pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors");

    pub fn vector(path: &str) -> Vec<u8> {
        std::fs::read(format!("{ROOT}/{path}"))
            .unwrap_or_else(|e| panic!("vector {ROOT}/{path}: {e}"))
    }
}
