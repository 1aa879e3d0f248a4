//! The wire types: what each version of the file may hold, as serde reads
//! it, with the scalar parsers that give ngrok's own error messages.

use super::*;

/// Deserializes any scalar's text (so `true` and `"true"` both arrive as
/// text) through `parse`. Errors are raised inside the deserializer's call,
/// which is what makes yaml_serde attach the value's line to them.
pub(super) fn from_scalar<'de, D, T, F>(d: D, expecting: String, parse: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct ScalarVisitor<F> {
        expecting: String,
        parse: F,
    }
    impl<T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'_> for ScalarVisitor<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(ScalarVisitor { expecting, parse })
}

/// A keyword, case-insensitively.
pub(super) fn keyword<'de, D, T>(d: D, names: &'static [(&'static str, T)]) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Copy,
{
    let list = names
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ");
    from_scalar(d, format!("one of {list}"), |text| {
        let wanted = text.trim();
        names
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| *value)
            .ok_or_else(|| format!("{text:?} is not one of {list}"))
    })
}

/// `Deserialize` for an enum written as one of a few keywords.
macro_rules! keywords {
    ($ty:ty { $($word:literal => $val:expr),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                keyword(d, &[$(($word, $val)),+])
            }
        }
    };
}

keywords!(Proto {
    "http" => Proto::Http,
    "tcp" => Proto::Tcp,
    "tls" => Proto::Tls,
});

keywords!(BindTls {
    "true" => BindTls::True,
    "false" => BindTls::False,
    "both" => BindTls::Both,
});

keywords!(ConsoleUi {
    "true" => ConsoleUi::On,
    "false" => ConsoleUi::Off,
    "iftty" => ConsoleUi::IfTty,
});

keywords!(LogFormat {
    "logfmt" => LogFormat::Logfmt,
    "json" => LogFormat::Json,
    "term" => LogFormat::Term,
});

keywords!(TerminateAt {
    "edge" => TerminateAt::Edge,
    "agent" => TerminateAt::Agent,
    "upstream" => TerminateAt::Upstream,
});

keywords!(UpstreamProtocol {
    "http1" => UpstreamProtocol::Http1,
    "http2" => UpstreamProtocol::Http2,
});

/// `proxy_url` (and 2.x's `http_proxy`, `socks5_proxy`): a proxy URL, or
/// `false` or empty for none.
pub(super) struct ProxySetting(pub(super) Option<ProxyUrl>);

impl<'de> Deserialize<'de> for ProxySetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "a proxy URL or false".into(), |text| match text.trim() {
            "" | "false" => Ok(ProxySetting(None)),
            url => ProxyUrl::parse(url).map(|p| ProxySetting(Some(p))),
        })
    }
}

impl<'de> Deserialize<'de> for WebAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "host:port or false".into(), |text| {
            let text = text.trim();
            if text == "false" {
                Ok(WebAddr::Disabled)
            } else if valid_host_port(text) {
                Ok(WebAddr::Addr(text.to_string()))
            } else {
                Err("expected host:port or false".into())
            }
        })
    }
}

/// `log_level`, one of ngrok's values.
pub(super) struct LogLevel(pub(super) &'static str);

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const LEVELS: &[(&str, &str)] = &[
            ("crit", "crit"),
            ("warn", "warn"),
            ("error", "error"),
            ("info", "info"),
            ("debug", "debug"),
        ];
        keyword(d, LEVELS).map(LogLevel)
    }
}

/// `schemes` entries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    Http,
    Https,
}

impl<'de> Deserialize<'de> for Scheme {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(d, &[("http", Scheme::Http), ("https", Scheme::Https)])
    }
}

/// `inspect_db_size`: a positive integer of bytes, or a string with a
/// unit. As in ngrok, `0` means the default (`None`) and `-1` turns
/// inspection off (`Some(0)`).
pub(super) struct DbSize(pub(super) Option<u64>);

pub(super) const DB_SIZE_RULE: &str =
    "must be a number of bytes, 0 (the default) or -1 (inspection off)";

