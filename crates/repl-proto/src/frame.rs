//! Framing: [`Frame`]s to bytes and a streaming [`FrameDecoder`] from bytes.
//!
//! This module owns the frame layout of docs/replication.md:
//!
//! ```text
//! length: u32 big-endian | type: u8 | payload: postcard | crc32: u32 big-endian
//! ```
//!
//! `length` counts type + payload + CRC (so it is at least
//! [`FRAME_LEN_MIN`]) and is at most the decoder's limit ([`FRAME_LEN_MAX`],
//! or [`HANDSHAKE_FRAME_LEN_MAX`] before the handshake completes). The CRC is
//! CRC-32 (IEEE) over the type byte and the payload.
//!
//! Every way a byte stream can be wrong is a [`FrameError`]; none panics. The
//! decoder's buffer never exceeds [`FrameDecoder::buffer_bound`]: one frame of
//! the current limit plus its header plus [`READ_CHUNK_BYTES`].

use crate::limits::{
    FRAME_HEADER_BYTES, FRAME_LEN_MAX, FRAME_LEN_MIN, HANDSHAKE_FRAME_LEN_MAX, PROTOCOL_VERSION,
    READ_CHUNK_BYTES,
};
use crate::message::{ErrorCode, ErrorReply, Frame, FrameType, ValidationError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Buffer capacity the decoder keeps between frames, in bytes: 2 MiB (a
/// body chunk frame and then some). Above it, the buffer shrinks once
/// drained.
const BUFFER_KEEP_BYTES: usize = 2 * 1024 * 1024;

/// Why bytes from a peer are not a valid frame. Every one of them ends the
/// connection (send [`FrameError::to_frame`] first when possible).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// `length` is below the minimum frame (type + CRC).
    #[error("frame length {length} is below the minimum of {FRAME_LEN_MIN}")]
    TooShort { length: u32 },
    /// `length` is above the decoder's limit.
    #[error("frame length {length} exceeds the limit of {max} bytes")]
    TooLong { length: u32, max: u32 },
    /// The CRC does not match the type and payload.
    #[error("frame CRC mismatch: the frame says {stated:#010x}, its bytes give {computed:#010x}")]
    Crc { stated: u32, computed: u32 },
    /// Version 1 defines no frame type with this number.
    #[error("unknown frame type {frame_type:#04x}")]
    UnknownType { frame_type: u8 },
    /// A `Hello` or `Challenge` of another protocol version.
    #[error(
        "{frame_type} of protocol version {version}; this peer speaks version {PROTOCOL_VERSION}"
    )]
    Version { frame_type: FrameType, version: u32 },
    /// The payload does not decode as the type's message.
    #[error("undecodable {frame_type} payload: {detail}")]
    Payload {
        frame_type: FrameType,
        detail: String,
    },
    /// The payload decoded but bytes were left over (or, for
    /// [`decode_frame`], bytes follow the frame).
    #[error("{count} trailing bytes after a {frame_type}")]
    TrailingBytes { frame_type: FrameType, count: usize },
    /// The message decoded but breaks a limit or contradicts itself.
    #[error("invalid {frame_type}: {error}")]
    Invalid {
        frame_type: FrameType,
        error: ValidationError,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
}

impl FrameError {
    /// The error code to tell the peer: `version` for another version,
    /// `too-big` for a frame or field over a limit, `protocol` otherwise.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::Version { .. } => ErrorCode::Version,
            FrameError::TooLong { .. }
            | FrameError::Invalid {
                error: ValidationError::TooMany { .. } | ValidationError::TooLong { .. },
                ..
            } => ErrorCode::TooBig,
            _ => ErrorCode::Protocol,
        }
    }

    /// The `Error` frame that tells the peer what was wrong.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(ErrorReply::new(self.code(), self.to_string()))
    }
}

/// Why a frame is not sent: it breaks the protocol's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("invalid {frame_type}: {error}")]
    Invalid {
        frame_type: FrameType,
        error: ValidationError,
    },
    /// The encoded frame's `length` would exceed [`FRAME_LEN_MAX`]: split it
    /// (fewer records per message).
    #[error("{frame_type} frame of {length} bytes exceeds the limit of {max} bytes")]
    TooLong {
        frame_type: FrameType,
        length: usize,
        max: u32,
    },
}

