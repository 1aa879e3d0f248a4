//! PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) that the
//! edge puts in front of a connection's bytes when a tunnel was bound with
//! `ProxyProto` 1 or 2, so the app behind the agent learns the client's
//! address.

use std::net::{IpAddr, SocketAddr};

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Appends the header for a connection from `client` to `server` (the
/// edge's listener). Unknown or mixed-family addresses give the spec's
/// "unknown"/LOCAL form. Versions other than 1 and 2 append nothing.
pub fn encode(
    version: u8,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    out: &mut Vec<u8>,
) {
    let pair = match (client, server) {
        (Some(c), Some(s)) if c.is_ipv4() == s.is_ipv4() => Some((c, s)),
        _ => None,
    };
    match version {
        1 => match pair {
            Some((c, s)) => {
                let family = if c.is_ipv4() { "TCP4" } else { "TCP6" };
                out.extend_from_slice(
                    format!(
                        "PROXY {family} {} {} {} {}\r\n",
                        c.ip(),
                        s.ip(),
                        c.port(),
                        s.port()
                    )
                    .as_bytes(),
                );
            }
            None => out.extend_from_slice(b"PROXY UNKNOWN\r\n"),
        },
        2 => {
            out.extend_from_slice(&V2_SIGNATURE);
            match pair {
                Some((c, s)) => {
                    out.push(0x21); // version 2, PROXY command
                    match (c.ip(), s.ip()) {
                        (IpAddr::V4(ci), IpAddr::V4(si)) => {
                            out.push(0x11); // TCP over IPv4
                            out.extend_from_slice(&12u16.to_be_bytes());
                            out.extend_from_slice(&ci.octets());
                            out.extend_from_slice(&si.octets());
                        }
                        (ci, si) => {
                            out.push(0x21); // TCP over IPv6
                            out.extend_from_slice(&36u16.to_be_bytes());
                            out.extend_from_slice(&v6_octets(ci));
                            out.extend_from_slice(&v6_octets(si));
                        }
                    }
                    out.extend_from_slice(&c.port().to_be_bytes());
                    out.extend_from_slice(&s.port().to_be_bytes());
                }
                None => {
                    out.push(0x20); // version 2, LOCAL command
                    out.push(0x00); // unspecified family
                    out.extend_from_slice(&0u16.to_be_bytes());
                }
            }
        }
        _ => {}
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u8, c: &str, s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, c.parse().ok(), s.parse().ok(), &mut out);
        out
    }

    #[test]
    fn v1_text() {
        assert_eq!(
            enc(1, "203.0.113.7:51000", "10.0.0.1:443"),
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n"
        );
        assert_eq!(
            enc(1, "[2001:db8::1]:4000", "[::1]:20000"),
            b"PROXY TCP6 2001:db8::1 ::1 4000 20000\r\n"
        );
        assert_eq!(enc(1, "", "10.0.0.1:443"), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_binary() {
        let h = enc(2, "203.0.113.7:51000", "10.0.0.1:443");
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[203, 0, 113, 7]);
        assert_eq!(&h[20..24], &[10, 0, 0, 1]);
        assert_eq!(&h[24..28], &[0xc7, 0x38, 0x01, 0xbb]);
        assert_eq!(h.len(), 28);

        let h6 = enc(2, "[2001:db8::1]:4000", "[::1]:20000");
        assert_eq!(&h6[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h6.len(), 16 + 36);

        assert_eq!(&enc(2, "", "")[12..], &[0x20, 0x00, 0, 0]);
        assert!(enc(0, "1.2.3.4:5", "1.2.3.4:6").is_empty());
    }
}