impl<'de> Deserialize<'de> for DbSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl de::Visitor<'_> for SizeVisitor {
            type Value = DbSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes like 50000000 or \"50MB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DbSize, E> {
                Ok(DbSize((v > 0).then_some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DbSize, E> {
                match v {
                    -1 => Ok(DbSize(Some(0))),
                    v => match u64::try_from(v) {
                        Ok(v) => self.visit_u64(v),
                        Err(_) => Err(E::custom(DB_SIZE_RULE)),
                    },
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DbSize, E> {
                match v.trim() {
                    "-1" => return Ok(DbSize(Some(0))),
                    "0" => return Ok(DbSize(None)),
                    _ => {}
                }
                match parse_size(v) {
                    Some(0) => Err(E::custom(DB_SIZE_RULE)),
                    Some(n) => Ok(DbSize(Some(n))),
                    None => Err(E::custom(format!(
                        "{v:?} is not a size like 50000000, \"50MB\" or \"10MiB\""
                    ))),
                }
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// A Go duration (`10s`, `1m30s`, `500ms`): connect/heartbeat settings.
pub(super) struct GoDuration(#[allow(dead_code)] pub(super) Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "a duration like 10s".into(), |text| {
            parse_go_duration(text)
                .map(GoDuration)
                .ok_or_else(|| format!("{text:?} is not a duration like 10s, 1m30s or 500ms"))
        })
    }
}

/// An IP address, with or without a port (`dns_resolver_ips`).
pub(super) struct IpString;

impl<'de> Deserialize<'de> for IpString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "an IP address".into(), |text| {
            let text = text.trim();
            if text.parse::<IpAddr>().is_ok() || text.parse::<SocketAddr>().is_ok() {
                Ok(IpString)
            } else {
                Err(format!("{text:?} is not an IP address"))
            }
        })
    }
}

/// `proxy_proto` / `upstream.proxy_protocol`: 1, 2, or empty (none).
pub(super) struct ProxyProto(pub(super) Option<u8>);

impl<'de> Deserialize<'de> for ProxyProto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "1 or 2".into(), |text| match text.trim() {
            "" => Ok(ProxyProto(None)),
            "1" => Ok(ProxyProto(Some(1))),
            "2" => Ok(ProxyProto(Some(2))),
            _ => Err(format!("{text:?} is not one of 1, 2")),
        })
    }
}

/// A mapping kept in file order (tunnels by name).
pub(super) struct Ordered<T>(pub(super) Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for OrderedVisitor<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to definitions")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Ordered<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value = map.next_value::<T>()?;
                    entries.push((name, value));
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(OrderedVisitor(std::marker::PhantomData))
    }
}

/// A v2 file. Keys gangway does not use are type-checked, then dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of settings")]
#[allow(dead_code)]
pub(super) struct V2Wire {
    pub(super) version: Option<IgnoredAny>,
    pub(super) authtoken: Option<String>,
    pub(super) api_key: Option<String>,
    pub(super) connect_interface: Option<String>,
    pub(super) connect_timeout: Option<GoDuration>,
    pub(super) console_ui: Option<ConsoleUi>,
    pub(super) console_ui_color: Option<String>,
    pub(super) crl_noverify: Option<bool>,
    pub(super) dns_resolver_ips: Option<Vec<IpString>>,
    pub(super) heartbeat_interval: Option<GoDuration>,
    pub(super) heartbeat_tolerance: Option<GoDuration>,
    pub(super) inspect_db_size: Option<DbSize>,
    pub(super) log: Option<String>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) log_level: Option<LogLevel>,
    pub(super) metadata: Option<String>,
    pub(super) proxy_url: Option<ProxySetting>,
    pub(super) region: Option<String>,
    pub(super) remote_management: Option<bool>,
    pub(super) root_cas: Option<String>,
    pub(super) server_addr: Option<String>,
    pub(super) tunnels: Option<Ordered<TunnelWire>>,
    pub(super) update_channel: Option<String>,
    pub(super) update_check: Option<bool>,
    pub(super) web_addr: Option<WebAddr>,
    pub(super) web_allow_hosts: Option<Vec<String>>,
    // ngrok 2.x keys, still in old files.
    pub(super) http_proxy: Option<ProxySetting>,
    pub(super) socks5_proxy: Option<ProxySetting>,
    pub(super) update: Option<bool>,
}

/// A v3 file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of settings")]
pub(super) struct V3Wire {
    #[allow(dead_code)]
    pub(super) version: Option<IgnoredAny>,
    pub(super) agent: Option<AgentWire>,
    pub(super) endpoints: Option<Vec<EndpointWire>>,
    pub(super) tunnels: Option<Ordered<TunnelWire>>,
}

/// v3 `agent:`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of agent settings")]
#[allow(dead_code)]
pub(super) struct AgentWire {
    pub(super) authtoken: Option<String>,
    pub(super) api_key: Option<String>,
    pub(super) connect_cas: Option<String>,
    pub(super) connect_interface: Option<String>,
    pub(super) connect_timeout: Option<GoDuration>,
    pub(super) connect_url: Option<String>,
    pub(super) console_ui: Option<ConsoleUi>,
    pub(super) console_ui_color: Option<String>,
    pub(super) crl_noverify: Option<bool>,
    pub(super) crl_url: Option<String>,
    pub(super) dns_resolver_ips: Option<Vec<IpString>>,
    pub(super) heartbeat_interval: Option<GoDuration>,
    pub(super) heartbeat_tolerance: Option<GoDuration>,
    pub(super) inspect_db_size: Option<DbSize>,
    pub(super) log: Option<String>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) log_level: Option<LogLevel>,
    pub(super) metadata: Option<String>,
    pub(super) proxy_url: Option<ProxySetting>,
    pub(super) region: Option<String>,
    pub(super) remote_management: Option<bool>,
    pub(super) root_cas: Option<String>,
    pub(super) update_channel: Option<String>,
    pub(super) update_check: Option<bool>,
    pub(super) web_addr: Option<WebAddr>,
    pub(super) web_allow_hosts: Option<Vec<String>>,
}

