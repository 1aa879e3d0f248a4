//! `compression`: gzip or deflate (and, for Traffic Policy's
//! compress-response, br and zstd) chosen by the client's Accept-Encoding
//! (RFC 9110 q-values), streamed chunk by chunk so the first bytes leave
//! before the upstream finishes. Responses already encoded, partial, or
//! marked `no-transform` pass untouched.

use std::io::Write;

use bytes::Bytes;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression as Level;
use http::{HeaderMap, HeaderValue, Method};

use crate::chain::{Cx, Facts, HeaderEdits, RequestInfo, ResponseFlow, RouteModule, Stage};
use crate::decisions::CompressionDecision;

/// Content codings the module produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    pub const ALL: [Coding; 4] = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd];

    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding named by an Accept-Encoding token (`gzip`, `br`, ...).
    pub fn from_token(token: &str) -> Option<Coding> {
        Coding::ALL.into_iter().find(|c| c.token() == token)
    }
}

/// Picks the coding the client prefers among `supported` (first wins a
/// tie). `identity` is always acceptable, so a refusal is `None`.
pub fn negotiate(accept_encoding: &str, supported: &[Coding]) -> Option<Coding> {
    let mut star: Option<f32> = None;
    let mut explicit: Vec<(String, f32)> = Vec::new();
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if coding.is_empty() {
            continue;
        }
        let mut q = 1.0f32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
        }
        if coding == "*" {
            star = Some(q);
        } else {
            // `x-gzip` is gzip (RFC 9110 §8.4.1.3).
            let coding = if coding == "x-gzip" {
                "gzip".into()
            } else {
                coding
            };
            explicit.push((coding, q));
        }
    }
    let q_of = |c: Coding| {
        explicit
            .iter()
            .find(|(name, _)| name == c.token())
            .map(|(_, q)| *q)
            .or(star)
            .unwrap_or(0.0)
    };
    let mut best: Option<(Coding, f32)> = None;
    for &c in supported {
        let q = q_of(c);
        if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((c, q));
        }
    }
    best.map(|(c, _)| c)
}

/// A streaming encoder for one response.
pub struct Encoder {
    inner: Inner,
    bytes_in: u64,
    bytes_out: u64,
    finished: bool,
}

enum Inner {
    Gzip(GzEncoder<Vec<u8>>),
    Deflate(ZlibEncoder<Vec<u8>>),
    /// Taken when the stream ends: brotli writes its last block on
    /// `into_inner`.
    Brotli(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("bytes_in", &self.bytes_in)
            .field("bytes_out", &self.bytes_out)
            .finish()
    }
}

impl Encoder {
    pub fn new(coding: Coding) -> Self {
        // Level 6 is zlib's default and nginx's common choice.
        let level = Level::new(6);
        let inner = match coding {
            Coding::Gzip => Inner::Gzip(GzEncoder::new(Vec::new(), level)),
            // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2).
            Coding::Deflate => Inner::Deflate(ZlibEncoder::new(Vec::new(), level)),
            // Quality 5 and zstd level 3 match level 6's speed class:
            // on-the-fly compression must not cost more than the transfer.
            Coding::Brotli => Inner::Brotli(Some(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                5,
                22,
            )))),
            Coding::Zstd => match zstd::stream::write::Encoder::new(Vec::new(), 3) {
                Ok(e) => Inner::Zstd(e),
                // zstd only fails to allocate its context: fall back to
                // gzip rather than sending nothing.
                Err(_) => Inner::Gzip(GzEncoder::new(Vec::new(), level)),
            },
        };
        Encoder {
            inner,
            bytes_in: 0,
            bytes_out: 0,
            finished: false,
        }
    }

    /// Compresses `chunk` and returns what can be sent now: a sync flush
    /// per chunk keeps the stream moving. `end` finishes the stream.
    pub fn encode(&mut self, chunk: &[u8], end: bool) -> Bytes {
        if self.finished {
            return Bytes::new();
        }
        self.bytes_in += chunk.len() as u64;
        // Writes into a Vec cannot fail.
        let out = match &mut self.inner {
            Inner::Gzip(e) => {
                let _ = write_chunk(e, chunk, end);
                std::mem::take(e.get_mut())
            }
            Inner::Deflate(e) => {
                let _ = write_chunk(e, chunk, end);
                std::mem::take(e.get_mut())
            }
            Inner::Zstd(e) => {
                let _ = write_chunk(e, chunk, end);
                std::mem::take(e.get_mut())
            }
            Inner::Brotli(slot) => match slot.take() {
                Some(mut e) => {
                    let _ = e.write_all(chunk);
                    if end {
                        e.into_inner()
                    } else {
                        if !chunk.is_empty() {
                            let _ = e.flush();
                        }
                        let out = std::mem::take(e.get_mut());
                        *slot = Some(e);
                        out
                    }
                }
                None => Vec::new(),
            },
        };
        self.finished = end;
        self.bytes_out += out.len() as u64;
        Bytes::from(out)
    }

    /// Input bytes minus output bytes (negative when it grew).
    pub fn bytes_saved(&self) -> i64 {
        self.bytes_in as i64 - self.bytes_out as i64
    }
}

