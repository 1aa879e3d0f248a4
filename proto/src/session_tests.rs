//! A client/server pair over an in-memory pipe, plus raw-frame peers for
//! the error paths and an interop check against the crates.io muxado crate.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::frame::{self, ErrorCode, Frame};

fn pair() -> ((Session, Acceptor), (Session, Acceptor)) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (
        start(a, SessionConfig::new(Role::Client)),
        start(b, SessionConfig::new(Role::Server)),
    )
}

/// Reads frames written by a session to a raw peer.
async fn next_frame(io: &mut DuplexStream, buf: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some(f) = frame::decode(buf).expect("valid frame") {
            return Some(f);
        }
        if io.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

#[tokio::test]
async fn open_accept_and_echo_with_role_parity() {
    let ((client, _ca), (_server, mut sa)) = pair();
    let mut c1 = client.open().unwrap();
    let mut c2 = client.open().unwrap();
    // Ids are assigned in the order streams first write.
    c2.write_all(b"two").await.unwrap();
    c1.write_all(b"one").await.unwrap();
    assert_eq!((c2.id(), c1.id()), (3, 5));
    std::mem::swap(&mut c1, &mut c2);
    let mut s1 = sa.accept().await.unwrap();
    let mut s2 = sa.accept().await.unwrap();
    assert_eq!((s1.id(), s2.id()), (3, 5));
    let mut buf = [0u8; 3];
    s1.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"two");
    s2.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"one");
    s1.write_all(b"TWO").await.unwrap();
    c1.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"TWO");
}

#[tokio::test]
async fn server_opened_streams_use_even_ids() {
    let ((_client, mut ca), (server, _sa)) = pair();
    let mut s = server.open().unwrap();
    assert_eq!(s.id(), 0, "no id before the first frame");
    s.write_all(b"x").await.unwrap();
    assert_eq!(s.id(), 2);
    let c = ca.accept().await.unwrap();
    assert_eq!(c.id(), 2);
    let mut s2 = server.open().unwrap();
    s2.write_all(b"y").await.unwrap();
    assert_eq!(s2.id(), 4);
}

#[tokio::test]
async fn half_close_delivers_the_whole_reply() {
    let ((client, _ca), (_server, mut sa)) = pair();
    let mut c = client.open().unwrap();
    c.write_all(b"request").await.unwrap();
    c.shutdown().await.unwrap();
    let mut s = sa.accept().await.unwrap();
    let mut req = Vec::new();
    s.read_to_end(&mut req).await.unwrap();
    assert_eq!(req, b"request");
    let reply = vec![9u8; 700_000];
    let writer = tokio::spawn(async move {
        s.write_all(&reply).await.unwrap();
        s.shutdown().await.unwrap();
        s
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), 700_000);
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn many_megabytes_both_ways_concurrently() {
    let ((client, _ca), (_server, mut sa)) = pair();
    let mut streams = Vec::new();
    for i in 0..8u8 {
        let mut c = client.open().unwrap();
        c.write_all(&[i]).await.unwrap();
        streams.push(c);
    }
    let echo = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = sa.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(s);
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let mut checks = Vec::new();
    for (i, c) in streams.into_iter().enumerate() {
        checks.push(tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(c);
            let payload: Vec<u8> = (0..2_000_000u32)
                .map(|n| (n as u8).wrapping_add(i as u8))
                .collect();
            let expected = payload.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&payload).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            assert_eq!(got[0], i as u8);
            assert_eq!(&got[1..], &expected[..]);
        }));
    }
    for c in checks {
        c.await.unwrap();
    }
    echo.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn writer_blocks_at_the_window_until_the_reader_reads() {
    let ((client, _ca), (_server, mut sa)) = pair();
    let mut c = client.open().unwrap();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = written.clone();
    let writer = tokio::spawn(async move {
        let chunk = vec![1u8; 16 * 1024];
        for _ in 0..64 {
            c.write_all(&chunk).await.unwrap();
            progress.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
        c.shutdown().await.unwrap();
        c
    });
    // With paused time the sleep returns only once every task is idle, so
    // the writer has gone as far as the window lets it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_reading = written.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(before_reading, DEFAULT_WINDOW_BYTES as usize);
    let mut s = sa.accept().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), 64 * 16 * 1024);
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn dropping_a_stream_resets_the_peer() {
    let ((client, _ca), (_server, mut sa)) = pair();
    let mut c = client.open().unwrap();
    c.write_all(b"hi").await.unwrap();
    let s = sa.accept().await.unwrap();
    drop(s);
    let mut buf = [0u8; 8];
    let err = c.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(c.write_all(b"more").await.is_err());
}

