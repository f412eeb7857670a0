//! The access log: one line per request, as `key=value` text through the log's formatter, or,
//! with `server.access_log_format = "json"`, as one JSON object per line on stderr.
//!
//! JSON lines are formatted once, on the request's thread, and handed to a writer thread
//! through a bounded queue: a slow or blocked stderr never holds up a request. When the queue
//! is full the line is dropped and counted (`authgate_access_log_dropped_total`).

use std::io::Write;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::config::AccessLogFormat;
use crate::metrics::metrics;

/// Lines waiting for the writer; past this, lines are dropped rather than wait.
const QUEUE_LINES: usize = 16 * 1024;
/// The writer sends what has queued up in one write of at most about this much.
const BATCH_BYTES: usize = 64 * 1024;

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
    match format {
        AccessLogFormat::Text => text(entry),
        AccessLogFormat::Json => json(entry),
    }
}

fn text(e: &Entry<'_>) {
    tracing::info!(
        target: "access",
        request_id = %e.request_id,
        client = %e.client_ip,
        method = %e.method,
        uri = %e.path,
        status = e.status,
        user = e.user_id.unwrap_or("-"),
        ms = e.latency.as_millis() as u64,
        error = e.error.unwrap_or("-"),
    );
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

fn json(e: &Entry<'_>) {
    static QUEUE: LazyLock<Option<SyncSender<Vec<u8>>>> = LazyLock::new(start_writer);
    let sent = match &*QUEUE {
        Some(queue) => match queue.try_send(json_line(e)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        },
        None => false,
    };
    if !sent {
        metrics().access_log_dropped();
    }
}

fn start_writer() -> Option<SyncSender<Vec<u8>>> {
    let (queue, lines) = sync_channel(QUEUE_LINES);
    match std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_lines(lines))
    {
        Ok(_) => Some(queue),
        Err(e) => {
            tracing::error!("no access-log writer, JSON access lines are dropped: {e}");
            None
        }
    }
}

/// Write lines as they come, whatever has queued up meanwhile in one write. Each write holds
/// stderr's lock for whole lines, so the other log lines never land inside one.
fn write_lines(lines: Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(line) = lines.recv() {
        batch.extend_from_slice(&line);
        while batch.len() < BATCH_BYTES {
            match lines.try_recv() {
                Ok(line) => batch.extend_from_slice(&line),
                Err(_) => break,
            }
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