trait Finish: Write {
    fn finish_stream(&mut self) -> std::io::Result<()>;
}

impl Finish for GzEncoder<Vec<u8>> {
    fn finish_stream(&mut self) -> std::io::Result<()> {
        self.try_finish()
    }
}

impl Finish for ZlibEncoder<Vec<u8>> {
    fn finish_stream(&mut self) -> std::io::Result<()> {
        self.try_finish()
    }
}

impl Finish for zstd::stream::write::Encoder<'static, Vec<u8>> {
    fn finish_stream(&mut self) -> std::io::Result<()> {
        self.do_finish()
    }
}

fn write_chunk(e: &mut impl Finish, chunk: &[u8], end: bool) -> std::io::Result<()> {
    e.write_all(chunk)?;
    if end {
        e.finish_stream()
    } else if !chunk.is_empty() {
        e.flush()
    } else {
        Ok(())
    }
}

/// The compression module: gzip and deflate.
#[derive(Debug, Clone)]
pub struct Compression {
    supported: Vec<Coding>,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            supported: vec![Coding::Gzip, Coding::Deflate],
        }
    }
}

/// Whether a response may be re-encoded at all.
fn compressible(method: &Method, status: u16, headers: &HeaderMap) -> bool {
    if *method == Method::HEAD || status < 200 || status == 204 || status == 206 || status == 304 {
        return false;
    }
    if headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return false;
    }
    !headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains("no-transform"))
        })
}

impl RouteModule for Compression {
    /// The encoder chosen for this response, if any.
    type State = Option<Encoder>;

    fn stage(&self) -> Stage {
        Stage::Compression
    }

    fn on_response(
        &self,
        req: &RequestInfo<'_>,
        status: u16,
        out: &mut dyn HeaderEdits,
        cx: Cx<'_, Option<Encoder>>,
    ) -> ResponseFlow {
        *cx.state = encode_response(req, status, out, cx.facts, &self.supported);
        ResponseFlow::Continue
    }

    fn filters_response_body(&self) -> bool {
        true
    }

    fn response_body(&self, chunk: &mut Option<Bytes>, end: bool, cx: Cx<'_, Option<Encoder>>) {
        encode_body(cx.state.as_mut(), chunk, end, cx.facts);
    }
}

