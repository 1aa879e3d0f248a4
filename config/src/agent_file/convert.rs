//! From the wire types of v2 and v3 to the one model ([`AgentFile`],
//! [`TunnelDef`]), with the checks that need several keys at once.

use super::*;

pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

pub(super) fn from_v2(ctx: &Ctx<'_>, wire: V2Wire) -> Result<AgentFile, AgentFileError> {
    let server_addr = match wire.server_addr {
        Some(addr) => Some(server_addr(&addr).map_err(|m| ctx.invalid(&path!["server_addr"], m))?),
        None => None,
    };
    let mut file = AgentFile {
        version: 2,
        authtoken: non_empty(wire.authtoken),
        server_addr,
        region: wire.region,
        console_ui: wire.console_ui,
        web_addr: wire.web_addr,
        log: wire.log,
        log_level: wire.log_level.map(|l| l.0.to_string()),
        log_format: wire.log_format,
        metadata: wire.metadata,
        inspect_db_size: wire.inspect_db_size.and_then(|s| s.0),
        root_cas: wire.root_cas,
        proxy_url: [wire.proxy_url, wire.http_proxy, wire.socks5_proxy]
            .into_iter()
            .find_map(|p| p.and_then(|p| p.0)),
        web_allow_hosts: wire.web_allow_hosts,
        tunnels: Vec::new(),
    };
    for (name, tunnel) in wire.tunnels.map(|t| t.0).unwrap_or_default() {
        file.tunnels.push(tunnel_def(ctx, name, tunnel)?);
    }
    Ok(file)
}

pub(super) fn from_v3(ctx: &Ctx<'_>, wire: V3Wire) -> Result<AgentFile, AgentFileError> {
    let agent = wire.agent.unwrap_or_default();
    if agent.root_cas.is_some() && agent.connect_cas.is_some() {
        return Err(ctx.invalid(
            &path!["agent", "connect_cas"],
            "set only one of root_cas, connect_cas",
        ));
    }
    let server_addr = match agent.connect_url {
        Some(url) => {
            Some(server_addr(&url).map_err(|m| ctx.invalid(&path!["agent", "connect_url"], m))?)
        }
        None => None,
    };
    let mut file = AgentFile {
        version: 3,
        authtoken: non_empty(agent.authtoken),
        server_addr,
        region: agent.region,
        console_ui: agent.console_ui,
        web_addr: agent.web_addr,
        log: agent.log,
        log_level: agent.log_level.map(|l| l.0.to_string()),
        log_format: agent.log_format,
        metadata: agent.metadata,
        inspect_db_size: agent.inspect_db_size.and_then(|s| s.0),
        root_cas: agent.root_cas.or(agent.connect_cas),
        proxy_url: agent.proxy_url.and_then(|p| p.0),
        web_allow_hosts: agent.web_allow_hosts,
        tunnels: Vec::new(),
    };
    // Names are unique across endpoints and tunnels: `gangway start NAME`.
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, endpoint) in wire.endpoints.unwrap_or_default().into_iter().enumerate() {
        let def = endpoint_def(ctx, i, endpoint)?;
        let here = path!["endpoints", i];
        if let Some(first) = seen.insert(def.name.clone(), render(&here)) {
            return Err(ctx.invalid(
                &join(&here, "name"),
                format!("{:?} is already the name of {first}", def.name),
            ));
        }
        file.tunnels.push(def);
    }
    for (name, tunnel) in wire.tunnels.map(|t| t.0).unwrap_or_default() {
        let here = path!["tunnels", &name];
        if let Some(first) = seen.get(&name) {
            return Err(ctx.invalid(&here, format!("{name:?} is already the name of {first}")));
        }
        file.tunnels.push(tunnel_def(ctx, name, tunnel)?);
    }
    Ok(file)
}

