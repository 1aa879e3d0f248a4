//! A muxado session over any byte stream, in client (agent) or server (edge)
//! role.
//!
//! One reader task decodes frames and feeds per-stream buffers; one writer
//! task drains a frame queue to the socket. Streams are `AsyncRead +
//! AsyncWrite` handles. Memory is bounded by flow control: a peer may have at
//! most one window (256 KiB) of unread data per stream, and we never queue
//! more than one window of our own per stream.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::frame::{ErrorCode, Frame, FrameError, Header, HEADER_LEN};

/// Per-stream, per-direction flow-control window. muxado never negotiates it.
pub const DEFAULT_WINDOW_BYTES: u32 = 0x40000;
/// Remote-opened streams waiting for `accept`; beyond this new ones are refused.
pub const DEFAULT_ACCEPT_QUEUE: usize = 64;
/// Concurrent streams per session, as the agent SDK allows.
pub const DEFAULT_MAX_STREAMS: usize = 512;
/// Largest DATA payload we send in one frame.
const MAX_DATA_FRAME_BYTES: usize = 64 * 1024;
/// Buffer size for copying between a socket and a stream: each read can
/// fill a whole DATA frame (tokio's default 8 KiB would make eight).
pub const PIPE_BUFFER_BYTES: usize = MAX_DATA_FRAME_BYTES;
/// Writer coalesces queued frames into one socket write up to this size.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// A session's read or write buffer above this is dropped once it is
/// empty, so an idle session holds no burst-sized buffers.
const IDLE_BUFFER_BYTES: usize = 16 * 1024;

/// Which end of the session we are: clients (agents) open odd stream ids,
/// servers (edges) even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Session limits; the defaults match the ngrok agent.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub role: Role,
    pub window_bytes: u32,
    pub accept_queue: usize,
    pub max_streams: usize,
}

