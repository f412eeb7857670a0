//! An operator puts certificates in front of authgate: clients reach it over TLS, with HTTP/2 or
//! HTTP/1.1, and get every gateway feature; each hostname gets its certificate; a renewed
//! certificate is taken without a restart and without dropping anyone; old protocol versions
//! are refused; and upstreams that only speak HTTPS are reached, verified against a private CA.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Version;
use serde_json::json;

use crate::common::*;

const HOST: &str = "gateway.test";

/// A gateway with a TLS listener whose certificate (for `gateway.test`) `ca` signed.
struct Tls {
    ca: Ca,
    up: Upstream,
    gw: Gateway,
    /// Holds the certificate files.
    _certs: tempfile::TempDir,
}

impl Tls {
    fn start(opts: Options) -> Tls {
        let up = Upstream::start();
        Self::start_with(up, opts)
    }

    fn start_with(up: Upstream, opts: Options) -> Tls {
        let ca = Ca::new("Gateway Test CA");
        let dir = tempfile::tempdir().unwrap();
        let keys = ca.issue(&[HOST]).keys(dir.path(), "gateway");
        let tls = format!("{keys}{}", opts.tls.clone().unwrap_or_default());
        let gw = Gateway::start(
            &up,
            Options {
                tls: Some(tls),
                ..opts
            },
        );
        Tls {
            ca,
            up,
            gw,
            _certs: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.tls_addr.expect("TLS listener")
    }

    fn client(&self, http1_only: bool) -> reqwest::Client {
        tls_client(&self.ca, HOST, self.addr(), http1_only)
    }

    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.addr().port())
    }
}

async fn signin_over(client: &reqwest::Client, url: &str, version: Version) -> String {
    let resp = client
        .post(url)
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .expect("signin over TLS");
    assert_eq!(resp.version(), version);
    let a = read(resp).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["token"].as_str().expect("token").to_string()
}

fn routes() -> Option<String> {
    Some(
        "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
         [[routes]]\nprefix = \"/limited\"\nupstream = \"app\"\nauth = \"none\"\nrate_limit_per_minute = 2\n"
            .into(),
    )
}

