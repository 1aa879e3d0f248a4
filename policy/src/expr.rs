//! CEL: programs compiled once against one shared environment, the
//! per-request [`Scope`] that binds `conn`, `req`, `res`, `endpoint`,
//! `time`, `vars` and `actions`, the functions ngrok users rely on beyond
//! standard CEL, and `${expr}` interpolation in string config.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use cel::{Context, Env, Program, Value};
use serde_json::Value as Json;

use crate::PolicyError;

/// Which phase an expression runs in decides which variables exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    TcpConnect,
    HttpRequest,
    HttpResponse,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::TcpConnect => "on_tcp_connect",
            Phase::HttpRequest => "on_http_request",
            Phase::HttpResponse => "on_http_response",
        }
    }
}

/// The standard library, macros and the strings extension (`lowerAscii`,
/// `replace`, `split`, ...), built once.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Registering a published extension on a fresh stdlib cannot
        // conflict; if it ever did, expressions using it fail to compile
        // with a clear error instead.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::encoders);
        Arc::new(env)
    })
}

/// A compiled CEL expression and its source.
#[derive(Debug)]
pub struct Expr {
    pub source: String,
    program: Program,
}

impl Expr {
    pub fn compile(source: &str, path: &str, phase: Phase) -> Result<Expr, PolicyError> {
        let program = env()
            .compile(source)
            .map_err(|e| PolicyError::new(path, format!("not a valid CEL expression: {e}")))?;
        let refs = program.references();
        let unavailable = match phase {
            Phase::TcpConnect => ["req", "res"].iter().find(|v| refs.has_variable(v)),
            Phase::HttpRequest => ["res"].iter().find(|v| refs.has_variable(v)),
            Phase::HttpResponse => None,
        };
        if let Some(v) = unavailable {
            return Err(PolicyError::new(
                path,
                format!("`{v}` is not available in {}", phase.name()),
            ));
        }
        Ok(Expr {
            source: source.to_string(),
            program,
        })
    }

    /// Evaluates in `scope`; a runtime error is the request's error.
    pub fn eval(&self, scope: &Scope) -> Result<Value, String> {
        self.program
            .execute(scope.context())
            .map_err(|e| format!("{}: {e}", self.source))
    }

    /// Evaluates to a bool, as rule expressions must.
    pub fn matches(&self, scope: &Scope) -> Result<bool, String> {
        match self.eval(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "{}: evaluated to {other:?}, not a bool",
                self.source
            )),
        }
    }
}

/// What expressions can see for one request (or connection).
#[derive(Default)]
pub struct Scope {
    /// `conn`, `req`, `res`, `endpoint`, `time`, `vars`, `actions`, as JSON;
    /// edited through [`Scope::roots_mut`] so the CEL context follows.
    roots: serde_json::Map<String, Json>,
    /// Request headers by lowercase name, for `getReqHeader`/`hasReqHeader`.
    pub req_headers: Arc<HashMap<String, Vec<String>>>,
    /// Query parameters by name, for `getQueryParam`.
    pub query: Arc<HashMap<String, Vec<String>>>,
    /// The CEL context built from the above, once per change rather than
    /// once per expression.
    context: OnceCell<Context<'static, 'static>>,
}

impl Clone for Scope {
    fn clone(&self) -> Self {
        Scope {
            roots: self.roots.clone(),
            req_headers: self.req_headers.clone(),
            query: self.query.clone(),
            context: OnceCell::new(),
        }
    }
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").field("roots", &self.roots).finish()
    }
}

/// A scope's variables without its CEL context (which is neither `Send`
/// nor `Sync`): what a request keeps between its phases.
#[derive(Debug, Clone, Default)]
pub struct SavedScope {
    roots: serde_json::Map<String, Json>,
    req_headers: Arc<HashMap<String, Vec<String>>>,
    query: Arc<HashMap<String, Vec<String>>>,
}

impl SavedScope {
    pub fn restore(self) -> Scope {
        Scope {
            roots: self.roots,
            req_headers: self.req_headers,
            query: self.query,
            context: OnceCell::new(),
        }
    }
}

