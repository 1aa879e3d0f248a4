//! `websocket_tcp_converter`: the route serves a raw TCP app to websocket
//! clients. This module only admits websocket upgrades; the edge bridges
//! binary messages to the agent's stream after the 101.

use crate::chain::{EdgeResponse, Flow, RequestInfo, RequestState, RouteModule, Stage};

pub const ERROR_CODE: &str = "ERR_NGROK_3206";

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
        if is_websocket_upgrade(req) {
            st.websocket_tcp = true;
            return Flow::Continue;
        }
        Flow::Respond(EdgeResponse::error(
            400,
            ERROR_CODE,
            "This endpoint converts websockets to TCP: only websocket upgrade requests are accepted.",
        ))
    }
}
