//! JWT validation for Traffic Policy's `jwt-validation`: a token taken
//! from a header (or query parameter) is checked against signing keys from
//! JWKS URLs, the allowed algorithms, expiry, and the issuer and audience
//! allow lists.
//!
//! The keys are fetched by the edge, not here (this crate does no IO): a
//! route names the JWKS it needs ([`JwtValidation::documents`]), the edge
//! fetches those missing or stale into its document cache before the
//! request phase runs ([`crate::documents`]), and validation reads them
//! from there.

use std::sync::{Arc, LazyLock};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value as Json};

use gangway_policy::actions::Config;
use gangway_policy::PolicyError;

use crate::chain::RequestInfo;
use crate::documents::{DocumentCache, Fetch};

/// Where the token is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenSource {
    Header { name: String, prefix: String },
    Query { name: String, prefix: String },
}

#[derive(Debug)]
pub struct JwtValidation {
    issuers: Vec<String>,
    audiences: Vec<String>,
    tokens: Vec<TokenSource>,
    algorithms: Vec<Algorithm>,
    /// The JWKS, as documents the edge fetches.
    jkus: Vec<Fetch>,
}

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token where the config says to look.
    Missing,
    Invalid(String),
    /// The keys could not be had: the edge's problem, not the client's.
    NoKeys(String),
}

impl JwtValidation {
    /// Compiles the action's config:
    ///
    /// ```yaml
    /// issuer:   { allow_list: [ { value: https://issuer.example/ } ] }
    /// audience: { allow_list: [ { value: api://default } ] }
    /// http:     { tokens: [ { type: jwt, method: header, name: Authorization, prefix: "Bearer " } ] }
    /// jws:
    ///   allowed_algorithms: [RS256]
    ///   keys: { sources: { additional_jkus: [ https://issuer.example/jwks.json ] } }
    /// ```
    pub fn compile(c: &Config<'_>) -> Result<Self, PolicyError> {
        c.only(&["issuer", "audience", "http", "jws"])?;
        let issuers = allow_list(c, "issuer")?;
        if issuers.is_empty() {
            return Err(c.err(
                "issuer.allow_list",
                "required: at least one issuer ({value: https://...})",
            ));
        }
        let audiences = allow_list(c, "audience")?;
        let tokens = tokens(c)?;
        let jws_path = c.at("jws");
        let jws = object(c.map.get("jws"), &jws_path)?
            .ok_or_else(|| c.err("jws", "required: allowed_algorithms and keys"))?;
        let jws = Config {
            map: jws,
            path: &jws_path,
            phase: c.phase,
        };
        jws.only(&["allowed_algorithms", "keys"])?;
        let mut algorithms = Vec::new();
        for (path, name) in jws.list("allowed_algorithms")? {
            let alg: Algorithm = name
                .parse()
                .map_err(|_| PolicyError::new(&path, format!("{name:?} is not a JWS algorithm")))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(PolicyError::new(
                    path,
                    "HMAC algorithms need a shared secret, not a JWKS; use RS*, PS*, ES* or EdDSA",
                ));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err(jws.err("allowed_algorithms", "required: e.g. [RS256]"));
        }
        let keys_path = jws.at("keys");
        let keys = object(jws.map.get("keys"), &keys_path)?
            .ok_or_else(|| jws.err("keys", "required: sources.additional_jkus"))?;
        let keys = Config {
            map: keys,
            path: &keys_path,
            phase: c.phase,
        };
        keys.only(&["sources"])?;
        let sources_path = keys.at("sources");
        let sources = object(keys.map.get("sources"), &sources_path)?
            .ok_or_else(|| keys.err("sources", "required: additional_jkus"))?;
        let sources = Config {
            map: sources,
            path: &sources_path,
            phase: c.phase,
        };
        sources.only(&["additional_jkus"])?;
        let mut jkus = Vec::new();
        for (path, url) in sources.list("additional_jkus")? {
            if !url.starts_with("https://") || url.len() <= "https://".len() {
                return Err(PolicyError::new(path, "must be an https:// URL"));
            }
            jkus.push(Fetch::jwks(url));
        }
        if jkus.is_empty() {
            return Err(sources.err("additional_jkus", "required: at least one JWKS URL"));
        }
        Ok(JwtValidation {
            issuers,
            audiences,
            tokens,
            algorithms,
            jkus,
        })
    }

    /// The JWKS documents this action needs the edge to fetch.
    pub fn documents(&self) -> &[Fetch] {
        &self.jkus
    }