/// A tunnel definition (v2, and v3's deprecated `tunnels:`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a tunnel definition (a mapping)")]
pub(super) struct TunnelWire {
    pub(super) proto: Option<Proto>,
    pub(super) addr: Option<String>,
    pub(super) inspect: Option<bool>,
    pub(super) auth: Option<String>,
    pub(super) basic_auth: Option<Vec<String>>,
    pub(super) host_header: Option<String>,
    pub(super) bind_tls: Option<BindTls>,
    pub(super) schemes: Option<Vec<Scheme>>,
    pub(super) subdomain: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) domain: Option<String>,
    pub(super) crt: Option<String>,
    pub(super) key: Option<String>,
    pub(super) client_cas: Option<String>,
    pub(super) mutual_tls_cas: Option<String>,
    pub(super) remote_addr: Option<String>,
    pub(super) metadata: Option<String>,
    pub(super) description: Option<String>,
    pub(super) labels: Option<Vec<String>>,
    pub(super) pooling_enabled: Option<bool>,
    pub(super) traffic_policy: Option<serde_json::Value>,
    /// ngrok's name for `traffic_policy` before agent 3.14.
    pub(super) policy: Option<serde_json::Value>,
    pub(super) traffic_policy_file: Option<String>,
    pub(super) cidr_allow: Option<Vec<String>>,
    pub(super) cidr_deny: Option<Vec<String>>,
    pub(super) ip_restriction: Option<IpRestrictionWire>,
    pub(super) compression: Option<bool>,
    pub(super) circuit_breaker: Option<f64>,
    pub(super) request_header: Option<HeaderRulesWire>,
    pub(super) response_header: Option<HeaderRulesWire>,
    pub(super) websocket_tcp_converter: Option<bool>,
    pub(super) proxy_proto: Option<ProxyProto>,
    pub(super) verify_webhook: Option<VerifyWebhookWire>,
    pub(super) user_agent_filter: Option<UserAgentFilterWire>,
    pub(super) terminate_at: Option<TerminateAt>,
    // ngrok modules gangway does not implement: refused rather than
    // silently dropped, since they guard access.
    pub(super) oauth: Option<IgnoredAny>,
    pub(super) oidc: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with allow_cidrs and deny_cidrs"
)]
pub(super) struct IpRestrictionWire {
    #[serde(default)]
    pub(super) allow_cidrs: Vec<String>,
    #[serde(default)]
    pub(super) deny_cidrs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with add and remove")]
pub(super) struct HeaderRulesWire {
    #[serde(default)]
    pub(super) add: Vec<String>,
    #[serde(default)]
    pub(super) remove: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with provider and secret")]
pub(super) struct VerifyWebhookWire {
    pub(super) provider: Option<String>,
    pub(super) secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with allow and deny")]
pub(super) struct UserAgentFilterWire {
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default)]
    pub(super) deny: Vec<String>,
}

/// A v3 endpoint definition.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an endpoint definition (a mapping)")]
pub(super) struct EndpointWire {
    pub(super) name: Option<String>,
    pub(super) url: Option<String>,
    pub(super) description: Option<String>,
    pub(super) metadata: Option<String>,
    pub(super) bindings: Option<Vec<String>>,
    pub(super) traffic_policy: Option<serde_json::Value>,
    pub(super) traffic_policy_file: Option<String>,
    pub(super) pooling_enabled: Option<bool>,
    pub(super) upstream: Option<UpstreamWire>,
    pub(super) agent_tls_termination: Option<AgentTlsWire>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with url, protocol and proxy_protocol"
)]
pub(super) struct UpstreamWire {
    pub(super) url: Option<String>,
    pub(super) protocol: Option<UpstreamProtocol>,
    pub(super) proxy_protocol: Option<ProxyProto>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of TLS termination settings"
)]
pub(super) struct AgentTlsWire {
    pub(super) server_certificate: Option<String>,
    pub(super) server_private_key: Option<String>,
    #[serde(default)]
    pub(super) mutual_tls_certificate_authorities: Vec<String>,
}
