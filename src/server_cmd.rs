//! `gangway server`: prepares the data dir, starts the edge, and publishes
//! `server.json` once every listener accepts connections.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use gangway_config::edge::{
    DEFAULT_AGENT_PORT, DEFAULT_API_PORT, DEFAULT_BASE_DOMAIN, DEFAULT_HTTPS_PORT,
    DEFAULT_HTTP_PORT,
};
use gangway_config::hostname::normalize_hostname;
use gangway_config::server_info::SERVER_INFO_FILE;
use gangway_config::{EdgeConfig, ServerInfo};

use crate::data_dir::{default_data_dir, write_private, DataDir};

/// Listeners must accept within this long after start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct ServerArgs {
    /// Where the CA, certificates, authtoken and server.json live
    /// [default: ~/.local/share/gangway].
    #[arg(long, env = "GANGWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Random tunnel names are allocated under this domain.
    #[arg(long, default_value = DEFAULT_BASE_DOMAIN)]
    base_domain: String,
    /// Agent listener (TLS). Port 0 picks a free port.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_AGENT_PORT)))]
    agent_addr: SocketAddr,
    /// Public HTTP listener. Port 0 picks a free port.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)))]
    http_addr: SocketAddr,
    /// Public HTTPS listener. Port 0 picks a free port.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTPS_PORT)))]
    https_addr: SocketAddr,
    /// REST API listener (plain HTTP: keep it on loopback or behind a
    /// TLS proxy). Port 0 picks a free port.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)))]
    api_addr: SocketAddr,
    /// Worker threads per listener.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Address TCP endpoints listen on.
    #[arg(long, default_value = "127.0.0.1")]
    tcp_addr: std::net::IpAddr,
    /// Host name shown in tcp:// URLs [default: localhost for a loopback
    /// or wildcard --tcp-addr, else the address].
    #[arg(long)]
    tcp_host: Option<String>,
    /// Ports TCP endpoints are allocated from, `FIRST-LAST`.
    #[arg(long, default_value = "20000-20999", value_parser = parse_port_range)]
    tcp_ports: std::ops::RangeInclusive<u16>,
    /// Region name reported to agents (e.g. `eu`); agents asking for
    /// another region are told which one they got.
    #[arg(long, default_value = "local", value_parser = parse_region)]
    region: String,
    /// Where to write one JSON event per HTTP request and TCP connection
    /// (`http_request_complete.v0`, `tcp_connection_closed.v0`): `off`,
    /// `stdout`, or a file path to append to.
    #[arg(long, env = "GANGWAY_EVENTS", default_value = "off")]
    events: gangway_config::edge::EventsOutput,
    /// PEM CAs to trust, besides the system's, for documents the edge
    /// fetches for modules (SNS signing certificates).
    #[arg(long, value_name = "FILE")]
    outbound_ca: Option<PathBuf>,
    /// Connect to ADDR:PORT when fetching from HOST:PORT, still verifying
    /// HOST's certificate (curl's --connect-to; repeatable).
    #[arg(long, value_name = "HOST:PORT:ADDR:PORT")]
    connect_to: Vec<String>,
}

fn parse_region(s: &str) -> Result<String, String> {
    let s = s.trim().to_ascii_lowercase();
    gangway_config::hostname::validate_label(&s).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(s)
}

fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let first: u16 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let last: u16 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if first == 0 || first > last {
        return Err(format!("{s:?} is not a range FIRST-LAST of ports 1-65535"));
    }
    Ok(first..=last)
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::DataDirError),
    #[error("--base-domain: {0}")]
    BaseDomain(gangway_config::HostnameError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Edge(#[from] gangway_edge::EdgeError),
    #[error(transparent)]
    Control(#[from] crate::control_plane::ControlError),
}

/// Port 0 means "any free port": pick one now so the address can be
/// published, and hold it with a bound (not listening) SO_REUSEPORT socket
/// until the process exits. Pingora and the API bind it moments later with
/// SO_REUSEPORT; without the hold, another process's `bind(:0)` could take
/// the port in between and answer on it in our name.
struct Ports {
    held: Vec<socket2::Socket>,
    reserved: Vec<SocketAddr>,
}

impl Ports {
    fn resolve(&mut self, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
        if addr.port() != 0 {
            return Ok(addr);
        }
        let bind_err = |source| ServerError::Bind { addr, source };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(bind_err)?;
        socket.set_reuse_port(true).map_err(bind_err)?;
        socket.bind(&addr.into()).map_err(bind_err)?;
        let picked = socket
            .local_addr()
            .map_err(bind_err)?
            .as_socket()
            .ok_or_else(|| bind_err(std::io::Error::other("not an inet address")))?;
        self.held.push(socket);
        self.reserved.push(picked);
        Ok(picked)
    }
}

/// How clients should dial a listen address: a wildcard bind is reached
/// over loopback; loopback is named `localhost` so certificates match.
fn dial_addr(addr: SocketAddr, prefer_name: bool) -> String {
    let ip = addr.ip();
    if prefer_name && (ip.is_loopback() || ip.is_unspecified()) {
        return format!("localhost:{}", addr.port());
    }
    if ip.is_unspecified() {
        return format!("127.0.0.1:{}", addr.port());
    }
    addr.to_string()
}

pub fn run(args: ServerArgs) -> Result<(), ServerError> {
    let base_domain =
        normalize_hostname(&args.base_domain, false).map_err(ServerError::BaseDomain)?;
    let root = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let dir = DataDir::prepare(&root, &base_domain)?;
    let mut ports = Ports {
        held: Vec::new(),
        reserved: Vec::new(),
    };
    let agent_addr = ports.resolve(args.agent_addr)?;
    let http_addr = ports.resolve(args.http_addr)?;
    let https_addr = ports.resolve(args.https_addr)?;
    let api_addr = ports.resolve(args.api_addr)?;
    let cfg = EdgeConfig {
        base_domain: base_domain.clone(),
        agent_addr,
        http_addr,
        https_addr,
        cert_path: dir.cert.clone(),
        key_path: dir.key.clone(),
        // Agents authenticate against the stored credentials; the
        // first-light authtoken is one of them (see control_plane).
        authtokens: Vec::new(),
        threads: args.threads,
        tcp_ip: args.tcp_addr,
        tcp_host: args.tcp_host.clone().unwrap_or_else(|| {
            if args.tcp_addr.is_loopback() || args.tcp_addr.is_unspecified() {
                "localhost".to_string()
            } else {
                args.tcp_addr.to_string()
            }
        }),
        tcp_ports: args.tcp_ports.clone(),
        region: args.region.clone(),
        events: args.events.clone(),
        reserved: ports.reserved.clone(),
        outbound_ca: args.outbound_ca.clone(),
        connect_to: args.connect_to.clone(),
    };
    let info = ServerInfo {
        agent_addr: dial_addr(cfg.agent_addr, true),
        http_addr: dial_addr(cfg.http_addr, false),
        https_addr: dial_addr(cfg.https_addr, false),
        base_domain,
        ca_cert: dir.ca_cert.display().to_string(),
        authtoken: dir.authtoken.clone(),
        tcp_host: cfg.tcp_host.clone(),
        tcp_ports: format!("{}-{}", cfg.tcp_ports.start(), cfg.tcp_ports.end()),
        api_addr: dial_addr(api_addr, false),
        api_url: format!("http://{}", dial_addr(api_addr, false)),
        api_key: String::new(),
    };
    let listeners = [
        (cfg.agent_addr, true),
        (cfg.http_addr, false),
        (cfg.https_addr, true),
        (api_addr, false),
    ];
    let info_path = root.join(SERVER_INFO_FILE);
    // A stale server.json from a previous run must not mislead agents.
    let _ = std::fs::remove_file(&info_path);
    let control = crate::control_plane::ControlOptions {
        data_dir: &root,
        api_addr,
        api_reserved: ports.reserved.contains(&api_addr),
        authtoken: &dir.authtoken,
        base_domain: cfg.base_domain.clone(),
        agent_addr: info.agent_addr.clone(),
        region: cfg.region.clone(),
        https_port: cfg.https_addr.port(),
        tcp_host: cfg.tcp_host.clone(),
        tcp_ports: cfg.tcp_ports.clone(),
    };
    let edge = gangway_edge::build_server(cfg)?;
    let control = crate::control_plane::start(control, &edge)?;
    let info = ServerInfo {
        api_key: control.api_key.clone(),
        ..info
    };
    std::thread::spawn(move || publish_when_ready(&listeners, &info, &info_path));
    let _control = control;
    let _held = ports.held;
    edge.server.run_forever()
}

/// True once `addr` accepts a connection (and, for TLS listeners, completes
/// a handshake — a bare connect would be logged as a failed handshake).
fn accepts(addr: SocketAddr, tls: bool) -> bool {
    let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if !tls {
        return true;
    }
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let Ok(mut b) = boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls()) else {
        return false;
    };
    b.set_verify(boring::ssl::SslVerifyMode::NONE);
    match b.build().connect("localhost", tcp) {
        Ok(mut s) => {
            let _ = s.shutdown();
            true
        }
        Err(_) => false,
    }
}

fn publish_when_ready(listeners: &[(SocketAddr, bool)], info: &ServerInfo, path: &std::path::Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    for &(addr, tls) in listeners {
        let target = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        while !accepts(target, tls) {
            if Instant::now() > deadline {
                tracing::error!(%addr, "listener did not come up; not writing server.json");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let json = match serde_json::to_vec_pretty(info) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "encoding server.json");
            return;
        }
    };
    if let Err(e) = write_private(path, &json) {
        tracing::error!(error = %e, "writing server.json");
        return;
    }
    tracing::info!(
        agent = %info.agent_addr,
        http = %info.http_addr,
        https = %info.https_addr,
        base_domain = %info.base_domain,
        api = %info.api_url,
        "gangway server ready; details in {}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picked_port_is_held_for_us_and_joinable_with_reuseport() {
        let mut ports = Ports {
            held: Vec::new(),
            reserved: Vec::new(),
        };
        let picked = ports
            .resolve("127.0.0.1:0".parse().expect("addr"))
            .expect("pick");
        assert_ne!(picked.port(), 0);
        assert_eq!(ports.reserved, vec![picked]);
        // Someone else's plain bind is refused while we hold it...
        assert!(std::net::TcpListener::bind(picked).is_err());
        // ...and our own listener joins it the way Pingora and the API do.
        let listener = bind_reuseport(picked);
        let mut client = TcpStream::connect(picked).expect("connect");
        let (mut served, _) = listener.accept().expect("accept");
        use std::io::{Read, Write};
        client.write_all(b"hi").expect("write");
        let mut buf = [0u8; 2];
        served.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"hi");
        // A named port is left alone.
        let named: SocketAddr = "127.0.0.1:4443".parse().expect("addr");
        assert_eq!(ports.resolve(named).expect("named"), named);
        assert_eq!(ports.reserved, vec![picked]);
    }

    fn bind_reuseport(addr: SocketAddr) -> std::net::TcpListener {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.set_reuse_address(true).expect("reuseaddr");
        s.set_reuse_port(true).expect("reuseport");
        s.bind(&addr.into()).expect("bind next to the hold");
        s.listen(16).expect("listen");
        s.into()
    }
}
