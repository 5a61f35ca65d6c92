//! Digest key names: `DigestKey::parse` on any string. A key either is refused with a reason
//! or names exactly one account's tree, and the parts rebuild a key that parses to the same
//! parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trailkeeper::digest::key::{DIGEST_DIR, DigestKey, is_account_id};

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(k) = DigestKey::parse(key) else {
        return;
    };
    assert!(
        is_account_id(&k.account),
        "{key:?}: account {:?}",
        k.account
    );
    // The file name is the account's own, in the region's folder.
    let file = key.rsplit('/').next().unwrap_or_default();
    assert!(
        file.starts_with(&format!("{}_{DIGEST_DIR}_{}_", k.account, k.region)),
        "{key:?}"
    );
    // The first AWSLogs segment starts the account's tree: no key is read as nested under it.
    let root = format!(
        "AWSLogs/{}{}/{DIGEST_DIR}/",
        k.org_id
            .as_deref()
            .map(|o| format!("{o}/"))
            .unwrap_or_default(),
        k.account
    );
    let at = key
        .find(&root)
        .unwrap_or_else(|| panic!("{key:?}: no {root}"));
    assert!(
        !key[..at].split('/').any(|s| s == "AWSLogs"),
        "{key:?}: an earlier AWSLogs segment"
    );
    let rebuilt = k.to_key();
    let again = DigestKey::parse(&rebuilt).unwrap_or_else(|e| panic!("{key:?} -> {e}"));
    // `to_key` drops trailing slashes (and an empty prefix) from the prefix.
    let prefix = |p: &Option<String>| {
        p.as_deref()
            .map(|p| p.trim_end_matches('/').to_string())
            .filter(|p| !p.is_empty())
    };
    assert_eq!(prefix(&again.prefix), prefix(&k.prefix), "{key:?}");
    assert_eq!(again.stream(), k.stream(), "{key:?}");
    assert_eq!(again.end_time, k.end_time, "{key:?}");
});
