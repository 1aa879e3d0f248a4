//! TCP tunnels end to end: `gangway tcp` and the official SDK's
//! `tcp_endpoint()`, raw bytes both ways with half-close, port allocation
//! from the server's range, and clear errors for bad addresses.

use std::net::SocketAddr;

use crate::support::{agent_fails, eventually, Agent, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A local service that reads until the client half-closes, then answers
/// with everything it got, reversed, and closes.
async fn reverse_after_eof_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if tcp.read_to_end(&mut got).await.is_err() {
                    return;
                }
                got.reverse();
                let _ = tcp.write_all(&got).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// `tcp://host:port` → a loopback socket address with that port.
fn public_addr(url: &str) -> SocketAddr {
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url");
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(payload).await.expect("write");
    tcp.shutdown().await.expect("half-close");
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await.expect("read reply");
    reply
}

/// A port in `range` that nothing listens on right now.
fn free_port_in(range: std::ops::RangeInclusive<u16>) -> u16 {
    let start = (std::process::id() as u16) % (range.end() - range.start());
    (0..=(range.end() - range.start()))
        .map(|i| range.start() + (start + i) % (range.end() - range.start() + 1))
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in range")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_tunnel_half_close_and_many_connections() {
    let server = Server::start().await;
    let local = reverse_after_eof_server().await;
    let agent = Agent::tcp(&server, &local.to_string(), &[]).await;
    assert!(agent.url.starts_with("tcp://localhost:"), "{}", agent.url);
    let public = public_addr(&agent.url);
    assert!((20000..=20999).contains(&public.port()));

    // One big exchange: the reply only comes after our half-close.
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut expected = payload.clone();
    expected.reverse();
    assert_eq!(round_trip(public, &payload).await, expected);

    // Many at once, one stream each.
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        tasks.push(tokio::spawn(async move {
            let msg = format!("connection number {i}").into_bytes();
            let mut want = msg.clone();
            want.reverse();
            assert_eq!(round_trip(public, &msg).await, want);
        }));
    }
    for t in tasks {
        t.await.expect("connection task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_addr_binds_that_port_and_bad_addresses_are_refused() {
    let server = Server::start().await;
    let local = reverse_after_eof_server().await;
    let port = free_port_in(20000..=20999);
    let wanted = format!("localhost:{port}");
    let agent = Agent::tcp(&server, &local.to_string(), &["--remote-addr", &wanted]).await;
    assert_eq!(agent.url, format!("tcp://{wanted}"));
    assert_eq!(round_trip(public_addr(&agent.url), b"abc").await, b"cba");

    // Taken by the running agent.
    let err = agent_fails(
        &server,
        &["tcp", &local.to_string(), "--remote-addr", &wanted],
    )
    .await;
    assert!(err.contains("ERR_NGROK_334"), "{err}");
    // Outside the server's range.
    let err = agent_fails(
        &server,
        &["tcp", &local.to_string(), "--remote-addr", "localhost:80"],
    )
    .await;
    assert!(err.contains("ERR_NGROK_4502"), "{err}");
    // Not this server's TCP host.
    let err = agent_fails(
        &server,
        &[
            "tcp",
            &local.to_string(),
            "--remote-addr",
            "example.com:20001",
        ],
    )
    .await;
    assert!(err.contains("ERR_NGROK_4504"), "{err}");
    // A malformed HTTP domain, while we are at it.
    let err = agent_fails(&server, &["http", "8080", "--domain", "bad_name!.example"]).await;
    assert!(err.contains("ERR_NGROK_326"), "{err}");

    // None of that disturbed the working tunnel.
    assert_eq!(
        round_trip(public_addr(&agent.url), b"still here").await,
        b"ereh llits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_port_range_is_a_clear_error() {
    // A range of exactly one free port.
    let port = free_port_in(21000..=21999);
    let range = format!("{port}-{port}");
    let server = Server::start_with(&["--tcp-ports", &range]).await;
    let local = reverse_after_eof_server().await;
    let agent = Agent::tcp(&server, &local.to_string(), &[]).await;
    assert_eq!(agent.url, format!("tcp://localhost:{port}"));

    let err = agent_fails(&server, &["tcp", &local.to_string()]).await;
    assert!(err.contains("ERR_NGROK_4505"), "{err}");
    assert!(err.contains(&range), "{err}");
    assert_eq!(round_trip(public_addr(&agent.url), b"ok").await, b"ko");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_listener_stops_when_the_agent_unbinds() {
    let server = Server::start().await;
    let local = reverse_after_eof_server().await;
    let mut agent = Agent::tcp(&server, &local.to_string(), &[]).await;
    let public = public_addr(&agent.url);
    assert_eq!(round_trip(public, b"xy").await, b"yx");
    assert!(agent.terminate().success());
    eventually("the port to be released", || async move {
        TcpStream::connect(public).await.is_err().then_some(())
    })
    .await;
    // The port can be bound again by a new agent asking for it.
    let wanted = format!("localhost:{}", public.port());
    let again = Agent::tcp(&server, &local.to_string(), &["--remote-addr", &wanted]).await;
    assert_eq!(round_trip(public_addr(&again.url), b"12").await, b"21");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngrok_sdk_tcp_endpoint_serves_through_edge() {
    use ngrok::config::ForwarderBuilder;
    use ngrok::tunnel::EndpointInfo;

    let server = Server::start().await;
    let local = reverse_after_eof_server().await;
    let session = server.sdk_session().await;
    let to = reqwest::Url::parse(&format!("tcp://{local}")).expect("url");
    let fwd = session
        .tcp_endpoint()
        .listen_and_forward(to)
        .await
        .expect("tcp bind");
    let url = fwd.url().to_string();
    assert!(url.starts_with("tcp://localhost:"), "{url}");
    assert_eq!(
        round_trip(public_addr(&url), b"sdk bytes").await,
        b"setyb kds"
    );
}

/// A local service that reads a PROXY protocol header (v1 line or v2
/// block), then answers with a description of it and closes.
async fn proxy_header_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                // A header, when configured, arrives before any client byte.
                let mut first = [0u8; 16];
                let got = tokio::time::timeout(
                    std::time::Duration::from_millis(500),
                    tcp.read_exact(&mut first),
                )
                .await;
                let reply = if got.is_err() {
                    "no proxy header".to_string()
                } else if first.starts_with(b"PROXY ") {
                    let mut line = first.to_vec();
                    while !line.ends_with(b"\r\n") {
                        let mut b = [0u8; 1];
                        if tcp.read_exact(&mut b).await.is_err() {
                            return;
                        }
                        line.push(b[0]);
                    }
                    String::from_utf8_lossy(&line).trim_end().to_string()
                } else if first.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
                    let len = u16::from_be_bytes([first[14], first[15]]) as usize;
                    let mut rest = vec![0u8; len];
                    if tcp.read_exact(&mut rest).await.is_err() || first[13] != 0x11 {
                        return;
                    }
                    let ip = |b: &[u8]| std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
                    format!(
                        "v2 {}:{} -> {}:{}",
                        ip(&rest[0..4]),
                        port(&rest[8..10]),
                        ip(&rest[4..8]),
                        port(&rest[10..12])
                    )
                } else {
                    "no proxy header".to_string()
                };
                let _ = tcp.write_all(reply.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// Connects to `public`, returns (our local address, the service's reply).
async fn ask_proxy_header(public: SocketAddr) -> (SocketAddr, String) {
    let mut tcp = TcpStream::connect(public).await.expect("connect");
    let me = tcp.local_addr().expect("local addr");
    // The SDK's forwarder sends the header with the first bytes it passes on.
    tcp.write_all(b"hi").await.expect("write");
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.expect("reply");
    (me, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_headers_carry_the_client_address() {
    use ngrok::config::{ForwarderBuilder, ProxyProto};
    use ngrok::tunnel::EndpointInfo;

    let server = Server::start().await;
    let local = proxy_header_server().await;

    // `gangway tcp --proxy-proto 1`: the text form.
    let agent = Agent::tcp(&server, &local.to_string(), &["--proxy-proto", "1"]).await;
    let public = public_addr(&agent.url);
    let (me, reply) = ask_proxy_header(public).await;
    assert_eq!(
        reply,
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}",
            me.port(),
            public.port()
        )
    );

    // The SDK with ProxyProto::V2: the edge sends the binary form and the
    // SDK passes it on to the service it forwards to.
    let session = server.sdk_session().await;
    let fwd = session
        .tcp_endpoint()
        .proxy_proto(ProxyProto::V2)
        .listen_and_forward(reqwest::Url::parse(&format!("tcp://{local}")).expect("url"))
        .await
        .expect("tcp bind");
    let public = public_addr(fwd.url());
    let (me, reply) = ask_proxy_header(public).await;
    assert_eq!(
        reply,
        format!("v2 127.0.0.1:{} -> 127.0.0.1:{}", me.port(), public.port())
    );

    // Without the option nothing is prepended.
    let plain = Agent::tcp(&server, &local.to_string(), &[]).await;
    assert_eq!(
        ask_proxy_header(public_addr(&plain.url)).await.1,
        "no proxy header"
    );
}