/// An empty `TunnelDef` to fill in.
pub(super) fn blank_def(name: String, kind: TunnelKind, proto: Proto, addr: String) -> TunnelDef {
    TunnelDef {
        name,
        kind,
        proto,
        addr,
        inspect: None,
        basic_auth: Vec::new(),
        host_header: None,
        bind_tls: BindTls::True,
        subdomain: None,
        hostname: None,
        crt: None,
        key: None,
        client_cas: None,
        remote_addr: None,
        metadata: None,
        description: None,
        labels: Vec::new(),
        pooling_enabled: false,
        traffic_policy: None,
        traffic_policy_file: None,
        cidr_allow: Vec::new(),
        cidr_deny: Vec::new(),
        compression: false,
        circuit_breaker: None,
        request_header: HeaderRules::default(),
        response_header: HeaderRules::default(),
        websocket_tcp_converter: false,
        proxy_proto: None,
        verify_webhook: None,
        user_agent_filter: UserAgentFilter::default(),
        terminate_at: None,
        upstream_protocol: None,
        bindings: Vec::new(),
    }
}

pub(super) fn tunnel_def(
    ctx: &Ctx<'_>,
    name: String,
    w: TunnelWire,
) -> Result<TunnelDef, AgentFileError> {
    let base = path!["tunnels", &name];
    if name.trim().is_empty() {
        let line = locate(&ctx.lines, &base);
        let kind = ErrorKind::Invalid("a tunnel name must not be empty".into());
        return Err(ctx.error(line, Some("tunnels".into()), kind));
    }
    let at = |key: &str| join(&base, key);
    if w.oauth.is_some() {
        return Err(ctx.at(&at("oauth"), ErrorKind::Unsupported));
    }
    if w.oidc.is_some() {
        return Err(ctx.at(&at("oidc"), ErrorKind::Unsupported));
    }

    let labels = w.labels.unwrap_or_default();
    for (i, label) in labels.iter().enumerate() {
        if !label.contains('=') || label.starts_with('=') {
            return Err(ctx.invalid(
                &join(&at("labels"), i),
                format!("{label:?} is not name=value"),
            ));
        }
    }
    let proto = match w.proto {
        Some(proto) => proto,
        None if !labels.is_empty() => Proto::Http,
        None => return Err(ctx.missing(&at("proto"))),
    };
    let addr = w.addr.ok_or_else(|| ctx.missing(&at("addr")))?;
    check_addr(&addr).map_err(|m| ctx.invalid(&at("addr"), m))?;

    let mut def = blank_def(
        name.clone(),
        TunnelKind::Tunnel,
        proto,
        addr.trim().to_string(),
    );
    def.labels = labels;
    def.inspect = w.inspect;
    def.host_header = w.host_header;
    def.subdomain = w.subdomain;
    def.metadata = w.metadata;
    def.description = w.description;
    def.pooling_enabled = w.pooling_enabled.unwrap_or(false);
    def.compression = w.compression.unwrap_or(false);
    def.websocket_tcp_converter = w.websocket_tcp_converter.unwrap_or(false);
    def.proxy_proto = w.proxy_proto.and_then(|p| p.0);
    def.terminate_at = w.terminate_at;
    def.traffic_policy_file = w.traffic_policy_file;

    if let Some(auth) = w.auth {
        check_credentials(&auth).map_err(|m| ctx.invalid(&at("auth"), m))?;
        def.basic_auth.push(auth);
    }
    for (i, auth) in w.basic_auth.unwrap_or_default().into_iter().enumerate() {
        check_credentials(&auth).map_err(|m| ctx.invalid(&join(&at("basic_auth"), i), m))?;
        def.basic_auth.push(auth);
    }

    def.bind_tls = match (w.bind_tls, w.schemes) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(&at("schemes"), "set only one of bind_tls, schemes"))
        }
        (Some(bind_tls), None) => bind_tls,
        (None, Some(schemes)) => {
            let http = schemes.contains(&Scheme::Http);
            let https = schemes.contains(&Scheme::Https);
            match (http, https) {
                (true, true) => BindTls::Both,
                (true, false) => BindTls::False,
                (false, true) => BindTls::True,
                (false, false) => {
                    return Err(ctx.invalid(&at("schemes"), "must list http, https or both"))
                }
            }
        }
        (None, None) => BindTls::True,
    };

    def.hostname = match (w.hostname, w.domain) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(&at("domain"), "set only one of hostname, domain"))
        }
        (hostname, domain) => hostname.or(domain),
    };
    def.client_cas = match (w.client_cas, w.mutual_tls_cas) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                &at("mutual_tls_cas"),
                "set only one of client_cas, mutual_tls_cas",
            ));
        }
        (client_cas, mutual) => client_cas.or(mutual),
    };
    match (&w.crt, &w.key) {
        (Some(_), None) => return Err(ctx.invalid(&at("crt"), "needs key as well")),
        (None, Some(_)) => return Err(ctx.invalid(&at("key"), "needs crt as well")),
        _ => {}
    }
    def.crt = w.crt;
    def.key = w.key;

    if let Some(remote) = w.remote_addr {
        if proto != Proto::Tcp {
            return Err(ctx.invalid(&at("remote_addr"), "only valid for tcp tunnels"));
        }
        if !valid_host_port(remote.trim()) {
            return Err(ctx.invalid(&at("remote_addr"), "expected host:port"));
        }
        def.remote_addr = Some(remote.trim().to_string());
    }
    if proto == Proto::Tcp {
        for (key, set) in [
            ("subdomain", def.subdomain.is_some()),
            ("hostname", def.hostname.is_some()),
        ] {
            if set {
                return Err(ctx.invalid(&at(key), "not valid for tcp tunnels"));
            }
        }
    }

    for (key, list) in [("cidr_allow", w.cidr_allow), ("cidr_deny", w.cidr_deny)] {
        let target = if key == "cidr_allow" {
            &mut def.cidr_allow
        } else {
            &mut def.cidr_deny
        };
        for (i, cidr) in list.unwrap_or_default().into_iter().enumerate() {
            check_cidr(&cidr).map_err(|m| ctx.invalid(&join(&at(key), i), m))?;
            target.push(cidr.trim().to_string());
        }
    }
    if let Some(restriction) = w.ip_restriction {
        let base = at("ip_restriction");
        for (key, list) in [
            ("allow_cidrs", restriction.allow_cidrs),
            ("deny_cidrs", restriction.deny_cidrs),
        ] {
            let target = if key == "allow_cidrs" {
                &mut def.cidr_allow
            } else {
                &mut def.cidr_deny
            };
            for (i, cidr) in list.into_iter().enumerate() {
                check_cidr(&cidr).map_err(|m| ctx.invalid(&join(&join(&base, key), i), m))?;
                target.push(cidr.trim().to_string());
            }
        }
    }

    if let Some(ratio) = w.circuit_breaker {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ctx.invalid(
                &at("circuit_breaker"),
                format!("{ratio} is not a ratio between 0 and 1"),
            ));
        }
        def.circuit_breaker = Some(ratio);
    }
    if let Some(rules) = w.request_header {
        def.request_header = header_rules(ctx, &at("request_header"), rules)?;
    }
    if let Some(rules) = w.response_header {
        def.response_header = header_rules(ctx, &at("response_header"), rules)?;
    }
    if let Some(hook) = w.verify_webhook {
        let provider = non_empty(hook.provider)
            .ok_or_else(|| ctx.missing(&join(&at("verify_webhook"), "provider")))?;
        def.verify_webhook = Some(VerifyWebhook {
            provider,
            secret: hook.secret,
        });
    }
    if let Some(filter) = w.user_agent_filter {
        def.user_agent_filter = UserAgentFilter {
            allow: filter.allow,
            deny: filter.deny,
        };
    }

    let policy = match (w.traffic_policy, w.policy) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(&at("policy"), "set only one of traffic_policy, policy"))
        }
        (Some(doc), None) => Some((doc, at("traffic_policy"))),
        (None, Some(doc)) => Some((doc, at("policy"))),
        (None, None) => None,
    };
    if let Some((doc, path)) = policy {
        if def.traffic_policy_file.is_some() {
            return Err(ctx.invalid(&path, "set only one of traffic_policy, traffic_policy_file"));
        }
        def.traffic_policy = Some(policy_json(ctx, &path, doc)?);
    }
    Ok(def)
}

