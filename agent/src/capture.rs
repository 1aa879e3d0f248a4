//! Captures one HTTP exchange as it streams through the forwarder: the
//! request and response heads when they pass, the bodies through taps
//! that copy (up to the inspector's body limit) without holding anything
//! back, and the whole exchange recorded once the response body ends.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use crate::inspect::{BodyTap, Exchange, Inspector, Message};

struct State {
    inspector: Arc<Inspector>,
    exchange: Exchange,
    started: Instant,
    request_body: BodyTap,
    response_body: BodyTap,
    recorded: bool,
}

/// One exchange being captured; cloned into both body taps.
#[derive(Clone)]
pub struct Capture(Arc<Mutex<State>>);

fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

impl Capture {
    /// Starts capturing a request whose head is `req`.
    pub fn begin<B>(
        inspector: &Arc<Inspector>,
        tunnel_name: &str,
        remote_addr: &str,
        req: &http::Request<B>,
    ) -> Capture {
        let limit = inspector.body_limit();
        let exchange = Exchange {
            id: inspector.next_id(),
            tunnel_name: tunnel_name.to_string(),
            remote_addr: remote_addr.to_string(),
            start: SystemTime::now(),
            duration: std::time::Duration::ZERO,
            request: Message {
                method: req.method().to_string(),
                uri: req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
                    .to_string(),
                headers: header_pairs(req.headers()),
                ..Message::default()
            },
            response: None,
            replay_of: None,
        };
        Capture(Arc::new(Mutex::new(State {
            inspector: inspector.clone(),
            exchange,
            started: Instant::now(),
            request_body: BodyTap::new(limit),
            response_body: BodyTap::new(limit),
            recorded: false,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Marks the exchange as a replay of `id`.
    pub fn replay_of(&self, id: &str) {
        self.with(|st| st.exchange.replay_of = Some(id.to_string()));
    }

    /// The response head (the app's, or the agent's own error).
    pub fn respond<B>(&self, resp: &http::Response<B>) {
        self.with(|st| {
            st.exchange.response = Some(Message {
                status: resp.status().as_u16(),
                headers: header_pairs(resp.headers()),
                ..Message::default()
            })
        });
    }

    /// Records the exchange (once): the response body ended or was
    /// dropped.
    fn finish(&self) {
        let done = self.with(|st| {
            if st.recorded {
                return None;
            }
            st.recorded = true;
            let mut ex = st.exchange.clone();
            ex.duration = st.started.elapsed();
            let (body, len) = std::mem::take(&mut st.request_body).finish();
            (ex.request.body, ex.request.body_len) = (body, len);
            if let Some(r) = ex.response.as_mut() {
                let (body, len) = std::mem::take(&mut st.response_body).finish();
                (r.body, r.body_len) = (body, len);
            }
            Some((st.inspector.clone(), ex))
        });
        if let Some((inspector, ex)) = done {
            inspector.record(ex);
        }
    }

    /// Wraps the request body so its bytes are captured as they pass.
    pub fn tap_request<B>(&self, body: B) -> Tap<B> {
        Tap {
            inner: body,
            capture: self.clone(),
            response: false,
        }
    }

    /// Wraps the response body; the exchange is recorded when it ends.
    pub fn tap_response<B>(&self, body: B) -> Tap<B> {
        Tap {
            inner: body,
            capture: self.clone(),
            response: true,
        }
    }
}

/// A body passed through unchanged while its bytes are copied into the
/// capture.
pub struct Tap<B> {
    inner: B,
    capture: Capture,
    response: bool,
}

impl<B> Body for Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let response = self.response;
                    self.capture.with(|st| {
                        if response {
                            st.response_body.push(data)
                        } else {
                            st.request_body.push(data)
                        }
                    });
                }
            }
            Poll::Ready(None) if self.response => self.capture.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Tap<B> {
    fn drop(&mut self) {
        // A client that went away, or a body hyper never polled to its end
        // (empty, HEAD): the exchange is still recorded.
        if self.response {
            self.capture.finish();
        }
    }
}