#[tokio::test]
async fn http2_clients_get_every_gateway_feature() {
    let t = Tls::start(Options {
        routes: routes(),
        ..Options::default()
    });
    let h2 = t.client(false);
    let token = signin_over(&h2, &t.url("/api/auth/signin"), Version::HTTP_2).await;

    // A token in each of the four places, over one HTTP/2 connection.
    let sent = [
        h2.get(t.url("/api/a")).bearer_auth(&token),
        h2.get(t.url("/api/b")).header("x-access-token", &token),
        h2.get(t.url(&format!("/api/c?token={token}"))),
    ];
    for req in sent {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let seen = t.up.last();
        assert_eq!(seen.header("x-user-id").as_deref(), Some(USER_ID));
        assert_eq!(seen.header("x-account-type").as_deref(), Some("user"));
        // HTTP/2 names the host in :authority; the HTTP/1.1 upstream gets it as Host.
        assert_eq!(
            seen.header("host"),
            Some(format!("{HOST}:{}", t.addr().port()))
        );
    }
    // The JSON body field, with a length, and streamed in DATA frames without one; the upstream
    // gets the body byte for byte.
    let body = format!("{{ \"token\": \"{token}\", \"n\": [1, 2.50] }}");
    let resp = h2
        .post(t.url("/api/d"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.version(), resp.status().as_u16()),
        (Version::HTTP_2, 200)
    );
    assert_eq!(t.up.last().body, body.as_bytes());
    assert_eq!(t.up.last().header("x-user-id").as_deref(), Some(USER_ID));
    let chunks: Vec<Result<String, std::io::Error>> = body
        .as_bytes()
        .chunks(9)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let resp = h2
        .post(t.url("/api/e"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.version(), resp.status().as_u16()),
        (Version::HTTP_2, 200)
    );
    let seen = t.up.last();
    assert_eq!(seen.uri, "/api/e");
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(seen.header("x-user-id").as_deref(), Some(USER_ID));

    // The gateway's own endpoints, its errors, spoofed headers, path normalisation.
    let me = read(
        h2.get(t.url("/api/auth/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.text);
    let a = read(h2.get(t.url("/api/x")).send().await.unwrap()).await;
    assert_error(
        &a,
        401,
        "Authentication Required",
        "Authentication Required",
    );
    let resp = h2
        .get(t.url("/api//x/./y/../z"))
        .bearer_auth(&token)
        .header("x-user-id", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = t.up.last();
    assert_eq!(seen.uri, "/api/x/z");
    assert_eq!(seen.header_count("x-user-id"), 1);
    assert_eq!(seen.header("x-user-id").as_deref(), Some(USER_ID));
    assert_eq!(
        seen.header("host"),
        Some(format!("{HOST}:{}", t.addr().port())),
        "a rewritten path keeps its authority"
    );

    // Route rate limits count HTTP/2 requests like any others.
    for _ in 0..2 {
        let resp = h2.get(t.url("/limited")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let a = read(h2.get(t.url("/limited")).send().await.unwrap()).await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert!(a.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn http1_over_tls_signs_in_and_proxies() {
    let t = Tls::start(Options::default());
    let h1 = t.client(true);
    let token = signin_over(&h1, &t.url("/api/auth/signin"), Version::HTTP_11).await;
    let resp = h1
        .post(t.url("/api/orders"))
        .header("content-type", "application/json")
        .body(format!("{{\"token\":\"{token}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.version(), resp.status().as_u16()),
        (Version::HTTP_11, 200)
    );
    let seen = t.up.last();
    assert_eq!(seen.header("x-user-id").as_deref(), Some(USER_ID));
    assert_eq!(seen.header("x-account-type").as_deref(), Some("user"));
    // The plain listener serves the same gateway.
    let a = read(
        client()
            .get(t.gw.url("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    // ALPN: h2 first, HTTP/1.1 for clients that only speak it.
    let conn = TlsConn::connect(t.addr(), HOST, &[b"h2", b"http/1.1"], &[])
        .await
        .unwrap();
    assert_eq!(conn.alpn().as_deref(), Some(&b"h2"[..]));
    let conn = TlsConn::connect(t.addr(), HOST, &[b"http/1.1"], &[])
        .await
        .unwrap();
    assert_eq!(conn.alpn().as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn each_hostname_gets_its_certificate() {
    let ca = Ca::new("SNI CA");
    let dir = tempfile::tempdir().unwrap();
    let (main, api, apps) = (
        ca.issue(&[HOST]),
        ca.issue(&["api.test"]),
        ca.issue(&["*.apps.test"]),
    );
    let tls = format!(
        "{}[[server.tls.sni]]\nhost = \"api.test\"\n{}[[server.tls.sni]]\nhost = \"*.apps.test\"\n{}",
        main.keys(dir.path(), "main"),
        api.keys(dir.path(), "api"),
        apps.keys(dir.path(), "apps"),
    );
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            tls: Some(tls),
            ..Options::default()
        },
    );
    let addr = gw.tls_addr.unwrap();
    for (name, expected) in [
        ("api.test", &api),
        ("API.test", &api),
        ("one.apps.test", &apps),
        (HOST, &main),
        ("unknown.test", &main),
        ("a.b.apps.test", &main),
    ] {
        let conn = TlsConn::connect(addr, name, &[b"http/1.1"], &[])
            .await
            .unwrap();
        assert!(
            conn.cert == expected.der,
            "{name} got the wrong certificate"
        );
    }
    // A client that sends no name (it connects by address) gets the default.
    let conn = TlsConn::connect(addr, "127.0.0.1", &[], &[]).await.unwrap();
    assert!(conn.cert == main.der);
    // And a verifying client accepts the chosen certificate.
    let client = tls_client(&ca, "api.test", addr, false);
    let resp = client
        .get(format!("https://api.test:{}/x", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.version(), resp.status().as_u16()),
        (Version::HTTP_2, 401)
    );
}

/// Until a new connection to `addr` is presented `der`.
async fn wait_for_certificate(gw: &Gateway, addr: SocketAddr, der: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let conn = TlsConn::connect(addr, HOST, &[b"http/1.1"], &[])
            .await
            .unwrap();
        if conn.cert == der {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not taken:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const GET: &str = "GET /api/x HTTP/1.1\r\nHost: gateway.test\r\n\r\n";

#[tokio::test]
async fn renewed_certificates_are_taken_without_dropping_connections() {
    let ca = Ca::new("Rotation CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(&[HOST]);
    let tls = first.keys(dir.path(), "live");
    let (cert_path, key_path) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            tls: Some(tls),
            ..Options::default()
        },
    );
    let addr = gw.tls_addr.unwrap();
    let mut old = TlsConn::connect(addr, HOST, &[b"http/1.1"], &[])
        .await
        .unwrap();
    assert!(old.cert == first.der);
    assert_eq!(old.request(GET).await.status, 401);

    // certbot's way: new files, then SIGHUP from the deploy hook. Written as a certificate
    // first and its key after, on purpose: in between, the pair does not match.
    let second = ca.issue(&[HOST]);
    std::fs::write(&cert_path, &second.chain_pem).unwrap();
    std::fs::write(&key_path, &second.key_pem).unwrap();
    gw.signal("HUP");
    wait_for_certificate(&gw, addr, &second.der).await;
    // The kept-alive connection made before the rotation still serves, with its certificate.
    assert_eq!(old.request(GET).await.status, 401);
    assert!(old.cert == first.der);

    // No signal at all: replacing the files is enough (they are watched), the way a Kubernetes
    // secret or `cp` onto the live files does it.
    let third = ca.issue(&[HOST]);
    for (path, text) in [(&cert_path, &third.chain_pem), (&key_path, &third.key_pem)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    wait_for_certificate(&gw, addr, &third.der).await;
    assert_eq!(old.request(GET).await.status, 401);
    assert!(gw.log().contains("TLS certificates reloaded"));

    // A broken pair is refused and the certificate in force stays.
    std::fs::write(&key_path, ca.issue(&[HOST]).key_pem).unwrap();
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gw.log().contains("TLS certificates not reloaded") {
        assert!(Instant::now() < deadline, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gw.log().contains("does not match the certificate in"));
    let conn = TlsConn::connect(addr, HOST, &[b"http/1.1"], &[])
        .await
        .unwrap();
    assert!(conn.cert == third.der);
}

/// `openssl s_client` against `addr` with `args`; whether the handshake succeeded, and what it
/// printed.
fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-servername", HOST])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken() {
    let t = Tls::start(Options::default());
    let addr = t.addr();
    // Security level 0, so that openssl itself is willing to offer the old versions.
    for version in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(addr, &[version, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(!ok, "{version} was accepted:\n{text}");
    }
    let (ok, text) = s_client(addr, &["-tls1_2", "-alpn", "h2,http/1.1"]);
    assert!(ok, "{text}");
    assert!(text.contains("Protocol  : TLSv1.2"), "{text}");
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    let (ok, text) = s_client(addr, &["-tls1_3", "-alpn", "http/1.1"]);
    assert!(ok, "{text}");
    assert!(text.contains("TLSv1.3"), "{text}");
    assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
    // The same from rustls, which reports what was negotiated.
    let conn = TlsConn::connect(addr, HOST, &[], &[&rustls::version::TLS12])
        .await
        .unwrap();
    assert_eq!(conn.version(), Some(rustls::ProtocolVersion::TLSv1_2));
    let conn = TlsConn::connect(addr, HOST, &[], &[]).await.unwrap();
    assert_eq!(conn.version(), Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn the_plain_listener_can_be_turned_off() {
    let t = Tls::start(Options {
        plain: false,
        ..Options::default()
    });
    let token = signin_over(
        &t.client(false),
        &t.url("/api/auth/signin"),
        Version::HTTP_2,
    )
    .await;
    assert!(!token.is_empty());
    assert!(
        std::net::TcpStream::connect(t.gw.addr).is_err(),
        "nothing listens in plain HTTP"
    );
    assert!(t.gw.log().contains("listen=off"), "{}", t.gw.log());
}

#[tokio::test]
async fn tls_connections_are_counted_and_held_to_the_header_deadline() {
    let t = Tls::start(Options {
        server_section: "header_timeout_secs = 1\nmax_connections_per_ip = 3\n".into(),
        ..Options::default()
    });
    let addr = t.addr();
    // A TCP connection that never starts its handshake is closed by the header deadline.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut silent, &mut byte),
    )
    .await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "still open");
    assert!(started.elapsed() < Duration::from_secs(5));
    // An HTTP/2 connection whose client never sends its preface is closed too.
    let mut quiet = TlsConn::connect(addr, HOST, &[b"h2"], &[]).await.unwrap();
    assert_eq!(quiet.alpn().as_deref(), Some(&b"h2"[..]));
    assert!(quiet.closed_within(Duration::from_secs(5)).await);
    // Open connections count toward the cap with those to the plain listener, whatever their
    // protocol; each has served a request, so no deadline closes it. The connection over the cap
    // is closed before any handshake.
    let mut plain = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, GET.as_bytes())
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut plain, &mut answer)
        .await
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 401");
    let h2 = t.client(false);
    let resp = h2.get(t.url("/api/x")).send().await.unwrap();
    assert_eq!(
        (resp.version(), resp.status().as_u16()),
        (Version::HTTP_2, 401)
    );
    let mut h1 = TlsConn::connect(addr, HOST, &[b"http/1.1"], &[])
        .await
        .unwrap();
    assert_eq!(h1.request(GET).await.status, 401);
    assert!(
        TlsConn::connect(addr, HOST, &[b"http/1.1"], &[])
            .await
            .is_err(),
        "a fourth connection from one address was accepted"
    );
    // Once one closes, there is room again.
    drop(h1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TlsConn::connect(addr, HOST, &[b"http/1.1"], &[])
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the slot was not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(plain);
}

/// A TLS upstream: its certificate, for `names`, signed by `ca`.
fn tls_upstream(ca: &Ca, names: &[&str]) -> Upstream {
    Upstream::start_tls(ca.issue(names).server_config())
}

#[tokio::test]
async fn upstreams_are_reached_over_tls_and_verified_against_a_private_ca() {
    let private = Ca::new("Upstream Private CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = private.write(dir.path(), "upstream-ca.pem");
    // Reached by address: the name checked is the address (an IP SAN).
    let by_address = tls_upstream(&private, &["127.0.0.1"]);
    // Reached under a name of its own.
    let by_name = tls_upstream(&private, &["backend.internal"]);
    let extra = format!(
        "[[upstreams]]\nname = \"named\"\nservers = [\"{}\"]\ntls = true\nsni = \"backend.internal\"\nca_file = \"{}\"\n\
         [[routes]]\nprefix = \"/named\"\nupstream = \"named\"\n",
        by_name.addr,
        ca_file.display()
    );
    let t = Tls::start_with(
        by_address,
        Options {
            upstream_keys: format!("tls = true\nca_file = \"{}\"\n", ca_file.display()),
            extra_toml: extra,
            ..Options::default()
        },
    );
    let h2 = t.client(false);
    let token = signin_over(&h2, &t.url("/api/auth/signin"), Version::HTTP_2).await;
    let resp = h2
        .get(t.url("/api/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = t.up.last();
    assert_eq!(seen.header("x-user-id").as_deref(), Some(USER_ID));
    assert_eq!(seen.header("x-account-type").as_deref(), Some("user"));
    let resp = h2
        .get(t.url("/named/y"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(by_name.last().uri, "/named/y");
    assert_eq!(by_name.last().header("x-user-id").as_deref(), Some(USER_ID));
    // Plain HTTP clients reach TLS upstreams too.
    let a = read(
        client()
            .get(t.gw.url("/named/z"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn an_upstream_certificate_that_does_not_verify_is_a_json_502() {
    let private = Ca::new("Upstream Private CA");
    let stranger = Ca::new("Nobody Trusts This CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = private.write(dir.path(), "upstream-ca.pem");
    let unknown_issuer = tls_upstream(&stranger, &["127.0.0.1"]);
    let wrong_name = tls_upstream(&private, &["other.internal"]);
    let extra = format!(
        "[[upstreams]]\nname = \"wrong\"\nservers = [\"{}\"]\ntls = true\nsni = \"backend.internal\"\nca_file = \"{}\"\n\
         [[routes]]\nprefix = \"/wrong\"\nupstream = \"wrong\"\n",
        wrong_name.addr,
        ca_file.display()
    );
    let t = Tls::start_with(
        unknown_issuer,
        Options {
            upstream_keys: format!("tls = true\nca_file = \"{}\"\n", ca_file.display()),
            extra_toml: extra,
            ..Options::default()
        },
    );
    let h2 = t.client(false);
    let token = signin_over(&h2, &t.url("/api/auth/signin"), Version::HTTP_2).await;
    for path in ["/api/x", "/wrong/x"] {
        let a = read(
            h2.get(t.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 502, "{path}: {}", a.text);
        assert_eq!(a.json["error"], "Bad Gateway", "{path}: {}", a.text);
        assert_eq!(
            a.headers["content-type"], "application/json",
            "{path}: {}",
            a.text
        );
    }
    assert_eq!(t.up.count(), 0);
    assert_eq!(wrong_name.count(), 0);
    // The log says why (written as the request ends, so wait for it).
    let failure = |log: &str, reason: &str| {
        log.lines()
            .any(|l| l.contains("Fail to proxy") && l.contains("status: 502") && l.contains(reason))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = t.gw.log();
        let both = failure(&log, "invalid peer certificate: UnknownIssuer")
            && failure(&log, "certificate not valid for name \"backend.internal\"");
        if both {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn verify_false_lets_any_certificate_through_and_check_config_warns() {
    let stranger = Ca::new("Nobody Trusts This CA");
    let up = tls_upstream(&stranger, &["elsewhere.internal"]);
    let t = Tls::start_with(
        up,
        Options {
            upstream_keys: "tls = true\nverify = false\n".into(),
            ..Options::default()
        },
    );
    let h2 = t.client(false);
    let token = signin_over(&h2, &t.url("/api/auth/signin"), Version::HTTP_2).await;
    let resp = h2
        .get(t.url("/api/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(t.up.last().header("x-user-id").as_deref(), Some(USER_ID));
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&t.gw.config_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: upstreams[0].verify = false"),
        "{stderr}"
    );
    assert!(t.gw.log().contains("upstreams[0].verify = false"));
}

#[tokio::test]
async fn health_checks_verify_tls_upstreams() {
    let private = Ca::new("Upstream Private CA");
    let stranger = Ca::new("Nobody Trusts This CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = private.write(dir.path(), "upstream-ca.pem");
    let good = tls_upstream(&private, &["127.0.0.1"]);
    // Listens and completes handshakes, but its certificate does not verify: a TCP check would
    // call it healthy.
    let bad = tls_upstream(&stranger, &["127.0.0.1"]);
    let t = Tls::start_with(
        good,
        Options {
            upstream_keys: format!(
                "tls = true\nca_file = \"{}\"\nhealth_check_secs = 1\n",
                ca_file.display()
            ),
            ..Options::default()
        },
    );
    // The harness's upstream table lists one server; add the bad one to it.
    let config = std::fs::read_to_string(&t.gw.config_path).unwrap().replace(
        &format!("servers = [\"{}\"]", t.up.addr),
        &format!("servers = [\"{}\", \"{}\"]", t.up.addr, bad.addr),
    );
    let tmp = t.gw.config_path.with_extension("new");
    std::fs::write(&tmp, config).unwrap();
    std::fs::rename(&tmp, &t.gw.config_path).unwrap();
    let h1 = t.client(true);
    let token = signin_over(&h1, &t.url("/api/auth/signin"), Version::HTTP_11).await;
    // Once the check has run, the bad server is out of turn and every request succeeds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !t.gw.log().contains("becomes unhealthy") {
        assert!(Instant::now() < deadline, "{}", t.gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..6 {
        let resp = h1
            .get(t.url("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(bad.count(), 0);
    let log = t.gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("becomes unhealthy"))
        .unwrap_or_default();
    assert!(line.contains(&bad.addr.to_string()), "{line}");
    assert!(
        line.contains("invalid peer certificate: UnknownIssuer"),
        "{line}"
    );
}

#[test]
fn bad_certificates_and_keys_are_refused_naming_the_file() {
    let ca = Ca::new("Check CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(&[HOST]).write(dir.path(), "good");
    let (_, other_key) = ca.issue(&[HOST]).write(dir.path(), "other");
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let users = repo_path("conf/users.toml");
    let written = std::cell::Cell::new(0);
    let config = |cert: &std::path::Path, key: &std::path::Path, extra: &str| {
        written.set(written.get() + 1);
        let path = dir.path().join(format!("authgate-{}.toml", written.get()));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:{}\"\n\
                 [server.tls]\nlisten = \"127.0.0.1:{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
                 [admin]\nlisten = \"127.0.0.1:{}\"\n\
                 [store]\nusers_file = \"{}\"\n{extra}",
                free_port(),
                free_port(),
                cert.display(),
                key.display(),
                free_port(),
                users.display()
            ),
        )
        .unwrap();
        path
    };
    let run = |args: &[&str], path: &std::path::Path| {
        let out = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(path)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["check-config"], &config(&cert, &key, ""));
    assert_eq!(code, Some(0), "{stderr}");

    let dir_as_file = dir.path().to_path_buf();
    let cases = [
        (
            config(&missing, &key, ""),
            vec!["server.tls.cert_file", "missing.pem"],
        ),
        (
            config(&cert, &missing, ""),
            vec!["server.tls.key_file", "missing.pem"],
        ),
        (
            config(&dir_as_file, &key, ""),
            vec!["server.tls.cert_file", "cannot read"],
        ),
        (
            config(&not_pem, &key, ""),
            vec!["not.pem holds no PEM certificate"],
        ),
        (
            config(&cert, &not_pem, ""),
            vec!["not.pem holds no PEM private key"],
        ),
        (
            config(&cert, &other_key, ""),
            vec!["other.key does not match the certificate in", "good.crt"],
        ),
        (
            config(
                &cert,
                &key,
                &format!(
                    "[[server.tls.sni]]\nhost = \"api.test\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                    cert.display(),
                    missing.display()
                ),
            ),
            vec!["server.tls.sni[0].key_file", "missing.pem"],
        ),
        (
            config(
                &cert,
                &key,
                &format!(
                    "[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\ntls = true\nca_file = \"{}\"\n",
                    not_pem.display()
                ),
            ),
            vec!["upstreams[0].ca_file", "not.pem holds no PEM certificate"],
        ),
    ];
    for (path, words) in cases {
        let (code, stderr) = run(&["check-config"], &path);
        assert_eq!(code, Some(2), "{stderr}");
        for word in &words {
            assert!(stderr.contains(word), "{word:?} not in: {stderr}");
        }
        // The gateway itself refuses to start on it, with the same words.
        let (code, stderr) = run(&[], &path);
        assert_ne!(code, Some(0), "{stderr}");
        for word in &words {
            assert!(stderr.contains(word), "{word:?} not in: {stderr}");
        }
    }
    // A certificate that does not name its SNI host is a warning, not an error.
    let (code, stderr) = run(
        &["check-config"],
        &config(
            &cert,
            &key,
            &format!(
                "[[server.tls.sni]]\nhost = \"api.test\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        ),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: server.tls.sni[0].cert_file")
            && stderr.contains("does not name api.test"),
        "{stderr}"
    );
}
