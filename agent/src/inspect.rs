//! Request inspection: every HTTP exchange through an inspected tunnel,
//! kept in memory for the web UI and the agent API, bounded by
//! `inspect_db_size` bytes (oldest evicted first). Bodies longer than the
//! per-body limit are cut, and the capture says so.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// ngrok's default `inspect_db_size`: 50 MB.
pub const DEFAULT_DB_BYTES: usize = 50 * 1000 * 1000;
/// Most body bytes kept per request or response; the rest is counted,
/// not stored.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// Bookkeeping counted per exchange besides its bytes (the structs, ids,
/// strings, map and queue entries), so a flood of tiny requests is
/// bounded too. Sized from the bench: with 4 bytes per header and 512 per
/// exchange, a full store took 1.6x its bound in RSS.
const OVERHEAD_BYTES: usize = 1024;
/// Per header: two `String`s and the allocator's rounding of both.
const HEADER_OVERHEAD: usize = 96;

/// One side of an exchange as it crossed the tunnel.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Request: method. Response: empty.
    pub method: String,
    /// Request: path and query. Response: empty.
    pub uri: String,
    /// Response status code; 0 for a request.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// At most the body limit.
    pub body: Bytes,
    /// The whole body's length, which is more than `body.len()` when cut.
    pub body_len: usize,
}

impl Message {
    pub fn truncated(&self) -> bool {
        self.body_len > self.body.len()
    }

    fn size(&self) -> usize {
        self.method.len()
            + self.uri.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + HEADER_OVERHEAD)
                .sum::<usize>()
            + self.body.len()
    }

    /// The message as HTTP/1.1 bytes: start line, headers, blank line,
    /// body (as much as was kept).
    pub fn raw(&self) -> Vec<u8> {
        let mut out = if self.status == 0 {
            format!("{} {} HTTP/1.1\r\n", self.method, self.uri)
        } else {
            format!("HTTP/1.1 {}\r\n", status_line(self.status))
        }
        .into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Go's `http.Header` shape: canonical names, each to its values.
    fn headers_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.headers {
            let entry = map
                .entry(canonical_header(k))
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = entry {
                a.push(Value::String(v.clone()));
            }
        }
        Value::Object(map)
    }
}

/// `404 Not Found`.
pub fn status_line(code: u16) -> String {
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{code} {reason}").trim_end().to_string()
}

/// `content-type` → `Content-Type`, as Go prints header names.
pub fn canonical_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// A change to the store, for live views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// The exchange with this id was recorded.
    Recorded(String),
    /// Everything was deleted.
    Cleared,
}

/// A captured request and, once it came, its response.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// 16 hex digits, unique for this agent run.
    pub id: String,
    pub tunnel_name: String,
    /// The public client's address, as the edge reported it.
    pub remote_addr: String,
    pub start: SystemTime,
    pub duration: Duration,
    pub request: Message,
    /// `None` when the app never answered (the agent's own error is a
    /// response).
    pub response: Option<Message>,
    /// The id of the exchange this one replays.
    pub replay_of: Option<String>,
}

impl Exchange {
    fn size(&self) -> usize {
        OVERHEAD_BYTES
            + self.tunnel_name.len()
            + self.remote_addr.len()
            + self.request.size()
            + self.response.as_ref().map_or(0, Message::size)
    }

    /// The agent API's captured-request object.
    pub fn to_json(&self) -> Value {
        let b64 = |m: &Message| base64::engine::general_purpose::STANDARD.encode(m.raw());
        let start: chrono::DateTime<chrono::Local> = self.start.into();
        let mut v = json!({
            "uri": format!("/api/requests/http/{}", self.id),
            "id": self.id,
            "tunnel_name": self.tunnel_name,
            "remote_addr": self.remote_addr,
            "start": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "duration": u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX),
            "request": {
                "method": self.request.method,
                "proto": "HTTP/1.1",
                "headers": self.request.headers_json(),
                "uri": self.request.uri,
                "raw": b64(&self.request),
                "body_truncated": self.request.truncated(),
                "body_size": self.request.body_len,
            },
            "response": self.response.as_ref().map(|r| json!({
                "status": status_line(r.status),
                "status_code": r.status,
                "proto": "HTTP/1.1",
                "headers": r.headers_json(),
                "raw": b64(r),
                "body_truncated": r.truncated(),
                "body_size": r.body_len,
            })),
        });
        if let (Some(of), Some(o)) = (&self.replay_of, v.as_object_mut()) {
            o.insert("replay_of".into(), json!(of));
        }
        v
    }
}

#[derive(Default)]
struct State {
    /// Oldest first.
    order: VecDeque<Arc<Exchange>>,
    by_id: HashMap<String, Arc<Exchange>>,
    bytes: usize,
    next: u64,
}

/// The captured exchanges of one agent.
pub struct Inspector {
    state: Mutex<State>,
    limit_bytes: usize,
    body_limit: usize,
    /// What changed, for live views.
    news: broadcast::Sender<News>,
    /// Distinguishes this run's ids from an earlier run's.
    run_tag: u32,
}

