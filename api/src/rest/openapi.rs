//! The OpenAPI 3.0 description of the API, served at `GET /openapi.json`.
//!
//! Built from the same types that serve requests: each body's properties
//! are the field names its request struct accepts (read through serde, so
//! the document cannot drift from what the API takes), each collection's
//! path, list key and id prefix come from its [`Kind`].

use std::sync::OnceLock;

use gangway_config::resources::{
    AgentIngress, ApiKey, BackendModule, CertificateAuthority, CircuitBreakerModule, Credential,
    EnabledModule, HeadersModule, HttpsEdge, IpPolicy, IpPolicyRule, IpRestrictionModule,
    KubernetesOperator, MutualTlsModule, ReservedAddr, ReservedDomain, TcpEdge, TlsCertificate,
    TlsEdge, TlsTerminationModule, TrafficPolicyModule, TunnelGroupBackend, UserAgentFilterModule,
    WebhookVerificationModule,
};
use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{json, Map, Value};

use crate::resources::routes::RouteInput;
use crate::resources::{Kind, Resource};

/// The field names a request struct accepts, read from its `Deserialize`
/// impl (which hands them to `deserialize_struct`).
fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe done")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

/// A request body: an object of exactly these fields.
fn body<T: DeserializeOwned>() -> Value {
    let props: Map<String, Value> = fields::<T>()
        .iter()
        .map(|f| ((*f).to_string(), json!({})))
        .collect();
    json!({
        "required": true,
        "content": {"application/json": {"schema": {
            "type": "object", "properties": props, "additionalProperties": false,
        }}},
    })
}

fn ok(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"type": "object"}}}})
}

fn list_ok(key: &str) -> Value {
    json!({"description": "A page, newest first", "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {
            key: {"type": "array", "items": {"type": "object"}},
            "uri": {"type": "string"},
            "next_page_uri": {"type": "string", "nullable": true},
        },
    }}}})
}

fn errors() -> Value {
    json!({"default": {"$ref": "#/components/responses/Error"}})
}

fn op(summary: String, mut responses: Map<String, Value>, request: Option<Value>) -> Value {
    if let Value::Object(e) = errors() {
        responses.extend(e);
    }
    let mut o = json!({"summary": summary, "responses": responses});
    if let Some(b) = request {
        o["requestBody"] = b;
    }
    o
}

fn resp(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn path_params(path: &str) -> Value {
    let names: Vec<&str> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .collect();
    names
        .iter()
        .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

const LIST_PARAMS: [(&str, &str); 2] = [
    ("before_id", "List items older than this id"),
    ("limit", "Page size, 1 to 100"),
];

struct Doc {
    paths: Map<String, Value>,
}

impl Doc {
    fn add(&mut self, path: &str, method: &str, operation: Value) {
        let entry = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| json!({"parameters": path_params(path)}));
        entry[method] = operation;
    }

    fn list(&mut self, path: &str, noun: &str, key: &str) {
        let mut o = op(
            format!("List {noun}s"),
            resp(&[("200", list_ok(key))]),
            None,
        );
        o["parameters"] = LIST_PARAMS
            .iter()
            .map(|(n, d)| json!({"name": n, "in": "query", "description": d, "schema": {"type": "string"}}))
            .collect();
        self.add(path, "get", o);
    }

    /// Create/list at the collection, get/update/delete at `/{id}`.
    fn crud<R: Resource>(&mut self) {
        let Kind {
            path,
            noun,
            list_key,
            prefix,
            ..
        } = R::KIND;
        let one = format!("{path}/{{id}}");
        self.add(
            path,
            "post",
            op(
                format!("Create a {noun} (ids start {prefix}_)"),
                resp(&[("201", ok(&format!("The new {noun}")))]),
                Some(body::<R::Create>()),
            ),
        );
        self.list(path, noun, list_key);
        self.add(
            &one,
            "get",
            op(format!("Get a {noun}"), resp(&[("200", ok(noun))]), None),
        );
        self.add(
            &one,
            "patch",
            op(
                format!("Update a {noun}"),
                resp(&[("200", ok(noun))]),
                Some(body::<R::Update>()),
            ),
        );
        self.add(
            &one,
            "delete",
            op(
                format!("Delete a {noun}"),
                resp(&[("204", json!({"description": "Deleted"}))]),
                None,
            ),
        );
    }

    /// PUT/GET/DELETE of one module at `path`.
    fn module(&mut self, path: &str, name: &str, request: Value) {
        self.add(
            path,
            "put",
            op(
                format!("Set {name}"),
                resp(&[("200", ok(name))]),
                Some(request),
            ),
        );
        self.add(
            path,
            "get",
            op(format!("Get {name}"), resp(&[("200", ok(name))]), None),
        );
        self.add(
            path,
            "delete",
            op(
                format!("Remove {name}"),
                resp(&[("204", json!({"description": "Removed"}))]),
                None,
            ),
        );
    }
}

/// The request body of a module by name; oauth/saml/oidc are free-form
/// objects until the identity modules land.
fn module_body(name: &str) -> Value {
    match name {
        "backend" => body::<BackendModule>(),
        "ip_restriction" => body::<IpRestrictionModule>(),
        "circuit_breaker" => body::<CircuitBreakerModule>(),
        "compression" | "websocket_tcp_converter" => body::<EnabledModule>(),
        "request_headers" | "response_headers" => body::<HeadersModule>(),
        "webhook_verification" => body::<WebhookVerificationModule>(),
        "user_agent_filter" => body::<UserAgentFilterModule>(),
        "traffic_policy" => body::<TrafficPolicyModule>(),
        "mutual_tls" => body::<MutualTlsModule>(),
        "tls_termination" => body::<TlsTerminationModule>(),
        _ => {
            json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}})
        }
    }
}

