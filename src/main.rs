//! `gangway`: one binary for every process shape — `server` (edge and,
//! later, API in one process) and the agent commands (`http`, ...).

mod agent_cmd;
mod control_plane;
mod data_dir;
mod server_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc malloc's arena locks showed up in the edge's profile under load;
/// mimalloc's thread-local heaps avoid them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gangway",
    version,
    about = "Self-hostable, ngrok-compatible ingress"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `gangway_edge=debug`.
    #[arg(long, global = true, env = "GANGWAY_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an edge on this machine with a dev CA and certificate (the embedded default).
    Server(server_cmd::ServerArgs),
    /// Expose a local HTTP service: `gangway http 8080`.
    Http(Box<agent_cmd::HttpArgs>),
    /// Expose a local TCP service: `gangway tcp 22`.
    Tcp(agent_cmd::TcpArgs),
    /// Expose a local TLS service, bytes untouched (or terminated with
    /// --crt/--key): `gangway tls 443`.
    Tls(agent_cmd::TlsArgs),
    /// Serve API edges with a labeled tunnel: `gangway tunnel --label app=shop 8080`.
    Tunnel(agent_cmd::TunnelArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Server(args) => server_cmd::run(args).map_err(|e| e.to_string()),
        Command::Http(args) => agent_cmd::run_http(*args).map_err(|e| e.to_string()),
        Command::Tcp(args) => agent_cmd::run_tcp(args).map_err(|e| e.to_string()),
        Command::Tls(args) => agent_cmd::run_tls(args).map_err(|e| e.to_string()),
        Command::Tunnel(args) => agent_cmd::run_tunnel(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gangway: {e}");
            ExitCode::FAILURE
        }
    }
}
