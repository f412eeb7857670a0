//! Test harness: the real `authgate` binary, a recording upstream and real HTTP clients, all on
//! free loopback ports. Everything started here stops when its handle is dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

pub mod certs;
pub mod oidc;
pub use certs::*;
pub use oidc::*;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const EMAIL: &str = "john.doe@mydomain.com";
pub const PASSWORD: &str = "iLovePria123";
pub const USER_ID: &str = "6430736fd62d650040420674";
pub const ORG_ID: &str = "660e8400-e29b-41d4-a716-446655440001";

/// A port that was free a moment ago on 127.0.0.1, and that no other call in this test process
/// has returned: the kernel may hand the same ephemeral port out twice in a row once it is
/// released, and a gateway given one port for two listeners refuses to start.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        if GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.get_all(name).iter().count()
    }
}

/// An HTTP server that answers 200 `{"upstream":true}` and remembers every request.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    pub fn start() -> Upstream {
        Self::start_with_status(200)
    }

    /// An upstream (or webhook receiver) that answers every request with `status`.
    pub fn start_with_status(status: u16) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        Self::serve(listener, status)
    }

    /// An upstream on a given port (one a gateway was already told about).
    pub fn start_on(port: u16) -> Upstream {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind upstream port");
        Self::serve(listener, 200)
    }

    /// An upstream that speaks HTTPS only, with the certificates of `tls`.
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        Self::serve_with(listener, 200, Some(tls))
    }

    fn serve(listener: TcpListener, status: u16) -> Upstream {
        Self::serve_with(listener, status, None)
    }

    fn serve_with(
        listener: TcpListener,
        status: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Upstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("upstream addr");
        let record = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |req: Request| {
            let record = Arc::clone(&record);
            async move {
                let (parts, body) = req.into_parts();
                let body: Bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                record.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers: parts.headers,
                    body: body.to_vec(),
                });
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    [("content-type", "application/json")],
                    r#"{"upstream":true}"#,
                )
            }
        });
        runtime.spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = match tls {
                    None => axum::serve(listener, app).await,
                    Some(config) => axum::serve(TlsListener::new(listener, config), app).await,
                };
            }
        });
        Upstream {
            addr,
            seen,
            runtime: Some(runtime),
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Options for one gateway process.
pub struct Options {
    /// Extra TOML appended to the generated configuration (routes, sections).
    pub extra_toml: String,
    /// Replaces the default `[[routes]]` (a single required route at `/`).
    pub routes: Option<String>,
    pub env: Vec<(String, String)>,
    pub token_section: String,
    pub server_section: String,
    pub rate_limit_section: String,
    pub users_toml: Option<String>,
    /// Replaces the default memory `[store]` table; `USERS` is replaced by the users file path.
    pub store_section: Option<String>,
    /// With a Redis store, do not run `users import` before starting.
    pub skip_import: bool,
    /// The keys of `[server.tls]` but `listen` (a free port is chosen): the gateway then also
    /// listens over TLS, at `Gateway::tls_addr`.
    pub tls: Option<String>,
    /// `false` turns the plain listener off (`server.listen = ""`).
    pub plain: bool,
    /// More keys for the `app` upstream (`tls = true`, `ca_file = ...`).
    pub upstream_keys: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_toml: String::new(),
            routes: None,
            env: Vec::new(),
            token_section: format!("[token]\nsecret = \"{SECRET}\"\n"),
            server_section: String::new(),
            rate_limit_section: String::new(),
            users_toml: None,
            store_section: None,
            skip_import: false,
            tls: None,
            plain: true,
            upstream_keys: String::new(),
        }
    }
}

pub struct Gateway {
    /// The plain listener (nothing listens there when `Options::plain` is false).
    pub addr: SocketAddr,
    /// The TLS listener, when `Options::tls` is set.
    pub tls_addr: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    plain: bool,
    child: Child,
    env: Vec<(String, String)>,
}

fn spawn(config_path: &Path, env: &[(String, String)], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("gateway.log"))
        .expect("log file");
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(config_path)
        .env_remove("JWT_SECRET")
        .env_remove("JWT_VALIDITY_SEC")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn authgate")
}

/// The repository's sample users file.
pub fn sample_users() -> String {
    std::fs::read_to_string(repo_path("conf/users.toml")).expect("conf/users.toml")
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_authgate")
}

