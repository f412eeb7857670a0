//! Logging setup and token redaction: no log line ever carries a token.

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

/// The URI with the value of every `token` query parameter replaced by `REDACTED`.
pub fn redact_uri(uri: &Uri) -> Cow<'_, str> {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Some(query) = uri.query() else {
        return Cow::Borrowed(path_and_query);
    };
    if !query.contains('%') && !query.to_ascii_lowercase().contains("token") {
        return Cow::Borrowed(path_and_query);
    }
    let redacted: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_token_key(key) => Cow::Owned(format!("{key}=REDACTED")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(format!("{}?{}", uri.path(), redacted.join("&")))
}

fn is_token_key(key: &str) -> bool {
    // Also catches percent-encoded spellings such as `%74oken`.
    let decoded: String = form_urlencoded::parse(key.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    decoded.eq_ignore_ascii_case("token")
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
    }
}
