//! `user_agent_filter`: RE2-syntax regexes searched (unanchored) in the
//! first User-Agent header. Allowed iff any allow regex matches, or no
//! deny regex does. A request without the header is denied unless an
//! allow regex matches the empty string (`^$`).

use regex::RegexSet;

use crate::chain::{Cx, Flow, RequestInfo, RouteModule, Stage};
use crate::decisions::Access;
use crate::refusal::Refusal;
use crate::ConfigError;

/// Regex size cap: a filter is a handful of patterns, not a grammar.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Wire config: RE2-syntax regexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAgentFilterConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl UserAgentFilterConfig {
    /// `path` prefixes error paths (`user_agent_filter`).
    pub fn compile(&self, path: &str) -> Result<UserAgentFilter, ConfigError> {
        UserAgentFilter::compile(path, &self.allow, &self.deny)
    }
}

#[derive(Debug, Clone)]
pub struct UserAgentFilter {
    allow: RegexSet,
    deny: RegexSet,
}

impl UserAgentFilter {
    /// `field` prefixes error paths (`user_agent_filter`).
    pub fn compile(field: &str, allow: &[String], deny: &[String]) -> Result<Self, ConfigError> {
        let set = |list: &str, res: &[String]| {
            for (i, re) in res.iter().enumerate() {
                regex::RegexBuilder::new(re)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        ConfigError::new(
                            format!("{field}.{list}[{i}]"),
                            format!("invalid regular expression: {e}"),
                        )
                    })?;
            }
            regex::RegexSetBuilder::new(res)
                .size_limit(REGEX_SIZE_LIMIT * res.len().max(1))
                .build()
                .map_err(|e| ConfigError::new(format!("{field}.{list}"), e.to_string()))
        };
        Ok(UserAgentFilter {
            allow: set("allow", allow)?,
            deny: set("deny", deny)?,
        })
    }

    /// `None`: the request has no User-Agent.
    pub fn allows(&self, user_agent: Option<&str>) -> bool {
        match user_agent {
            Some(ua) => self.allow.is_match(ua) || !self.deny.is_match(ua),
            None => self.allow.is_match(""),
        }
    }
}

impl RouteModule for UserAgentFilter {
    fn stage(&self) -> Stage {
        Stage::UserAgentFilter
    }

    type State = ();

    fn on_request(&self, req: &RequestInfo<'_>, cx: Cx<'_, ()>) -> Flow {
        let ua = req
            .headers
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        if self.allows(ua.as_deref()) {
            cx.facts.decisions.user_agent_filter = Some(Access::Allow);
            return Flow::Continue;
        }
        cx.facts.decisions.user_agent_filter = Some(Access::Block);
        Flow::Refuse(Refusal::UserAgentBlocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(allow: &[&str], deny: &[&str]) -> UserAgentFilter {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        UserAgentFilter::compile("user_agent_filter", &v(allow), &v(deny)).unwrap()
    }

    #[test]
    fn allow_beats_deny_and_search_is_unanchored() {
        let m = f(&["(?i)goodbot"], &["bot", "curl/"]);
        assert!(m.allows(Some("Mozilla/5.0 GoodBot/1.0")));
        assert!(!m.allows(Some("evilbot/2")));
        assert!(!m.allows(Some("curl/8.5.0")));
        assert!(m.allows(Some("Mozilla/5.0")));
    }

    #[test]
    fn missing_header_is_denied_unless_an_allow_matches_empty() {
        assert!(!f(&[], &["curl"]).allows(None));
        assert!(f(&["^$"], &[".*"]).allows(None));
        assert!(!f(&["^Mozilla"], &[]).allows(None));
        assert!(
            f(&[], &["curl"]).allows(Some("")),
            "an empty header is a value"
        );
    }

    #[test]
    fn bad_regex_names_its_field() {
        let err = UserAgentFilter::compile("user_agent_filter", &[], &["ok".into(), "(".into()])
            .unwrap_err();
        assert_eq!(err.field, "user_agent_filter.deny[1]");
    }
}
