//! Heartbeats: the agent writes 4 random bytes on a stream of type
//! `0xFFFFFFFF` every interval and the edge echoes them. The edge reaps a
//! session whose beats stop, because a closing SDK sends no GOAWAY.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::frame::ErrorCode;
use crate::msg::HEARTBEAT;
use crate::session::{Session, Stream};

/// How often the agent beats unless Auth says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How late a beat may be before the session counts as dead.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(15);

/// When the edge last heard from the agent, shared by echo and reaper.
#[derive(Debug)]
pub struct Liveness {
    origin: Instant,
    last_ms: AtomicU64,
}

impl Liveness {
    pub fn new() -> Arc<Self> {
        Arc::new(Liveness {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    pub fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Edge side: echoes every 4-byte beat on an accepted heartbeat stream.
pub async fn echo(mut stream: Stream, liveness: Arc<Liveness>) {
    let mut beat = [0u8; 4];
    while stream.read_exact(&mut beat).await.is_ok() {
        liveness.touch();
        if stream.write_all(&beat).await.is_err() {
            break;
        }
    }
}

/// Edge side: closes `session` once no beat (or Auth) has arrived for
/// `interval + tolerance`. Returns when the session closes.
pub async fn reap(
    session: Session,
    liveness: Arc<Liveness>,
    interval: Duration,
    tolerance: Duration,
) {
    let limit = interval + tolerance;
    loop {
        let deadline = liveness.last() + limit;
        tokio::select! {
            _ = session.closed() => return,
            _ = tokio::time::sleep_until(deadline) => {}
        }
        if liveness.last() + limit <= Instant::now() {
            tracing::info!(silent_for = ?limit, "reaping agent session with no heartbeat");
            session.close(ErrorCode::NONE, "heartbeat timeout");
            return;
        }
    }
}

/// Agent side: beats every `interval` until the edge fails to echo within
/// `tolerance`, the stream fails, or the session closes. Reports each
/// round-trip time to `on_rtt`.
pub async fn run_client(
    session: &Session,
    interval: Duration,
    tolerance: Duration,
    mut on_rtt: impl FnMut(Duration),
) -> std::io::Result<()> {
    let mut stream = session
        .open()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotConnected, e))?;
    stream.write_all(&HEARTBEAT.to_be_bytes()).await?;
    loop {
        let beat: [u8; 4] = rand::random();
        let sent = Instant::now();
        stream.write_all(&beat).await?;
        let mut echo = [0u8; 4];
        match tokio::time::timeout(tolerance, stream.read_exact(&mut echo)).await {
            Ok(Ok(_)) if echo == beat => on_rtt(sent.elapsed()),
            Ok(Ok(_)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "heartbeat echo mismatch",
                ))
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "heartbeat not echoed in time",
                ))
            }
        }
        tokio::select! {
            _ = session.closed() => return Ok(()),
            _ = tokio::time::sleep_until(sent + interval) => {}
        }
    }
}

/// Agent-reported heartbeat settings in nanoseconds (Auth `Extra`), turned
/// into durations with the defaults for missing or nonsense values.
pub fn from_auth_nanos(interval_ns: i64, tolerance_ns: i64) -> (Duration, Duration) {
    let pick = |ns: i64, default: Duration| {
        if ns > 0 {
            // Clamp to something sane: a hostile agent must not pin a session
            // forever by claiming a year-long interval.
            Duration::from_nanos(ns as u64).min(Duration::from_secs(300))
        } else {
            default
        }
    };
    (
        pick(interval_ns, DEFAULT_INTERVAL),
        pick(tolerance_ns, DEFAULT_TOLERANCE),
    )
}
