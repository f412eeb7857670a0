//! Request ids and W3C trace context: what the gateway keeps of a request's own, what it makes,
//! and what it forwards upstream and returns to the client.
//!
//! - `X-Request-Id` is kept only from a trusted proxy, and only when it is 1 to 128 visible
//!   ASCII characters; otherwise the gateway makes one (16 random bytes, hex). The upstream
//!   gets it in place of whatever the client sent, and so does every response.
//! - A valid `traceparent` (version `00`, trace id and parent id not all zero) is passed on as
//!   it came, with its `tracestate`, from any client: it names a trace, not an identity.
//!   Without one the gateway starts a trace (`00-<trace id>-<parent id>-01`) and drops a
//!   `tracestate` that belonged to nothing.
//!
//! What the request already carries as it should is left alone: the upstream request is a copy
//! of the client's, and each header added costs ~1.5k instructions (see BENCHMARKS.md).

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use rand::RngCore;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest request id kept from a trusted proxy.
pub const MAX_REQUEST_ID: usize = 128;

/// A request's id and trace context, decided when its header arrives.
#[derive(Debug, Clone)]
pub struct Trace {
    request_id: HeaderValue,
    traceparent: HeaderValue,
    /// The request carries `request_id` as its only `X-Request-Id` already.
    request_id_kept: bool,
    /// The request carries some `X-Request-Id` that must not reach the upstream.
    request_id_replaced: bool,
    /// The request carries `traceparent` (and its `tracestate`, if any) already.
    traceparent_kept: bool,
    /// The request carries a `traceparent` or `tracestate` that must not reach the upstream.
    trace_replaced: bool,
}

impl Trace {
    /// Keep what may be kept of the request's own, make the rest. `peer_trusted`: the socket
    /// peer is one of `server.trusted_proxies`.
    pub fn of(req: &RequestHeader, peer_trusted: bool) -> Trace {
        let given = Given::read(req);
        let kept_id = given
            .request_id
            .only()
            .filter(|v| peer_trusted && is_request_id(v.as_bytes()));
        let kept_parent = given
            .traceparent
            .only()
            .filter(|v| is_traceparent(v.as_bytes()));
        let mut rng = rand::thread_rng();
        Trace {
            request_id: kept_id.cloned().unwrap_or_else(|| new_request_id(&mut rng)),
            traceparent: kept_parent
                .cloned()
                .unwrap_or_else(|| new_traceparent(&mut rng)),
            request_id_kept: kept_id.is_some(),
            request_id_replaced: kept_id.is_none() && !matches!(given.request_id, Seen::None),
            traceparent_kept: kept_parent.is_some(),
            trace_replaced: kept_parent.is_none()
                && (!matches!(given.traceparent, Seen::None) || given.tracestate),
        }
    }

    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    /// The trace id of `traceparent`: 32 lower-case hex digits.
    pub fn trace_id(&self) -> &str {
        self.traceparent
            .to_str()
            .ok()
            .and_then(|t| t.get(3..35))
            .unwrap_or_default()
    }

    /// Give the upstream request this request id and trace context, in place of the client's.
    pub fn forward(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        if !self.request_id_kept {
            if self.request_id_replaced {
                while req.remove_header(&REQUEST_ID).is_some() {}
            }
            req.append_header(&REQUEST_ID, self.request_id.clone())?;
        }
        if !self.traceparent_kept {
            if self.trace_replaced {
                while req.remove_header(&TRACEPARENT).is_some() {}
                while req.remove_header(&TRACESTATE).is_some() {}
            }
            req.append_header(&TRACEPARENT, self.traceparent.clone())?;
        }
        Ok(())
    }

    /// Tell the client its request id, in place of any the upstream answered with.
    pub fn answer(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        resp.insert_header(&REQUEST_ID, self.request_id.clone())
    }
}

/// How often a request carries a field.
#[derive(Clone, Copy)]
enum Seen<'a> {
    None,
    One(&'a HeaderValue),
    Several,
}

impl<'a> Seen<'a> {
    fn add(self, value: &'a HeaderValue) -> Seen<'a> {
        match self {
            Seen::None => Seen::One(value),
            _ => Seen::Several,
        }
    }

    /// The value of a field sent once; one sent several times is not believed.
    fn only(self) -> Option<&'a HeaderValue> {
        match self {
            Seen::One(value) => Some(value),
            _ => None,
        }
    }
}

/// The request's own id and trace fields.
struct Given<'a> {
    request_id: Seen<'a>,
    traceparent: Seen<'a>,
    tracestate: bool,
}

