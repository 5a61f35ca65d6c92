//! Gunzip + SHA-256 of logs (shared/src/gzip.rs): any bytes, any chunking, any size limit.
//! The outcome does not depend on how the body was cut into chunks, never exceeds the limit,
//! and an accepted stream inflates to what a reference decoder reads from it.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use trailkeeper::gzip::{Gunzip, GzipError, InflatedSink, Sha256Sink, gunzip_all, sha256};

fn hash_chunked(body: &[u8], chunk: usize, limit: u64) -> Result<([u8; 32], u64), GzipError> {
    let mut g = Gunzip::new(Sha256Sink::default(), limit);
    for c in body.chunks(chunk) {
        g.update(c)?;
    }
    let compressed = g.compressed_len();
    assert_eq!(
        compressed,
        body.len() as u64,
        "accepted bytes were not all consumed"
    );
    let sink = g.finish()?;
    let len = sink.inflated_len();
    Ok((sink.finish(), len))
}

fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else {
        return;
    };
    let chunk = usize::from(*a % 64) + 1;
    let limit = match b % 4 {
        0 => 0,
        1 => 1024,
        2 => 64 * 1024,
        _ => 1 << 20,
    };
    let whole = gunzip_all(body, limit);
    let chunked = hash_chunked(body, chunk, limit);
    match (&whole, &chunked) {
        (Ok(bytes), Ok((hash, len))) => {
            assert!(bytes.len() as u64 <= limit);
            assert_eq!(*len, bytes.len() as u64);
            assert_eq!(*hash, sha256(bytes));
            let mut reference = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut reference)
                .expect("a reference decoder reads what was accepted");
            assert_eq!(&reference, bytes);
        }
        (Err(x), Err(y)) => {
            let over = |e: &GzipError| matches!(e, GzipError::TooLarge { .. });
            // Over the limit is over the limit whatever the chunking (a bomb is always malformed).
            if over(x) || over(y) {
                assert!(whole.is_err() && chunked.is_err());
            }
        }
        _ => panic!("chunks of {chunk} changed the outcome: {whole:?} vs {chunked:?}"),
    }
});