fn build() -> Value {
    let mut d = Doc { paths: Map::new() };
    d.crud::<ApiKey>();
    d.crud::<Credential>();
    d.crud::<ReservedDomain>();
    d.crud::<ReservedAddr>();
    d.crud::<IpPolicy>();
    d.crud::<IpPolicyRule>();
    d.crud::<CertificateAuthority>();
    d.crud::<TlsCertificate>();
    d.crud::<TunnelGroupBackend>();
    d.crud::<AgentIngress>();
    d.crud::<KubernetesOperator>();
    d.crud::<HttpsEdge>();
    d.crud::<TcpEdge>();
    d.crud::<TlsEdge>();
    for m in ["mutual_tls", "tls_termination"] {
        d.module(&format!("/edges/https/{{id}}/{m}"), m, module_body(m));
    }
    for m in crate::resources::l4_edges::TCP_MODULES {
        d.module(&format!("/edges/tcp/{{id}}/{m}"), m, module_body(m));
    }
    for m in crate::resources::l4_edges::TLS_MODULES {
        d.module(&format!("/edges/tls/{{id}}/{m}"), m, module_body(m));
    }
    let routes = "/edges/https/{edge_id}/routes";
    d.add(
        routes,
        "post",
        op(
            "Create an HTTPS edge route".into(),
            resp(&[("201", ok("The new route"))]),
            Some(body::<RouteInput>()),
        ),
    );
    let route = format!("{routes}/{{id}}");
    d.add(
        &route,
        "get",
        op("Get a route".into(), resp(&[("200", ok("route"))]), None),
    );
    d.add(
        &route,
        "patch",
        op(
            "Update a route".into(),
            resp(&[("200", ok("route"))]),
            Some(body::<RouteInput>()),
        ),
    );
    d.add(
        &route,
        "delete",
        op(
            "Delete a route".into(),
            resp(&[("204", json!({"description": "Deleted"}))]),
            None,
        ),
    );
    for m in crate::resources::routes::MODULES {
        d.module(&format!("{route}/{m}"), m, module_body(m));
    }
    d.list("/tunnel_sessions", "tunnel session", "tunnel_sessions");
    d.add(
        "/tunnel_sessions/{id}",
        "get",
        op(
            "Get a tunnel session".into(),
            resp(&[("200", ok("tunnel session"))]),
            None,
        ),
    );
    for cmd in ["restart", "stop", "update"] {
        d.add(
            &format!("/tunnel_sessions/{{id}}/{cmd}"),
            "post",
            op(
                format!("Ask the session's agent to {cmd}"),
                resp(&[("200", ok("The agent accepted the command"))]),
                None,
            ),
        );
    }
    d.list("/tunnels", "tunnel", "tunnels");
    d.add(
        "/tunnels/{id}",
        "get",
        op("Get a tunnel".into(), resp(&[("200", ok("tunnel"))]), None),
    );
    d.list("/endpoints", "endpoint", "endpoints");
    d.add(
        "/endpoints/{id}",
        "get",
        op(
            "Get an endpoint".into(),
            resp(&[("200", ok("endpoint"))]),
            None,
        ),
    );
    d.list(
        "/kubernetes_operators/{id}/bound_endpoints",
        "bound endpoint",
        "endpoints",
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Gangway API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The ngrok-compatible REST API of a Gangway deployment. Send 'Authorization: Bearer <api key>' and 'Ngrok-Version: 2'.",
        },
        "security": [{"bearer": []}],
        "paths": d.paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {
                "description": "An error in ngrok's shape",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {
                        "error_code": {"type": "string", "example": "ERR_NGROK_215"},
                        "status_code": {"type": "integer"},
                        "msg": {"type": "string"},
                        "details": {"type": "object"},
                    },
                }}},
            }},
        },
    })
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_list_the_fields_their_structs_accept() {
        let doc = document();
        let props = &doc["paths"]["/certificate_authorities"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["properties"];
        let mut names: Vec<&str> = props
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        names.sort();
        assert_eq!(names, ["ca_pem", "description", "metadata"]);
        let cb = &doc["paths"]["/edges/https/{edge_id}/routes/{id}/circuit_breaker"]["put"]
            ["requestBody"]["content"]["application/json"]["schema"]["properties"];
        assert!(cb.get("error_threshold_percentage").is_some(), "{cb}");
        assert_eq!(
            doc["paths"]["/edges/tcp/{id}/{module}"],
            Value::Null,
            "modules are spelled out per kind"
        );
        assert!(doc["paths"]["/edges/tls/{id}/mutual_tls"]["put"].is_object());
        assert!(doc["paths"]["/kubernetes_operators/{id}"]["patch"].is_object());
    }
}