impl Inspector {
    pub fn new(limit_bytes: usize, body_limit: usize) -> Arc<Inspector> {
        // A reader that falls behind is told to reload (the web UI does),
        // so a short queue is enough; it is allocated up front.
        let (news, _) = broadcast::channel(128);
        let run_tag = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        Arc::new(Inspector {
            state: Mutex::new(State::default()),
            limit_bytes,
            body_limit: body_limit.min(limit_bytes),
            news,
            run_tag,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bound on bytes held (`inspect_db_size`).
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Most body bytes kept per message.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// A fresh exchange id.
    pub fn next_id(&self) -> String {
        let mut st = self.lock();
        st.next += 1;
        format!("{:08x}{:08x}", self.run_tag, st.next as u32)
    }

    /// Stores `ex`, evicting the oldest exchanges until the total fits.
    /// An exchange larger than the whole bound is not kept.
    pub fn record(&self, ex: Exchange) {
        let size = ex.size();
        if size > self.limit_bytes {
            return;
        }
        let id = ex.id.clone();
        let ex = Arc::new(ex);
        {
            let mut st = self.lock();
            while st.bytes + size > self.limit_bytes {
                let Some(old) = st.order.pop_front() else {
                    break;
                };
                st.bytes -= old.size();
                st.by_id.remove(&old.id);
            }
            st.bytes += size;
            st.by_id.insert(id.clone(), ex.clone());
            st.order.push_back(ex);
        }
        let _ = self.news.send(News::Recorded(id));
    }

    /// Newest first, at most `limit`, only `tunnel_name`'s if given.
    pub fn list(&self, limit: Option<usize>, tunnel_name: Option<&str>) -> Vec<Arc<Exchange>> {
        let st = self.lock();
        st.order
            .iter()
            .rev()
            .filter(|e| tunnel_name.is_none_or(|t| e.tunnel_name == t))
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Exchange>> {
        self.lock().by_id.get(id).cloned()
    }

    pub fn clear(&self) {
        let mut st = self.lock();
        st.order.clear();
        st.by_id.clear();
        st.bytes = 0;
        drop(st);
        let _ = self.news.send(News::Cleared);
    }

    /// Bytes held, as counted against the bound.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<News> {
        self.news.subscribe()
    }
}

/// Collects a body as it streams past, keeping at most `limit` bytes.
#[derive(Debug, Default)]
pub struct BodyTap {
    kept: Vec<u8>,
    seen: usize,
    limit: usize,
}

impl BodyTap {
    pub fn new(limit: usize) -> Self {
        BodyTap {
            kept: Vec::new(),
            seen: 0,
            limit,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.seen += chunk.len();
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// (kept bytes, whole length).
    pub fn finish(self) -> (Bytes, usize) {
        (Bytes::from(self.kept), self.seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(ins: &Inspector, tunnel: &str, body: usize) -> Exchange {
        let mut tap = BodyTap::new(ins.body_limit());
        tap.push(&vec![b'x'; body]);
        let (body, body_len) = tap.finish();
        Exchange {
            id: ins.next_id(),
            tunnel_name: tunnel.into(),
            remote_addr: "203.0.113.9".into(),
            start: SystemTime::now(),
            duration: Duration::from_millis(3),
            request: Message {
                method: "POST".into(),
                uri: "/items?x=1".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body,
                body_len,
                ..Message::default()
            },
            response: Some(Message {
                status: 201,
                headers: vec![("x-id".into(), "7".into())],
                body: Bytes::from_static(b"{}"),
                body_len: 2,
                ..Message::default()
            }),
            replay_of: None,
        }
    }

    #[test]
    fn eviction_keeps_the_store_under_its_bound_through_100k_requests() {
        let bound = 1_000_000;
        let ins = Inspector::new(bound, 4096);
        for i in 0..100_000 {
            ins.record(exchange(&ins, "web", i % 3000));
            assert!(ins.bytes() <= bound);
        }
        let newest = ins.list(Some(1), None);
        assert_eq!(newest.len(), 1);
        assert!(ins.len() > 100 && ins.len() < 100_000, "{}", ins.len());
        // The oldest ones went first: every id kept is newer than every
        // id evicted, and each can still be looked up.
        for e in ins.list(None, None) {
            assert!(ins.get(&e.id).is_some());
        }
        ins.clear();
        assert_eq!((ins.len(), ins.bytes()), (0, 0));
    }

    #[test]
    fn long_bodies_are_cut_and_marked() {
        let ins = Inspector::new(1 << 20, 100);
        let ex = exchange(&ins, "web", 250);
        assert_eq!((ex.request.body.len(), ex.request.body_len), (100, 250));
        let v = ex.to_json();
        assert_eq!(v["request"]["body_truncated"], true);
        assert_eq!(v["request"]["body_size"], 250);
        assert_eq!(v["response"]["status"], "201 Created");
        assert_eq!(
            v["request"]["headers"]["Content-Type"][0],
            "application/json"
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["request"]["raw"].as_str().unwrap())
            .unwrap();
        assert!(raw
            .starts_with(b"POST /items?x=1 HTTP/1.1\r\ncontent-type: application/json\r\n\r\nxxx"));
        let body_at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(raw.len() - body_at, 100);
        assert_eq!(v["id"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn lists_are_newest_first_and_filter_by_tunnel() {
        let ins = Inspector::new(1 << 20, 1024);
        for t in ["a", "b", "a"] {
            ins.record(exchange(&ins, t, 10));
        }
        let all = ins.list(None, None);
        assert_eq!(all.len(), 3);
        assert!(all[0].id > all[2].id);
        assert_eq!(ins.list(None, Some("a")).len(), 2);
        assert_eq!(ins.list(Some(1), Some("a")).len(), 1);
        assert!(ins.list(None, Some("c")).is_empty());
    }
}