impl Gateway {
    pub fn start(upstream: &Upstream, opts: Options) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let users_path = dir.path().join("users.toml");
        std::fs::write(
            &users_path,
            opts.users_toml.clone().unwrap_or_else(sample_users),
        )
        .expect("write users");
        let port = free_port();
        let admin_port = free_port();
        let tls_port = opts.tls.as_ref().map(|_| free_port());
        let listen = if opts.plain {
            format!("127.0.0.1:{port}")
        } else {
            String::new()
        };
        let tls_table = match (&opts.tls, tls_port) {
            (Some(keys), Some(tls_port)) => {
                format!("[server.tls]\nlisten = \"127.0.0.1:{tls_port}\"\n{keys}\n")
            }
            _ => String::new(),
        };
        let routes = opts.routes.clone().unwrap_or_else(|| {
            "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n".into()
        });
        let config = format!(
            "[server]\nlisten = \"{listen}\"\naccess_log = true\n{server}\n{tls_table}\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
             {token}\n\
             [store]\nbackend = \"memory\"\nusers_file = \"{users}\"\n\
             {rate}\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{up}\"]\n{upstream_keys}\n\
             {routes}\n{extra}\n",
            server = opts.server_section,
            upstream_keys = opts.upstream_keys,
            token = opts.token_section,
            users = users_path.display(),
            rate = opts.rate_limit_section,
            up = upstream.addr,
            extra = opts.extra_toml,
        );
        let config = match &opts.store_section {
            Some(store) => config.replace(
                &format!(
                    "[store]\nbackend = \"memory\"\nusers_file = \"{}\"\n",
                    users_path.display()
                ),
                &store.replace("USERS", &users_path.display().to_string()),
            ),
            None => config,
        };
        let config_path = dir.path().join("authgate.toml");
        std::fs::write(&config_path, &config).expect("write config");
        if opts.store_section.is_some() && !opts.skip_import {
            import_users(&config_path);
        }
        let child = spawn(&config_path, &opts.env, dir.path());
        let mut gw = Gateway {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            tls_addr: tls_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            admin: format!("127.0.0.1:{admin_port}").parse().unwrap(),
            plain: opts.plain,
            dir,
            config_path,
            child,
            env: opts.env.clone(),
        };
        gw.wait_ready();
        gw
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the same configuration again (after `kill9`).
    pub fn restart(&mut self) {
        self.child = spawn(&self.config_path, &self.env, self.dir.path());
        self.wait_ready();
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("authgate exited early with {status}:\n{}", self.log());
            }
            let admin_up = std::net::TcpStream::connect(self.admin).is_ok();
            let proxy_up = !self.plain || std::net::TcpStream::connect(self.addr).is_ok();
            let tls_up = self
                .tls_addr
                .is_none_or(|a| std::net::TcpStream::connect(a).is_ok());
            if admin_up && proxy_up && tls_up {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("authgate did not start:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn users_path(&self) -> PathBuf {
        self.dir.path().join("users.toml")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A response read whole: status, headers and JSON body (Null when the body is not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub text: String,
}

pub async fn read(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
        text,
    }
}

pub async fn post_json(url: &str, body: Value) -> Answer {
    read(client().post(url).json(&body).send().await.expect("send")).await
}

pub async fn signin(gw: &Gateway) -> String {
    let a = post_json(
        &gw.url("/api/auth/signin"),
        serde_json::json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(a.status, 200, "signin failed: {}", a.text);
    a.json["token"].as_str().expect("token").to_string()
}

/// The claims of a token, read without verification (the gateway verified it).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("claims json")
}

/// Sign arbitrary claims with the test secret, for expired or forged tokens.
pub fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn assert_error(a: &Answer, status: u16, error: &str, message: &str) {
    assert_eq!(a.status, status, "body: {}", a.text);
    assert_eq!(a.json["error"], error, "body: {}", a.text);
    assert_eq!(a.json["message"], message, "body: {}", a.text);
}

pub fn map<const N: usize>(pairs: [(&str, &str); N]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `authgate users import` for a configuration.
pub fn import_users(config_path: &Path) {
    let out = Command::new(bin())
        .args(["users", "import", "--config"])
        .arg(config_path)
        .env_remove("REDIS_URL")
        .output()
        .expect("run users import");
    assert!(
        out.status.success(),
        "users import failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real `redis-server` on a free loopback port, with its own directory so it can be killed
/// and restarted with its data.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    cluster: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    pub fn start_with(cluster: bool) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            cluster,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", "2000"]);
        }
        self.child = Some(cmd.spawn().expect("redis-server must be installed"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_cmd(&["PING"]).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Save the data, then SIGKILL the server.
    pub fn kill(&mut self) {
        let _ = self.try_cmd(&["SAVE"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port, with the data saved at `kill`.
    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn try_cmd(&self, args: &[&str]) -> Option<redis::Value> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn).ok()
    }

    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let value = self
            .try_cmd(args)
            .unwrap_or_else(|| panic!("redis {args:?} failed"));
        redis::from_redis_value(value).expect("redis reply type")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three masters, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_with(true)).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        'wait: while Instant::now() < deadline {
            for node in &nodes {
                let info: String = node
                    .try_cmd(&["CLUSTER", "INFO"])
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or_default();
                if !info.contains("cluster_state:ok") {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'wait;
                }
            }
            return RedisCluster { nodes };
        }
        panic!("cluster did not become ready");
    }

    pub fn urls_toml(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// Every key on every node matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| n.query::<Vec<String>>(&["KEYS", pattern]))
            .collect()
    }
}

pub fn redis_store(url_toml: &str, extra: &str) -> String {
    format!(
        "[store]\nbackend = \"redis\"\nredis_url = {url_toml}\nusers_file = \"USERS\"\nredis_key_prefix = \"ag:\"\n{extra}"
    )
}

/// A real SMTP server on a free port that accepts every message and keeps it.
pub struct SmtpReceiver {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpReceiver {
    pub fn start() -> SmtpReceiver {
        use std::io::{BufRead, BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind smtp");
        let port = listener.local_addr().unwrap().port();
        let messages: Arc<Mutex<Vec<String>>> = Arc::default();
        let store = Arc::clone(&messages);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().expect("clone");
                    let mut lines = BufReader::new(stream);
                    let _ = out.write_all(b"220 test-smtp ready\r\n");
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let verb = line.trim().to_ascii_uppercase();
                        let reply: &[u8] = if verb.starts_with("EHLO") || verb.starts_with("HELO") {
                            b"250-test-smtp\r\n250 8BITMIME\r\n"
                        } else if verb == "DATA" {
                            let _ = out.write_all(b"354 go ahead\r\n");
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                data.push_str(&line);
                            }
                            store.lock().unwrap().push(data);
                            b"250 queued\r\n"
                        } else if verb == "QUIT" {
                            let _ = out.write_all(b"221 bye\r\n");
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        let _ = out.write_all(reply);
                    }
                });
            }
        });
        SmtpReceiver { port, messages }
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

/// The six-digit code in a message body or webhook payload.
pub fn six_digits(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(5)).find_map(|i| {
        let window = &text[i..i + 6];
        let before = i
            .checked_sub(1)
            .map(|j| bytes[j].is_ascii_digit())
            .unwrap_or(false);
        let after = bytes.get(i + 6).is_some_and(u8::is_ascii_digit);
        (window.bytes().all(|b| b.is_ascii_digit()) && !before && !after)
            .then(|| window.to_string())
    })
}

