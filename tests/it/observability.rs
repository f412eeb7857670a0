//! An operator follows requests: every request has an id the upstream, the client and the
//! access log share, traces pass through or start here, the JSON access log holds one parsable
//! line per request without a token in it, and `/metrics` on the admin port counts exactly the
//! traffic that was sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `00-<32 hex>-<16 hex>-<2 hex>` with non-zero ids.
fn valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.len() == 4
        && parts[0] == "00"
        && is_hex(parts[1], 32)
        && is_hex(parts[2], 16)
        && is_hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send().await.expect("send")).await
}

fn request_id(a: &Answer) -> String {
    a.headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on a {} answer", a.status))
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn every_request_gets_an_id_and_a_trace_that_reach_the_upstream() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            server_section: "request_id_in_response = true\n".into(),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;

    // Made by the gateway: the upstream and the client see the same id.
    let a = get(&gw, "/x", &[("x-access-token", &token)]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = up.last();
    let id = seen
        .header("x-request-id")
        .expect("upstream got no X-Request-Id");
    assert!(is_hex(&id, 32), "{id}");
    assert_eq!(request_id(&a), id);
    assert_eq!(seen.header_count("x-request-id"), 1);
    let started = seen
        .header("traceparent")
        .expect("upstream got no traceparent");
    assert!(valid_traceparent(&started), "{started}");
    assert!(started.ends_with("-01"));

    // Another request, another id and another trace.
    let b = get(&gw, "/x", &[("x-access-token", &token)]).await;
    assert_ne!(request_id(&b), id);
    assert_ne!(up.last().header("traceparent").unwrap(), started);

    // A client's own id is replaced when it does not come through a trusted proxy.
    let a = get(
        &gw,
        "/x",
        &[
            ("x-access-token", &token),
            ("x-request-id", "client-chosen"),
        ],
    )
    .await;
    let seen = up.last();
    assert_eq!(seen.header_count("x-request-id"), 1);
    assert_ne!(seen.header("x-request-id").unwrap(), "client-chosen");
    assert_eq!(request_id(&a), seen.header("x-request-id").unwrap());

    // A valid traceparent passes unchanged with its tracestate; an invalid one is replaced.
    get(
        &gw,
        "/x",
        &[
            ("x-access-token", &token),
            ("traceparent", PARENT),
            ("tracestate", "vendor=abc"),
        ],
    )
    .await;
    let seen = up.last();
    assert_eq!(seen.header("traceparent").unwrap(), PARENT);
    assert_eq!(seen.header("tracestate").unwrap(), "vendor=abc");
    for invalid in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "garbage",
    ] {
        get(
            &gw,
            "/x",
            &[
                ("x-access-token", &token),
                ("traceparent", invalid),
                ("tracestate", "vendor=abc"),
            ],
        )
        .await;
        let seen = up.last();
        let forwarded = seen.header("traceparent").unwrap();
        assert_ne!(forwarded, invalid);
        assert!(valid_traceparent(&forwarded), "{forwarded}");
        assert_eq!(seen.header_count("traceparent"), 1);
        assert_eq!(
            seen.header("tracestate"),
            None,
            "tracestate of an invalid trace"
        );
    }

    // The gateway's own answers carry an id too, and never the client's.
    let refused = get(&gw, "/x", &[("x-request-id", "client-chosen")]).await;
    assert_eq!(refused.status, 401);
    assert!(is_hex(&request_id(&refused), 32));
    let signed = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert!(is_hex(&request_id(&signed), 32));
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_request_id() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            server_section: "trusted_proxies = [\"127.0.0.1\"]\nrequest_id_in_response = true\n"
                .into(),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;
    let a = get(
        &gw,
        "/x",
        &[("x-access-token", &token), ("x-request-id", "lb-7f3a:42")],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(request_id(&a), "lb-7f3a:42");
    assert_eq!(up.last().header("x-request-id").unwrap(), "lb-7f3a:42");
    assert_eq!(up.last().header_count("x-request-id"), 1);

    // Even from a trusted proxy, an id that is not 1-128 visible characters is replaced.
    let long = "a".repeat(129);
    for bad in ["has space", long.as_str()] {
        let a = get(
            &gw,
            "/x",
            &[("x-access-token", &token), ("x-request-id", bad)],
        )
        .await;
        assert!(is_hex(&request_id(&a), 32), "{bad}");
        assert_eq!(up.last().header("x-request-id").unwrap(), request_id(&a));
    }
    let exactly = "b".repeat(128);
    let a = get(
        &gw,
        "/x",
        &[("x-access-token", &token), ("x-request-id", &exactly)],
    )
    .await;
    assert_eq!(request_id(&a), exactly);
}

/// The access lines of the gateway's log (JSON objects), once there are at least `n`.
fn json_lines(gw: &Gateway, n: usize) -> (Vec<Value>, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gw.log();
        let lines: Vec<Value> = log
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return (lines, log);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn line_of<'a>(lines: &'a [Value], id: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["request_id"] == id)
        .unwrap_or_else(|| panic!("no access line with request_id {id}"))
}

