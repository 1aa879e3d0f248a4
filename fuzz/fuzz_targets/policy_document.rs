//! Arbitrary text as a Traffic Policy document (JSON or YAML): parsing and
//! compiling never panic, and a document that compiles runs against a
//! request without panicking either.
#![no_main]

use gangway_policy::engine;
use gangway_policy::expr::Scope;
use gangway_policy::request::{Connection, HttpRequest};
use gangway_policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let uri = http::Uri::from_static("/a/b?x=1");
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", http::HeaderValue::from_static("fuzz"));
    let conn = Connection {
        client: Some(([192, 0, 2, 1], 4000).into()),
        ..Connection::default()
    };
    let req = HttpRequest {
        method: &http::Method::GET,
        uri: &uri,
        headers: &headers,
        scheme: "https",
        host: "fuzz.example",
    };
    let mut scope = Scope::for_request(&conn, &req);
    let _ = engine::run(&policy.on_http_request, &mut scope, conn.client.map(|a| a.ip()));
    scope.set_response(200, &headers);
    let _ = engine::run(&policy.on_http_response, &mut scope, conn.client.map(|a| a.ip()));
});