impl Scope {
    pub fn save(self) -> SavedScope {
        SavedScope {
            roots: self.roots,
            req_headers: self.req_headers,
            query: self.query,
        }
    }

    pub fn roots(&self) -> &serde_json::Map<String, Json> {
        &self.roots
    }

    /// The variables, for editing; the CEL context is rebuilt on next use.
    pub fn roots_mut(&mut self) -> &mut serde_json::Map<String, Json> {
        self.context = OnceCell::new();
        &mut self.roots
    }

    fn context(&self) -> &Context<'static, 'static> {
        self.context.get_or_init(|| self.build_context())
    }

    fn build_context(&self) -> Context<'static, 'static> {
        let mut ctx = Context::with_env(env().clone());
        for (name, value) in &self.roots {
            if let Ok(v) = cel::to_value(value) {
                ctx.add_variable_from_value(name.clone(), v);
            }
        }
        let headers = self.req_headers.clone();
        let _ = ctx.add_function("getReqHeader", move |name: Arc<String>| -> Value {
            string_list(headers.get(&name.to_ascii_lowercase()))
        });
        let headers = self.req_headers.clone();
        let _ = ctx.add_function("hasReqHeader", move |name: Arc<String>| -> bool {
            headers.contains_key(&name.to_ascii_lowercase())
        });
        let query = self.query.clone();
        let _ = ctx.add_function("getQueryParam", move |name: Arc<String>| -> Value {
            string_list(query.get(name.as_str()))
        });
        let _ = ctx.add_function(
            "inCidrRange",
            |ip: Arc<String>, cidr: Arc<String>| -> bool { in_cidr(&ip, &cidr) },
        );
        let _ = ctx.add_function(
            "inCidrRanges",
            |ip: Arc<String>, cidrs: Arc<Vec<Value>>| -> bool {
                cidrs.iter().any(|c| match c {
                    Value::String(c) => in_cidr(&ip, c),
                    _ => false,
                })
            },
        );
        ctx
    }

    /// Sets `vars.<name>`.
    pub fn set_var(&mut self, name: &str, value: Json) {
        let vars = self
            .roots_mut()
            .entry("vars")
            .or_insert_with(|| Json::Object(Default::default()));
        if let Json::Object(m) = vars {
            m.insert(name.to_string(), value);
        }
    }
}

fn string_list(values: Option<&Vec<String>>) -> Value {
    let items = values
        .map(|v| v.iter().map(|s| Value::from(s.as_str())).collect())
        .unwrap_or_default();
    Value::List(Arc::new(items))
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let Ok(ip) = ip.trim().parse::<IpAddr>() else {
        return false;
    };
    match cidr.trim().parse::<ipnet::IpNet>() {
        Ok(net) => net.contains(&ip),
        Err(_) => cidr.trim().parse::<IpAddr>().is_ok_and(|one| one == ip),
    }
}

/// A string with `${expr}` parts.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Lit(String),
    Expr(Expr),
}

impl Template {
    pub fn compile(s: &str, path: &str, phase: Phase) -> Result<Template, PolicyError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = closing_brace(after).ok_or_else(|| {
                PolicyError::new(path, "`${` without its closing `}`".to_string())
            })?;
            parts.push(Part::Expr(Expr::compile(&after[..end], path, phase)?));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Whether the string needs no evaluation.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    pub fn render(&self, scope: &Scope) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Expr(e) => out.push_str(&display(&e.eval(scope)?)),
            }
        }
        Ok(out)
    }
}

/// The `}` closing an interpolation, skipping braces inside CEL strings
/// and map literals.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// How a value reads when interpolated into a string.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::List(items) => items.iter().map(display).collect::<Vec<_>>().join(","),
        other => match to_json(other) {
            Some(j) => j.to_string(),
            None => format!("{other:?}"),
        },
    }
}