fn put<T: Serialize>(out: Vec<u8>, value: &T) -> Vec<u8> {
    // Serializing our own message types into a Vec cannot fail: every list
    // has a known length and there are no maps or non-string keys.
    postcard::to_extend(value, out).expect("postcard serialization into a Vec")
}

/// Encode a frame: length, type, postcard payload, CRC. Always succeeds; the
/// result may break the protocol's limits (a peer then refuses it): use
/// [`try_encode_frame`] for frames built from data of unknown size.
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    out.push(frame.frame_type().as_u8());
    out = match frame {
        Frame::Hello(m) => put(out, m),
        Frame::Challenge(m) => put(out, m),
        Frame::Proof(m) => put(out, m),
        Frame::Welcome(m) => put(out, m),
        Frame::Refused(m) | Frame::Error(m) => put(out, m),
        Frame::ListUsers(m) => put(out, m),
        Frame::GetUser(m) => put(out, m),
        Frame::ApplyAccount(m) => put(out, m),
        Frame::HaveGuids(m) => put(out, m),
        Frame::Body(m) => {
            out.reserve(m.bytes.len() + m.user.len() + 64);
            put(out, m)
        }
        Frame::ApplyMailbox(m) => put(out, m),
        Frame::DeleteMailbox(m) => put(out, m),
        Frame::ApplySubscriptions(m) => put(out, m),
        Frame::Commit(m) => put(out, m),
        Frame::DeleteUser(m) => put(out, m),
        Frame::FetchBody(m) => put(out, m),
        Frame::Users(m) => put(out, m),
        Frame::UserState(m) => put(out, m),
        Frame::Missing(m) => put(out, m),
        Frame::Applied(m) => put(out, m),
        Frame::Pong(m) => put(out, m),
        Frame::Ping | Frame::Ok => out,
    };
    let crc = crc32fast::hash(&out[FRAME_HEADER_BYTES..]);
    out.extend_from_slice(&crc.to_be_bytes());
    // A frame longer than u32::MAX would need a 4 GiB message in memory; the
    // length field then wraps and the peer refuses the frame.
    let length = (out.len() - FRAME_HEADER_BYTES) as u32;
    out[..FRAME_HEADER_BYTES].copy_from_slice(&length.to_be_bytes());
    out
}

/// Encode a frame after checking it against every limit: the message's own
/// ([`Frame::validate`]) and the frame length ([`FRAME_LEN_MAX`]).
pub fn try_encode_frame(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    frame.validate().map_err(|error| EncodeError::Invalid {
        frame_type: frame.frame_type(),
        error,
    })?;
    let bytes = encode_frame(frame);
    let length = bytes.len() - FRAME_HEADER_BYTES;
    if length > FRAME_LEN_MAX as usize {
        return Err(EncodeError::TooLong {
            frame_type: frame.frame_type(),
            length,
            max: FRAME_LEN_MAX,
        });
    }
    Ok(bytes)
}

fn take<T: DeserializeOwned>(frame_type: FrameType, payload: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(FrameError::TrailingBytes {
            frame_type,
            count: rest.len(),
        }),
        Err(e) => Err(FrameError::Payload {
            frame_type,
            detail: e.to_string(),
        }),
    }
}

/// Read the version varint that starts a `Hello` or `Challenge` payload.
fn peek_version(frame_type: FrameType, payload: &[u8]) -> Result<(), FrameError> {
    match postcard::take_from_bytes::<u32>(payload) {
        Ok((PROTOCOL_VERSION, _)) => Ok(()),
        Ok((version, _)) => Err(FrameError::Version {
            frame_type,
            version,
        }),
        Err(e) => Err(FrameError::Payload {
            frame_type,
            detail: e.to_string(),
        }),
    }
}

fn empty(frame_type: FrameType, payload: &[u8], frame: Frame) -> Result<Frame, FrameError> {
    if payload.is_empty() {
        Ok(frame)
    } else {
        Err(FrameError::TrailingBytes {
            frame_type,
            count: payload.len(),
        })
    }
}

