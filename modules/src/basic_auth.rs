//! HTTP basic auth in front of an endpoint: requests without one of the
//! configured credentials get 401 and a `Basic realm="ngrok"` challenge.

use base64::Engine;

use crate::chain::{Cx, Flow, HeaderEdits, RequestInfo, RouteModule, Stage};
use crate::decisions::Access;
use crate::refusal::Refusal;
use crate::ConfigError;

/// Realm in the challenge, as ngrok sends it.
pub const REALM: &str = "ngrok";
/// Password length ngrok accepts.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// Wire config: username/password pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasicAuthConfig {
    pub credentials: Vec<(String, String)>,
}

/// Compiled module.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    credentials: Vec<(String, String)>,
}

/// What the module decided, for the response and the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Allow { username: String },
    Deny,
}

impl BasicAuthConfig {
    /// Parses `user:pass` as the CLI and the legacy `Auth` option give it.
    pub fn parse_pair(pair: &str) -> Option<(String, String)> {
        let (user, pass) = pair.split_once(':')?;
        Some((user.to_string(), pass.to_string()))
    }

    /// `path` prefixes error paths (`basic_auth`).
    pub fn compile(&self, path: &str) -> Result<BasicAuth, ConfigError> {
        if self.credentials.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.credentials"),
                "at least one credential is required",
            ));
        }
        for (i, (user, pass)) in self.credentials.iter().enumerate() {
            if user.is_empty() || user.contains(':') {
                return Err(ConfigError::new(
                    format!("{path}.credentials[{i}].username"),
                    "must be non-empty and contain no ':'",
                ));
            }
            if !PASSWORD_LEN.contains(&pass.len()) {
                return Err(ConfigError::new(
                    format!("{path}.credentials[{i}].password"),
                    format!(
                        "must be {} to {} bytes long",
                        PASSWORD_LEN.start(),
                        PASSWORD_LEN.end()
                    ),
                ));
            }
        }
        Ok(BasicAuth {
            credentials: self.credentials.clone(),
        })
    }
}

/// Compares in time independent of where the inputs differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

impl BasicAuth {
    /// The `WWW-Authenticate` value for a 401.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{REALM}\"")
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> AuthDecision {
        let Some(value) = authorization.and_then(|v| std::str::from_utf8(v).ok()) else {
            return AuthDecision::Deny;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return AuthDecision::Deny;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return AuthDecision::Deny;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
            return AuthDecision::Deny;
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return AuthDecision::Deny;
        };
        let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
        // Check every credential so timing does not reveal which matched.
        let mut allowed = None;
        for (u, p) in &self.credentials {
            let ok = ct_eq(u.as_bytes(), user) & ct_eq(p.as_bytes(), pass);
            if ok && allowed.is_none() {
                allowed = Some(u.clone());
            }
        }
        match allowed {
            Some(username) => AuthDecision::Allow { username },
            None => AuthDecision::Deny,
        }
    }
}

impl RouteModule for BasicAuth {
    fn stage(&self) -> Stage {
        Stage::Auth
    }

    fn name(&self) -> &'static str {
        "basic_auth"
    }

    /// Whether this request passed: the edge then strips the credential.
    type State = bool;

    fn on_request(&self, req: &RequestInfo<'_>, cx: Cx<'_, bool>) -> Flow {
        let header = req.headers.get(http::header::AUTHORIZATION);
        match self.check(header.map(|h| h.as_bytes())) {
            AuthDecision::Allow { username } => {
                let decisions = &mut cx.facts.decisions;
                decisions.basic_auth = Some(Access::Allow);
                decisions.basic_auth_username = Some(username.clone());
                cx.facts.user = Some(username);
                *cx.state = true;
                Flow::Continue
            }
            AuthDecision::Deny => {
                cx.facts.decisions.basic_auth = Some(Access::Block);
                Flow::Refuse(Refusal::Unauthenticated {
                    challenge: self.challenge(),
                })
            }
        }
    }

    fn upstream_request(
        &self,
        _req: &RequestInfo<'_>,
        head: &mut dyn HeaderEdits,
        cx: Cx<'_, bool>,
    ) {
        // The credential is the edge's, not the app's.
        if *cx.state {
            head.remove(&http::header::AUTHORIZATION);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pass: &str) -> Vec<u8> {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {token}").into_bytes()
    }

    fn module() -> BasicAuth {
        BasicAuthConfig {
            credentials: vec![
                ("alice".into(), "correct horse".into()),
                ("bob".into(), "battery staple".into()),
            ],
        }
        .compile("basic_auth")
        .unwrap()
    }

    #[test]
    fn allows_each_configured_credential() {
        let m = module();
        assert_eq!(
            m.check(Some(&header("alice", "correct horse"))),
            AuthDecision::Allow {
                username: "alice".into()
            }
        );
        assert_eq!(
            m.check(Some(&header("bob", "battery staple"))),
            AuthDecision::Allow {
                username: "bob".into()
            }
        );
    }

    #[test]
    fn denies_everything_else() {
        let m = module();
        assert_eq!(m.check(None), AuthDecision::Deny);
        assert_eq!(
            m.check(Some(&header("alice", "wrong password"))),
            AuthDecision::Deny
        );
        assert_eq!(
            m.check(Some(&header("alice", "correct horsE"))),
            AuthDecision::Deny
        );
        assert_eq!(
            m.check(Some(&header("alice", "correct horse "))),
            AuthDecision::Deny
        );
        assert_eq!(m.check(Some(b"Bearer abc")), AuthDecision::Deny);
        assert_eq!(m.check(Some(b"Basic !!!notbase64")), AuthDecision::Deny);
        assert_eq!(m.check(Some(&[0xff, 0xfe])), AuthDecision::Deny);
        assert!(m.challenge().contains("realm=\"ngrok\""));
    }

    #[test]
    fn config_errors_name_the_field() {
        let short = BasicAuthConfig {
            credentials: vec![("a".into(), "short".into())],
        };
        assert_eq!(
            short.compile("basic_auth").unwrap_err().field,
            "basic_auth.credentials[0].password"
        );
        let bad_user = BasicAuthConfig {
            credentials: vec![("a:b".into(), "long enough".into())],
        };
        assert_eq!(
            bad_user.compile("basic_auth").unwrap_err().field,
            "basic_auth.credentials[0].username"
        );
        assert!(BasicAuthConfig::default().compile("basic_auth").is_err());
    }
}