    /// The token, if the request carries one where the config says.
    fn token(&self, req: &RequestInfo<'_>) -> Option<String> {
        for source in &self.tokens {
            let found = match source {
                TokenSource::Header { name, prefix } => req
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(|v| strip_prefix_ci(v.trim(), prefix).map(str::to_string)),
                TokenSource::Query { name, prefix } => req
                    .uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        let k = percent_encoding::percent_decode_str(k).decode_utf8().ok()?;
                        if k != name.as_str() {
                            return None;
                        }
                        let v = percent_encoding::percent_decode_str(v).decode_utf8().ok()?;
                        strip_prefix_ci(&v, prefix).map(str::to_string)
                    }),
            };
            if let Some(t) = found.filter(|t| !t.is_empty()) {
                return Some(t);
            }
        }
        None
    }

    /// Validates the request's token against the keys in `documents`;
    /// its claims on success.
    pub fn validate(
        &self,
        req: &RequestInfo<'_>,
        documents: &DocumentCache,
    ) -> Result<Json, TokenRefusal> {
        let token = self.token(req).ok_or(TokenRefusal::Missing)?;
        let header = jsonwebtoken::decode_header(&token)
            .map_err(|e| TokenRefusal::Invalid(format!("malformed token: {e}")))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenRefusal::Invalid(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref(), header.alg, documents)?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.set_issuer(&self.issuers);
        v.required_spec_claims = ["exp", "iss"].iter().map(|s| s.to_string()).collect();
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
            v.required_spec_claims.insert("aud".into());
        }
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Json>(&token, &key, &v)
            .map_err(|e| TokenRefusal::Invalid(e.to_string()))?;
        Ok(data.claims)
    }

    /// The signing key named `kid` (or the only key fitting `alg`) in any
    /// of the configured sets.
    fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        documents: &DocumentCache,
    ) -> Result<DecodingKey, TokenRefusal> {
        let sets: Vec<Arc<JwkSet>> = self
            .jkus
            .iter()
            .filter_map(|f| documents.jwks(&f.url))
            .collect();
        if sets.is_empty() {
            let urls: Vec<&str> = self.jkus.iter().map(|f| f.url.as_str()).collect();
            return Err(TokenRefusal::NoKeys(format!(
                "the signing keys at {} could not be fetched",
                urls.join(", ")
            )));
        }
        let found = match kid {
            Some(kid) => sets.iter().find_map(|s| s.find(kid).cloned()),
            None => {
                let fitting: Vec<_> = sets
                    .iter()
                    .flat_map(|s| s.keys.iter())
                    .filter(|k| {
                        k.common
                            .key_algorithm
                            .is_none_or(|a| a.to_string() == format!("{alg:?}"))
                    })
                    .collect();
                (fitting.len() == 1).then(|| fitting[0].clone())
            }
        };
        let Some(jwk) = found else {
            if kid.is_some() {
                // The issuer may have rotated its keys.
                for f in &self.jkus {
                    documents.mark_stale(&f.url);
                }
            }
            return Err(TokenRefusal::Invalid(match kid {
                Some(kid) => format!("no signing key {kid:?} in the JWKS"),
                None => "the token names no key (kid) and the JWKS has several".into(),
            }));
        };
        DecodingKey::from_jwk(&jwk)
            .map_err(|e| TokenRefusal::Invalid(format!("the JWKS key cannot be used: {e}")))
    }
}

/// What `actions.ngrok.jwt_validation` shows later rules.
pub fn result(outcome: &Result<Json, TokenRefusal>) -> Json {
    match outcome {
        Ok(claims) => json!({ "valid": true, "claims": claims }),
        Err(TokenRefusal::Missing) => json!({ "valid": false, "error": "no token" }),
        Err(TokenRefusal::Invalid(e) | TokenRefusal::NoKeys(e)) => {
            json!({ "valid": false, "error": e })
        }
    }
}

fn strip_prefix_ci<'a>(v: &'a str, prefix: &str) -> Option<&'a str> {
    let head = v.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| v[prefix.len()..].trim())
}

fn object<'a>(
    v: Option<&'a Json>,
    path: &str,
) -> Result<Option<&'a Map<String, Json>>, PolicyError> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(m)) => Ok(Some(m)),
        Some(_) => Err(PolicyError::new(path, "must be an object")),
    }
}

