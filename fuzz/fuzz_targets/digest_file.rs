//! Digest JSON: `DigestFile::parse` on any bytes, then the times and the string to sign.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trailkeeper::digest::chain::previous_location;
use trailkeeper::digest::file::DigestFile;
use trailkeeper::digest::signature::string_to_sign;
use trailkeeper::gzip::sha256;

fuzz_target!(|data: &[u8]| {
    let Ok(d) = DigestFile::parse(data) else {
        return;
    };
    let _ = (d.start_time(), d.end_time());
    if let Some(p) = &d.previous {
        let _ = previous_location(p);
    }
    let sha = sha256(data);
    let s = string_to_sign(&d, &sha);
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    // endTime \n bucket/object \n sha256(these bytes) \n previous signature or `null`.
    let expected_tail = match &d.previous {
        Some(p) => format!("\n{hex}\n{}", p.signature),
        None => format!("\n{hex}\nnull"),
    };
    let expected = format!(
        "{}\n{}/{}{expected_tail}",
        d.digest_end_time, d.digest_s3_bucket, d.digest_s3_object
    );
    assert_eq!(s, expected);
    for log in &d.log_files {
        let _ = (
            log.s3_bucket.len(),
            log.s3_object.len(),
            log.hash_value.len(),
        );
    }
});
