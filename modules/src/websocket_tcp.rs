//! `websocket_tcp_converter`: the route serves a raw TCP app to websocket
//! clients. This module only admits websocket upgrades; the edge bridges
//! binary messages to the agent's stream after the 101.

use crate::chain::{EdgeResponse, Flow, RequestInfo, RequestState, RouteModule, Stage};

pub const ERROR_CODE: &str = "ERR_NGROK_3206";

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

    fn on_request(&self, req: &RequestInfo<'_>, st: &mut RequestState) -> Flow {
        if !is_websocket_upgrade(req) {
            return Flow::Respond(EdgeResponse::error(
                400,
                ERROR_CODE,
                "This endpoint converts websockets to TCP: only websocket upgrade requests are accepted.",
            ));
        }
        // RFC 6455 §4.2.2: an unknown version gets 426 naming ours.
        if req.header("sec-websocket-version").map(str::trim) != Some(VERSION) {
            let mut answer = EdgeResponse::error(
                426,
                ERROR_CODE,
                "This endpoint speaks websocket version 13 only.",
            );
            answer.headers.push((
                http::HeaderName::from_static("sec-websocket-version"),
                http::HeaderValue::from_static(VERSION),
            ));
            return Flow::Respond(answer);
        }
        st.websocket_tcp = true;
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ConnInfo;
    use http::{HeaderMap, HeaderValue, Method};

    /// The converter's verdict and whether it marked the request for bridging.
    fn verdict(method: Method, headers: &[(&'static str, &'static str)]) -> (Option<u16>, bool) {
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
        let mut st = RequestState::default();
        let status = match WebsocketTcpConverter.on_request(&req, &mut st) {
            Flow::Respond(r) => Some(r.status),
            _ => None,
        };
        (status, st.websocket_tcp)
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
        assert_eq!(verdict(Method::POST, &ok), (Some(400), false));
        assert_eq!(verdict(Method::GET, &[]), (Some(400), false));
        let mut old = UPGRADE.to_vec();
        old.push(("sec-websocket-version", "8"));
        assert_eq!(verdict(Method::GET, &old), (Some(426), false));
        assert_eq!(verdict(Method::GET, &UPGRADE), (Some(426), false));
        let mut other = UPGRADE.to_vec();
        other[0] = ("upgrade", "h2c");
        other.push(("sec-websocket-version", "13"));
        assert_eq!(verdict(Method::GET, &other), (Some(400), false));
    }
}
