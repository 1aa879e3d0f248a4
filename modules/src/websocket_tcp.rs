//! `websocket_tcp_converter`: the route serves a raw TCP app to websocket
//! clients. This module only admits websocket upgrades; the edge bridges
//! binary messages to the agent's stream after the 101.

use crate::chain::{Cx, Directives, Flow, RequestInfo, RouteModule, Stage, Upgrade};
use crate::refusal::Refusal;

/// The only websocket protocol version (RFC 6455).
pub const VERSION: &str = "13";

#[derive(Debug, Clone, Default)]
pub struct WebsocketTcpConverter;

/// A websocket opening handshake (RFC 6455 §4.1): GET with
/// `Upgrade: websocket` and a key.
pub fn is_websocket_upgrade(req: &RequestInfo<'_>) -> bool {
    let upgrade = req.header("upgrade").is_some_and(|u| {
        u.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    *req.method == http::Method::GET && upgrade && req.headers.contains_key("sec-websocket-key")
}

impl RouteModule for WebsocketTcpConverter {
    fn stage(&self) -> Stage {
        Stage::WebsocketTcpConverter
    }

    type State = ();

    fn on_request(&self, req: &RequestInfo<'_>, _cx: Cx<'_, ()>) -> Flow {
        if !is_websocket_upgrade(req) {
            return Flow::Refuse(Refusal::NotWebsocket);
        }
        // RFC 6455 §4.2.2: an unknown version gets 426 naming ours.
        if req.header("sec-websocket-version").map(str::trim) != Some(VERSION) {
            return Flow::Refuse(Refusal::WebsocketVersion);
        }
        Flow::Direct(Directives {
            upgrade: Some(Upgrade::WebsocketTcp),
            ..Directives::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{ConnInfo, TestCx};
    use http::{HeaderMap, HeaderValue, Method};

    /// The converter's refusal, or whether it asked for the bridge.
    fn verdict(
        method: Method,
        headers: &[(&'static str, &'static str)],
    ) -> (Option<Refusal>, bool) {
        let conn = ConnInfo::default();
        let uri: http::Uri = "/vnc".parse().unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, HeaderValue::from_static(v));
        }
        let req = RequestInfo {
            conn: &conn,
            method: &method,
            uri: &uri,
            headers: &map,
            scheme: "https",
            host: "h.example",
        };
        match WebsocketTcpConverter.on_request(&req, TestCx::default().cx()) {
            Flow::Refuse(r) => (Some(r), false),
            Flow::Direct(d) => (None, d.upgrade == Some(Upgrade::WebsocketTcp)),
            _ => (None, false),
        }
    }

    const UPGRADE: [(&str, &str); 3] = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn admits_version_13_upgrades_only() {
        let mut ok = UPGRADE.to_vec();
        ok.push(("sec-websocket-version", "13"));
        assert_eq!(verdict(Method::GET, &ok), (None, true));
        assert_eq!(
            verdict(Method::POST, &ok),
            (Some(Refusal::NotWebsocket), false)
        );
        assert_eq!(
            verdict(Method::GET, &[]),
            (Some(Refusal::NotWebsocket), false)
        );
        let mut old = UPGRADE.to_vec();
        old.push(("sec-websocket-version", "8"));
        assert_eq!(
            verdict(Method::GET, &old),
            (Some(Refusal::WebsocketVersion), false)
        );
        assert_eq!(
            verdict(Method::GET, &UPGRADE),
            (Some(Refusal::WebsocketVersion), false)
        );
        let mut other = UPGRADE.to_vec();
        other[0] = ("upgrade", "h2c");
        other.push(("sec-websocket-version", "13"));
        assert_eq!(
            verdict(Method::GET, &other),
            (Some(Refusal::NotWebsocket), false)
        );
    }
}
