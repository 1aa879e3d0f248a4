//! Builds the request a replay sends: the captured one, or the captured
//! one with the edits the web UI or API asked for (method, path, headers,
//! body).

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request};
use serde_json::Value;

use crate::inspect::Message;

/// The request to send again. `modify` is
/// `{"method"?, "uri"?, "headers"?: [[name, value], ...], "body"?: text}`;
/// each key present replaces the captured part (`headers` replaces all of
/// them). The error names the key that is wrong.
pub fn build(captured: &Message, modify: Option<&Value>) -> Result<Request<Bytes>, String> {
    let m = match modify {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err("modify must be an object".into()),
    };
    let text = |key: &str| -> Result<Option<&str>, String> {
        match m.and_then(|m| m.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("modify.{key} must be a string")),
        }
    };
    let method = text("method")?.unwrap_or(&captured.method);
    let method = Method::from_bytes(method.trim().as_bytes())
        .map_err(|_| format!("modify.method: {method:?} is not an HTTP method"))?;
    let uri = text("uri")?.unwrap_or(&captured.uri).trim();
    if !uri.starts_with('/') {
        return Err(format!("modify.uri: {uri:?} must start with /"));
    }
    let uri: http::Uri = uri
        .parse()
        .map_err(|e| format!("modify.uri: {uri:?}: {e}"))?;
    let headers: Vec<(String, String)> = match m.and_then(|m| m.get("headers")) {
        None | Some(Value::Null) => captured.headers.clone(),
        Some(Value::Array(pairs)) => pairs
            .iter()
            .enumerate()
            .map(|(i, p)| match p.as_array().map(Vec::as_slice) {
                Some([Value::String(k), Value::String(v)]) => Ok((k.clone(), v.clone())),
                _ => Err(format!("modify.headers[{i}] must be [name, value]")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("modify.headers must be a list of [name, value]".into()),
    };
    let body = match text("body")? {
        Some(b) => Bytes::copy_from_slice(b.as_bytes()),
        None => captured.body.clone(),
    };
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    for (i, (k, v)) in headers.iter().enumerate() {
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("modify.headers[{i}]: {k:?} is not a header name"))?;
        // The body's length is the new body's, set when it is sent.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| format!("modify.headers[{i}]: the value of {k:?} is not valid"))?;
        req.headers_mut().append(name, value);
    }
    let len = req.body().len();
    if len > 0 || !matches!(*req.method(), Method::GET | Method::HEAD) {
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn captured() -> Message {
        Message {
            method: "POST".into(),
            uri: "/items?x=1".into(),
            headers: vec![
                ("host".into(), "demo.example".into()),
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), "2".into()),
            ],
            body: Bytes::from_static(b"{}"),
            body_len: 2,
            ..Message::default()
        }
    }

    #[test]
    fn unmodified_replays_the_capture() {
        let r = build(&captured(), None).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "/items?x=1");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["content-length"], "2");
        assert_eq!(r.body().as_ref(), b"{}");
    }

    #[test]
    fn edits_replace_parts_and_fix_the_length() {
        let m = json!({"method": "PUT", "uri": "/r?via=api",
                       "headers": [["X-Replay", "1"], ["Content-Length", "999"]],
                       "body": "hello"});
        let r = build(&captured(), Some(&m)).unwrap();
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri(), "/r?via=api");
        assert_eq!(r.headers()["x-replay"], "1");
        assert!(r.headers().get("content-type").is_none());
        assert_eq!(r.headers()["content-length"], "5");
        assert_eq!(r.body().as_ref(), b"hello");
    }

    #[test]
    fn bad_edits_name_the_key() {
        for (m, key) in [
            (json!({"method": "GE T"}), "modify.method"),
            (json!({"uri": "no-slash"}), "modify.uri"),
            (json!({"headers": [["ok"]]}), "modify.headers[0]"),
            (json!({"headers": [["bad name", "v"]]}), "modify.headers[0]"),
            (json!({"body": 5}), "modify.body"),
            (json!([1]), "modify must"),
        ] {
            let e = build(&captured(), Some(&m)).unwrap_err();
            assert!(e.starts_with(key), "{e}");
        }
    }
}
