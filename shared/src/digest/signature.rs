//! What CloudTrail signs, and the check of its RSA signature.

use super::file::DigestFile;

/// The only algorithm CloudTrail uses, both in metadata and in the digest.
pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";

/// `digestEndTime \n bucket/object \n sha256hex(uncompressed digest) \n previousSignature|null`.
/// The AWS CLI writes the literal `null` for a chain's first digest "to match the Java
/// implementation"; there is no trailing newline.
pub fn string_to_sign(digest: &DigestFile, uncompressed_sha256: &[u8; 32]) -> String {
    let previous = digest
        .previous
        .as_ref()
        .map_or("null", |p| p.signature.as_str());
    format!(
        "{}\n{}/{}\n{}\n{}",
        digest.digest_end_time,
        digest.digest_s3_bucket,
        digest.digest_s3_object,
        hex::encode(uncompressed_sha256),
        previous
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gzip::sha256;
    use crate::keys::PublicKey;
    use crate::test_vectors::vector;
    use base64::Engine;
    use chrono::DateTime;

    fn awscli_key() -> PublicKey {
        let b64 = String::from_utf8(vector("awscli-test-derived/public_key_der.b64")).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap();
        PublicKey::from_der(
            der,
            DateTime::UNIX_EPOCH,
            DateTime::<chrono::Utc>::MAX_UTC,
            None,
        )
        .unwrap()
    }

    #[test]
    fn the_awscli_unit_test_vector_verifies() {
        let inflated = vector("awscli-test-derived/digest_uncompressed.json");
        let digest = DigestFile::parse(&inflated).unwrap();
        let to_sign = string_to_sign(&digest, &sha256(&inflated));
        assert_eq!(
            to_sign.as_bytes(),
            vector("awscli-test-derived/string_to_sign.txt")
        );
        let sig = hex::decode(
            String::from_utf8(vector("awscli-test-derived/signature.hex"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        let key = awscli_key();
        assert!(key.verify(to_sign.as_bytes(), &sig));
        // One byte changed anywhere breaks it: the digest, the message or the signature.
        let mut edited = inflated.clone();
        let pos = edited.windows(3).position(|w| w == b"baz").unwrap();
        edited[pos + 2] = b'y';
        let edited_sign = string_to_sign(&DigestFile::parse(&edited).unwrap(), &sha256(&edited));
        assert!(!key.verify(edited_sign.as_bytes(), &sig));
        let mut bad_sig = sig.clone();
        bad_sig[100] ^= 1;
        assert!(!key.verify(to_sign.as_bytes(), &bad_sig));
    }

    #[test]
    fn a_first_digest_signs_the_literal_null() {
        let digest = DigestFile::parse(
            br#"{"digestStartTime":"z","digestEndTime":"a","digestS3Bucket":"b","digestS3Object":"c","digestPublicKeyFingerprint":"f","previousDigestSignature":null,"logFiles":[]}"#,
        )
        .unwrap();
        assert_eq!(
            string_to_sign(&digest, &sha256(b"abc")).as_bytes(),
            vector("awscli-test-derived/string_to_sign_null_previous.txt")
        );
    }

    #[test]
    fn awscli_negative_case_fails_with_the_real_2015_key() {
        let b64 = String::from_utf8(vector(
            "cloudtrail-public-keys/awscli_unit_VALID_TEST_KEY.b64",
        ))
        .unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap();
        let key = PublicKey::from_der(
            der,
            DateTime::UNIX_EPOCH,
            DateTime::<chrono::Utc>::MAX_UTC,
            None,
        )
        .unwrap();
        assert!(!key.verify(b"invalid", &hex::decode("aeff").unwrap()));
    }
}
