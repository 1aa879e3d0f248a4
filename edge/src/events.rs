//! Structured events (`http_request_complete.v0`, `tcp_connection_closed.v0`)
//! and where they go. A sink never blocks the data path: events are queued
//! to a writer thread and dropped (and counted) if it falls behind.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

use gangway_modules::decisions::Access;
use serde_json::{json, Map, Value};

pub const HTTP_REQUEST_COMPLETE: &str = "http_request_complete.v0";
pub const TCP_CONNECTION_CLOSED: &str = "tcp_connection_closed.v0";

/// Events queued before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// A destination for events. Later destinations (HTTP, Kinesis, ...)
/// implement this too.
pub trait EventSink: Send + Sync {
    /// Hands over one event's object; must not block.
    fn emit(&self, event_type: &'static str, object: Map<String, Value>);

    /// Whether events are wanted at all (callers skip building them).
    fn enabled(&self) -> bool {
        true
    }
}

/// Drops everything (events off).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _: &'static str, _: Map<String, Value>) {}

    fn enabled(&self) -> bool {
        false
    }
}

/// A shared, swappable handle on the current sink (listeners keep a clone).
#[derive(Clone)]
pub struct Events(Arc<ArcSwap<Box<dyn EventSink>>>);

impl Default for Events {
    fn default() -> Self {
        Events(Arc::new(ArcSwap::from_pointee(
            Box::new(NoEvents) as Box<dyn EventSink>
        )))
    }
}

impl Events {
    pub fn set(&self, sink: Box<dyn EventSink>) {
        self.0.store(Arc::new(sink));
    }

    pub fn sink(&self) -> arc_swap::Guard<Arc<Box<dyn EventSink>>> {
        self.0.load()
    }

    /// Emits `tcp_connection_closed.v0` for a finished TCP or TLS
    /// connection.
    pub fn tcp_closed(&self, conn: &L4Conn, bytes_in: u64, bytes_out: u64) {
        let sink = self.sink();
        if !sink.enabled() {
            return;
        }
        let mut obj = Map::new();
        obj.insert(
            "conn".into(),
            json!({
                "client_ip": conn.client.map(|a| a.ip().to_string()),
                "server_ip": conn.server.map(|a| a.ip().to_string()),
                "server_name": conn.server_name,
                "server_port": conn.server.map(|a| a.port()),
                "start_ts": rfc3339(conn.start),
                "end_ts": rfc3339(SystemTime::now()),
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
            }),
        );
        if let Some(d) = conn.ip_policy {
            obj.insert(
                "ip_policy".into(),
                json!({ "decision": crate::event_objects::access(d) }),
            );
        }
        if !conn.policy_logs.is_empty() {
            obj.insert("traffic_policy".into(), json!({ "logs": conn.policy_logs }));
        }
        sink.emit(TCP_CONNECTION_CLOSED, obj);
    }
}

/// A TCP or TLS connection, as its closing event describes it.
#[derive(Debug, Clone)]
pub struct L4Conn {
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    /// SNI for TLS, empty for TCP.
    pub server_name: String,
    pub start: SystemTime,
    /// When an IP restriction applied.
    pub ip_policy: Option<Access>,
    /// The endpoint's Traffic Policy `log` entries (`on_tcp_connect`).
    pub policy_logs: Vec<Value>,
}

/// Where JSON-lines events are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonLinesTarget {
    Stdout,
    File(PathBuf),
}

/// One JSON envelope per line, written by a background thread.
pub struct JsonLinesSink {
    tx: SyncSender<String>,
    dropped: AtomicU64,
}

impl JsonLinesSink {
    pub fn open(target: JsonLinesTarget) -> std::io::Result<Self> {
        let mut out: Box<dyn Write + Send> = match &target {
            JsonLinesTarget::Stdout => Box::new(std::io::stdout()),
            JsonLinesTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("gangway-events".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let mut batch = line;
                    // Write what has queued up in one go.
                    while let Ok(more) = rx.try_recv() {
                        batch.push_str(&more);
                    }
                    if out
                        .write_all(batch.as_bytes())
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        tracing::warn!("cannot write events; stopping the event writer");
                        return;
                    }
                }
            })?;
        Ok(JsonLinesSink {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Events lost because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl EventSink for JsonLinesSink {
    fn emit(&self, event_type: &'static str, object: Map<String, Value>) {
        let mut line = envelope(event_type, object).to_string();
        line.push('\n');
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `{"event_id","event_type","event_timestamp","object"}`.
pub fn envelope(event_type: &str, object: Map<String, Value>) -> Value {
    json!({
        "event_id": event_id(),
        "event_type": event_type,
        "event_timestamp": rfc3339(SystemTime::now()),
        "object": object,
    })
}

fn event_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let tail: String = (0..27)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("ev_{tail}")
}

/// `2026-11-22T10:04:05.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_305_845_123);
        assert_eq!(rfc3339(t), "2026-11-22T00:04:05.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn file_sink_writes_one_envelope_per_line() {
        let dir = std::env::temp_dir().join(format!("gw-events-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let sink = JsonLinesSink::open(JsonLinesTarget::File(path.clone())).unwrap();
        let mut obj = Map::new();
        obj.insert("k".into(), json!(1));
        sink.emit(HTTP_REQUEST_COMPLETE, obj);
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["event_type"], HTTP_REQUEST_COMPLETE);
        assert!(v["event_id"].as_str().unwrap().starts_with("ev_"));
        assert_eq!(v["object"]["k"], 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