/// A CEL value as JSON (for `set-vars` and `log`).
pub fn to_json(v: &Value) -> Option<Json> {
    Some(match v {
        Value::String(s) => Json::String(s.to_string()),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => Json::from(*f),
        Value::Bool(b) => Json::Bool(*b),
        Value::Null => Json::Null,
        Value::List(items) => Json::Array(items.iter().filter_map(to_json).collect()),
        Value::Map(m) => Json::Object(
            m.map
                .iter()
                .filter_map(|(k, v)| Some((key_string(k), to_json(v)?)))
                .collect(),
        ),
        _ => return None,
    })
}

fn key_string(k: &cel::objects::Key) -> String {
    match k {
        cel::objects::Key::String(s) => s.to_string(),
        cel::objects::Key::Int(i) => i.to_string(),
        cel::objects::Key::Uint(u) => u.to_string(),
        cel::objects::Key::Bool(b) => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.roots_mut().insert(
            "req".into(),
            json!({"method": "GET", "url": {"path": "/api/v1"}, "headers": {"x-a": ["1"]}}),
        );
        s.roots_mut()
            .insert("conn".into(), json!({"client_ip": "10.1.2.3"}));
        s.req_headers = Arc::new(HashMap::from([("x-a".into(), vec!["1".into()])]));
        s.query = Arc::new(HashMap::from([("q".into(), vec!["cats".into()])]));
        s
    }

    fn eval(src: &str) -> Value {
        Expr::compile(src, "e", Phase::HttpRequest)
            .unwrap()
            .eval(&scope())
            .unwrap()
    }

    #[test]
    fn variables_and_extra_functions() {
        assert_eq!(
            eval("req.method == 'GET' && req.url.path.startsWith('/api')"),
            Value::Bool(true)
        );
        assert_eq!(
            eval("inCidrRange(conn.client_ip, '10.0.0.0/8')"),
            Value::Bool(true)
        );
        assert_eq!(
            eval("inCidrRanges(conn.client_ip, ['192.0.2.0/24', '10.1.2.3'])"),
            Value::Bool(true)
        );
        assert_eq!(
            eval("hasReqHeader('X-A') && getReqHeader('x-a')[0] == '1'"),
            Value::Bool(true)
        );
        assert_eq!(eval("getReqHeader('nope').size() == 0"), Value::Bool(true));
        assert_eq!(eval("getQueryParam('q') == ['cats']"), Value::Bool(true));
        assert_eq!(eval("'ABC'.lowerAscii()"), Value::from("abc"));
    }

    #[test]
    fn compile_errors_name_the_path_and_phase_variables() {
        let e = Expr::compile(
            "req.method ==",
            "on_http_request[0].expressions[0]",
            Phase::HttpRequest,
        )
        .unwrap_err();
        assert_eq!(e.path, "on_http_request[0].expressions[0]");
        let e = Expr::compile("res.status_code == 500", "p", Phase::HttpRequest).unwrap_err();
        assert!(e.message.contains("`res`"), "{e}");
        assert!(Expr::compile("res.status_code == 500", "p", Phase::HttpResponse).is_ok());
    }

    #[test]
    fn runtime_errors_are_errors_not_panics() {
        let e = Expr::compile("req.nope.deeper == 1", "p", Phase::HttpRequest).unwrap();
        assert!(e.matches(&scope()).is_err());
        let e = Expr::compile("req.method", "p", Phase::HttpRequest).unwrap();
        assert!(e.matches(&scope()).unwrap_err().contains("not a bool"));
    }

    #[test]
    fn templates_interpolate() {
        let t = Template::compile(
            "ip=${conn.client_ip} path=${req.url.path + '!'}",
            "p",
            Phase::HttpRequest,
        )
        .unwrap();
        assert_eq!(t.render(&scope()).unwrap(), "ip=10.1.2.3 path=/api/v1!");
        let t = Template::compile("${ {'a': 1}['a'] }", "p", Phase::HttpRequest).unwrap();
        assert_eq!(t.render(&scope()).unwrap(), "1");
        assert!(Template::compile("${oops", "p", Phase::HttpRequest).is_err());
        assert_eq!(
            Template::compile("plain", "p", Phase::HttpRequest)
                .unwrap()
                .literal(),
            Some("plain")
        );
    }
}