#[tokio::test]
async fn the_json_access_log_has_one_line_per_request_and_no_token() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            server_section: "access_log_format = \"json\"\nrequest_id_in_response = true\n".into(),
            ..Options::default()
        },
    );
    let signed = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(signed.status, 200);
    let token = signed.json["token"].as_str().unwrap().to_string();
    let proxied = get(
        &gw,
        "/cases/1",
        &[("x-access-token", &token), ("traceparent", PARENT)],
    )
    .await;
    assert_eq!(proxied.status, 200);
    let by_query = get(&gw, &format!("/cases?token={token}&page=2"), &[]).await;
    assert_eq!(by_query.status, 200);
    let bearer = format!("Bearer {token}");
    let by_bearer = get(&gw, "/cases", &[("authorization", &bearer)]).await;
    assert_eq!(by_bearer.status, 200);
    let missing = get(&gw, "/cases", &[]).await;
    assert_eq!(missing.status, 401);
    let token_in_path = get(&gw, &format!("/x/{token}"), &[]).await;
    assert_eq!(token_in_path.status, 401);

    let (lines, log) = json_lines(&gw, 6);
    assert_eq!(lines.len(), 6, "one line per request:\n{log}");
    assert!(!log.contains("eyJ"), "a token reached the log:\n{log}");
    let fields = [
        "time",
        "request_id",
        "trace_id",
        "client_ip",
        "method",
        "path",
        "route",
        "user_id",
        "status",
        "latency_ms",
        "upstream",
    ];
    for line in &lines {
        for field in fields {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        let time = line["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        assert!(line["latency_ms"].is_f64() || line["latency_ms"].is_u64());
        assert!(is_hex(line["trace_id"].as_str().unwrap(), 32), "{line}");
        assert_eq!(line["client_ip"], "127.0.0.1");
    }

    let signin_line = line_of(&lines, &request_id(&signed));
    assert_eq!(signin_line["route"], "signin");
    assert_eq!(signin_line["method"], "POST");
    assert_eq!(signin_line["path"], "/api/auth/signin");
    assert_eq!(signin_line["status"], 200);
    assert_eq!(signin_line["user_id"], USER_ID);
    assert_eq!(signin_line["upstream"], Value::Null);

    let line = line_of(&lines, &request_id(&proxied));
    assert_eq!(line["route"], "/");
    assert_eq!(line["status"], 200);
    assert_eq!(line["user_id"], USER_ID);
    assert_eq!(line["path"], "/cases/1");
    assert_eq!(line["upstream"], up.addr.to_string());
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    let line = line_of(&lines, &request_id(&by_query));
    assert_eq!(line["path"], "/cases?token=REDACTED&page=2");
    assert_eq!(line["user_id"], USER_ID);

    let line = line_of(&lines, &request_id(&missing));
    assert_eq!(line["status"], 401);
    assert_eq!(line["route"], "/");
    assert_eq!(line["user_id"], Value::Null);
    assert_eq!(line["upstream"], Value::Null);

    let line = line_of(&lines, &request_id(&token_in_path));
    assert_eq!(line["path"], "/x/REDACTED");
}

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parse the Prometheus text exposition format, panicking on any line that does not follow it.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                assert!(
                    matches!(
                        words.get(2),
                        Some(&("counter" | "gauge" | "histogram" | "summary" | "untyped"))
                    ),
                    "bad TYPE line: {line}"
                );
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name: {line}"
        );
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(after) => parse_labels(after, line),
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let value_text = rest.trim().split(' ').next().unwrap_or("");
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {v:?}: {line}")),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// `k="v",...}` and what follows the `}`.
fn parse_labels<'a>(mut rest: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label: {line}"));
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad label name: {line}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape: {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &after[end + 1..];
    }
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of the one sample with this name and these labels (all of them).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

async fn scrape(gw: &Gateway) -> Scrape {
    let resp = client()
        .get(format!("http://{}/metrics", gw.admin))
        .send()
        .await
        .expect("admin listener");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape(parse_prometheus(&resp.text().await.unwrap()))
}

