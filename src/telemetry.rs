//! Logging setup and redaction: no log line ever carries a token, code or other secret.

use std::borrow::Cow;

use http::Uri;

/// Log to stderr; `RUST_LOG` picks the level (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Query parameters whose values are secrets: the gateway's own `token`, and what an OAuth or
/// OpenID Connect authorization response carries (an app's single sign-on page, proxied
/// through the gateway, receives `?code=...&state=...`).
const SECRET_PARAMETERS: [&str; 9] = [
    "token",
    "code",
    "state",
    "id_token",
    "access_token",
    "refresh_token",
    "client_secret",
    "code_verifier",
    "session_state",
];

/// The URI as it may be logged: the value of every secret query parameter (`token`, `code`,
/// `state`, ...: its name read percent-decoded, with `&` or `;` between parameters) and anything
/// else that looks like a JWT, wherever it sits in the path or query, replaced by `REDACTED`.
pub fn redact_uri(uri: &Uri) -> Cow<'_, str> {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Some(query) = uri.query() else {
        return redact_jwts(path_and_query);
    };
    let pairs = || query.split(['&', ';']);
    let by_name = if pairs().any(|pair| pair.split_once('=').is_some_and(|(k, _)| is_secret_key(k)))
    {
        let mut out = String::with_capacity(path_and_query.len());
        out.push_str(uri.path());
        out.push('?');
        let mut rest = query;
        loop {
            let end = rest.find(['&', ';']).unwrap_or(rest.len());
            let pair = &rest[..end];
            match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => {
                    out.push_str(key);
                    out.push_str("=REDACTED");
                }
                _ => out.push_str(pair),
            }
            if end == rest.len() {
                break;
            }
            out.push_str(&rest[end..end + 1]);
            rest = &rest[end + 1..];
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(path_and_query)
    };
    match redact_jwts(&by_name) {
        Cow::Borrowed(_) => by_name,
        Cow::Owned(o) => Cow::Owned(o),
    }
}

fn is_secret_key(key: &str) -> bool {
    if !key.contains(['%', '+']) {
        return SECRET_PARAMETERS
            .iter()
            .any(|s| key.eq_ignore_ascii_case(s));
    }
    // Percent-encoded spellings such as `%74oken`.
    let decoded: String = form_urlencoded::parse(key.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    SECRET_PARAMETERS
        .iter()
        .any(|s| decoded.eq_ignore_ascii_case(s))
}

/// Replace every run that looks like a JWT: it starts with `eyJ` (the base64url of `{"`, how
/// every JWT header begins) and goes on over base64url characters, dots (also as `%2E`) and
/// escapes, holding at least one dot.
fn redact_jwts(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let Some(mut start) = find_jwt_start(bytes, 0) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::new();
    let mut copied = 0;
    loop {
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric()
                || matches!(bytes[end], b'-' | b'_' | b'.' | b'%'))
        {
            end += 1;
        }
        let run = &text[start..end];
        if run.len() >= 10 && (run.contains('.') || run.to_ascii_uppercase().contains("%2E")) {
            if out.is_empty() {
                out.reserve(text.len());
            }
            out.push_str(&text[copied..start]);
            out.push_str("REDACTED");
            copied = end;
        }
        match find_jwt_start(bytes, end.max(start + 3)) {
            Some(next) => start = next,
            None => break,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Where the next `eyJ` at or after `from` begins. `J` is rare in paths and queries, so it is
/// searched for (with SIMD) and the `ey` before it checked: this runs on every logged request.
fn find_jwt_start(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from + 2;
    while at < bytes.len() {
        let j = at + memchr::memchr(b'J', &bytes[at..])?;
        if &bytes[j - 2..j] == b"ey" {
            return Some(j - 2);
        }
        at = j + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact_uri(&s.parse::<Uri>().unwrap()).into_owned()
    }

    #[test]
    fn token_values_are_redacted() {
        assert_eq!(r("/a?token=eyJ.x.y&b=1"), "/a?token=REDACTED&b=1");
        assert_eq!(r("/a?b=1&TOKEN=eyJ"), "/a?b=1&TOKEN=REDACTED");
        assert_eq!(r("/a?%74oken=eyJ"), "/a?%74oken=REDACTED");
        assert_eq!(r("/a?b=1"), "/a?b=1");
        assert_eq!(r("/a"), "/a");
        assert_eq!(r("/a?tokens=1"), "/a?tokens=1");
        assert_eq!(r("/a?b=1;token=x&c=2"), "/a?b=1;token=REDACTED&c=2");
    }

    #[test]
    fn authorization_responses_are_redacted() {
        assert_eq!(
            r("/sso/callback?code=SplxlOBe&state=af0ifj&iss=https%3A%2F%2Fidp"),
            "/sso/callback?code=REDACTED&state=REDACTED&iss=https%3A%2F%2Fidp"
        );
        assert_eq!(r("/a?%63ode=x&codes=1"), "/a?%63ode=REDACTED&codes=1");
        assert_eq!(r("/a#id_token=x"), "/a");
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJfaWQiOiJ1In0.c2lnbmF0dXJl";

    #[test]
    fn anything_that_looks_like_a_jwt_is_redacted() {
        for (uri, want) in [
            (format!("/a?token[]={JWT}"), "/a?token[]=REDACTED"),
            (format!("/a?a=1;token={JWT}"), "/a?a=1;token=REDACTED"),
            (format!("/a?x=token={JWT}"), "/a?x=token=REDACTED"),
            (format!("/a?x={JWT}&y=2"), "/a?x=REDACTED&y=2"),
            (format!("/files/{JWT}/x"), "/files/REDACTED/x"),
            (format!("/a?q={}", JWT.replace('.', "%2E")), "/a?q=REDACTED"),
        ] {
            assert_eq!(r(&uri), want, "{uri}");
            assert!(!r(&uri).contains("c2lnbmF0dXJl"));
        }
        // Words that merely start like one stay.
        assert_eq!(r("/eyJust/x?a=eyJ"), "/eyJust/x?a=eyJ");
    }

    #[test]
    fn jwt_starts_are_found_where_str_find_finds_them() {
        for text in [
            "",
            "e",
            "ey",
            "eyJ",
            "J",
            "JJeyJ",
            "/eyJust/x?a=eyJ",
            "xeyeyJ",
            "eyJeyJ",
            "/a/Jb/eyJc",
            "eJyJ",
            "ééeyJ",
        ] {
            let mut from = 0;
            loop {
                let expected = text
                    .get(from..)
                    .and_then(|t| t.find("eyJ"))
                    .map(|f| f + from);
                assert_eq!(
                    find_jwt_start(text.as_bytes(), from),
                    expected,
                    "{text:?} from {from}"
                );
                match expected {
                    Some(at) => from = at + 1,
                    None => break,
                }
            }
        }
    }
}
