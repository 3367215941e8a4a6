//! Body transfers: cutting a body into `Body` chunks ([`body_chunks`]) and
//! checking a received sequence of chunks ([`BodyReceiver`]).
//!
//! This module owns the chunking rules of docs/replication.md ("Body
//! transfers"): chunks of one body arrive in order with contiguous offsets,
//! each at most [`BODY_CHUNK_MAX`] bytes, the same `user`, `guid` and `size`
//! in every chunk, the last one flagged `last`, and no other body's chunk in
//! between. The receiver hashes as it goes and holds no body bytes: the
//! caller stores each accepted chunk (the replica in its staging area, the
//! master in its repair file) and commits only on [`BodyEvent::Complete`],
//! which means the bytes hash to the GUID.

use crate::limits::BODY_CHUNK_MAX;
use crate::message::{Body, ErrorCode, ErrorReply, Guid, ValidationError, check_body};

/// The `Body` chunks of one body, in order. An empty body is one empty
/// chunk with `last` set.
pub fn body_chunks<'a>(user: &'a str, guid: Guid, bytes: &'a [u8]) -> BodyChunks<'a> {
    BodyChunks {
        user,
        guid,
        bytes,
        offset: 0,
        done: false,
    }
}

/// Iterator of [`body_chunks`].
#[derive(Debug, Clone)]
pub struct BodyChunks<'a> {
    user: &'a str,
    guid: Guid,
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

impl Iterator for BodyChunks<'_> {
    type Item = Body;

    fn next(&mut self) -> Option<Body> {
        if self.done {
            return None;
        }
        let end = (self.offset + BODY_CHUNK_MAX).min(self.bytes.len());
        let last = end == self.bytes.len();
        let chunk = Body {
            user: self.user.to_string(),
            guid: self.guid,
            size: self.bytes.len() as u64,
            offset: self.offset as u64,
            last,
            bytes: self.bytes[self.offset..end].to_vec(),
        };
        self.offset = end;
        self.done = last;
        Some(chunk)
    }
}

/// A chunk sequence that breaks the protocol: the connection ends
/// (`Error { code: protocol }`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The first chunk of a body does not start at offset 0.
    #[error("first chunk of a body starts at offset {offset}, not 0")]
    NotFirst { offset: u64 },
    /// A chunk of another body (or with another size) arrived before the
    /// current body's last chunk.
    #[error("a chunk of another body arrived before the last chunk of the current one")]
    Interleaved,
    /// A chunk does not continue where the previous one ended.
    #[error("chunk at offset {offset}, expected {expected}")]
    Gap { expected: u64, offset: u64 },
    /// The chunk is inconsistent in itself (see [`crate::Frame::validate`]).
    #[error("invalid chunk: {0}")]
    Invalid(ValidationError),
}

/// What to do with an accepted chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent {
    /// Keep the chunk's bytes (they continue the body); more chunks follow.
    Partial,
    /// Keep the chunk's bytes: the body is complete and hashes to its GUID.
    /// Commit it; the transfer's answer is `Ok`.
    Complete { guid: Guid, size: u64 },
    /// Drop the chunk: the transfer already failed; more chunks follow.
    Discarded,
    /// The transfer is over and failed: drop what was kept; the transfer's
    /// answer is `Error(reply)` (`too-big` or `guid-mismatch`). The
    /// connection goes on.
    Failed(ErrorReply),
}

#[derive(Debug, Clone)]
struct Transfer {
    user: String,
    guid: Guid,
    size: u64,
    next_offset: u64,
    hasher: blake3::Hasher,
    /// Set once the transfer is known to fail (size over the limit).
    failed: Option<ErrorReply>,
}

/// Checks the chunks of body transfers, one body at a time.
#[derive(Debug, Clone)]
pub struct BodyReceiver {
    size_max: u64,
    current: Option<Transfer>,
}

impl BodyReceiver {
    /// A receiver refusing bodies over `size_max` bytes (`too-big`; the
    /// replica passes the store's message size limit).
    pub fn new(size_max: u64) -> Self {
        BodyReceiver {
            size_max,
            current: None,
        }
    }

    /// The GUID of the body being received, if a transfer is under way.
    pub fn in_progress(&self) -> Option<&Guid> {
        self.current.as_ref().map(|t| &t.guid)
    }

    /// Forget a transfer under way (the connection ended).
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// Take the next chunk. An `Err` ends the connection; the receiver is
    /// then reset.
    pub fn accept(&mut self, chunk: &Body) -> Result<BodyEvent, BodyError> {
        let result = self.accept_inner(chunk);
        if result.is_err() {
            self.current = None;
        }
        result
    }

    fn accept_inner(&mut self, chunk: &Body) -> Result<BodyEvent, BodyError> {
        check_body(chunk).map_err(BodyError::Invalid)?;
        let mut t = match self.current.take() {
            Some(t) => {
                if t.user != chunk.user || t.guid != chunk.guid || t.size != chunk.size {
                    return Err(BodyError::Interleaved);
                }
                if chunk.offset != t.next_offset {
                    return Err(BodyError::Gap {
                        expected: t.next_offset,
                        offset: chunk.offset,
                    });
                }
                t
            }
            None => {
                if chunk.offset != 0 {
                    return Err(BodyError::NotFirst {
                        offset: chunk.offset,
                    });
                }
                let failed = (chunk.size > self.size_max).then(|| {
                    ErrorReply::new(
                        ErrorCode::TooBig,
                        format!(
                            "body of {} bytes exceeds the limit of {} bytes",
                            chunk.size, self.size_max
                        ),
                    )
                });
                Transfer {
                    user: chunk.user.clone(),
                    guid: chunk.guid,
                    size: chunk.size,
                    next_offset: 0,
                    hasher: blake3::Hasher::new(),
                    failed,
                }
            }
        };
        t.next_offset += chunk.bytes.len() as u64;
        if t.failed.is_none() {
            t.hasher.update(&chunk.bytes);
        }
        if !chunk.last {
            let event = if t.failed.is_some() {
                BodyEvent::Discarded
            } else {
                BodyEvent::Partial
            };
            self.current = Some(t);
            return Ok(event);
        }
        if let Some(reply) = t.failed {
            return Ok(BodyEvent::Failed(reply));
        }
        let got = t.hasher.finalize();
        if *got.as_bytes() == t.guid {
            Ok(BodyEvent::Complete {
                guid: t.guid,
                size: t.size,
            })
        } else {
            Ok(BodyEvent::Failed(ErrorReply::new(
                ErrorCode::GuidMismatch,
                format!(
                    "{} bytes received hash to {}, not to their GUID {}",
                    t.size,
                    got.to_hex(),
                    blake3::Hash::from_bytes(t.guid).to_hex()
                ),
            )))
        }
    }
}
