//! The access log: one line per request, as `key=value` text or, with
//! `server.access_log_format = "json"`, as one JSON object.
//!
//! Each line is formatted once, on the request's thread, and appended to a shared buffer that a
//! writer thread empties into stderr every few milliseconds, in one write: a request never
//! makes a system call for its log line, never waits on a slow stderr, and never wakes another
//! thread. When the buffer holds more than `MAX_PENDING_BYTES` (stderr cannot keep up), lines
//! are dropped and counted (`authgate_access_log_dropped_total`).

use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::config::AccessLogFormat;
use crate::metrics::metrics;

/// How often the writer empties the buffer: the longest a line waits to be written.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Past this much unwritten, lines are dropped rather than held.
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

/// What is logged of one request. Every text in it is already safe to log: the path is
/// redacted, the request id checked, the rest the gateway's own.
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub client_ip: IpAddr,
    pub method: &'a str,
    /// The request target with tokens and OAuth secrets redacted (`telemetry::redact_uri`).
    pub path: &'a str,
    /// The route's prefix, or the gateway endpoint's name.
    pub route: Option<&'a str>,
    pub user_id: Option<&'a str>,
    /// 0 when no response was sent (the client went away first).
    pub status: u16,
    pub latency: Duration,
    /// The upstream server the request was sent to.
    pub upstream: Option<&'a str>,
    /// Pingora's name for what went wrong, if anything did.
    pub error: Option<&'a str>,
}

pub fn write(format: AccessLogFormat, entry: &Entry<'_>) {
    let line = match format {
        AccessLogFormat::Text => text_line(entry),
        AccessLogFormat::Json => json_line(entry),
    };
    enqueue(&line);
}

/// `2026-12-01T10:15:02.113Z  INFO access: request_id=... client=... method=GET uri=/x
/// status=200 user=... ms=3 error=-`, shaped like the gateway's other log lines.
fn text_line(e: &Entry<'_>) -> Vec<u8> {
    let mut line = String::with_capacity(256);
    let _ = writeln!(
        line,
        "{}  INFO access: request_id={} client={} method={} uri={} route={} status={} user={} ms={} upstream={} error={}",
        Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        e.request_id,
        e.client_ip,
        e.method,
        e.path,
        e.route.unwrap_or("-"),
        e.status,
        e.user_id.unwrap_or("-"),
        e.latency.as_millis(),
        e.upstream.unwrap_or("-"),
        e.error.unwrap_or("-"),
    );
    line.into_bytes()
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    trace_id: &'a str,
    client_ip: IpAddr,
    method: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    user_id: Option<&'a str>,
    status: u16,
    latency_ms: f64,
    upstream: Option<&'a str>,
    error: Option<&'a str>,
}

/// The JSON line of an entry, newline included.
fn json_line(e: &Entry<'_>) -> Vec<u8> {
    let line = Line {
        time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        request_id: e.request_id,
        trace_id: e.trace_id,
        client_ip: e.client_ip,
        method: e.method,
        path: e.path,
        route: e.route,
        user_id: e.user_id,
        status: e.status,
        // Microsecond resolution, in milliseconds.
        latency_ms: e.latency.as_micros() as f64 / 1000.0,
        upstream: e.upstream,
        error: e.error,
    };
    let mut out = Vec::with_capacity(384);
    // Serializing strings and numbers into memory cannot fail.
    if serde_json::to_writer(&mut out, &line).is_err() {
        out.clear();
    }
    out.push(b'\n');
    out
}

/// Lines not yet written, and whether the writer thread runs.
static PENDING: LazyLock<Mutex<Vec<u8>>> = LazyLock::new(|| {
    if let Err(e) = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(write_forever)
    {
        tracing::error!("no access-log writer, access lines are dropped: {e}");
    }
    Mutex::new(Vec::with_capacity(64 * 1024))
});

fn enqueue(line: &[u8]) {
    let mut pending = match PENDING.lock() {
        Ok(p) => p,
        Err(poisoned) => poisoned.into_inner(),
    };
    if pending.len() + line.len() > MAX_PENDING_BYTES {
        drop(pending);
        metrics().access_log_dropped();
        return;
    }
    pending.extend_from_slice(line);
}

/// Write what is pending now (at shutdown).
pub fn flush() {
    let batch = match PENDING.lock() {
        Ok(mut p) => std::mem::take(&mut *p),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    if !batch.is_empty() {
        let _ = std::io::stderr().lock().write_all(&batch);
    }
}

/// Every `FLUSH_EVERY`, take what has been logged and write it in one go. The buffers are
/// swapped under the lock and written outside it, so requests never wait on stderr. Each write
/// holds stderr's lock for whole lines, so the other log lines never land inside one.
fn write_forever() {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        std::thread::sleep(FLUSH_EVERY);
        {
            let mut pending = match PENDING.lock() {
                Ok(p) => p,
                Err(poisoned) => poisoned.into_inner(),
            };
            if pending.is_empty() {
                continue;
            }
            std::mem::swap(&mut *pending, &mut batch);
        }
        // Nowhere to report a failing stderr; the lines are lost either way.
        let _ = std::io::stderr().lock().write_all(&batch);
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_line_is_one_line_with_every_field() {
        let line = String::from_utf8(text_line(&Entry {
            request_id: "r1",
            trace_id: "t",
            client_ip: "192.0.2.1".parse().unwrap(),
            method: "GET",
            path: "/a?token=REDACTED",
            route: Some("/"),
            user_id: Some("u1"),
            status: 200,
            latency: Duration::from_millis(3),
            upstream: Some("127.0.0.1:3000"),
            error: None,
        }))
        .unwrap();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert!(line.contains("  INFO access: request_id=r1 client=192.0.2.1 method=GET uri=/a?token=REDACTED route=/ status=200 user=u1 ms=3 upstream=127.0.0.1:3000 error=-"), "{line}");
    }

    #[test]
    fn a_json_line_has_every_field() {
        let line = json_line(&Entry {
            request_id: "r1",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            client_ip: "192.0.2.1".parse().unwrap(),
            method: "GET",
            path: "/a?token=REDACTED",
            route: Some("/"),
            user_id: None,
            status: 200,
            latency: Duration::from_micros(1234),
            upstream: Some("127.0.0.1:3000"),
            error: None,
        });
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["client_ip"], "192.0.2.1");
        assert_eq!(v["route"], "/");
        assert_eq!(v["user_id"], serde_json::Value::Null);
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_ms"], 1.234);
        assert_eq!(v["upstream"], "127.0.0.1:3000");
        let time = v["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok());
        assert!(time.ends_with('Z') && time.len() == "2026-01-01T00:00:00.000Z".len());
    }
}
