//! muxado frames: the 8-byte header and the four frame bodies, encoded and
//! decoded without IO so the session, the fuzzer and the tests share one codec.
//!
//! Header (big-endian): 24-bit payload length | type (high nibble) + flags
//! (low nibble) | 32-bit stream id (top bit ignored).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 8;
/// Largest payload the 24-bit length field can describe.
pub const MAX_PAYLOAD_LEN: usize = 0x00FF_FFFF;
/// Largest GOAWAY body we accept: the 8 fixed bytes plus a debug message.
pub const MAX_GOAWAY_LEN: usize = 8 + 64 * 1024;
/// Stream ids are 31 bits; the top bit is reserved and ignored.
pub const STREAM_ID_MASK: u32 = 0x7FFF_FFFF;

/// Flag: the sender will write no more on this stream.
pub const FLAG_FIN: u8 = 0x1;
/// Flag: this frame opens the stream.
pub const FLAG_SYN: u8 = 0x2;

const TYPE_RST: u8 = 0;
const TYPE_DATA: u8 = 1;
const TYPE_WNDINC: u8 = 2;
const TYPE_GOAWAY: u8 = 3;

/// muxado error codes, carried by RST and GOAWAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub const NONE: Self = Self(0);
    pub const PROTOCOL: Self = Self(1);
    pub const INTERNAL: Self = Self(2);
    pub const FLOW_CONTROL: Self = Self(3);
    pub const STREAM_CLOSED: Self = Self(4);
    pub const STREAM_REFUSED: Self = Self(5);
    pub const STREAM_CANCELLED: Self = Self(6);
    pub const STREAM_RESET: Self = Self(7);
    pub const FRAME_SIZE: Self = Self(8);
    pub const ACCEPT_QUEUE_FULL: Self = Self(9);
    pub const ENHANCE_YOUR_CALM: Self = Self(0xA);
    pub const REMOTE_GONE_AWAY: Self = Self(0xB);
    pub const STREAMS_EXHAUSTED: Self = Self(0xC);
    pub const WRITE_TIMEOUT: Self = Self(0xD);
    pub const SESSION_CLOSED: Self = Self(0xE);
    pub const PEER_EOF: Self = Self(0xF);
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Rst {
        stream_id: u32,
        code: ErrorCode,
    },
    Data {
        stream_id: u32,
        syn: bool,
        fin: bool,
        payload: Bytes,
    },
    WndInc {
        stream_id: u32,
        increment: u32,
    },
    GoAway {
        last_stream_id: u32,
        code: ErrorCode,
        message: Bytes,
    },
}

/// Why a byte sequence is not a valid frame. Every variant is a protocol
/// error for the whole session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The type nibble is not RST, DATA, WNDINC or GOAWAY.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// RST, DATA and WNDINC must name a stream; GOAWAY must not.
    #[error("frame type {typ} on stream {stream_id} is not allowed")]
    BadStreamId { typ: u8, stream_id: u32 },
    /// RST and WNDINC bodies are exactly 4 bytes; GOAWAY at least 8.
    #[error("frame type {typ} with length {len} is malformed")]
    BadLength { typ: u8, len: usize },
    /// A window increment of zero is meaningless and rejected.
    #[error("zero window increment on stream {0}")]
    ZeroIncrement(u32),
}

/// A parsed header, before its body has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub typ: u8,
    pub flags: u8,
    pub stream_id: u32,
}

impl Header {
    /// Parses and validates the 8 header bytes, so a hostile length is
    /// rejected before any body is buffered.
    pub fn parse(b: [u8; HEADER_LEN]) -> Result<Self, FrameError> {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        let typ = b[3] >> 4;
        let flags = b[3] & 0x0F;
        let stream_id = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) & STREAM_ID_MASK;
        let bad_len = || FrameError::BadLength { typ, len };
        match typ {
            TYPE_RST | TYPE_WNDINC => {
                if len != 4 {
                    return Err(bad_len());
                }
            }
            TYPE_DATA => {}
            TYPE_GOAWAY => {
                if !(8..=MAX_GOAWAY_LEN).contains(&len) {
                    return Err(bad_len());
                }
            }
            other => return Err(FrameError::UnknownType(other)),
        }
        let needs_stream = typ != TYPE_GOAWAY;
        if needs_stream == (stream_id == 0) {
            return Err(FrameError::BadStreamId { typ, stream_id });
        }
        Ok(Header {
            len,
            typ,
            flags,
            stream_id,
        })
    }

    /// Builds the frame from this header and its complete body.
    pub fn with_body(self, mut body: Bytes) -> Result<Frame, FrameError> {
        debug_assert_eq!(body.len(), self.len);
        Ok(match self.typ {
            TYPE_RST => Frame::Rst {
                stream_id: self.stream_id,
                code: ErrorCode(body.get_u32()),
            },
            TYPE_DATA => Frame::Data {
                stream_id: self.stream_id,
                syn: self.flags & FLAG_SYN != 0,
                fin: self.flags & FLAG_FIN != 0,
                payload: body,
            },
            TYPE_WNDINC => {
                let increment = body.get_u32();
                if increment == 0 {
                    return Err(FrameError::ZeroIncrement(self.stream_id));
                }
                Frame::WndInc {
                    stream_id: self.stream_id,
                    increment,
                }
            }
            TYPE_GOAWAY => {
                let last_stream_id = body.get_u32() & STREAM_ID_MASK;
                let code = ErrorCode(body.get_u32());
                Frame::GoAway {
                    last_stream_id,
                    code,
                    message: body,
                }
            }
            other => return Err(FrameError::UnknownType(other)),
        })
    }
}

