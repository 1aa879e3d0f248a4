//! The failure vocabulary: every error code Gangway answers with, defined
//! once, with the HTTP status it goes out with and what it means.
//!
//! Two namespaces, as ngrok has them: `ERR_NGROK_<n>` codes (the edge's
//! `ngrok-error-code` header, agent RPC errors, the REST API's
//! `error_code`, the agent's own error pages), and the agent API's plain
//! integer `error_code`s. A number means one thing in its namespace; the
//! tests below fail when one is defined twice. Codes ngrok documents keep
//! ngrok's numbers; where ngrok publishes none, ours are in the 9000s.

use std::fmt;

/// Which error namespace a code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// `ERR_NGROK_<n>`.
    Ngrok,
    /// The local agent API's integer `error_code`.
    AgentApi,
}

/// Where a code is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// A response the edge writes on a public listener (`ngrok-error-code`).
    Edge,
    /// An agent RPC's `Error` (the code on its own line).
    Rpc,
    /// The REST API's JSON error body.
    Api,
    /// A response the agent writes for its upstream.
    Agent,
    /// The local agent API.
    AgentApi,
}

/// One code of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub number: u16,
    /// `ERR_NGROK_<n>` (the agent API's codes print as the bare number).
    pub id: &'static str,
    /// The HTTP status it is answered with; 0 for RPC errors, which have none.
    pub status: u16,
    pub surface: Surface,
    pub meaning: &'static str,
}

impl Code {
    pub fn namespace(&self) -> Namespace {
        match self.surface {
            Surface::AgentApi => Namespace::AgentApi,
            _ => Namespace::Ngrok,
        }
    }

    /// The `ERR_NGROK_…` string (for the agent API, the number).
    pub fn as_str(&self) -> &'static str {
        self.id
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal, $status:literal, $surface:ident, $meaning:literal; )*) => {
        $(
            $(#[$doc])*
            pub const $name: Code = Code {
                number: $num,
                id: codes!(@id $surface $num),
                status: $status,
                surface: Surface::$surface,
                meaning: $meaning,
            };
        )*
        /// Every code, in definition order.
        pub const ALL: &[Code] = &[$($name),*];
    };
    (@id AgentApi $num:literal) => { stringify!($num) };
    (@id $other:ident $num:literal) => { concat!("ERR_NGROK_", $num) };
}