impl SessionConfig {
    pub fn new(role: Role) -> Self {
        SessionConfig {
            role,
            window_bytes: DEFAULT_WINDOW_BYTES,
            accept_queue: DEFAULT_ACCEPT_QUEUE,
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// Why a session ended or an operation on it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// We closed the session (or were asked to).
    #[error("session closed")]
    Closed,
    /// The peer sent GOAWAY.
    #[error("remote went away ({code:?}): {message}")]
    RemoteGoneAway { code: ErrorCode, message: String },
    /// The underlying connection ended or failed.
    #[error("connection lost: {0}")]
    Io(String),
    /// The peer broke the framing rules; we sent GOAWAY and closed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No stream id or slot is left.
    #[error("streams exhausted")]
    StreamsExhausted,
}

impl From<FrameError> for SessionError {
    fn from(e: FrameError) -> Self {
        SessionError::Protocol(e.to_string())
    }
}

struct StreamState {
    recv_buf: VecDeque<Bytes>,
    /// Bytes the peer may still send before it must wait for credit.
    recv_window: u32,
    /// Bytes read by the application but not yet returned as credit.
    unacked: u32,
    send_window: u32,
    syn_sent: bool,
    fin_sent: bool,
    fin_recv: bool,
    reset: Option<ErrorCode>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl StreamState {
    fn new(window: u32, syn_sent: bool) -> Self {
        StreamState {
            recv_buf: VecDeque::new(),
            recv_window: window,
            unacked: 0,
            send_window: window,
            syn_sent,
            fin_sent: false,
            fin_recv: false,
            reset: None,
            read_waker: None,
            write_waker: None,
        }
    }

    fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

struct StreamShared {
    /// 0 until the stream's first frame is sent (see [`Stream::send_data`]).
    id: AtomicU32,
    state: Mutex<StreamState>,
}

impl StreamShared {
    fn new(id: u32, state: StreamState) -> Arc<Self> {
        Arc::new(StreamShared {
            id: AtomicU32::new(id),
            state: Mutex::new(state),
        })
    }

    fn id(&self) -> u32 {
        self.id.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A poisoned lock only means another thread panicked mid-update;
        // the state is plain data, so keep going rather than cascade.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct SessionState {
    streams: HashMap<u32, Arc<StreamShared>>,
    next_local_id: u32,
    last_remote_id: u32,
    closed: Option<SessionError>,
}

struct Shared {
    cfg: SessionConfig,
    state: Mutex<SessionState>,
    out: mpsc::UnboundedSender<Frame>,
    done: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, frame: Frame) {
        // After the writer has stopped there is nobody to send to; the
        // session is closed and callers learn it from their stream state.
        let _ = self.out.send(frame);
    }

    fn is_remote_id(&self, id: u32) -> bool {
        let odd = id % 2 == 1;
        match self.cfg.role {
            Role::Server => odd,
            Role::Client => !odd,
        }
    }

    /// Marks the session closed and fails every stream. Idempotent.
    fn shutdown(&self, why: SessionError) {
        let streams: Vec<Arc<StreamShared>> = {
            let mut st = self.lock();
            if st.closed.is_some() {
                return;
            }
            debug!(reason = %why, "muxado session closing");
            st.closed = Some(why);
            st.streams.drain().map(|(_, s)| s).collect()
        };
        for s in streams {
            let mut ss = s.lock();
            if ss.reset.is_none() {
                ss.reset = Some(ErrorCode::SESSION_CLOSED);
            }
            ss.wake_all();
        }
        self.done.cancel();
    }

    fn goaway_and_shutdown(&self, code: ErrorCode, message: &str, why: SessionError) {
        let last = self.lock().last_remote_id;
        self.send(Frame::GoAway {
            last_stream_id: last,
            code,
            message: Bytes::copy_from_slice(message.as_bytes()),
        });
        self.shutdown(why);
    }
}

/// Handle to a running session; cheap to clone. Opens streams and closes
/// the session. Dropping every handle does not close it: call [`close`].
///
/// [`close`]: Session::close
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// Receives streams the peer opens.
pub struct Acceptor {
    rx: mpsc::Receiver<Stream>,
}

impl Acceptor {
    /// The next remote-opened stream, or `None` once the session is closed.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

/// Starts a session on `io`, spawning its reader and writer on the current
/// tokio runtime.
pub fn start<IO>(io: IO, cfg: SessionConfig) -> (Session, Acceptor)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (accept_tx, accept_rx) = mpsc::channel(cfg.accept_queue.max(1));
    let next_local_id = match cfg.role {
        Role::Client => 3,
        Role::Server => 2,
    };
    let shared = Arc::new(Shared {
        cfg,
        state: Mutex::new(SessionState {
            streams: HashMap::new(),
            next_local_id,
            last_remote_id: 0,
            closed: None,
        }),
        out: out_tx,
        done: CancellationToken::new(),
    });
    tokio::spawn(write_loop(wr, out_rx, shared.done.clone()));
    tokio::spawn(read_loop(rd, shared.clone(), accept_tx));
    (Session { shared }, Acceptor { rx: accept_rx })
}

impl Session {
    /// Opens a stream. Nothing is sent until the first write, which carries
    /// SYN, so a caller can put its type and header in the opening frame.
    /// The stream id is assigned then too: peers (the Go agent among them)
    /// expect new stream ids in increasing order on the wire.
    pub fn open(&self) -> Result<Stream, SessionError> {
        let shared = &self.shared;
        let st = shared.lock();
        if let Some(why) = &st.closed {
            return Err(why.clone());
        }
        if st.streams.len() >= shared.cfg.max_streams {
            return Err(SessionError::StreamsExhausted);
        }
        drop(st);
        Ok(Stream {
            inner: StreamShared::new(0, StreamState::new(shared.cfg.window_bytes, false)),
            session: shared.clone(),
        })
    }

    /// Sends GOAWAY (length = 8 + message, as the spec says) and closes.
    pub fn close(&self, code: ErrorCode, message: &str) {
        self.shared
            .goaway_and_shutdown(code, message, SessionError::Closed);
    }

    /// True once the session can carry no more streams.
    pub fn is_closed(&self) -> bool {
        self.shared.done.is_cancelled()
    }

    /// Resolves when the session has closed, for whatever reason.
    pub async fn closed(&self) {
        self.shared.done.cancelled().await
    }

    /// Why the session closed, if it has.
    pub fn close_reason(&self) -> Option<SessionError> {
        self.shared.lock().closed.clone()
    }

    /// Streams currently open.
    pub fn stream_count(&self) -> usize {
        self.shared.lock().streams.len()
    }
}

/// One muxado stream. Reads return EOF after the peer's FIN; `shutdown`
/// sends our FIN. Dropping a stream that is not closed both ways resets it.
pub struct Stream {
    inner: Arc<StreamShared>,
    session: Arc<Shared>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl Stream {
    /// The stream id; 0 for a locally opened stream before its first write.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Queues a DATA frame. The first one allocates the id and carries SYN,
    /// under the session lock so ids reach the wire in order.
    fn send_data(&self, ss: &mut StreamState, payload: Bytes, fin: bool) -> io::Result<()> {
        if ss.syn_sent {
            self.session.send(Frame::Data {
                stream_id: self.inner.id(),
                syn: false,
                fin,
                payload,
            });
            return Ok(());
        }
        let mut st = self.session.lock();
        if let Some(why) = &st.closed {
            return Err(io::Error::new(io::ErrorKind::NotConnected, why.to_string()));
        }
        if st.next_local_id > crate::frame::STREAM_ID_MASK - 2 {
            return Err(io::Error::other(SessionError::StreamsExhausted));
        }
        let id = st.next_local_id;
        st.next_local_id += 2;
        self.inner.id.store(id, Ordering::Release);
        st.streams.insert(id, self.inner.clone());
        ss.syn_sent = true;
        self.session.send(Frame::Data {
            stream_id: id,
            syn: true,
            fin,
            payload,
        });
        Ok(())
    }

    /// Aborts the stream with RST.
    pub fn reset(&self, code: ErrorCode) {
        let mut ss = self.inner.lock();
        if ss.reset.is_some() {
            return;
        }
        ss.reset = Some(code);
        ss.wake_all();
        if ss.syn_sent {
            self.session.send(Frame::Rst {
                stream_id: self.inner.id(),
                code,
            });
        }
    }

    /// Writes all of `buf`, the first frame carrying SYN if this is the
    /// stream's first write: the way to send a type and header together.
    pub async fn write_all_frame(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf).await
    }
}

fn reset_error(code: ErrorCode) -> io::Error {
    let kind = if code == ErrorCode::SESSION_CLOSED {
        io::ErrorKind::NotConnected
    } else {
        io::ErrorKind::ConnectionReset
    };
    io::Error::new(kind, format!("muxado stream reset ({:#x})", code.0))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let window = this.session.cfg.window_bytes;
        let mut ss = this.inner.lock();
        if ss.recv_buf.is_empty() {
            if ss.fin_recv {
                return Poll::Ready(Ok(()));
            }
            if let Some(code) = ss.reset {
                return Poll::Ready(Err(reset_error(code)));
            }
            ss.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut copied = 0usize;
        while buf.remaining() > 0 {
            let Some(front) = ss.recv_buf.front_mut() else {
                break;
            };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            copied += n;
            if n == front.len() {
                ss.recv_buf.pop_front();
            } else {
                let _ = front.split_to(n);
            }
        }
        ss.unacked += copied as u32;
        // Return credit in batches; a blocked peer has sent a full window,
        // so by the time the buffer drains at least a quarter is unacked.
        if ss.unacked >= window / 4 && !ss.fin_recv && ss.reset.is_none() {
            let increment = ss.unacked;
            ss.unacked = 0;
            ss.recv_window += increment;
            this.session.send(Frame::WndInc {
                stream_id: this.inner.id(),
                increment,
            });
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut ss = this.inner.lock();
        if let Some(code) = ss.reset {
            return Poll::Ready(Err(reset_error(code)));
        }
        if ss.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if ss.send_window == 0 {
            ss.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf
            .len()
            .min(ss.send_window as usize)
            .min(MAX_DATA_FRAME_BYTES);
        this.send_data(&mut ss, Bytes::copy_from_slice(&buf[..n]), false)?;
        ss.send_window -= n as u32;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer task flushes whenever its queue runs dry.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut ss = this.inner.lock();
        if let Some(code) = ss.reset {
            return Poll::Ready(Err(reset_error(code)));
        }
        if !ss.fin_sent {
            this.send_data(&mut ss, Bytes::new(), true)?;
            ss.fin_sent = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let id = self.inner.id();
        {
            let mut ss = self.inner.lock();
            // Like a TCP close: after our FIN the peer may still be
            // sending; its next data frame is answered with RST (see the
            // read loop), but an RST now would destroy the replies it has
            // buffered and not yet read. A stream dropped before its FIN
            // was sent is an abort.
            if ss.reset.is_none() && !ss.fin_sent && ss.syn_sent {
                self.session.send(Frame::Rst {
                    stream_id: id,
                    code: ErrorCode::STREAM_CLOSED,
                });
            }
            if ss.reset.is_none() {
                ss.reset = Some(ErrorCode::STREAM_CLOSED);
            }
        }
        if id != 0 {
            self.session.lock().streams.remove(&id);
        }
    }
}

async fn write_loop<W: AsyncWrite>(
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    done: CancellationToken,
) {
    let mut wr = std::pin::pin!(wr);
    // Grows with the traffic; an idle session keeps only a small one.
    let mut out = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            f = rx.recv() => f,
            _ = done.cancelled() => None,
        };
        let Some(first) = first else { break };
        first.encode(&mut out);
        while out.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(f) => f.encode(&mut out),
                Err(_) => break,
            }
        }
        if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
            done.cancel();
            return;
        }
        if out.capacity() > IDLE_BUFFER_BYTES {
            out = BytesMut::new();
        } else {
            out.clear();
        }
    }
    // Closing: send whatever is queued (a GOAWAY, final RSTs), then end TLS.
    while let Ok(f) = rx.try_recv() {
        f.encode(&mut out);
    }
    if !out.is_empty() {
        let _ = wr.write_all(&out).await;
    }
    let _ = wr.shutdown().await;
}

async fn read_loop<R: AsyncRead>(rd: R, shared: Arc<Shared>, accept_tx: mpsc::Sender<Stream>) {
    let mut rd = std::pin::pin!(rd);
    let done = shared.done.clone();
    let result = tokio::select! {
        r = read_frames(&mut rd, &shared, &accept_tx) => r,
        _ = done.cancelled() => Ok(()),
    };
    match result {
        Ok(()) => shared.shutdown(SessionError::Closed),
        Err(SessionError::Protocol(msg)) => {
            debug!(error = %msg, "muxado protocol error");
            shared.goaway_and_shutdown(
                ErrorCode::PROTOCOL,
                &msg,
                SessionError::Protocol(msg.clone()),
            );
        }
        Err(e) => shared.shutdown(e),
    }
}

/// Fills `buf` until it holds at least `n` bytes. EOF is an error.
async fn fill<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    n: usize,
) -> Result<(), SessionError> {
    while buf.len() < n {
        buf.reserve((n - buf.len()).max(16 * 1024));
        match rd.read_buf(buf).await {
            Ok(0) => return Err(SessionError::Io("connection closed by peer".into())),
            Ok(_) => {}
            Err(e) => return Err(SessionError::Io(e.to_string())),
        }
    }
    Ok(())
}

async fn read_frames<R: AsyncRead + Unpin>(
    rd: &mut R,
    shared: &Arc<Shared>,
    accept_tx: &mpsc::Sender<Stream>,
) -> Result<(), SessionError> {
    let mut buf = BytesMut::new();
    loop {
        if buf.is_empty() && buf.capacity() > IDLE_BUFFER_BYTES {
            // Between bursts: give a large buffer back rather than hold it
            // for an idle session (thousands of sessions are mostly idle).
            buf = BytesMut::new();
        }
        fill(rd, &mut buf, HEADER_LEN).await?;
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&buf[..HEADER_LEN]);
        let header = Header::parse(head)?;
        // A DATA frame larger than a whole window can never be legal: refuse
        // it before buffering its body.
        if header.len > (shared.cfg.window_bytes as usize).max(crate::frame::MAX_GOAWAY_LEN) {
            return Err(SessionError::Protocol(format!(
                "frame of {} bytes exceeds the window",
                header.len
            )));
        }
        fill(rd, &mut buf, HEADER_LEN + header.len).await?;
        let _ = buf.split_to(HEADER_LEN);
        let body = buf.split_to(header.len).freeze();
        let frame = header.with_body(body)?;
        trace!(?frame, "muxado frame in");
        handle_frame(frame, shared, accept_tx)?;
    }
}

