//! Connections cannot be hoarded: idle keep-alive connections and slow headers are closed, one
//! address cannot open more than its share, and a client that sends its whole body before
//! reading still gets the gateway's JSON answer.

use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn options(server: &str) -> Options {
    Options {
        routes: Some(
            "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
             [[routes]]\nprefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\n"
                .into(),
        ),
        server_section: server.into(),
        ..Options::default()
    }
}

/// Wait until the server closes `s`, and say how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options("keepalive_timeout_secs = 2\n"));
    for path in ["/open/x", "/api/x"] {
        // One answered by the upstream, one by the gateway itself (401).
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let a = read_response(&mut s).await;
        assert!(a.status == 200 || a.status == 401, "{}", a.head);
        let took = closed_within(&mut s, Duration::from_secs(8)).await;
        assert!(
            took >= Duration::from_millis(1500),
            "closed early: {took:?}"
        );
    }
}

#[tokio::test]
async fn slow_or_missing_headers_are_cut_off() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options("header_timeout_secs = 2\n"));
    // Nothing at all.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(8)).await;
    // One byte every 300 ms: each read is quick, the header never completes.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    let start = Instant::now();
    let request = b"GET /open/x HTTP/1.1\r\nHost: app\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for byte in request {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if start.elapsed() > Duration::from_secs(10) {
            panic!("a slow header was still being read after 10 s");
        }
    }
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest).await;
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options("max_connections_per_ip = 3\n"));
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /open/x HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.status, 200);
        held.push(s);
    }
    let a = raw_get(gw.addr, "/open/x", "").await;
    assert_eq!(a.status, 429, "{} {}", a.head, a.body);
    assert_eq!(a.json["error"], "Too Many Requests");
    assert!(a.head.to_ascii_lowercase().contains("retry-after"));
    // The admin listener is not affected.
    let health = admin_get(&gw, "/healthz").await;
    assert_eq!(health.status, 200);
    // A connection that closes frees its place.
    drop(held.pop());
    let start = Instant::now();
    loop {
        let a = raw_get(gw.addr, "/open/x", "").await;
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 429, "{}", a.head);
        assert!(start.elapsed() < Duration::from_secs(5), "place not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send the whole request, body included, before reading anything.
async fn send_all_then_read(gw: &Gateway, head: &str, body_len: usize) -> RawAnswer {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut request = head.as_bytes().to_vec();
    request.extend(std::iter::repeat_n(b'x', body_len));
    let written = tokio::time::timeout(Duration::from_secs(20), s.write_all(&request)).await;
    assert!(
        matches!(written, Ok(Ok(()))),
        "the body could not be sent: {written:?}"
    );
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    parse_raw(&buf)
}

#[tokio::test]
async fn an_early_answer_reaches_a_client_that_sends_its_whole_body_first() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options(""));
    let len = 8 * 1024 * 1024;
    // No token: refused before the body is read.
    let a = send_all_then_read(
        &gw,
        &format!(
            "POST /api/upload HTTP/1.1\r\nHost: app\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {len}\r\n\r\n"
        ),
        len,
    )
    .await;
    assert_eq!(a.status, 401, "{} {}", a.head, a.body);
    assert_eq!(a.json["error"], "Authentication Required");
    // Too large for a JSON body the gateway reads itself.
    let a = send_all_then_read(
        &gw,
        &format!(
            "POST /api/auth/signin HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\n\r\n"
        ),
        len,
    )
    .await;
    assert_eq!(a.status, 413, "{} {}", a.head, a.body);
    assert_eq!(a.json["error"], "Payload Too Large");
    assert_eq!(up.count(), 0);
}