codes! {
    // The edge's public listeners.
    /// The host names no endpoint, or no route of its edge matches the path;
    /// also an endpoint whose agent is offline (answered 502 then).
    ENDPOINT_NOT_FOUND = 3200, 404, Edge, "the endpoint is not found, or it is offline";
    /// The agent session failed while carrying the request.
    TUNNEL_FAILED = 3004, 502, Edge, "the agent did not return a complete response";
    MISSING_HOST = 3100, 400, Edge, "the request has no usable Host";
    CIRCUIT_OPEN = 3202, 503, Edge, "the route's circuit breaker is open";
    /// 401 for xero (its intent-to-receive check), 413 for a body larger
    /// than the edge verifies.
    WEBHOOK_UNVERIFIED = 3204, 403, Edge, "the request's webhook signature did not verify";
    /// ip_restriction, Traffic Policy's restrict-ips, and TCP/TLS admission.
    IP_BLOCKED = 3205, 403, Edge, "the client's IP address is not allowed";
    /// 426 for a websocket version other than 13.
    WEBSOCKET_REQUIRED = 3206, 400, Edge, "the endpoint accepts websocket upgrades only";
    USER_AGENT_BLOCKED = 3211, 403, Edge, "the client's User-Agent is not allowed";
    /// forward-internal named an endpoint that is not online.
    FORWARD_FAILED = 3220, 502, Edge, "the internal endpoint a policy forwards to is offline";
    /// Ours; ngrok answers 401 without a code.
    JWT_REFUSED = 3230, 401, Edge, "the request's JWT was refused";
    /// Ours: a route whose modules this edge cannot apply fails closed.
    MODULE_UNAVAILABLE = 9047, 503, Edge, "the route has a module this edge cannot apply";
    /// Ours: a name with its own handshake policy reached over a
    /// connection made for another name (HTTP/2 reuse).
    MISDIRECTED = 9048, 421, Edge, "the request came on a TLS connection made for another name";
    /// Ours: an expression or template failed while a request ran.
    POLICY_FAILED = 9051, 500, Edge, "the endpoint's traffic policy failed while it ran";
    /// Ours: what the proxy could not parse (Pingora's own 400s).
    BAD_REQUEST = 9053, 400, Edge, "the request could not be parsed";
    /// Ours: the proxy failed the request itself (a limit, a timeout); the
    /// status says which.
    PROXY_FAILED = 9054, 502, Edge, "the edge's proxy failed the request";

    // Agent RPCs (Auth, Bind, StartTunnelWithLabel, Unbind).
    AUTHTOKEN_INVALID = 107, 0, Rpc, "the authtoken is not valid for this deployment, or was deleted";
    BAD_BIND = 301, 0, Rpc, "the bind request makes no sense (a bad tunnel id, no labels)";
    ACL_DENIED_ADDR = 308, 0, Rpc, "the credential's ACL does not allow binding this TCP address";
    ACL_DENIED = 316, 0, Rpc, "the credential's ACL does not allow binding this name or labels";
    /// Also the REST API's answer to a bad domain.
    INVALID_HOSTNAME = 326, 400, Rpc, "the hostname has a character or wildcard it may not have";
    HOSTNAME_EMPTY_LABEL = 327, 0, Rpc, "the hostname is empty or has an empty label";
    HOSTNAME_BAD_FIRST = 328, 0, Rpc, "a hostname label starts with '-'";
    HOSTNAME_BAD_LAST = 329, 0, Rpc, "a hostname label ends with '-'";
    UNSUPPORTED_PROTO = 332, 0, Rpc, "the edge serves no tunnels of this protocol";
    UNKNOWN_TUNNEL = 333, 0, Rpc, "no such tunnel in this session";
    ENDPOINT_IN_USE = 334, 0, Rpc, "the endpoint is already online in another session without pooling";
    BAD_BASIC_AUTH_USER = 359, 0, Rpc, "a basic auth username is empty or holds ':'";
    BAD_BASIC_AUTH = 360, 0, Rpc, "a basic auth password is not 8 to 128 bytes long";
    HOSTNAME_LABEL_TOO_LONG = 396, 0, Rpc, "a hostname label is longer than 63 bytes";
    HOSTNAME_TOO_LONG = 397, 0, Rpc, "the hostname is longer than 253 bytes";
    NOT_AUTHENTICATED = 4016, 0, Rpc, "an RPC arrived before Auth";
    AUTHTOKEN_MISSING = 4018, 0, Rpc, "the agent sent no authtoken";
    /// Also the REST API's answer to a bad TCP address.
    TCP_ADDR_INVALID = 4502, 400, Rpc, "the TCP address has no valid port, or one outside the range served";
    TCP_UNKNOWN_HOST = 4504, 0, Rpc, "the TCP address's host is not this server's TCP host";
    /// Ours.
    TCP_PORTS_EXHAUSTED = 4505, 0, Rpc, "no free port is left in the TCP range";
    /// Ours: the message names the option.
    INVALID_OPTIONS = 9034, 0, Rpc, "the tunnel's options cannot be accepted";

    // The REST API.
    MISSING_AUTH = 200, 401, Api, "no Authorization header";
    BAD_AUTH_HEADER = 201, 401, Api, "the Authorization header is not a bearer token";
    INVALID_API_KEY = 203, 401, Api, "the API key is not valid";
    UNSUPPORTED_CONTENT_TYPE = 210, 400, Api, "the body's content type is not JSON";
    BAD_BODY = 213, 400, Api, "the body is not valid JSON for this resource";
    UNKNOWN_FIELD = 214, 400, Api, "the body has a field the resource does not";
    INVALID_VALUE = 215, 400, Api, "a field's value is not valid";
    MISSING_CONTENT_TYPE = 216, 400, Api, "the body has no content type";
    BAD_VERSION = 217, 400, Api, "the Ngrok-Version header names a version the API does not speak";
    MISSING_VERSION = 218, 400, Api, "no Ngrok-Version header";
    WRONG_ID_PREFIX = 227, 400, Api, "the id has the prefix of another kind of resource";
    BAD_QUERY = 230, 400, Api, "a query parameter is not valid";
    LIMIT_OUT_OF_RANGE = 233, 400, Api, "the page limit is out of range";
    INVALID_CIDR = 362, 400, Api, "an IP policy rule's CIDR is not valid";
    REFERENCED_NOT_FOUND = 380, 400, Api, "the body references a resource that does not exist";
    NOT_FOUND = 404, 404, Api, "no such resource or path";
    METHOD_NOT_ALLOWED = 405, 405, Api, "the path does not take this method";
    DESCRIPTION_TOO_LONG = 420, 400, Api, "description is longer than 255 bytes";
    METADATA_TOO_LONG = 421, 400, Api, "metadata is longer than 4096 bytes";
    INTERNAL = 500, 500, Api, "an internal error; the server log has it";
    INVALID_ACL_RULE = 600, 400, Api, "a credential's ACL rule is not valid";
    AUTH_MODULES_EXCLUSIVE = 7079, 400, Api, "a route may have one authentication module";
    TCP_EDGE_NEEDS_ADDR = 7120, 400, Api, "a TCP edge's hostport is not a reserved address";
    /// Ours, as are the 9000s below.
    IN_USE = 9040, 409, Api, "the resource is in use by another";
    DOMAIN_TAKEN = 9041, 409, Api, "the domain is already reserved";
    ADDR_TAKEN = 9042, 409, Api, "the TCP address is already reserved";
    HOSTPORT_NOT_RESERVED = 9043, 400, Api, "an edge's hostport is not reserved";
    HOSTPORT_TAKEN = 9044, 409, Api, "an edge already serves this hostport";
    INVALID_HOSTPORT = 9045, 400, Api, "a hostport is not host:port";
    INVALID_MATCH = 9046, 400, Api, "a route's match does not fit its match_type";
    AGENT_UNREACHABLE = 9049, 502, Api, "the agent serving the tunnel session cannot be reached";
    INVALID_PEM = 9050, 400, Api, "a certificate or key is not valid PEM";
    AGENT_REFUSED = 9052, 400, Api, "the agent refused the request sent to its session";

    // The agent, answering for its upstream.
    UPSTREAM_UNREACHABLE = 8012, 502, Agent, "the agent could not reach the upstream service";

    // The local agent API (ngrok's agent uses the 100s, as integers).
    AGENT_API_NOT_FOUND = 100, 404, AgentApi, "no such path, tunnel or capture";
    AGENT_API_BAD_REQUEST = 101, 400, AgentApi, "the request body is not valid";
    AGENT_API_INVALID_TUNNEL = 102, 400, AgentApi, "the tunnel definition is not valid";
    AGENT_API_START_FAILED = 103, 502, AgentApi, "the edge refused to start the tunnel";
    AGENT_API_UNSUPPORTED_MEDIA_TYPE = 104, 415, AgentApi, "the body's content type is not JSON";
    AGENT_API_METHOD_NOT_ALLOWED = 105, 405, AgentApi, "the path does not take this method";
    AGENT_API_REPLAY_FAILED = 106, 502, AgentApi, "the captured request could not be replayed";
    AGENT_API_FORBIDDEN_HOST = 107, 403, AgentApi, "the Host is not one the interface answers";
}