/// Decodes one frame from the front of `buf`, consuming it. `Ok(None)` means
/// more bytes are needed. Used by the fuzzer and tests; the session reads the
/// header first so it can check flow control before buffering the body.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&buf[..HEADER_LEN]);
    let header = Header::parse(head)?;
    if buf.len() < HEADER_LEN + header.len {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(header.len).freeze();
    header.with_body(body).map(Some)
}

fn put_header(out: &mut BytesMut, len: usize, typ: u8, flags: u8, stream_id: u32) {
    let len = (len as u32) & MAX_PAYLOAD_LEN as u32;
    out.put_u8((len >> 16) as u8);
    out.put_u16(len as u16);
    out.put_u8((typ << 4) | (flags & 0x0F));
    out.put_u32(stream_id & STREAM_ID_MASK);
}

impl Frame {
    /// Appends the encoded frame. DATA payloads longer than
    /// [`MAX_PAYLOAD_LEN`] are the caller's bug: the session never builds one.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Rst { stream_id, code } => {
                put_header(out, 4, TYPE_RST, 0, *stream_id);
                out.put_u32(code.0);
            }
            Frame::Data {
                stream_id,
                syn,
                fin,
                payload,
            } => {
                let flags = if *syn { FLAG_SYN } else { 0 } | if *fin { FLAG_FIN } else { 0 };
                put_header(out, payload.len(), TYPE_DATA, flags, *stream_id);
                out.extend_from_slice(payload);
            }
            Frame::WndInc {
                stream_id,
                increment,
            } => {
                put_header(out, 4, TYPE_WNDINC, 0, *stream_id);
                out.put_u32(*increment);
            }
            Frame::GoAway {
                last_stream_id,
                code,
                message,
            } => {
                // The length counts the 8 fixed bytes as well as the message
                // (muxado 0.5's encoder gets this wrong).
                put_header(out, 8 + message.len(), TYPE_GOAWAY, 0, 0);
                out.put_u32(*last_stream_id & STREAM_ID_MASK);
                out.put_u32(code.0);
                out.extend_from_slice(message);
            }
        }
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) {
        let mut buf = BytesMut::from(&f.to_bytes()[..]);
        assert_eq!(decode(&mut buf).unwrap(), Some(f));
        assert!(buf.is_empty());
    }

    #[test]
    fn every_frame_roundtrips() {
        roundtrip(Frame::Rst {
            stream_id: 3,
            code: ErrorCode::FLOW_CONTROL,
        });
        roundtrip(Frame::Data {
            stream_id: 5,
            syn: true,
            fin: false,
            payload: Bytes::from_static(b"hello"),
        });
        roundtrip(Frame::Data {
            stream_id: 5,
            syn: false,
            fin: true,
            payload: Bytes::new(),
        });
        roundtrip(Frame::WndInc {
            stream_id: 2,
            increment: 0x40000,
        });
        roundtrip(Frame::GoAway {
            last_stream_id: 9,
            code: ErrorCode::PROTOCOL,
            message: Bytes::from_static(b"bye"),
        });
    }

    #[test]
    fn first_data_frame_header_byte_is_0x12() {
        let f = Frame::Data {
            stream_id: 3,
            syn: true,
            fin: false,
            payload: Bytes::from_static(b"ab"),
        };
        assert_eq!(&f.to_bytes()[..8], &[0, 0, 2, 0x12, 0, 0, 0, 3]);
    }

    #[test]
    fn goaway_length_counts_the_fixed_part() {
        let f = Frame::GoAway {
            last_stream_id: 0,
            code: ErrorCode::NONE,
            message: Bytes::from_static(b"xyz"),
        };
        let b = f.to_bytes();
        assert_eq!(&b[..4], &[0, 0, 11, 0x30]);
        assert_eq!(b.len(), 8 + 11);
    }

    #[test]
    fn partial_input_needs_more() {
        let b = Frame::WndInc {
            stream_id: 2,
            increment: 7,
        }
        .to_bytes();
        for cut in 0..b.len() {
            let mut buf = BytesMut::from(&b[..cut]);
            assert_eq!(decode(&mut buf).unwrap(), None);
        }
    }

    #[test]
    fn malformed_headers_are_rejected() {
        // unknown type 5
        assert!(matches!(
            Header::parse([0, 0, 0, 0x50, 0, 0, 0, 1]),
            Err(FrameError::UnknownType(5))
        ));
        // DATA on stream 0
        assert!(Header::parse([0, 0, 0, 0x10, 0, 0, 0, 0]).is_err());
        // GOAWAY on a stream
        assert!(Header::parse([0, 0, 8, 0x30, 0, 0, 0, 1]).is_err());
        // RST of the wrong length
        assert!(Header::parse([0, 0, 5, 0x00, 0, 0, 0, 1]).is_err());
        // GOAWAY shorter than 8
        assert!(Header::parse([0, 0, 4, 0x30, 0, 0, 0, 0]).is_err());
        // zero window increment
        let mut buf = BytesMut::from(&[0u8, 0, 4, 0x20, 0, 0, 0, 1, 0, 0, 0, 0][..]);
        assert!(decode(&mut buf).is_err());
    }

    #[test]
    fn top_bit_of_stream_id_is_ignored() {
        let h = Header::parse([0, 0, 0, 0x10, 0x80, 0, 0, 7]).unwrap();
        assert_eq!(h.stream_id, 7);
    }
}