/// Decode one frame's type byte and payload (after the CRC check).
fn decode_payload(type_byte: u8, payload: &[u8]) -> Result<Frame, FrameError> {
    let t = FrameType::from_u8(type_byte).ok_or(FrameError::UnknownType {
        frame_type: type_byte,
    })?;
    let frame = match t {
        FrameType::Hello => {
            peek_version(t, payload)?;
            Frame::Hello(take(t, payload)?)
        }
        FrameType::Challenge => {
            peek_version(t, payload)?;
            Frame::Challenge(take(t, payload)?)
        }
        FrameType::Proof => Frame::Proof(take(t, payload)?),
        FrameType::Welcome => Frame::Welcome(take(t, payload)?),
        FrameType::Refused => Frame::Refused(take(t, payload)?),
        FrameType::ListUsers => Frame::ListUsers(take(t, payload)?),
        FrameType::GetUser => Frame::GetUser(take(t, payload)?),
        FrameType::ApplyAccount => Frame::ApplyAccount(take(t, payload)?),
        FrameType::HaveGuids => Frame::HaveGuids(take(t, payload)?),
        FrameType::Body => Frame::Body(take(t, payload)?),
        FrameType::ApplyMailbox => Frame::ApplyMailbox(take(t, payload)?),
        FrameType::DeleteMailbox => Frame::DeleteMailbox(take(t, payload)?),
        FrameType::ApplySubscriptions => Frame::ApplySubscriptions(take(t, payload)?),
        FrameType::Commit => Frame::Commit(take(t, payload)?),
        FrameType::DeleteUser => Frame::DeleteUser(take(t, payload)?),
        FrameType::FetchBody => Frame::FetchBody(take(t, payload)?),
        FrameType::Ping => empty(t, payload, Frame::Ping)?,
        FrameType::Users => Frame::Users(take(t, payload)?),
        FrameType::UserState => Frame::UserState(take(t, payload)?),
        FrameType::Missing => Frame::Missing(take(t, payload)?),
        FrameType::Applied => Frame::Applied(take(t, payload)?),
        FrameType::Ok => empty(t, payload, Frame::Ok)?,
        FrameType::Pong => Frame::Pong(take(t, payload)?),
        FrameType::Error => Frame::Error(take(t, payload)?),
    };
    frame.validate().map_err(|error| FrameError::Invalid {
        frame_type: t,
        error,
    })?;
    Ok(frame)
}

/// Decode exactly one whole frame from `bytes` (length field included), with
/// the limit [`FRAME_LEN_MAX`]. Bytes after the frame are an error.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    let mut decoder = FrameDecoder::new();
    let taken = decoder.feed(bytes);
    match decoder.next_frame()? {
        Some(frame) => match decoder.buffered() + (bytes.len() - taken) {
            0 => Ok(frame),
            count => Err(FrameError::TrailingBytes {
                frame_type: frame.frame_type(),
                count,
            }),
        },
        None => Err(FrameError::Truncated {
            buffered: decoder.buffered(),
        }),
    }
}