/// The code whose `ERR_NGROK_…` string is `id`.
pub fn by_id(id: &str) -> Option<Code> {
    ALL.iter()
        .find(|c| c.namespace() == Namespace::Ngrok && c.id == id)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_number_means_one_thing_in_its_namespace() {
        let mut seen: HashMap<(u16, bool), &str> = HashMap::new();
        for c in ALL {
            let key = (c.number, c.namespace() == Namespace::Ngrok);
            if let Some(other) = seen.insert(key, c.meaning) {
                panic!("{} is defined twice: {other:?} and {:?}", c.id, c.meaning);
            }
        }
    }

    #[test]
    fn every_code_says_what_it_means_and_how_it_is_answered() {
        for c in ALL {
            assert!(!c.meaning.is_empty(), "{}", c.id);
            assert!(c.id.ends_with(&c.number.to_string()), "{}", c.id);
            match c.surface {
                Surface::Rpc => assert!(c.status == 0 || c.status >= 400, "{}", c.id),
                _ => assert!((400..600).contains(&c.status), "{}", c.id),
            }
        }
        assert_eq!(IP_BLOCKED.as_str(), "ERR_NGROK_3205");
        assert_eq!(AGENT_API_FORBIDDEN_HOST.as_str(), "107");
        assert_eq!(by_id("ERR_NGROK_107"), Some(AUTHTOKEN_INVALID));
    }
}
