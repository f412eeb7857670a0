//! Finding the token: `x-access-token`, then `Authorization: Bearer`, then `?token=`, then the
//! JSON body field `token`. Only the first location present is used; the others are ignored.

use std::borrow::Cow;

use http::HeaderName;
use pingora::http::RequestHeader;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    AccessTokenHeader,
    Bearer,
    Query,
    Body,
}

/// A prebuilt name: looking a header up by `&str` parses and validates the name every time.
static ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-access-token");

/// The token from the first of the three header/query locations that is present.
///
/// A location that is present but unreadable yields an empty token, which fails verification
/// as malformed: the request is then refused instead of falling through to a later location.
pub fn header_or_query_token(req: &RequestHeader) -> Option<(Location, Cow<'_, str>)> {
    if let Some(v) = req.headers.get(&ACCESS_TOKEN) {
        let token = v.to_str().map(str::trim).unwrap_or("");
        return Some((Location::AccessTokenHeader, Cow::Borrowed(token)));
    }
    if let Some(token) = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()))
    {
        return Some((Location::Bearer, Cow::Borrowed(token)));
    }
    query_token(req.uri.query()?).map(|t| (Location::Query, t))
}

/// `Bearer <token>` with the scheme matched case-insensitively. Other schemes (Basic, …) are
/// not a token location and are left for the upstream.
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    if rest.is_empty() {
        return Some("");
    }
    if !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim())
}

fn query_token(query: &str) -> Option<Cow<'_, str>> {
    // Fast path: most queries carry no token at all.
    if !query.contains("token=") {
        return None;
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

#[derive(Deserialize)]
struct BodyWithToken {
    #[serde(default)]
    token: Option<serde_json::Value>,
}

/// The `token` field of a JSON object body. A `token` that is not a string counts as present
/// and unreadable; a body that is not a JSON object has no token.
pub fn body_token(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<BodyWithToken>(body).ok()?.token? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        _ => Some(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    fn found(r: &RequestHeader) -> Option<(Location, String)> {
        header_or_query_token(r).map(|(l, t)| (l, t.into_owned()))
    }

    #[test]
    fn priority_order() {
        let all = req(
            "/x?token=q",
            &[("x-access-token", "h"), ("authorization", "Bearer b")],
        );
        assert_eq!(found(&all), Some((Location::AccessTokenHeader, "h".into())));
        let no_header = req("/x?token=q", &[("authorization", "Bearer b")]);
        assert_eq!(found(&no_header), Some((Location::Bearer, "b".into())));
        let query_only = req("/x?a=1&token=q%2Bx", &[]);
        assert_eq!(found(&query_only), Some((Location::Query, "q+x".into())));
        assert_eq!(found(&req("/x?a=1", &[])), None);
        assert_eq!(found(&req("/x", &[])), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_others_are_skipped() {
        assert_eq!(
            found(&req("/", &[("authorization", "bearer t")])),
            Some((Location::Bearer, "t".into()))
        );
        assert_eq!(found(&req("/", &[("authorization", "Basic dTpw")])), None);
        assert_eq!(
            found(&req("/?token=q", &[("authorization", "Basic dTpw")])),
            Some((Location::Query, "q".into()))
        );
        assert_eq!(found(&req("/", &[("authorization", "Bearertoken")])), None);
    }

    #[test]
    fn empty_first_location_still_wins() {
        let r = req("/?token=q", &[("x-access-token", "")]);
        assert_eq!(found(&r), Some((Location::AccessTokenHeader, "".into())));
    }

    #[test]
    fn similar_query_keys_are_not_tokens() {
        assert_eq!(found(&req("/?mytoken=a&token_type=b", &[])), None);
    }

    #[test]
    fn body_token_cases() {
        assert_eq!(body_token(br#"{"token":"abc","x":1}"#), Some("abc".into()));
        assert_eq!(body_token(br#"{"x":1}"#), None);
        assert_eq!(body_token(br#"{"token":null}"#), None);
        assert_eq!(body_token(br#"{"token":5}"#), Some(String::new()));
        assert_eq!(body_token(b"not json"), None);
        assert_eq!(body_token(b"[1,2]"), None);
    }
}
