//! Request bodies and list parameters, with ngrok's errors for each way
//! they can be wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{codes, ApiError};

/// Bodies above this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Default and largest page size.
pub const DEFAULT_LIMIT: usize = 100;

/// A JSON body of type `T`. Unknown fields, wrong types and bad syntax
/// are 400s naming the field path.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_string());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(codes::BAD_BODY, format!("Could not read the body: {e}")))?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                codes::BAD_BODY,
                format!("The body is larger than {MAX_BODY_BYTES} bytes."),
            ));
        }
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        match content_type {
            Some(ct) if !is_json(&ct) => {
                return Err(ApiError::new(
                    codes::UNSUPPORTED_CONTENT_TYPE,
                    format!("Content-Type {ct:?} is not supported; send application/json."),
                ))
            }
            None if !empty => {
                return Err(ApiError::new(
                    codes::MISSING_CONTENT_TYPE,
                    "The request has a body but no Content-Type; send application/json.",
                ))
            }
            _ => {}
        }
        let bytes: &[u8] = if empty { b"{}" } else { &bytes };
        parse_json(bytes).map(Body)
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Parses `bytes` as `T`, mapping serde's error to ngrok's codes with the
/// path of the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let field = if path == "." { String::new() } else { path };
        let err = if inner.is_syntax() || inner.is_eof() {
            ApiError::new(
                codes::BAD_BODY,
                format!("The body is not valid JSON: {msg}"),
            )
        } else if msg.starts_with("unknown field") {
            ApiError::new(codes::UNKNOWN_FIELD, strip_position(&msg))
        } else {
            ApiError::new(codes::INVALID_VALUE, strip_position(&msg))
        };
        if field.is_empty() {
            err
        } else {
            let msg = format!("{}: {}", field, err.msg);
            ApiError { msg, ..err }.detail("field", field)
        }
    })
}

/// serde_json appends " at line 1 column 12"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// `?before_id=…&limit=…` of a list call.
#[derive(Debug, Default)]
pub struct ListParams {
    pub before_id: Option<String>,
    pub limit: usize,
}

impl<S: Send + Sync> FromRequestParts<S> for ListParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut p = ListParams {
            before_id: None,
            limit: DEFAULT_LIMIT,
        };
        let query = parts.uri.query().unwrap_or("");
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "before_id" if !v.is_empty() => p.before_id = Some(v),
                "limit" if !v.is_empty() => {
                    p.limit = v.parse().map_err(|_| {
                        ApiError::invalid(
                            codes::BAD_QUERY,
                            "limit",
                            format!("limit {v:?} is not a number."),
                        )
                    })?;
                    if p.limit == 0 || p.limit > DEFAULT_LIMIT {
                        return Err(ApiError::invalid(
                            codes::LIMIT_OUT_OF_RANGE,
                            "limit",
                            format!("limit must be between 1 and {DEFAULT_LIMIT}."),
                        ));
                    }
                }
                "filter" if !v.is_empty() => {
                    return Err(ApiError::invalid(
                        codes::BAD_QUERY,
                        "filter",
                        "List filters are not supported by this server yet.",
                    ))
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<Outer>(br#"{"inner":{"n":"x"}}"#).unwrap_err();
        assert_eq!(e.code, codes::INVALID_VALUE);
        assert_eq!(e.details["field"], "inner.n");
        let e = parse_json::<Outer>(br#"{"inner":{"n":1,"m":2}}"#).unwrap_err();
        assert_eq!(e.code, codes::UNKNOWN_FIELD);
        assert_eq!(e.details["field"], "inner.m");
        let e = parse_json::<Outer>(br#"{"inner":"#).unwrap_err();
        assert_eq!(e.code, codes::BAD_BODY);
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
