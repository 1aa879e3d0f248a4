//! A small session simulator: many idle agent sessions in one process,
//! each a real agent (TLS + muxado, Auth, one HTTPS tunnel bound,
//! heartbeats), so the edge's memory per session can be read off its RSS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gangway_agent::{AgentEvent, AgentOptions, TunnelSpec, Upstream};
use gangway_config::ServerInfo;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Handshakes in flight at once: enough to go fast, few enough that the
/// edge's accept queue never overflows.
pub const CONNECTING_AT_ONCE: usize = 64;

/// Sessions that stay open until this is dropped.
pub struct IdleSessions {
    runtime: Option<tokio::runtime::Runtime>,
    stop: CancellationToken,
    bound: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Option<String>>>,
    template: AgentOptions,
}

impl IdleSessions {
    /// Sessions against the server described by `info`, each binding an
    /// HTTPS tunnel to `app` (never called: the sessions stay idle).
    pub fn new(info: &ServerInfo, app: std::net::SocketAddr) -> Result<IdleSessions, String> {
        let ca_pem = std::fs::read(&info.ca_cert)
            .map_err(|e| format!("reading the server's CA {}: {e}", info.ca_cert))?;
        let upstream = Upstream::parse(&app.to_string()).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(IdleSessions {
            runtime: Some(runtime),
            stop: CancellationToken::new(),
            bound: Arc::new(AtomicUsize::new(0)),
            failed: Arc::default(),
            template: AgentOptions {
                server_addr: info.agent_addr.clone(),
                authtoken: info.authtoken.clone(),
                ca_pem: Some(ca_pem),
                proxy: None,
                tunnels: vec![TunnelSpec::new("https", upstream)],
                heartbeat_interval: Duration::from_secs(10),
                heartbeat_tolerance: Duration::from_secs(15),
                metadata: String::new(),
                state: None,
            },
        })
    }

    /// Opens sessions until `total` are bound; returns once they are.
    pub fn grow_to(&self, total: usize) -> Result<(), String> {
        let rt = self.runtime.as_ref().ok_or("simulator stopped")?;
        let already = self.bound.load(Ordering::SeqCst);
        let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
        for _ in already..total {
            let (opts, stop, bound, failed, gate) = (
                self.template.clone(),
                self.stop.clone(),
                self.bound.clone(),
                self.failed.clone(),
                gate.clone(),
            );
            rt.spawn(async move {
                let Ok(permit) = gate.acquire_owned().await else {
                    return;
                };
                let (tx, mut events) = mpsc::unbounded_channel();
                let agent = tokio::spawn(gangway_agent::run(opts, tx, stop));
                let mut permit = Some(permit);
                while let Some(ev) = events.recv().await {
                    if matches!(ev, AgentEvent::Bound { rebound: false, .. }) {
                        bound.fetch_add(1, Ordering::SeqCst);
                        permit.take();
                    }
                }
                if let Ok(Err(e)) = agent.await {
                    let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                    f.get_or_insert_with(|| e.to_string());
                }
            });
        }
        crate::wait_for_secs(&format!("{total} bound sessions"), 300, || {
            if let Some(e) = self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Some(Err(format!("a simulated agent was refused: {e}")));
            }
            (self.bound.load(Ordering::SeqCst) >= total).then_some(Ok(()))
        })?
    }
}

impl Drop for IdleSessions {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