/// `issuer.allow_list` / `audience.allow_list`: `[{value: ...}]`.
fn allow_list(c: &Config<'_>, key: &str) -> Result<Vec<String>, PolicyError> {
    let path = c.at(key);
    let Some(obj) = object(c.map.get(key), &path)? else {
        return Ok(Vec::new());
    };
    let inner = Config {
        map: obj,
        path: &path,
        phase: c.phase,
    };
    inner.only(&["allow_list"])?;
    let list_path = inner.at("allow_list");
    let items = match obj.get("allow_list") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(items)) => items,
        Some(_) => {
            return Err(PolicyError::new(
                list_path,
                "must be a list of {value: ...}",
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{list_path}[{i}]");
            let value = item
                .as_object()
                .filter(|o| o.keys().all(|k| k == "value"))
                .and_then(|o| o.get("value"))
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| PolicyError::new(format!("{p}.value"), "required: a string"))?;
            Ok(value.to_string())
        })
        .collect()
}

/// `http.tokens`: where to find the token; defaults to a bearer token in
/// Authorization.
fn tokens(c: &Config<'_>) -> Result<Vec<TokenSource>, PolicyError> {
    let http_path = c.at("http");
    let default = || {
        vec![TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }]
    };
    let Some(http) = object(c.map.get("http"), &http_path)? else {
        return Ok(default());
    };
    let http = Config {
        map: http,
        path: &http_path,
        phase: c.phase,
    };
    http.only(&["tokens"])?;
    let list_path = http.at("tokens");
    let items = match http.map.get("tokens") {
        None | Some(Json::Null) => return Ok(default()),
        Some(Json::Array(items)) if !items.is_empty() => items,
        Some(_) => {
            return Err(PolicyError::new(
                list_path,
                "must be a list of token sources",
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{list_path}[{i}]");
        let obj = object(Some(item), &p)?.unwrap_or(&EMPTY);
        let t = Config {
            map: obj,
            path: &p,
            phase: c.phase,
        };
        t.only(&["type", "method", "name", "prefix"])?;
        if !matches!(t.string("type")?, None | Some("jwt")) {
            return Err(t.err("type", "must be jwt"));
        }
        let name = t
            .string("name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| t.err("name", "required: the header or query parameter name"))?;
        let prefix = t.string("prefix")?.unwrap_or_default().to_string();
        out.push(match t.string("method")? {
            None | Some("header") => {
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| t.err("name", "not a valid header name"))?;
                TokenSource::Header {
                    name: name.to_ascii_lowercase(),
                    prefix,
                }
            }
            Some("query") => TokenSource::Query {
                name: name.to_string(),
                prefix,
            },
            Some(_) => return Err(t.err("method", "must be header or query")),
        });
    }
    Ok(out)
}

static EMPTY: LazyLock<Map<String, Json>> = LazyLock::new(Map::new);

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_policy::expr::Phase;

    fn compile(doc: Json) -> Result<JwtValidation, PolicyError> {
        let map = doc.as_object().unwrap().clone();
        JwtValidation::compile(&Config {
            map: &map,
            path: "a.config",
            phase: Phase::HttpRequest,
        })
    }

    fn good() -> Json {
        json!({
            "issuer": {"allow_list": [{"value": "https://issuer.example/"}]},
            "jws": {"allowed_algorithms": ["RS256"],
                    "keys": {"sources": {"additional_jkus": ["https://issuer.example/jwks"]}}}
        })
    }

    #[test]
    fn config_errors_name_their_path() {
        assert!(compile(good()).is_ok());
        let mut d = good();
        d["jws"]["allowed_algorithms"] = json!(["HS256"]);
        assert_eq!(
            compile(d).unwrap_err().path,
            "a.config.jws.allowed_algorithms[0]"
        );
        let mut d = good();
        d["jws"]["keys"]["sources"]["additional_jkus"] = json!(["http://x/jwks"]);
        assert_eq!(
            compile(d).unwrap_err().path,
            "a.config.jws.keys.sources.additional_jkus[0]"
        );
        let mut d = good();
        d["issuer"] = json!({"allow_list": [{"val": "x"}]});
        assert_eq!(
            compile(d).unwrap_err().path,
            "a.config.issuer.allow_list[0].value"
        );
        let mut d = good();
        d["http"] = json!({"tokens": [{"method": "cookie", "name": "t"}]});
        assert_eq!(
            compile(d).unwrap_err().path,
            "a.config.http.tokens[0].method"
        );
    }

    #[test]
    fn prefixes_match_without_case() {
        assert_eq!(strip_prefix_ci("bearer abc", "Bearer "), Some("abc"));
        assert_eq!(strip_prefix_ci("Basic abc", "Bearer "), None);
        assert_eq!(strip_prefix_ci("abc", ""), Some("abc"));
    }
}