/// A response read off a raw socket.
pub struct RawAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
    pub json: Value,
}

/// Send `request` as written (no client library normalising the path) and read the answer.
/// The request should say `Connection: close`, so the answer ends with the connection.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    parse_raw(&buf)
}

pub fn parse_raw(buf: &[u8]) -> RawAnswer {
    let text = String::from_utf8_lossy(buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawAnswer {
        status,
        head: head.to_string(),
        body: body.to_string(),
        json: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// `GET target` over a raw socket, with extra header lines (each ending in `\r\n`).
pub async fn raw_get(addr: SocketAddr, target: &str, headers: &str) -> RawAnswer {
    let req = format!("GET {target} HTTP/1.1\r\nHost: app\r\n{headers}Connection: close\r\n\r\n");
    raw_request(addr, req.as_bytes()).await
}

/// `GET path` on the gateway's admin listener.
pub async fn admin_get(gw: &Gateway, path: &str) -> Answer {
    read(
        client()
            .get(format!("http://{}{path}", gw.admin))
            .send()
            .await
            .expect("admin listener"),
    )
    .await
}

/// Read one response (headers and a Content-Length body) off a kept-alive connection.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> RawAnswer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(s, &mut chunk),
        )
        .await
        .expect("answer in time")
        .expect("read");
        assert!(
            n > 0,
            "closed before a full answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return parse_raw(&buf);
            }
        }
    }
}
