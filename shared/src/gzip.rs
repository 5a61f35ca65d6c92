//! Streaming gunzip of exactly one gzip member.
//!
//! CloudTrail writes each log and digest as a single gzip member. Bytes after that member are how
//! the "gzip append" attack hides data from tools that stop at the first member while other tools
//! read on (aws-cli PR #10326), so trailing data is an error, never silently skipped. The output
//! size is bounded so that a gzip bomb is reported instead of exhausting memory or time.

use std::io::{self, Write};

use aws_lc_rs::digest::{Context, SHA256};
use flate2::write::GzDecoder;

/// Why a gzip stream was rejected. Every variant is a property of the content, not of transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GzipError {
    #[error("unexpected data after the end of the gzip stream (at compressed byte {offset})")]
    TrailingData { offset: u64 },
    #[error("gzip stream is truncated")]
    Truncated,
    #[error("gzip stream is corrupt: {0}")]
    Corrupt(String),
    #[error("uncompressed size exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

/// Where the uncompressed bytes go.
pub trait InflatedSink: Write {
    fn inflated_len(&self) -> u64;
}

/// SHA-256 of everything written, without keeping it.
pub struct Sha256Sink {
    ctx: Context,
    len: u64,
}

impl Default for Sha256Sink {
    fn default() -> Self {
        Self {
            ctx: Context::new(&SHA256),
            len: 0,
        }
    }
}

impl Sha256Sink {
    pub fn finish(self) -> [u8; 32] {
        let digest = self.ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

impl Write for Sha256Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ctx.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl InflatedSink for Sha256Sink {
    fn inflated_len(&self) -> u64 {
        self.len
    }
}

/// The uncompressed bytes themselves, for small objects such as digests.
#[derive(Default)]
pub struct BufferSink(pub Vec<u8>);

impl Write for BufferSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl InflatedSink for BufferSink {
    fn inflated_len(&self) -> u64 {
        self.0.len() as u64
    }
}

/// Marker error used to carry "over the limit" through the decoder's io::Error.
#[derive(Debug)]
struct OverLimit;
impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inflated size over limit")
    }
}
impl std::error::Error for OverLimit {}

struct Limited<S> {
    sink: S,
    limit: u64,
}

impl<S: InflatedSink> Write for Limited<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.sink.inflated_len() + buf.len() as u64 > self.limit {
            return Err(io::Error::other(OverLimit));
        }
        self.sink.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// Feeds compressed chunks in, as they arrive, and checks the stream at the end.
pub struct Gunzip<S: InflatedSink> {
    decoder: GzDecoder<Limited<S>>,
    limit: u64,
    compressed: u64,
}

impl<S: InflatedSink> Gunzip<S> {
    pub fn new(sink: S, limit: u64) -> Self {
        Self {
            decoder: GzDecoder::new(Limited { sink, limit }),
            limit,
            compressed: 0,
        }
    }

    /// Compressed bytes consumed so far.
    pub fn compressed_len(&self) -> u64 {
        self.compressed
    }

    pub fn update(&mut self, mut chunk: &[u8]) -> Result<(), GzipError> {
        while !chunk.is_empty() {
            match self.decoder.write(chunk) {
                // The single-member decoder accepts nothing once its member has ended.
                Ok(0) => {
                    return Err(GzipError::TrailingData {
                        offset: self.compressed,
                    });
                }
                Ok(n) => {
                    self.compressed += n as u64;
                    chunk = &chunk[n..];
                }
                Err(e) => return Err(self.classify(e)),
            }
        }
        Ok(())
    }

    /// Ends the stream: it must be complete, with a matching CRC and length.
    pub fn finish(mut self) -> Result<S, GzipError> {
        if self.decoder.header().is_none() {
            return Err(GzipError::Truncated);
        }
        match self.decoder.try_finish() {
            Ok(()) => {}
            Err(e) => return Err(self.classify(e)),
        }
        let limit = self.limit;
        self.decoder
            .finish()
            .map(|limited| limited.sink)
            .map_err(|e| classify_error(e, limit))
    }

    fn classify(&self, e: io::Error) -> GzipError {
        classify_error(e, self.limit)
    }
}