/// Scrape until `authgate_requests_total` adds up to `n` (a request is counted when it has
/// been logged, just after its answer was sent).
async fn scrape_after(gw: &Gateway, n: f64) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(gw).await;
        if s.sum("authgate_requests_total") >= n || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_count_exactly_the_traffic_sent() {
    let up = Upstream::start();
    let routes = "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
                  [[routes]]\nprefix = \"/limited\"\nupstream = \"app\"\nauth = \"none\"\nrate_limit_per_minute = 1\n";
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(routes.into()),
            ..Options::default()
        },
    );
    // Fixed series exist before any traffic.
    let before = scrape(&gw).await;
    assert_eq!(
        before.value("authgate_config_reloads_total", &[("outcome", "ok")]),
        0.0
    );
    assert_eq!(
        before.value("authgate_config_reloads_total", &[("outcome", "failed")]),
        0.0
    );
    assert_eq!(
        before.value("authgate_auth_outcomes_total", &[("outcome", "revoked")]),
        0.0
    );

    let token = signin(&gw).await;
    let failed = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": "not-the-password"}),
    )
    .await;
    assert_eq!(failed.status, 401);
    for _ in 0..3 {
        assert_eq!(
            get(&gw, "/a", &[("x-access-token", &token)]).await.status,
            200
        );
    }
    let by_query = get(&gw, &format!("/a?token={token}"), &[]).await;
    assert_eq!(by_query.status, 200);
    for _ in 0..2 {
        assert_eq!(get(&gw, "/a", &[]).await.status, 401);
    }
    assert_eq!(get(&gw, "/limited/x", &[]).await.status, 200);
    assert_eq!(get(&gw, "/limited/x", &[]).await.status, 429);
    // The public port does not serve metrics: it is a path like any other.
    assert_eq!(get(&gw, "/metrics", &[]).await.status, 401);
    // signin 2, "/" 4 + 2 + 1 (/metrics), /limited 2
    let s = scrape_after(&gw, 11.0).await;

    let requests = |route: &str, status: &str| {
        s.get(
            "authgate_requests_total",
            &[("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(requests("/", "200"), 4.0);
    assert_eq!(requests("/", "401"), 3.0);
    assert_eq!(requests("signin", "200"), 1.0);
    assert_eq!(requests("signin", "401"), 1.0);
    assert_eq!(requests("/limited", "200"), 1.0);
    assert_eq!(requests("/limited", "429"), 1.0);
    assert_eq!(s.sum("authgate_requests_total"), 11.0);

    let auth = |outcome: &str| s.value("authgate_auth_outcomes_total", &[("outcome", outcome)]);
    assert_eq!(auth("ok"), 4.0);
    assert_eq!(auth("missing"), 3.0);
    for outcome in ["expired", "invalid", "revoked", "forbidden", "disabled"] {
        assert_eq!(auth(outcome), 0.0, "{outcome}");
    }
    let credential = |endpoint: &str, outcome: &str| {
        s.value(
            "authgate_credential_outcomes_total",
            &[("endpoint", endpoint), ("outcome", outcome)],
        )
    };
    assert_eq!(credential("signin", "ok"), 1.0);
    assert_eq!(credential("signin", "failed"), 1.0);
    assert_eq!(credential("login", "ok"), 0.0);
    assert_eq!(credential("mfa", "sent"), 0.0);
    assert_eq!(credential("sso", "failed"), 0.0);
    assert_eq!(
        s.value("authgate_rate_limited_total", &[("bucket", "/limited")]),
        1.0
    );
    assert_eq!(
        s.value("authgate_rate_limited_total", &[("bucket", "auth")]),
        0.0
    );

    assert_eq!(
        s.value("authgate_request_duration_seconds_count", &[("route", "/")]),
        7.0
    );
    assert_eq!(
        s.value(
            "authgate_request_duration_seconds_bucket",
            &[("route", "/"), ("le", "+Inf")]
        ),
        7.0
    );
    assert!(s.value("authgate_request_duration_seconds_sum", &[("route", "/")]) > 0.0);
    assert_eq!(
        s.value(
            "authgate_upstream_duration_seconds_count",
            &[("upstream", "app")]
        ),
        5.0
    );
    assert_eq!(
        s.value(
            "authgate_upstream_server_up",
            &[("upstream", "app"), ("server", &up.addr.to_string())]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "authgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // Bounded cardinality: no label holds a user, a token, an email or a request path.
    for sample in &s.0 {
        for value in sample.labels.values() {
            for secret in [USER_ID, EMAIL, token.as_str(), "eyJ", "/a", "/metrics"] {
                assert!(
                    !value.contains(secret),
                    "{} has label value {value:?}",
                    sample.name
                );
            }
        }
    }
}

#[tokio::test]
async fn redis_calls_are_timed() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            store_section: Some(redis_store(&format!("\"{}\"", redis.url()), "")),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;
    assert_eq!(
        get(&gw, "/a", &[("x-access-token", &token)]).await.status,
        200
    );
    let s = scrape_after(&gw, 2.0).await;
    assert!(s.value("authgate_redis_duration_seconds_count", &[]) > 0.0);
    assert!(s.value("authgate_redis_duration_seconds_sum", &[]) > 0.0);
    for kind in ["error", "timeout", "unreachable"] {
        assert_eq!(
            s.value("authgate_redis_errors_total", &[("kind", kind)]),
            0.0,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn by_default_only_the_gateways_own_answers_tell_the_request_id() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let proxied = get(&gw, "/x", &[("x-access-token", &token)]).await;
    assert_eq!(proxied.status, 200);
    assert!(
        proxied.headers.get("x-request-id").is_none(),
        "proxied responses carry it only with server.request_id_in_response"
    );
    assert!(is_hex(&up.last().header("x-request-id").unwrap(), 32));
    let refused = get(&gw, "/x", &[]).await;
    assert_eq!(refused.status, 401);
    assert!(is_hex(&request_id(&refused), 32));
}
