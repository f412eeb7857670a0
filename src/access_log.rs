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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::AccessLogFormat;
use crate::metrics::metrics;

/// How often the writer empties the buffer: the longest a line waits to be written.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// The most a thread's line buffer keeps between lines.
const KEPT_LINE_CAPACITY: usize = 4096;
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

thread_local! {
    /// Text lines are formatted into the thread's own buffer, so a line costs no allocation.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

pub fn write(format: AccessLogFormat, entry: &Entry<'_>) {
    match format {
        AccessLogFormat::Text => with_text_line(entry, enqueue),
        AccessLogFormat::Json => enqueue(&json_line(entry)),
    }
}

/// Format the text line of `entry` into the thread's buffer and hand it to `use_line`.
fn with_text_line(entry: &Entry<'_>, use_line: impl FnOnce(&[u8])) {
    LINE.with(|line| match line.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            text_line(entry, &mut line);
            use_line(line.as_bytes());
            // A rare long line (a long URI) does not keep its memory for good.
            if line.capacity() > KEPT_LINE_CAPACITY {
                *line = String::new();
            }
        }
        Err(_) => {
            let mut line = String::with_capacity(256);
            text_line(entry, &mut line);
            use_line(line.as_bytes());
        }
    });
}

/// `2026-12-01T10:15:02.113205Z  INFO access: request_id=... client=... method=GET uri=/x
/// status=200 user=... ms=3 upstream=... error=-`, shaped like the gateway's other log lines.
/// Built by appending, without the formatting machinery: the line is written for every request.
fn text_line(e: &Entry<'_>, line: &mut String) {
    timestamp(line, Fraction::Micros);
    line.push_str("  INFO access: request_id=");
    line.push_str(e.request_id);
    line.push_str(" client=");
    crate::upstream::push_ip(line, e.client_ip);
    line.push_str(" method=");
    line.push_str(e.method);
    line.push_str(" uri=");
    line.push_str(e.path);
    line.push_str(" route=");
    line.push_str(e.route.unwrap_or("-"));
    line.push_str(" status=");
    push_number(line, u64::from(e.status));
    line.push_str(" user=");
    line.push_str(e.user_id.unwrap_or("-"));
    line.push_str(" ms=");
    push_number(
        line,
        u64::try_from(e.latency.as_millis()).unwrap_or(u64::MAX),
    );
    line.push_str(" upstream=");
    line.push_str(e.upstream.unwrap_or("-"));
    line.push_str(" error=");
    line.push_str(e.error.unwrap_or("-"));
    line.push('\n');
}

#[derive(Clone, Copy)]
enum Fraction {
    Millis,
    Micros,
}

/// The time now as RFC 3339 in UTC (`2026-12-01T10:15:02.113205Z`), as chrono's
/// `to_rfc3339_opts(.., true)` writes it. The part up to the second is formatted once a second
/// per thread, from the seconds since the epoch, with no calendar arithmetic per line; each line
/// appends only its fraction.
fn timestamp(out: &mut String, fraction: Fraction) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = since_epoch.as_secs();
    SECOND.with(|cached| match cached.try_borrow_mut() {
        Ok(mut cached) => {
            if cached.0 != secs {
                cached.1.clear();
                push_second(&mut cached.1, secs);
                cached.0 = secs;
            }
            out.push_str(&cached.1);
        }
        Err(_) => push_second(out, secs),
    });
    let nanos = since_epoch.subsec_nanos().min(999_999_999);
    let (value, digits) = match fraction {
        Fraction::Millis => (nanos / 1_000_000, 3),
        Fraction::Micros => (nanos / 1_000, 6),
    };
    out.push('.');
    let mut buf = [b'0'; 6];
    let mut v = value;
    for slot in buf[..digits].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend(buf[..digits].iter().map(|&b| char::from(b)));
    out.push('Z');
}

/// `2026-12-01T10:15:02`, the UTC second `secs` seconds after the epoch.
fn push_second(out: &mut String, secs: u64) {
    let second = i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .unwrap_or_default();
    let _ = write!(out, "{}", second.format("%Y-%m-%dT%H:%M:%S"));
}

/// A number in decimal, without the formatting machinery.
fn push_number(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[at..].iter().map(|&b| char::from(b)));
}

#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    request_id: &'a str,
    trace_id: &'a str,
    client_ip: &'a str,
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
    let mut time = String::with_capacity(32);
    timestamp(&mut time, Fraction::Millis);
    let mut client_ip = String::with_capacity(15);
    crate::upstream::push_ip(&mut client_ip, e.client_ip);
    let line = Line {
        time: &time,
        request_id: e.request_id,
        trace_id: e.trace_id,
        client_ip: &client_ip,
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
    fn timestamps_are_rfc3339_utc_as_chrono_writes_them() {
        for (fraction, digits) in [(Fraction::Millis, 3), (Fraction::Micros, 6)] {
            for _ in 0..3 {
                let before = Utc::now();
                let mut t = String::new();
                timestamp(&mut t, fraction);
                let after = Utc::now();
                let parsed = chrono::DateTime::parse_from_rfc3339(&t).unwrap();
                assert_eq!(t.len(), "2026-01-01T00:00:00.".len() + digits + 1, "{t}");
                assert!(t.ends_with('Z'), "{t}");
                let slack = chrono::Duration::milliseconds(1);
                assert!(parsed >= before - slack && parsed <= after + slack, "{t}");
                let chrono_form = parsed.with_timezone(&Utc).to_rfc3339_opts(
                    match fraction {
                        Fraction::Millis => chrono::SecondsFormat::Millis,
                        Fraction::Micros => chrono::SecondsFormat::Micros,
                    },
                    true,
                );
                assert_eq!(t, chrono_form);
            }
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 200, 65535, 1_000_000, u64::MAX] {
            let mut out = String::from("x=");
            push_number(&mut out, n);
            assert_eq!(out, format!("x={n}"));
        }
    }

    #[test]
    fn a_text_line_is_one_line_with_every_field() {
        let mut line = String::new();
        text_line(
            &Entry {
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
            },
            &mut line,
        );
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert!(line.contains("  INFO access: request_id=r1 client=192.0.2.1 method=GET uri=/a?token=REDACTED route=/ status=200 user=u1 ms=3 upstream=127.0.0.1:3000 error=-"), "{line}");
    }

    #[test]
    fn the_line_buffer_is_reused_but_does_not_keep_a_long_line() {
        let long_path = format!("/{}", "a".repeat(64 * 1024));
        for (path, kept) in [("/short", true), (long_path.as_str(), false)] {
            let mut written = 0;
            with_text_line(
                &Entry {
                    request_id: "r1",
                    trace_id: "t",
                    client_ip: "192.0.2.1".parse().unwrap(),
                    method: "GET",
                    path,
                    route: None,
                    user_id: None,
                    status: 200,
                    latency: Duration::from_millis(1),
                    upstream: None,
                    error: None,
                },
                |line| written = line.len(),
            );
            assert!(written > path.len(), "{written}");
            let capacity = LINE.with(|line| line.borrow().capacity());
            assert_eq!(capacity > 0, kept, "{capacity}");
            assert!(capacity <= KEPT_LINE_CAPACITY, "{capacity}");
        }
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
