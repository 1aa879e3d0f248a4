//! Byte framing of typed streams (PROTOCOL.md sections 3-5): sans-IO encoders/decoders plus
//! thin async helpers over `AsyncRead`/`AsyncWrite`.
//!
//! Two framings exist after the u32 big-endian stream type:
//! - RPC: one bare JSON object, no length and no delimiter, and the agent does not FIN after
//!   its request, so the end is found by parsing incrementally.
//! - Proxy header: an i64 *little-endian* length, then that many bytes of JSON, then the
//!   client's bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::msg::{MsgError, ProxyHeader, StreamType, PROXY};

/// Largest RPC request or reply we accept. The biggest legitimate message is a Bind carrying
/// CA bundles, certificates or a traffic policy; 64 KiB is ample and bounds what an
/// unauthenticated stream can make us buffer.
pub const MAX_RPC_BYTES: usize = 64 * 1024;

/// Largest proxy header JSON we accept. Real headers are ~150 bytes; the SDK allocates
/// whatever length it is told, so the edge must never send more either.
pub const MAX_PROXY_HEADER_BYTES: usize = 64 * 1024;

/// Size of the proxy header's length prefix (i64 LE).
const PROXY_LEN_BYTES: usize = 8;

/// Read size for the async helpers: larger than any typical request, small per stream.
const READ_CHUNK: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Proxy header
// ---------------------------------------------------------------------------------------------

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes
/// it. Infallible, and no allocation per field.
fn push_json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// Appends the header JSON in the SDK's key order. Keys must match the
/// serde names on [`ProxyHeader`]; a test pins the two together.
fn push_proxy_header_json(h: &ProxyHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"Id":"#);
    push_json_str(&h.id, out);
    out.extend_from_slice(br#","ClientAddr":"#);
    push_json_str(&h.client_addr, out);
    out.extend_from_slice(br#","Proto":"#);
    push_json_str(&h.proto, out);
    out.extend_from_slice(br#","EdgeType":"#);
    push_json_str(&h.edge_type, out);
    out.extend_from_slice(if h.passthrough_tls {
        br#","PassthroughTLS":true}"#.as_slice()
    } else {
        br#","PassthroughTLS":false}"#.as_slice()
    });
}

/// Appends a whole proxy stream preamble: u32 BE type 3, i64 LE JSON length, JSON. Building
/// it in one buffer lets the caller send it with the SYN frame (the SDK reads headers in its
/// single accept loop, so a split header stalls every tunnel of that agent).
pub fn encode_proxy_header(h: &ProxyHeader, out: &mut Vec<u8>) {
    out.reserve(4 + PROXY_LEN_BYTES + 96 + h.id.len() + h.client_addr.len());
    out.extend_from_slice(&PROXY.to_be_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0; PROXY_LEN_BYTES]);
    push_proxy_header_json(h, out);
    let len = i64::try_from(out.len() - len_at - PROXY_LEN_BYTES).unwrap_or(i64::MAX);
    out[len_at..len_at + PROXY_LEN_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// Validates an announced header length before anything is allocated for it.
fn check_header_len(len: i64, max_len: usize) -> Result<usize, MsgError> {
    if len < 0 {
        return Err(MsgError::NegativeLength(len));
    }
    match usize::try_from(len) {
        Ok(n) if n <= max_len => Ok(n),
        _ => Err(MsgError::HeaderTooLarge {
            len,
            limit: max_len,
        }),
    }
}

/// Decodes a proxy header from the bytes that follow the 4-byte stream type (i64 LE length,
/// then JSON). Returns `Ok(None)` while more bytes are needed, else the header and how many
/// bytes it used; anything after that is the client's data.
pub fn decode_proxy_header(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(ProxyHeader, usize)>, MsgError> {
    let Some((len_bytes, rest)) = buf.split_first_chunk::<PROXY_LEN_BYTES>() else {
        return Ok(None);
    };
    let len = check_header_len(i64::from_le_bytes(*len_bytes), max_len)?;
    let Some(json) = rest.get(..len) else {
        return Ok(None);
    };
    let header = serde_json::from_slice(json)?;
    Ok(Some((header, PROXY_LEN_BYTES + len)))
}

// ---------------------------------------------------------------------------------------------
// Incremental JSON (RPC bodies)
// ---------------------------------------------------------------------------------------------

/// Parses one JSON value from the start of `buf`. Returns `Ok(None)` if the value is not
/// complete yet, otherwise the value and the bytes consumed (leading whitespace included);
/// bytes after it are left alone because nothing delimits an RPC body.
pub fn try_parse_json<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, MsgError> {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<T>();
    match values.next() {
        // Only whitespace so far.
        None => Ok(None),
        Some(Ok(v)) => Ok(Some((v, values.byte_offset()))),
        Some(Err(e)) if e.is_eof() => Ok(None),
        Some(Err(e)) => Err(e.into()),
    }
}

/// Tracks, in O(1) per new byte, whether a top-level JSON object/array may have closed, so
/// `read_json` runs the full parser once per message rather than once per read (a peer
/// dribbling one byte per frame would otherwise cost quadratic parsing).
#[derive(Debug, Default)]
struct EndScanner {
    /// Bytes of the buffer already scanned.
    scanned: usize,
    /// Current nesting depth of `{`/`[`.
    depth: u32,
    /// Inside a string literal.
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
    /// Saw the opening bracket.
    started: bool,
    /// Not bracket-delimited (or the scanner was unsure): parse after every read.
    always: bool,
}

impl EndScanner {
    /// Scans the new tail of `buf`; true when parsing is worth trying.
    fn feed(&mut self, buf: &[u8]) -> bool {
        if self.always {
            return true;
        }
        let new = buf.get(self.scanned..).unwrap_or_default();
        for &b in new {
            self.scanned += 1;
            if !self.started {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b'{' | b'[' => {
                        self.started = true;
                        self.depth = 1;
                    }
                    b'"' => {
                        // A top-level string: it ends at its closing quote.
                        self.started = true;
                        self.in_string = true;
                    }
                    _ => {
                        // A number, literal or garbage: short to reject, let serde decide.
                        self.always = true;
                        return true;
                    }
                }
                continue;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.depth == 0 {
                        return true;
                    }
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }
}

/// Reads one JSON value from a stream that may stay open after it (the agent does not FIN
/// after an RPC request). Bytes after the value are discarded: the protocol sends none.
/// Errors: more than `max_bytes` without a complete value is `TooLarge`, end of stream first
/// is `UnexpectedEof`. Callers should bound the wait with a timeout.
pub async fn read_json<T, R>(r: &mut R, max_bytes: usize) -> Result<T, MsgError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    // Never buffer more than one byte past the limit: enough to know it was exceeded.
    let cap = max_bytes.saturating_add(1);
    let mut buf: Vec<u8> = Vec::with_capacity(cap.min(READ_CHUNK));
    let mut scanner = EndScanner::default();
    loop {
        let start = buf.len();
        let want = cap.saturating_sub(start).min(READ_CHUNK);
        if want == 0 {
            return Err(MsgError::TooLarge { limit: max_bytes });
        }
        // read_buf appends into spare capacity without zero-filling a chunk per read.
        buf.reserve(want);
        let limit = u64::try_from(want).unwrap_or(u64::MAX);
        let n = (&mut *r).take(limit).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(MsgError::UnexpectedEof { read: start });
        }
        if scanner.feed(&buf) {
            match try_parse_json::<T>(&buf)? {
                Some((v, used)) if used <= max_bytes => return Ok(v),
                Some(_) => return Err(MsgError::TooLarge { limit: max_bytes }),
                // Brackets balanced but serde wants more (should not happen): stop trusting
                // the scanner and parse after every read.
                None => scanner.always = true,
            }
        }
        if buf.len() > max_bytes {
            return Err(MsgError::TooLarge { limit: max_bytes });
        }
    }
}

/// Fills `dst` completely, reporting a short stream as `UnexpectedEof` with the total count.
async fn fill<R>(r: &mut R, dst: &mut [u8], already: usize) -> Result<(), MsgError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut filled = 0;
    while let Some(rest) = dst.get_mut(filled..).filter(|d| !d.is_empty()) {
        let n = r.read(rest).await?;
        if n == 0 {
            return Err(MsgError::UnexpectedEof {
                read: already + filled,
            });
        }
        filled += n;
    }
    Ok(())
}

/// Reads the u32 big-endian stream type that opens every typed stream.
pub async fn read_stream_type<R>(r: &mut R) -> Result<StreamType, MsgError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut b = [0u8; 4];
    fill(r, &mut b, 0).await?;
    Ok(StreamType::from_be_bytes(b))
}

/// Reads a proxy header (after the stream type has been read): exactly the length prefix and
/// the JSON, leaving the client's bytes unread.
pub async fn read_proxy_header<R>(r: &mut R, max_len: usize) -> Result<ProxyHeader, MsgError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut len_bytes = [0u8; PROXY_LEN_BYTES];
    fill(r, &mut len_bytes, 0).await?;
    let len = check_header_len(i64::from_le_bytes(len_bytes), max_len)?;
    let mut json = vec![0u8; len];
    fill(r, &mut json, PROXY_LEN_BYTES).await?;
    Ok(serde_json::from_slice(&json)?)
}

/// Writes one JSON value in a single write and flushes; the caller FINs the stream after a
/// reply (the SDK reads replies to end of stream).
pub async fn write_json<T, W>(w: &mut W, msg: &T) -> Result<(), MsgError>
where
    T: Serialize + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let bytes = serde_json::to_vec(msg)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Builds u32 BE `typ` followed by the JSON of `msg`, so an RPC request or command goes out
/// as one write (one muxado frame).
pub fn typed_json<T: Serialize + ?Sized>(typ: StreamType, msg: &T) -> Result<Vec<u8>, MsgError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&typ.to_be_bytes());
    serde_json::to_writer(&mut out, msg)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::msg::{Auth, Bind, CommandResp, HttpOpts, AUTH, BIND, EDGE_TYPE_TLS};
    use std::time::Duration;
    use tokio::io::duplex;

    const AUTH_JSON: &str = r#"{"Version":["3","2"],"ClientId":"","Extra":{"OS":"linux","Arch":"x86_64","AuthToken":"tok","Version":"0.19.0","Hostname":"h","UserAgent":"ngrok-rust/0.19.0","Metadata":"{\"k\":\"v}\"}","Cookie":"","HeartbeatInterval":10000000000,"HeartbeatTolerance":15000000000,"UpdateUnsupportedError":null,"StopUnsupportedError":"","RestartUnsupportedError":"x","ProxyType":"","MutualTLS":false,"ServiceRun":false,"ConfigVersion":"","CustomInterface":false,"CustomCAs":true,"ClientType":"library/official/rust"}}"#;

    fn header() -> ProxyHeader {
        ProxyHeader {
            id: "tn_2abc".into(),
            client_addr: "203.0.113.7:51234".into(),
            proto: "tls".into(),
            edge_type: EDGE_TYPE_TLS.into(),
            passthrough_tls: true,
        }
    }

    #[test]
    fn try_parse_json_every_split() {
        let full = AUTH_JSON.as_bytes();
        for i in 0..full.len() {
            let r = try_parse_json::<Auth>(&full[..i]).unwrap();
            assert!(r.is_none(), "prefix of {i} bytes parsed");
        }
        let (a, used) = try_parse_json::<Auth>(full).unwrap().unwrap();
        assert_eq!(used, full.len());
        assert_eq!(a.extra.auth_token, "tok");
        assert_eq!(a.extra.metadata, r#"{"k":"v}"}"#);
        assert!(a.extra.custom_cas);
    }

    #[test]
    fn try_parse_json_trailing_and_leading_bytes() {
        let mut buf = b" \r\n".to_vec();
        buf.extend_from_slice(AUTH_JSON.as_bytes());
        let json_end = buf.len();
        buf.extend_from_slice(b"trailing garbage {\"x\"");
        let (a, used) = try_parse_json::<Auth>(&buf).unwrap().unwrap();
        assert_eq!(used, json_end);
        assert_eq!(a.version, vec!["3", "2"]);

        let two = br#"{"Error":""}{"Error":"second"}"#;
        let (c, used) = try_parse_json::<CommandResp>(two).unwrap().unwrap();
        assert!(c.error.is_empty());
        assert_eq!(used, 12);
    }

    #[test]
    fn try_parse_json_errors() {
        assert!(try_parse_json::<Auth>(b"").unwrap().is_none());
        assert!(try_parse_json::<Auth>(b"   ").unwrap().is_none());
        assert!(matches!(
            try_parse_json::<Auth>(br#"{"Version":5}"#),
            Err(MsgError::InvalidJson(_))
        ));
        assert!(matches!(
            try_parse_json::<Auth>(b"{]"),
            Err(MsgError::InvalidJson(_))
        ));
        assert!(matches!(
            try_parse_json::<Auth>(b"GET / HTTP/1.1\r\n"),
            Err(MsgError::InvalidJson(_))
        ));
    }

    #[test]
    fn scanner_fires_only_at_the_end() {
        for json in [
            AUTH_JSON,
            r#"  {"a":"}]\\","b":[{"c":"\"}"}]}"#,
            r#""top{level\"string""#,
        ] {
            let bytes = json.as_bytes();
            let mut sc = EndScanner::default();
            for i in 1..=bytes.len() {
                let done = sc.feed(&bytes[..i]);
                assert_eq!(done, i == bytes.len(), "{json} at {i}");
            }
        }
        let mut sc = EndScanner::default();
        assert!(sc.feed(b"GET /"));
    }

    #[test]
    fn proxy_header_encoding() {
        let h = header();
        let mut out = b"prefix".to_vec();
        encode_proxy_header(&h, &mut out);
        let out = &out[6..];
        assert_eq!(&out[..4], &[0, 0, 0, 3]);
        let json = serde_json::to_vec(&h).unwrap();
        assert_eq!(&out[4..12], &(json.len() as i64).to_le_bytes());
        // Hand-built JSON is identical to what serde produces for ProxyHeader.
        assert_eq!(&out[12..], json.as_slice());
    }

    #[test]
    fn proxy_header_escapes_like_serde() {
        let h = ProxyHeader {
            id: "tn_\"quoted\" back\\slash".into(),
            client_addr: "line\nbreak\r\ttab\u{8}\u{c}\u{1}\u{1f}\u{7f}".into(),
            proto: "ünïcödé ✓".into(),
            edge_type: String::new(),
            passthrough_tls: true,
        };
        let mut out = Vec::new();
        encode_proxy_header(&h, &mut out);
        assert_eq!(&out[12..], serde_json::to_vec(&h).unwrap().as_slice());
        assert_eq!(decode_proxy_header(&out[4..], 1024).unwrap().unwrap().0, h);
    }

    #[test]
    fn decode_proxy_header_every_split() {
        let h = header();
        let mut out = Vec::new();
        encode_proxy_header(&h, &mut out);
        let body = &out[4..];
        for i in 0..body.len() {
            assert!(decode_proxy_header(&body[..i], MAX_PROXY_HEADER_BYTES)
                .unwrap()
                .is_none());
        }
        let (got, used) = decode_proxy_header(body, MAX_PROXY_HEADER_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(got, h);
        assert_eq!(used, body.len());

        let mut with_data = body.to_vec();
        with_data.extend_from_slice(b"\x16\x03\x01client hello");
        let (_, used) = decode_proxy_header(&with_data, MAX_PROXY_HEADER_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(&with_data[used..], b"\x16\x03\x01client hello");
    }

    #[test]
    fn decode_proxy_header_bad_lengths() {
        let neg = (-1i64).to_le_bytes();
        assert!(matches!(
            decode_proxy_header(&neg, MAX_PROXY_HEADER_BYTES),
            Err(MsgError::NegativeLength(-1))
        ));
        // Rejected from the prefix alone, before the body arrives.
        let big = 1_000_000i64.to_le_bytes();
        assert!(matches!(
            decode_proxy_header(&big, MAX_PROXY_HEADER_BYTES),
            Err(MsgError::HeaderTooLarge { len: 1_000_000, .. })
        ));
        let huge = i64::MAX.to_le_bytes();
        assert!(matches!(
            decode_proxy_header(&huge, usize::MAX),
            Err(MsgError::HeaderTooLarge { .. }) | Ok(None)
        ));
        let mut bad = 3i64.to_le_bytes().to_vec();
        bad.extend_from_slice(b"{x}");
        assert!(matches!(
            decode_proxy_header(&bad, MAX_PROXY_HEADER_BYTES),
            Err(MsgError::InvalidJson(_))
        ));
    }

    #[test]
    fn typed_json_layout() {
        let a: Auth = serde_json::from_str(AUTH_JSON).unwrap();
        let out = typed_json(AUTH, &a).unwrap();
        assert_eq!(&out[..4], &[0, 0, 0, 0]);
        let back: Auth = serde_json::from_slice(&out[4..]).unwrap();
        assert_eq!(back, a);
        let out = typed_json(BIND, &Bind::default()).unwrap();
        assert_eq!(&out[..4], &[0, 0, 0, 1]);
    }

    #[tokio::test]
    async fn read_json_writer_never_closes() {
        let (mut agent, mut edge) = duplex(64);
        let writer = tokio::spawn(async move {
            let bytes =
                typed_json(AUTH, &serde_json::from_str::<Auth>(AUTH_JSON).unwrap()).unwrap();
            // Dribble in odd-sized pieces; keep the stream open afterwards, like the SDK.
            for piece in bytes.chunks(7) {
                agent.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            agent
        });
        let typ = read_stream_type(&mut edge).await.unwrap();
        assert_eq!(typ, AUTH);
        let a: Auth =
            tokio::time::timeout(Duration::from_secs(5), read_json(&mut edge, MAX_RPC_BYTES))
                .await
                .expect("read_json must not wait for EOF")
                .unwrap();
        assert_eq!(a.extra.auth_token, "tok");
        // The writer is still alive; now reply on the same stream.
        let mut agent = writer.await.unwrap();
        write_json(&mut edge, &CommandResp::default())
            .await
            .unwrap();
        let r: CommandResp = read_json(&mut agent, MAX_RPC_BYTES).await.unwrap();
        assert!(r.error.is_empty());
    }

    #[tokio::test]
    async fn read_json_braces_inside_strings() {
        let (mut w, mut r) = duplex(1024);
        w.write_all(br#"{"Id":"t}]{[\"","Proto":"http","Opts":{"Domain":"a.test"}}"#)
            .await
            .unwrap();
        let b: Bind = read_json(&mut r, MAX_RPC_BYTES).await.unwrap();
        assert_eq!(b.id, "t}]{[\"");
        assert_eq!(
            HttpOpts::from_value(&b.opts).unwrap().requested_domain(),
            Some("a.test")
        );
        drop(w);
    }

    #[tokio::test]
    async fn read_json_too_large() {
        let (mut w, mut r) = duplex(4096);
        let mut big = br#"{"Id":""#.to_vec();
        big.extend_from_slice(&[b'x'; 200]);
        w.write_all(&big).await.unwrap();
        let e = read_json::<Bind, _>(&mut r, 64).await.unwrap_err();
        assert!(matches!(e, MsgError::TooLarge { limit: 64 }));
        drop(w);

        // A complete message that is itself over the limit is also refused.
        let (mut w, mut r) = duplex(4096);
        w.write_all(AUTH_JSON.as_bytes()).await.unwrap();
        let e = read_json::<Auth, _>(&mut r, AUTH_JSON.len() - 1)
            .await
            .unwrap_err();
        assert!(matches!(e, MsgError::TooLarge { .. }));
        // Exactly at the limit is fine.
        let (mut w2, mut r2) = duplex(4096);
        w2.write_all(AUTH_JSON.as_bytes()).await.unwrap();
        let a: Auth = read_json(&mut r2, AUTH_JSON.len()).await.unwrap();
        assert_eq!(a.extra.auth_token, "tok");
        drop((w, w2));
    }

    #[tokio::test]
    async fn read_json_eof() {
        let (mut w, mut r) = duplex(1024);
        w.write_all(br#"{"Id":"abc"#).await.unwrap();
        drop(w);
        let e = read_json::<Bind, _>(&mut r, MAX_RPC_BYTES)
            .await
            .unwrap_err();
        assert!(matches!(e, MsgError::UnexpectedEof { read: 10 }));

        let (w, mut r) = duplex(1024);
        drop(w);
        let e = read_json::<Bind, _>(&mut r, MAX_RPC_BYTES)
            .await
            .unwrap_err();
        assert!(matches!(e, MsgError::UnexpectedEof { read: 0 }));
    }

    #[tokio::test]
    async fn read_json_rejects_garbage_quickly() {
        let (mut w, mut r) = duplex(1024);
        w.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let e = read_json::<Auth, _>(&mut r, MAX_RPC_BYTES)
            .await
            .unwrap_err();
        assert!(matches!(e, MsgError::InvalidJson(_)));
        drop(w);
    }

    #[tokio::test]
    async fn proxy_stream_round_trip() {
        let (mut edge, mut agent) = duplex(4096);
        let h = header();
        let mut first = Vec::new();
        encode_proxy_header(&h, &mut first);
        first.extend_from_slice(b"client bytes");
        edge.write_all(&first).await.unwrap();

        assert_eq!(read_stream_type(&mut agent).await.unwrap(), PROXY);
        let got = read_proxy_header(&mut agent, MAX_PROXY_HEADER_BYTES)
            .await
            .unwrap();
        assert_eq!(got, h);
        let mut rest = [0u8; 12];
        agent.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"client bytes");
    }

    #[tokio::test]
    async fn read_proxy_header_errors() {
        let (mut w, mut r) = duplex(1024);
        w.write_all(&(-5i64).to_le_bytes()).await.unwrap();
        assert!(matches!(
            read_proxy_header(&mut r, MAX_PROXY_HEADER_BYTES).await,
            Err(MsgError::NegativeLength(-5))
        ));

        let (mut w, mut r) = duplex(1024);
        w.write_all(&100i64.to_le_bytes()).await.unwrap();
        w.write_all(b"{\"Id\"").await.unwrap();
        drop(w);
        assert!(matches!(
            read_proxy_header(&mut r, MAX_PROXY_HEADER_BYTES).await,
            Err(MsgError::UnexpectedEof { read: 13 })
        ));
    }
}