impl<'a> Given<'a> {
    /// One pass over the request's fields. Three lookups by name would hash each name (~500
    /// instructions together); comparing the names of a dozen fields costs less, and a request
    /// rarely has more.
    fn read(req: &'a RequestHeader) -> Given<'a> {
        let mut given = Given {
            request_id: Seen::None,
            traceparent: Seen::None,
            tracestate: false,
        };
        for (name, value) in &req.headers {
            match name.as_str() {
                "x-request-id" => given.request_id = given.request_id.add(value),
                "traceparent" => given.traceparent = given.traceparent.add(value),
                "tracestate" => given.tracestate = true,
                _ => {}
            }
        }
        given
    }
}

/// 1 to 128 visible ASCII characters: nothing that could break a log line or a header.
fn is_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&value.len()) && value.iter().all(|b| b.is_ascii_graphic())
}

/// `00-<32 hex>-<16 hex>-<2 hex>`, lower-case hex, with neither id all zeros (W3C Trace
/// Context, version 00; other versions are not read, so they are replaced).
pub fn is_traceparent(value: &[u8]) -> bool {
    let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |s: &[u8]| s.iter().any(|b| *b != b'0');
    let [b'0', b'0', b'-', rest @ ..] = value else {
        return false;
    };
    if rest.len() != 52 || rest[32] != b'-' || rest[49] != b'-' {
        return false;
    }
    let (trace_id, parent_id, flags) = (&rest[..32], &rest[33..49], &rest[50..]);
    hex(trace_id) && hex(parent_id) && hex(flags) && nonzero(trace_id) && nonzero(parent_id)
}

/// 16 random bytes as 32 hex digits, from the thread's userspace CSPRNG (no system call).
fn new_request_id(rng: &mut impl RngCore) -> HeaderValue {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    let mut text = [0u8; 32];
    hex_into(&bytes, &mut text);
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-"))
}

/// A new trace, sampled: `00-<16 random bytes>-<8 random bytes>-01`.
fn new_traceparent(rng: &mut impl RngCore) -> HeaderValue {
    let mut ids = [0u8; 24];
    rng.fill_bytes(&mut ids);
    // All zeros is invalid for either id; a random one is that with odds of 2^-64 or less.
    ids[15] |= u8::from(ids[..16].iter().all(|b| *b == 0));
    ids[23] |= u8::from(ids[16..].iter().all(|b| *b == 0));
    let mut text = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex_into(&ids[..16], &mut text[3..35]);
    hex_into(&ids[16..], &mut text[36..52]);
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-"))
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn values(r: &RequestHeader, name: &str) -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn traceparent_validation() {
        assert!(is_traceparent(PARENT.as_bytes()));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert!(!is_traceparent(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn made_ids_are_valid_and_differ() {
        let a = Trace::of(&req(&[]), false);
        let b = Trace::of(&req(&[]), false);
        assert_eq!(a.request_id().len(), 32);
        assert!(a.request_id().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.request_id(), b.request_id());
        assert!(is_traceparent(a.traceparent.as_bytes()));
        assert!(a.traceparent.to_str().unwrap().ends_with("-01"));
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(a.trace_id().len(), 32);
    }

    #[test]
    fn request_ids_are_kept_only_from_trusted_proxies_and_only_when_sane() {
        let r = req(&[("x-request-id", "abc-123")]);
        assert_ne!(Trace::of(&r, false).request_id(), "abc-123");
        assert_eq!(Trace::of(&r, true).request_id(), "abc-123");
        let long = "a".repeat(129);
        for bad in ["has space", long.as_str()] {
            let r = req(&[("x-request-id", bad)]);
            assert_ne!(Trace::of(&r, true).request_id(), bad);
        }
        assert_eq!(
            Trace::of(&req(&[("x-request-id", &"a".repeat(128))]), true)
                .request_id()
                .len(),
            128
        );
        // Two of them: neither is believed.
        let two = req(&[("x-request-id", "a"), ("x-request-id", "b")]);
        assert_eq!(Trace::of(&two, true).request_id().len(), 32);
    }

    #[test]
    fn the_upstream_gets_one_id_and_one_trace() {
        let mut r = req(&[
            ("X-Request-Id", "spoofed"),
            ("traceparent", "garbage"),
            ("tracestate", "vendor=1"),
        ]);
        let trace = Trace::of(&r, false);
        trace.forward(&mut r).unwrap();
        assert_eq!(values(&r, "x-request-id"), [trace.request_id()]);
        assert_eq!(values(&r, "traceparent").len(), 1);
        assert_ne!(values(&r, "traceparent")[0], "garbage");
        assert!(values(&r, "tracestate").is_empty());

        let mut r = req(&[("traceparent", PARENT), ("tracestate", "vendor=1")]);
        let trace = Trace::of(&r, false);
        trace.forward(&mut r).unwrap();
        assert_eq!(values(&r, "traceparent"), [PARENT]);
        assert_eq!(values(&r, "tracestate"), ["vendor=1"]);
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");

        let mut r = req(&[("x-request-id", "from-proxy")]);
        Trace::of(&r, true).forward(&mut r).unwrap();
        assert_eq!(values(&r, "x-request-id"), ["from-proxy"]);
    }
}