pub(super) fn endpoint_def(
    ctx: &Ctx<'_>,
    index: usize,
    w: EndpointWire,
) -> Result<TunnelDef, AgentFileError> {
    let base = path!["endpoints", index];
    let at = |key: &str| join(&base, key);
    let name = non_empty(w.name).ok_or_else(|| ctx.missing(&at("name")))?;
    let url = match &w.url {
        Some(url) => parse_endpoint_url(url).map_err(|m| ctx.invalid(&at("url"), m))?,
        None => UrlParts::default(),
    };
    let upstream = w.upstream.ok_or_else(|| ctx.missing(&at("upstream")))?;
    let upstream_url = join(&at("upstream"), "url");
    let addr = upstream.url.ok_or_else(|| ctx.missing(&upstream_url))?;
    check_addr(&addr).map_err(|m| ctx.invalid(&upstream_url, m))?;

    let mut def = blank_def(
        name,
        TunnelKind::Endpoint,
        url.proto,
        addr.trim().to_string(),
    );
    def.bind_tls = url.bind_tls;
    def.hostname = url.hostname;
    def.remote_addr = url.remote_addr;
    def.description = w.description;
    def.metadata = w.metadata;
    def.pooling_enabled = w.pooling_enabled.unwrap_or(false);
    def.upstream_protocol = upstream.protocol;
    def.proxy_proto = upstream.proxy_protocol.and_then(|p| p.0);
    def.traffic_policy_file = w.traffic_policy_file;

    let bindings = w.bindings.unwrap_or_default();
    if bindings.len() > 1 {
        return Err(ctx.invalid(&at("bindings"), "at most one binding may be given"));
    }
    for (i, binding) in bindings.iter().enumerate() {
        if !["public", "internal", "kubernetes"].contains(&binding.as_str()) {
            let message = format!("{binding:?} is not one of public, internal, kubernetes");
            return Err(ctx.invalid(&join(&at("bindings"), i), message));
        }
    }
    def.bindings = bindings;

    if let Some(tls) = w.agent_tls_termination {
        let tls_path = at("agent_tls_termination");
        if def.proto != Proto::Tls {
            return Err(ctx.invalid(&tls_path, "only valid for tls:// urls"));
        }
        match (&tls.server_certificate, &tls.server_private_key) {
            (Some(_), None) => return Err(ctx.missing(&join(&tls_path, "server_private_key"))),
            (None, Some(_)) => return Err(ctx.missing(&join(&tls_path, "server_certificate"))),
            _ => {}
        }
        def.crt = tls.server_certificate;
        def.key = tls.server_private_key;
        let mut cas = tls.mutual_tls_certificate_authorities;
        if cas.len() > 1 {
            let path = join(&tls_path, "mutual_tls_certificate_authorities");
            return Err(ctx.invalid(
                &path,
                "gangway takes one CA bundle; put the certificates in one file",
            ));
        }
        def.client_cas = cas.pop();
    }
    if let Some(doc) = w.traffic_policy {
        let path = at("traffic_policy");
        if def.traffic_policy_file.is_some() {
            return Err(ctx.invalid(&path, "set only one of traffic_policy, traffic_policy_file"));
        }
        def.traffic_policy = Some(policy_json(ctx, &path, doc)?);
    }
    Ok(def)
}

