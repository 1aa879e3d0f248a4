//! `gangway`: one binary for every process shape — `server` (edge and,
//! later, API in one process) and the agent commands (`http`, ...).

mod agent_cmd;
mod agent_config;
mod console;
mod control_plane;
mod data_dir;
mod logging;
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
    #[command(flatten)]
    logs: logging::LogArgs,
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
    /// Start tunnels named in the config file: `gangway start web ssh`, `--all`, `--none`.
    Start(agent_cmd::StartArgs),
    /// Edit or check the config file.
    #[command(subcommand)]
    Config(agent_cmd::ConfigCmd),
    /// Save an authtoken in the config file (same as `config add-authtoken`).
    Authtoken(agent_cmd::AuthtokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = &cli.logs;
    let result = match cli.command {
        Command::Server(args) => logging::init_from(logs, None, false)
            .and_then(|()| server_cmd::run(args).map_err(|e| e.to_string())),
        Command::Http(args) => agent_cmd::run_http(*args, logs).map_err(|e| e.to_string()),
        Command::Tcp(args) => agent_cmd::run_tcp(args, logs).map_err(|e| e.to_string()),
        Command::Tls(args) => agent_cmd::run_tls(args, logs).map_err(|e| e.to_string()),
        Command::Tunnel(args) => agent_cmd::run_tunnel(args, logs).map_err(|e| e.to_string()),
        Command::Start(args) => agent_cmd::run_start(args, logs).map_err(|e| e.to_string()),
        Command::Config(cmd) => agent_cmd::run_config(cmd).map_err(|e| e.to_string()),
        Command::Authtoken(args) => agent_cmd::add_authtoken(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gangway: {e}");
            ExitCode::FAILURE
        }
    }
}
