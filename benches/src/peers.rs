//! The systems the harness compares, each started on loopback in front of
//! the same local services: Gangway (edge + agents), rathole and bore as
//! TCP tunnels, and nginx as a TLS-terminating reverse proxy.
//!
//! A system exposes one public address per target it was given, in the
//! same order, and keeps its processes alive until it is dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{rss_kib, start_agent, start_server, wait_for, Proc};

/// One system under test.
pub struct System {
    pub name: &'static str,
    /// How it was set up, for the results file.
    pub note: &'static str,
    /// Public address of each target, in the order they were given.
    pub public: Vec<SocketAddr>,
    pub procs: Vec<Proc>,
    /// Processes it started itself (nginx's worker): counted, not owned.
    pub other_pids: Vec<u32>,
}

impl System {
    /// The targets themselves, with nothing in between.
    pub fn direct(targets: &[SocketAddr], note: &'static str) -> System {
        System {
            name: "direct",
            note,
            public: targets.to_vec(),
            procs: Vec::new(),
            other_pids: Vec::new(),
        }
    }

    /// RSS of all its processes, in MiB; `None` for `direct`.
    pub fn rss_mib(&self) -> Option<f64> {
        if self.procs.is_empty() {
            return None;
        }
        let pids = self.procs.iter().map(|p| p.0.id());
        let kib: Option<u64> = pids
            .chain(self.other_pids.iter().copied())
            .map(rss_kib)
            .sum();
        kib.map(|k| k as f64 / 1024.0)
    }
}

pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn port_of(url: &str) -> Result<u16, String> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {url}"))
}

/// A Gangway edge and one `gangway tcp` agent per target.
pub fn gangway_tcp(dir: &Path, targets: &[SocketAddr]) -> Result<System, String> {
    let (server, _) = start_server(dir, 1, &[])?;
    let mut procs = vec![server];
    let mut public = Vec::new();
    for t in targets {
        let (agent, url) = start_agent(dir, &["tcp", &t.to_string()])?;
        procs.push(agent);
        public.push(loopback(port_of(&url)?));
    }
    Ok(System {
        name: "gangway",
        note: "edge + one agent per service; agent link is TLS (BoringSSL) + muxado, one stream per connection",
        public,
        procs,        other_pids: Vec::new(),
    })
}

fn spawn_quiet(cmd: &mut Command, install_hint: &str) -> Result<Proc, String> {
    cmd.env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc)
        .map_err(|e| format!("starting {:?} ({install_hint}): {e}", cmd.get_program()))
}

/// rathole 0.5: one server and one client carrying every target.
pub fn rathole(dir: &Path, targets: &[SocketAddr]) -> Result<System, String> {
    let control = free_port()?;
    let mut server_toml = format!("[server]\nbind_addr = \"127.0.0.1:{control}\"\n");
    let mut client_toml = format!("[client]\nremote_addr = \"127.0.0.1:{control}\"\n");
    let mut public = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let port = free_port()?;
        server_toml.push_str(&format!(
            "[server.services.s{i}]\ntoken = \"bench\"\nbind_addr = \"127.0.0.1:{port}\"\n"
        ));
        client_toml.push_str(&format!(
            "[client.services.s{i}]\ntoken = \"bench\"\nlocal_addr = \"{t}\"\n"
        ));
        public.push(loopback(port));
    }
    let (s_path, c_path) = (
        dir.join("rathole-server.toml"),
        dir.join("rathole-client.toml"),
    );
    std::fs::write(&s_path, server_toml).map_err(|e| e.to_string())?;
    std::fs::write(&c_path, client_toml).map_err(|e| e.to_string())?;
    let hint = "cargo install rathole --version 0.5.0";
    let server = spawn_quiet(Command::new("rathole").arg("--server").arg(&s_path), hint)?;
    let client = spawn_quiet(Command::new("rathole").arg("--client").arg(&c_path), hint)?;
    Ok(System {
        name: "rathole 0.5",
        note: "server + client; plain TCP transport (no encryption), default config",
        public,
        procs: vec![server, client],
        other_pids: Vec::new(),
    })
}

/// bore 0.6: one server and one `bore local` client per target.
pub fn bore(targets: &[SocketAddr]) -> Result<System, String> {
    let hint = "cargo install bore-cli --version 0.6.0";
    let server = spawn_quiet(
        Command::new("bore").args(["server", "--bind-addr", "127.0.0.1"]),
        hint,
    )?;
    // bore's control port is fixed (7835).
    wait_for("bore server", || {
        std::net::TcpStream::connect("127.0.0.1:7835")
            .ok()
            .map(|_| ())
    })?;
    let mut procs = vec![server];
    let mut public = Vec::new();
    for t in targets {
        let port = free_port()?;
        procs.push(spawn_quiet(
            Command::new("bore")
                .args(["local", &t.port().to_string(), "--local-host"])
                .arg(t.ip().to_string())
                .args(["--to", "127.0.0.1", "--port", &port.to_string()]),
            hint,
        )?);
        public.push(loopback(port));
    }
    Ok(System {
        name: "bore 0.6",
        note: "server + one client per service; plain TCP, a control round trip and a new data connection per connection",
        public,
        procs,        other_pids: Vec::new(),
    })
}

/// nginx from Debian as a TLS-terminating reverse proxy to `app` (one
/// worker, keep-alive upstream pool), with the certificate and key in
/// `cert_pem`/`key_pem`. Its public address is HTTPS.
pub fn nginx(dir: &Path, app: SocketAddr, cert_pem: &str, key_pem: &str) -> Result<System, String> {
    let port = free_port()?;
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("tmp")).map_err(|e| e.to_string())?;
    std::fs::write(root.join("cert.pem"), cert_pem).map_err(|e| e.to_string())?;
    std::fs::write(root.join("key.pem"), key_pem).map_err(|e| e.to_string())?;
    let conf = format!(
        "worker_processes 1;\n\
         daemon off;\n\
         pid {root}/nginx.pid;\n\
         error_log {root}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {root}/tmp/body;\n\
           proxy_temp_path {root}/tmp/proxy;\n\
           fastcgi_temp_path {root}/tmp/fastcgi;\n\
           uwsgi_temp_path {root}/tmp/uwsgi;\n\
           scgi_temp_path {root}/tmp/scgi;\n\
           upstream app {{ server {app}; keepalive 64; }}\n\
           server {{\n\
             listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {root}/cert.pem;\n\
             ssl_certificate_key {root}/key.pem;\n\
             keepalive_requests 1000000;\n\
             location / {{\n\
               proxy_pass http://app;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
             }}\n\
           }}\n\
         }}\n",
        root = root.display()
    );
    let conf_path = root.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let master = spawn_quiet(
        Command::new(nginx_bin()).arg("-c").arg(&conf_path),
        "apt-get install nginx",
    )?;
    let addr = loopback(port);
    wait_for("nginx", || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    })?;
    // The worker's memory counts too; it is the master's only child.
    let master_pid = master.0.id();
    let workers = wait_for("nginx worker", || {
        Some(children_of(master_pid)).filter(|c| !c.is_empty())
    })?;
    Ok(System {
        name: "nginx",
        note: "Debian nginx, 1 worker, TLS termination + keep-alive proxy_pass to the app",
        public: vec![addr],
        procs: vec![master],
        other_pids: workers,
    })
}

fn nginx_bin() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// Pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the parenthesised command name.
                    let rest = s.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}