fn handle_frame(
    frame: Frame,
    shared: &Arc<Shared>,
    accept_tx: &mpsc::Sender<Stream>,
) -> Result<(), SessionError> {
    match frame {
        Frame::Data {
            stream_id,
            syn,
            fin,
            payload,
        } => {
            let existing = shared.lock().streams.get(&stream_id).cloned();
            let stream = match (existing, syn) {
                (Some(s), false) => s,
                (Some(_), true) => {
                    return Err(SessionError::Protocol(format!(
                        "SYN for open stream {stream_id}"
                    )))
                }
                (None, false) if payload.is_empty() && fin => {
                    // The peer's FIN for a stream we already closed.
                    return Ok(());
                }
                (None, false) => {
                    // Data for a stream we closed: tell the peer to stop.
                    shared.send(Frame::Rst {
                        stream_id,
                        code: ErrorCode::STREAM_CLOSED,
                    });
                    return Ok(());
                }
                (None, true) => match open_remote(stream_id, shared, accept_tx)? {
                    Some(s) => s,
                    None => return Ok(()),
                },
            };
            let mut ss = stream.lock();
            if ss.reset.is_some() {
                return Ok(());
            }
            if ss.fin_recv {
                drop(ss);
                return Err(SessionError::Protocol(format!(
                    "data after FIN on stream {stream_id}"
                )));
            }
            if payload.len() > ss.recv_window as usize {
                ss.reset = Some(ErrorCode::FLOW_CONTROL);
                ss.wake_all();
                drop(ss);
                shared.lock().streams.remove(&stream_id);
                shared.send(Frame::Rst {
                    stream_id,
                    code: ErrorCode::FLOW_CONTROL,
                });
                return Ok(());
            }
            ss.recv_window -= payload.len() as u32;
            if !payload.is_empty() {
                ss.recv_buf.push_back(payload);
            }
            if fin {
                ss.fin_recv = true;
            }
            if let Some(w) = ss.read_waker.take() {
                w.wake();
            }
        }
        Frame::WndInc {
            stream_id,
            increment,
        } => {
            let s = shared.lock().streams.get(&stream_id).cloned();
            if let Some(s) = s {
                let mut ss = s.lock();
                ss.send_window = ss.send_window.saturating_add(increment);
                if let Some(w) = ss.write_waker.take() {
                    w.wake();
                }
            }
        }
        Frame::Rst { stream_id, code } => {
            let s = shared.lock().streams.remove(&stream_id);
            if let Some(s) = s {
                let mut ss = s.lock();
                if ss.reset.is_none() {
                    ss.reset = Some(code);
                }
                ss.wake_all();
            }
        }
        Frame::GoAway { code, message, .. } => {
            let message = String::from_utf8_lossy(&message).into_owned();
            shared.shutdown(SessionError::RemoteGoneAway { code, message });
        }
    }
    Ok(())
}