/// A streaming frame decoder: feed it bytes as they arrive, take frames out.
///
/// ```
/// use slotmail_repl_proto::{encode_frame, Frame, FrameDecoder};
///
/// let bytes = [encode_frame(&Frame::Ping), encode_frame(&Frame::Ok)].concat();
/// let mut decoder = FrameDecoder::new();
/// let mut frames = Vec::new();
/// decoder.push(&bytes, &mut frames).unwrap();
/// assert_eq!(frames, [Frame::Ping, Frame::Ok]);
/// ```
///
/// The first error is final: every later call of [`FrameDecoder::next_frame`]
/// returns it again, and further input is discarded.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` before this are consumed.
    start: usize,
    frame_len_max: u32,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder for an established stream: frames up to [`FRAME_LEN_MAX`].
    pub fn new() -> Self {
        Self::with_frame_len_max(FRAME_LEN_MAX)
    }

    /// A decoder for the handshake: frames up to [`HANDSHAKE_FRAME_LEN_MAX`].
    /// Call [`FrameDecoder::set_frame_len_max`] with [`FRAME_LEN_MAX`] once
    /// the handshake succeeded.
    pub fn for_handshake() -> Self {
        Self::with_frame_len_max(HANDSHAKE_FRAME_LEN_MAX)
    }

    /// A decoder with its own frame length limit (at least
    /// [`FRAME_LEN_MIN`], at most [`FRAME_LEN_MAX`]; clamped to that range).
    pub fn with_frame_len_max(frame_len_max: u32) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            frame_len_max: frame_len_max.clamp(FRAME_LEN_MIN, FRAME_LEN_MAX),
            failed: None,
        }
    }

    /// Change the frame length limit (clamped as in
    /// [`FrameDecoder::with_frame_len_max`]). Lowering it below what is
    /// already buffered is allowed: the bound then holds again once the
    /// buffered bytes are consumed.
    pub fn set_frame_len_max(&mut self, frame_len_max: u32) {
        self.frame_len_max = frame_len_max.clamp(FRAME_LEN_MIN, FRAME_LEN_MAX);
    }

    /// The current frame length limit.
    pub fn frame_len_max(&self) -> u32 {
        self.frame_len_max
    }

    /// The most bytes the decoder will ever hold at the current limit: one
    /// frame's header and `length`, plus [`READ_CHUNK_BYTES`].
    pub fn buffer_bound(&self) -> usize {
        FRAME_HEADER_BYTES + self.frame_len_max as usize + READ_CHUNK_BYTES
    }

    /// Bytes fed but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The error the decoder stopped at, if any.
    pub fn error(&self) -> Option<&FrameError> {
        self.failed.as_ref()
    }

    /// Take bytes read from the peer. Returns how many were taken: all of
    /// `input` unless that would hold more than
    /// [`FrameDecoder::buffer_bound`]; the caller then takes frames out with
    /// [`FrameDecoder::next_frame`] and feeds the rest. Once every frame has
    /// been taken out, a feed of up to [`READ_CHUNK_BYTES`] is always taken
    /// whole. After an error, input is discarded (and counted as taken).
    pub fn feed(&mut self, input: &[u8]) -> usize {
        if self.failed.is_some() {
            return input.len();
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
            // After a large frame, give its memory back once the buffer is
            // nearly empty; keep enough for body chunks to avoid regrowing.
            if self.buf.capacity() > BUFFER_KEEP_BYTES && self.buf.len() < READ_CHUNK_BYTES {
                self.buf.shrink_to(READ_CHUNK_BYTES);
            }
        }
        let room = self.buffer_bound().saturating_sub(self.buf.len());
        let n = room.min(input.len());
        self.buf.extend_from_slice(&input[..n]);
        n
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.failed = Some(error.clone());
        self.buf = Vec::new();
        self.start = 0;
        error
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the
    /// error that ends the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.start..];
        let Some((header, rest)) = avail.split_first_chunk::<FRAME_HEADER_BYTES>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(*header);
        if length < FRAME_LEN_MIN {
            return Err(self.fail(FrameError::TooShort { length }));
        }
        if length > self.frame_len_max {
            return Err(self.fail(FrameError::TooLong {
                length,
                max: self.frame_len_max,
            }));
        }
        let Some(body) = rest.get(..length as usize) else {
            return Ok(None);
        };
        let (covered, crc) = body.split_at(body.len() - 4);
        let stated = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = crc32fast::hash(covered);
        if stated != computed {
            return Err(self.fail(FrameError::Crc { stated, computed }));
        }
        let result = decode_payload(covered[0], &covered[1..]);
        self.start += FRAME_HEADER_BYTES + length as usize;
        match result {
            Ok(frame) => Ok(Some(frame)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Feed all of `input`, appending every complete frame to `out`. Stops at
    /// the first error (frames before it are in `out`).
    pub fn push(&mut self, input: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        let mut input = input;
        loop {
            let n = self.feed(input);
            input = &input[n..];
            while let Some(frame) = self.next_frame()? {
                out.push(frame);
            }
            if input.is_empty() {
                return Ok(());
            }
        }
    }

    /// Call when the peer closed the stream: an error if it ended inside a
    /// frame (or the decoder had failed).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}