pub(super) fn header_rules(
    ctx: &Ctx<'_>,
    base: &[Seg],
    rules: HeaderRulesWire,
) -> Result<HeaderRules, AgentFileError> {
    for (i, header) in rules.add.iter().enumerate() {
        match header.split_once(':') {
            Some((name, _)) if !name.trim().is_empty() => {}
            _ => {
                return Err(ctx.invalid(
                    &join(&join(base, "add"), i),
                    format!("{header:?} is not name:value"),
                ))
            }
        }
    }
    Ok(HeaderRules {
        add: rules.add,
        remove: rules.remove,
    })
}

/// A traffic policy document (a mapping, or a string holding YAML/JSON) as
/// JSON text.
pub(super) fn policy_json(
    ctx: &Ctx<'_>,
    path: &[Seg],
    doc: serde_json::Value,
) -> Result<String, AgentFileError> {
    let doc = match doc {
        serde_json::Value::String(text) => yaml_serde::from_str::<serde_json::Value>(&text)
            .map_err(|e| ctx.invalid(path, format!("not a traffic policy document: {e}")))?,
        other => other,
    };
    if !doc.is_object() {
        return Err(ctx.invalid(path, "expected a traffic policy document (a mapping)"));
    }
    serde_json::to_string(&doc).map_err(|e| ctx.invalid(path, e.to_string()))
}