/// Registers a stream the peer opened. `Ok(None)` means it was refused with
/// RST and the session goes on.
fn open_remote(
    stream_id: u32,
    shared: &Arc<Shared>,
    accept_tx: &mpsc::Sender<Stream>,
) -> Result<Option<Arc<StreamShared>>, SessionError> {
    if !shared.is_remote_id(stream_id) {
        return Err(SessionError::Protocol(format!(
            "peer opened stream {stream_id} with our parity"
        )));
    }
    let mut st = shared.lock();
    // Ids normally rise, but a peer that assigns ids at open and sends SYN
    // at first write can reorder them; only a live id may not be reused
    // (checked by the caller).
    st.last_remote_id = st.last_remote_id.max(stream_id);
    if st.streams.len() >= shared.cfg.max_streams {
        drop(st);
        shared.send(Frame::Rst {
            stream_id,
            code: ErrorCode::STREAM_REFUSED,
        });
        return Ok(None);
    }
    let stream = StreamShared::new(stream_id, StreamState::new(shared.cfg.window_bytes, true));
    st.streams.insert(stream_id, stream.clone());
    drop(st);
    let handle = Stream {
        inner: stream.clone(),
        session: shared.clone(),
    };
    if let Err(e) = accept_tx.try_send(handle) {
        // Dropping the handle removes the stream; refuse it explicitly.
        let handle = match e {
            mpsc::error::TrySendError::Full(h) | mpsc::error::TrySendError::Closed(h) => h,
        };
        handle.reset(ErrorCode::ACCEPT_QUEUE_FULL);
        return Ok(None);
    }
    Ok(Some(stream))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