fn classify_error(e: io::Error, limit: u64) -> GzipError {
    if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
        return GzipError::TooLarge { limit };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => GzipError::Truncated,
        _ => {
            let msg = e.to_string();
            // flate2 reports a stream that stops early (no CRC footer) as "corrupt".
            if msg.contains("corrupt gzip stream does not have a matching checksum") {
                GzipError::Corrupt("CRC or length mismatch".into())
            } else {
                GzipError::Corrupt(msg)
            }
        }
    }
}

/// Gunzips a whole in-memory object (a digest).
pub fn gunzip_all(compressed: &[u8], limit: u64) -> Result<Vec<u8>, GzipError> {
    let mut g = Gunzip::new(BufferSink::default(), limit);
    g.update(compressed)?;
    Ok(g.finish()?.0)
}

/// SHA-256 of bytes in memory.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut s = Sha256Sink::default();
    s.ctx.update(bytes);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn hash_chunked(
        compressed: &[u8],
        chunk: usize,
        limit: u64,
    ) -> Result<([u8; 32], u64), GzipError> {
        let mut g = Gunzip::new(Sha256Sink::default(), limit);
        for c in compressed.chunks(chunk) {
            g.update(c)?;
        }
        let sink = g.finish()?;
        let len = sink.inflated_len();
        Ok((sink.finish(), len))
    }

    #[test]
    fn hashes_the_uncompressed_bytes_whatever_the_chunking() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let compressed = gz(&data);
        for chunk in [1, 7, 8, 1000, 65536, compressed.len()] {
            let (h, len) = hash_chunked(&compressed, chunk, u64::MAX).unwrap();
            assert_eq!(h, sha256(&data), "chunk size {chunk}");
            assert_eq!(len, data.len() as u64);
        }
    }

    #[test]
    fn awscli_functional_log_vectors_hash_as_published() {
        let v: serde_json::Value = serde_json::from_slice(&crate::test_vectors::vector(
            "awscli-test-derived/awscli_functional_log_hash_vectors.json",
        ))
        .unwrap();
        for log in v["logs"].as_array().unwrap() {
            let raw = log["_raw_value"].as_str().unwrap().as_bytes();
            let (h, _) = hash_chunked(&gz(raw), 3, u64::MAX).unwrap();
            assert_eq!(hex::encode(h), log["hashValue"].as_str().unwrap());
        }
    }

    #[test]
    fn rejects_a_second_member_and_any_trailing_byte() {
        let mut two = gz(b"{\"Records\":[]}");
        let first_len = two.len() as u64;
        two.extend(gz(b"{\"Records\":[{\"hidden\":true}]}"));
        for chunk in [1, 5, 4096] {
            assert_eq!(
                hash_chunked(&two, chunk, u64::MAX).unwrap_err(),
                GzipError::TrailingData { offset: first_len }
            );
        }
        let mut junk = gz(b"{}");
        junk.push(0);
        assert!(matches!(
            hash_chunked(&junk, 4096, u64::MAX),
            Err(GzipError::TrailingData { .. })
        ));
    }

    #[test]
    fn rejects_truncation_at_every_length() {
        let compressed = gz(&[b'x'; 5000]);
        for cut in 0..compressed.len() {
            let r = hash_chunked(&compressed[..cut], 64, u64::MAX);
            assert!(
                r.is_err(),
                "a stream cut at {cut} of {} was accepted",
                compressed.len()
            );
        }
    }

    #[test]
    fn rejects_a_corrupted_crc() {
        let mut compressed = gz(b"hello world");
        let n = compressed.len();
        compressed[n - 6] ^= 0xff;
        assert!(matches!(
            hash_chunked(&compressed, 4096, u64::MAX),
            Err(GzipError::Corrupt(_))
        ));
    }

    #[test]
    fn stops_a_gzip_bomb_at_the_limit() {
        let bomb = gz(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert_eq!(
            hash_chunked(&bomb, 8192, 1024 * 1024).unwrap_err(),
            GzipError::TooLarge { limit: 1024 * 1024 }
        );
        assert!(gunzip_all(&bomb, 1024).is_err());
    }

    #[test]
    fn rejects_bytes_that_are_not_gzip() {
        assert!(gunzip_all(b"{\"not\":\"gzip\"}", 1 << 20).is_err());
        assert!(gunzip_all(b"", 1 << 20).is_err());
    }
}