#[tokio::test]
async fn dropping_after_fin_keeps_the_reply_readable_like_tcp_close() {
    let ((client, _ca), (_server, mut sa)) = pair();
    let mut c = client.open().unwrap();
    c.write_all(b"question").await.unwrap();
    let mut s = sa.accept().await.unwrap();
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).await.unwrap();
    // The server answers and closes before the client's FIN arrives (a TLS
    // close_notify ends its reading early): the reply must survive.
    s.write_all(b"answer").await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"answer");
    // Data sent after the server closed is refused with RST.
    c.write_all(b"late").await.unwrap();
    let err = loop {
        match c.write_all(b"x").await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn close_sends_goaway_and_peer_learns_why() {
    let ((client, _ca), (server, _sa)) = pair();
    server.close(ErrorCode::NONE, "maintenance");
    client.closed().await;
    match client.close_reason() {
        Some(SessionError::RemoteGoneAway { code, message }) => {
            assert_eq!(code, ErrorCode::NONE);
            assert_eq!(message, "maintenance");
        }
        other => panic!("unexpected close reason {other:?}"),
    }
    assert!(client.open().is_err());
}

#[tokio::test]
async fn garbage_from_the_peer_is_a_protocol_error_with_goaway() {
    let (ours, mut raw) = tokio::io::duplex(1 << 16);
    let (session, mut acceptor) = start(ours, SessionConfig::new(Role::Server));
    raw.write_all(&[0, 0, 0, 0xF0, 0, 0, 0, 1]).await.unwrap();
    let mut buf = BytesMut::new();
    match next_frame(&mut raw, &mut buf).await {
        Some(Frame::GoAway { code, .. }) => assert_eq!(code, ErrorCode::PROTOCOL),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    assert!(
        next_frame(&mut raw, &mut buf).await.is_none(),
        "connection closed after GOAWAY"
    );
    session.closed().await;
    assert!(matches!(
        session.close_reason(),
        Some(SessionError::Protocol(_))
    ));
    assert!(acceptor.accept().await.is_none());
}

#[tokio::test]
async fn wrong_parity_and_window_overrun_are_refused() {
    // A client-role peer may not open even ids on a server.
    let (ours, mut raw) = tokio::io::duplex(1 << 20);
    let (session, _acceptor) = start(ours, SessionConfig::new(Role::Server));
    let syn = Frame::Data {
        stream_id: 2,
        syn: true,
        fin: false,
        payload: Bytes::from_static(b"x"),
    };
    raw.write_all(&syn.to_bytes()).await.unwrap();
    session.closed().await;
    assert!(matches!(
        session.close_reason(),
        Some(SessionError::Protocol(_))
    ));

    // Sending past the window gets the stream reset with FLOW_CONTROL.
    let (ours, mut raw) = tokio::io::duplex(1 << 22);
    let (_session, mut acceptor) = start(ours, SessionConfig::new(Role::Server));
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    for i in 0..5 {
        let f = Frame::Data {
            stream_id: 3,
            syn: i == 0,
            fin: false,
            payload: chunk.clone(),
        };
        raw.write_all(&f.to_bytes()).await.unwrap();
    }
    let _s = acceptor.accept().await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        match next_frame(&mut raw, &mut buf).await {
            Some(Frame::Rst { stream_id: 3, code }) => {
                assert_eq!(code, ErrorCode::FLOW_CONTROL);
                break;
            }
            Some(_) => continue,
            None => panic!("no RST"),
        }
    }
}

#[tokio::test]
async fn full_accept_queue_refuses_new_streams() {
    let (ours, mut raw) = tokio::io::duplex(1 << 20);
    let mut cfg = SessionConfig::new(Role::Server);
    cfg.accept_queue = 1;
    let (_session, _acceptor) = start(ours, cfg);
    for id in [3u32, 5] {
        let f = Frame::Data {
            stream_id: id,
            syn: true,
            fin: false,
            payload: Bytes::from_static(b"x"),
        };
        raw.write_all(&f.to_bytes()).await.unwrap();
    }
    let mut buf = BytesMut::new();
    match next_frame(&mut raw, &mut buf).await {
        Some(Frame::Rst { stream_id, code }) => {
            assert_eq!(stream_id, 5);
            assert_eq!(code, ErrorCode::ACCEPT_QUEUE_FULL);
        }
        other => panic!("expected RST, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn reaper_closes_silent_sessions_and_spares_beating_ones() {
    use crate::heartbeat::{echo, reap, run_client, Liveness};
    let interval = Duration::from_secs(10);
    let tolerance = Duration::from_secs(15);

    // Silent agent: reaped after interval + tolerance.
    let ((_client, _ca), (server, _sa)) = pair();
    let live = Liveness::new();
    live.touch();
    let started = tokio::time::Instant::now();
    reap(server.clone(), live, interval, tolerance).await;
    assert!(server.is_closed());
    assert_eq!(started.elapsed(), interval + tolerance);

    // Beating agent: still up after many intervals.
    let ((client, _ca), (server, mut sa)) = pair();
    let live = Liveness::new();
    live.touch();
    tokio::spawn(reap(server.clone(), live.clone(), interval, tolerance));
    let echo_live = live.clone();
    tokio::spawn(async move {
        let mut s = sa.accept().await.unwrap();
        assert_eq!(s.read_u32().await.unwrap(), crate::msg::HEARTBEAT);
        echo(s, echo_live).await;
    });
    let beats = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = beats.clone();
    let c = client.clone();
    tokio::spawn(async move {
        let _ = run_client(&c, interval, tolerance, |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .await;
    });
    tokio::time::sleep(interval * 10).await;
    assert!(!server.is_closed());
    assert!(beats.load(std::sync::atomic::Ordering::SeqCst) >= 10);
}

/// Interop: the crates.io muxado client (the SDK's own implementation)
/// against our server, both directions.
#[tokio::test]
async fn interop_with_the_muxado_crate_client() {
    use muxado::typed::{StreamType, TypedAccept, TypedOpenClose, TypedSession};
    let (a, b) = tokio::io::duplex(1 << 20);
    let (server, mut acceptor) = start(b, SessionConfig::new(Role::Server));
    let theirs = muxado::typed::Typed::new(muxado::SessionBuilder::new(a).client().start());
    let (mut their_open, mut their_accept) = theirs.split_typed();

    let mut ts = their_open.open_typed(StreamType::clamp(7)).await.unwrap();
    ts.write_all(b"from the crate").await.unwrap();
    let mut ours = acceptor.accept().await.unwrap();
    assert_eq!(ours.id(), 3);
    assert_eq!(ours.read_u32().await.unwrap(), 7);
    let mut buf = [0u8; 14];
    ours.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"from the crate");
    let big = vec![5u8; 1_000_000];
    let expected = big.clone();
    let writer = tokio::spawn(async move {
        ours.write_all(&big).await.unwrap();
        ours.shutdown().await.unwrap();
        ours
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), ts.read_to_end(&mut got))
        .await
        .expect("read in time")
        .unwrap();
    assert_eq!(got, expected);
    drop(writer.await.unwrap());

    let mut out = server.open().unwrap();
    out.write_all(&3u32.to_be_bytes()).await.unwrap();
    out.write_all(b"proxy").await.unwrap();
    let mut theirs_in = tokio::time::timeout(Duration::from_secs(10), their_accept.accept_typed())
        .await
        .expect("accept in time")
        .unwrap();
    assert_eq!(*theirs_in.typ(), 3);
    let mut buf = [0u8; 5];
    theirs_in.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"proxy");
}

/// Regression: many tasks opening streams at once must put SYNs on the wire
/// in id order (the edge under load broke Go-style peers before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_reach_the_wire_in_id_order() {
    let (ours, mut raw) = tokio::io::duplex(1 << 22);
    let (server, _acceptor) = start(ours, SessionConfig::new(Role::Server));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = server.open().unwrap();
            tokio::task::yield_now().await;
            s.write_all(b"x").await.unwrap();
            s
        }));
    }
    let mut streams = Vec::new();
    for t in tasks {
        streams.push(t.await.unwrap());
    }
    let mut buf = BytesMut::new();
    let mut last = 0;
    for _ in 0..200 {
        match next_frame(&mut raw, &mut buf).await {
            Some(Frame::Data {
                stream_id,
                syn: true,
                ..
            }) => {
                assert!(stream_id > last, "{stream_id} after {last}");
                last = stream_id;
            }
            other => panic!("expected SYN, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn out_of_order_remote_ids_are_accepted() {
    let (ours, mut raw) = tokio::io::duplex(1 << 16);
    let (_session, mut acceptor) = start(ours, SessionConfig::new(Role::Server));
    for id in [5u32, 3] {
        let f = Frame::Data {
            stream_id: id,
            syn: true,
            fin: false,
            payload: Bytes::from_static(b"x"),
        };
        raw.write_all(&f.to_bytes()).await.unwrap();
    }
    assert_eq!(acceptor.accept().await.unwrap().id(), 5);
    assert_eq!(acceptor.accept().await.unwrap().id(), 3);
}
