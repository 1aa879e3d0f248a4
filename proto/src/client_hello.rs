//! Reads the server name (SNI) out of a TLS ClientHello without consuming
//! it, so the TLS port can pass a connection through untouched or
//! terminate it. Handles a ClientHello split over several records.

/// The most ClientHello bytes we wait for; real ones (even with
/// post-quantum key shares) are a few KiB.
pub const MAX_HELLO_BYTES: usize = 32 * 1024;

const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// What the bytes seen so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// The whole ClientHello is in; `sni` is its lower-cased host name.
    Complete { sni: Option<String> },
    /// At least this many bytes (in total) are needed to go on.
    NeedBytes(usize),
    /// Not a TLS ClientHello, or a malformed one.
    NotTls(&'static str),
}

/// Looks at the start of a connection.
pub fn parse(buf: &[u8]) -> Hello {
    let mut handshake = Vec::new();
    let mut pos = 0;
    loop {
        // Enough handshake bytes gathered?
        if handshake.len() >= 4 {
            if handshake[0] != HANDSHAKE_CLIENT_HELLO {
                return Hello::NotTls("first handshake message is not a ClientHello");
            }
            let len = u24(&handshake[1..4]);
            if 4 + len > MAX_HELLO_BYTES {
                return Hello::NotTls("ClientHello too large");
            }
            if handshake.len() >= 4 + len {
                return match server_name(&handshake[4..4 + len]) {
                    Ok(sni) => Hello::Complete { sni },
                    Err(why) => Hello::NotTls(why),
                };
            }
        }
        let Some(header) = buf.get(pos..pos + RECORD_HEADER) else {
            return Hello::NeedBytes(pos + RECORD_HEADER);
        };
        if header[0] != CONTENT_HANDSHAKE || header[1] != 3 {
            return Hello::NotTls("not a TLS handshake record");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16384 + 256 {
            return Hello::NotTls("bad TLS record length");
        }
        let end = pos + RECORD_HEADER + len;
        if end > MAX_HELLO_BYTES {
            return Hello::NotTls("ClientHello too large");
        }
        let Some(body) = buf.get(pos + RECORD_HEADER..end) else {
            return Hello::NeedBytes(end);
        };
        handshake.extend_from_slice(body);
        pos = end;
    }
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A bounds-checked reader over the ClientHello body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated ClientHello");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

fn server_name(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let typ = exts.u16()?;
        let data = exts.vec16()?;
        if typ != EXT_SERVER_NAME {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let kind = list.u8()?;
            let name = list.vec16()?;
            if kind == NAME_TYPE_HOST {
                return host_name(name).map(Some);
            }
        }
        return Ok(None);
    }
    Ok(None)
}

fn host_name(raw: &[u8]) -> Result<String, &'static str> {
    let ok = !raw.is_empty()
        && raw.len() <= 253
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !ok {
        return Err("server name is not a host name");
    }
    let name = String::from_utf8_lossy(raw).to_ascii_lowercase();
    Ok(name.trim_end_matches('.').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello record with optional SNI.
    fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one cipher suite
        body.extend([1, 0]); // null compression
        let mut exts = Vec::new();
        // An unrelated extension first (supported_versions).
        exts.extend([0, 43, 0, 3, 2, 3, 4]);
        if let Some(name) = sni {
            let n = name.len() as u16;
            exts.extend([0, 0]);
            exts.extend((n + 5).to_be_bytes());
            exts.extend((n + 3).to_be_bytes());
            exts.push(0);
            exts.extend(n.to_be_bytes());
            exts.extend(name.as_bytes());
        }
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![1];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        record(&hs)
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = vec![22, 3, 1];
        r.extend((payload.len() as u16).to_be_bytes());
        r.extend(payload);
        r
    }

    #[test]
    fn finds_the_server_name() {
        assert_eq!(
            parse(&hello(Some("Db.Example.com"))),
            Hello::Complete {
                sni: Some("db.example.com".into())
            }
        );
        assert_eq!(parse(&hello(None)), Hello::Complete { sni: None });
    }

    #[test]
    fn asks_for_more_until_complete() {
        let full = hello(Some("a.example"));
        assert_eq!(parse(&full[..3]), Hello::NeedBytes(5));
        assert_eq!(parse(&full[..5]), Hello::NeedBytes(full.len()));
        assert_eq!(parse(&full[..full.len() - 1]), Hello::NeedBytes(full.len()));
    }

    #[test]
    fn reassembles_a_hello_split_over_records() {
        let full = hello(Some("split.example"));
        let hs = &full[5..];
        let mut two = record(&hs[..20]);
        two.extend(record(&hs[20..]));
        assert_eq!(parse(&two[..two.len() - 2]), Hello::NeedBytes(two.len()));
        assert_eq!(
            parse(&two),
            Hello::Complete {
                sni: Some("split.example".into())
            }
        );
    }

    #[test]
    fn refuses_what_is_not_tls() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls(_)));
        assert!(matches!(parse(&[22, 3, 1, 0, 0]), Hello::NotTls(_)));
        let mut bad = hello(Some("a.example"));
        bad[5] = 2; // ServerHello
        assert!(matches!(parse(&bad), Hello::NotTls(_)));
        assert!(matches!(parse(&hello(Some("bad name!"))), Hello::NotTls(_)));
        // A truncated extension block inside a complete record.
        let mut cut = hello(Some("a.example"));
        let n = cut.len();
        cut.truncate(n - 3);
        let hs_len = (n - 3 - 9) as u32;
        cut[6..9].copy_from_slice(&hs_len.to_be_bytes()[1..]);
        let rec_len = (n - 3 - 5) as u16;
        cut[3..5].copy_from_slice(&rec_len.to_be_bytes());
        assert!(matches!(parse(&cut), Hello::NotTls(_)));
    }
}