/// Chooses a coding among `supported` for this response and, if one
/// applies, rewrites the head for it and returns the body's encoder. A
/// response another module already encodes is left alone.
pub fn encode_response(
    req: &RequestInfo<'_>,
    status: u16,
    out: &mut dyn HeaderEdits,
    facts: &mut Facts,
    supported: &[Coding],
) -> Option<Encoder> {
    let decided = &mut facts.decisions.compression;
    if decided.is_some_and(|d| d.coding.is_some()) {
        // compress-response already chose (it runs before this module).
        return None;
    }
    *decided = Some(CompressionDecision {
        coding: None,
        bytes_saved: 0,
    });
    let accept = req.header("accept-encoding")?;
    if !compressible(req.method, status, out.headers()) {
        return None;
    }
    let coding = negotiate(accept, supported)?;
    // The validator names the identity bytes; a strong one would lie.
    let weak_etag = out
        .headers()
        .get(http::header::ETAG)
        .and_then(|e| e.to_str().ok())
        .filter(|s| !s.starts_with("W/"))
        .and_then(|s| HeaderValue::from_str(&format!("W/{s}")).ok());
    // The encoded length is unknown until the end: an HTTP/1.1 client
    // needs chunked framing to keep the connection (HTTP/2 drops the
    // header), and byte ranges of the identity no longer apply.
    out.remove(&http::header::CONTENT_LENGTH);
    out.remove(&http::header::ACCEPT_RANGES);
    out.insert(
        http::header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    if let Some(weak) = weak_etag {
        out.insert(http::header::ETAG, weak);
    }
    out.insert(
        http::header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    out.append(
        http::header::VARY,
        HeaderValue::from_static("Accept-Encoding"),
    );
    *decided = Some(CompressionDecision {
        coding: Some(coding),
        bytes_saved: 0,
    });
    Some(Encoder::new(coding))
}

/// Passes a body chunk through `encoder` (if one was chosen); `end`
/// flushes its tail into the last chunk and records what it saved.
pub fn encode_body(
    encoder: Option<&mut Encoder>,
    chunk: &mut Option<Bytes>,
    end: bool,
    facts: &mut Facts,
) {
    let Some(enc) = encoder else {
        return;
    };
    let out = enc.encode(chunk.as_deref().unwrap_or_default(), end);
    if end {
        if let Some(d) = facts.decisions.compression.as_mut() {
            d.bytes_saved = enc.bytes_saved();
        }
    }
    *chunk = Some(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const BOTH: &[Coding] = &[Coding::Gzip, Coding::Deflate];

    #[test]
    fn negotiation_follows_q_values() {
        assert_eq!(negotiate("gzip, deflate", BOTH), Some(Coding::Gzip));
        assert_eq!(negotiate("deflate", BOTH), Some(Coding::Deflate));
        assert_eq!(
            negotiate("gzip;q=0.5, deflate", BOTH),
            Some(Coding::Deflate)
        );
        assert_eq!(negotiate("gzip;q=0, deflate;q=0", BOTH), None);
        assert_eq!(negotiate("br", BOTH), None);
        assert_eq!(negotiate("*", BOTH), Some(Coding::Gzip));
        assert_eq!(negotiate("*;q=0.1, gzip;q=0", BOTH), Some(Coding::Deflate));
        assert_eq!(negotiate("identity", BOTH), None);
        assert_eq!(negotiate("X-GZIP", BOTH), Some(Coding::Gzip));
        assert_eq!(negotiate("gzip;q=abc", BOTH), None);
    }

    #[test]
    fn streamed_chunks_decode_to_the_original() {
        let original: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for coding in Coding::ALL {
            let mut enc = Encoder::new(coding);
            let mut wire = Vec::new();
            let mut first_len = 0;
            for (i, chunk) in original.chunks(16_384).enumerate() {
                let out = enc.encode(chunk, false);
                if i == 0 {
                    first_len = out.len();
                }
                wire.extend_from_slice(&out);
            }
            assert!(first_len > 0, "the first chunk is sent before the end");
            wire.extend_from_slice(&enc.encode(&[], true));
            let mut decoded = Vec::new();
            match coding {
                Coding::Gzip => flate2::read::GzDecoder::new(&wire[..]).read_to_end(&mut decoded),
                Coding::Deflate => {
                    flate2::read::ZlibDecoder::new(&wire[..]).read_to_end(&mut decoded)
                }
                Coding::Brotli => {
                    brotli::Decompressor::new(&wire[..], 4096).read_to_end(&mut decoded)
                }
                Coding::Zstd => zstd::stream::read::Decoder::new(&wire[..])
                    .and_then(|mut d| d.read_to_end(&mut decoded)),
            }
            .unwrap();
            assert_eq!(decoded, original);
            assert!(enc.bytes_saved() > 0);
        }
    }

    #[test]
    fn encoded_partial_and_no_transform_responses_pass() {
        let mut h = HeaderMap::new();
        assert!(compressible(&Method::GET, 200, &h));
        assert!(!compressible(&Method::HEAD, 200, &h));
        assert!(!compressible(&Method::GET, 206, &h));
        h.insert("content-encoding", HeaderValue::from_static("br"));
        assert!(!compressible(&Method::GET, 200, &h));
        let mut h = HeaderMap::new();
        h.insert(
            "cache-control",
            HeaderValue::from_static("public, no-transform"),
        );
        assert!(!compressible(&Method::GET, 200, &h));
    }
}
