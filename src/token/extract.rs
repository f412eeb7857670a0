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
///
/// A location that holds two tokens (two `x-access-token` fields, two bearer credentials, two
/// `token` parameters) is unreadable too: the gateway would check one while a backend may read
/// the other.
pub fn header_or_query_token(req: &RequestHeader) -> Option<(Location, Cow<'_, str>)> {
    let mut access = req.headers.get_all(&ACCESS_TOKEN).iter();
    if let Some(v) = access.next() {
        let token = match access.next() {
            Some(_) => "",
            None => v.to_str().map(str::trim).unwrap_or(""),
        };
        return Some((Location::AccessTokenHeader, Cow::Borrowed(token)));
    }
    let mut bearers = req
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| bearer(v.as_bytes()));
    if let Some(token) = bearers.next() {
        let token = if bearers.next().is_some() { "" } else { token };
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

/// The `token` query parameter. Names are read percent-decoded (`%74oken` is `token`), and `;`
/// separates parameters as `&` does, as some servers read it: whatever spelling a backend would
/// take for the token, the gateway takes too.
fn query_token(query: &str) -> Option<Cow<'_, str>> {
    // Fast path: most queries carry no token at all, in any spelling.
    if !query.contains("token=") && !query.contains('%') {
        return None;
    }
    let mut tokens = query_params(query)
        .filter(|(k, _)| k == "token")
        .map(|(_, v)| v);
    let first = tokens.next()?;
    Some(match tokens.next() {
        Some(_) => Cow::Borrowed(""),
        None => first,
    })
}

/// `name=value` pairs separated by `&` or `;`, both percent-decoded (`+` is a space).
pub fn query_params(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split(['&', ';'])
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| form_urlencoded::parse(pair.as_bytes()).next())
}

#[derive(Deserialize)]
struct BodyWithToken {
    #[serde(default)]
    token: Option<serde_json::Value>,
}

/// The `token` field of a JSON object body. A `token` that is not a string counts as present
/// and unreadable; a body that is not a JSON object has no token.
///
/// A body that names `token` twice is unreadable: parsers disagree on which one counts.
pub fn body_token(body: &[u8]) -> Option<String> {
    let parsed = match serde_json::from_slice::<BodyWithToken>(body) {
        Ok(parsed) => parsed,
        Err(e) if e.to_string().starts_with("duplicate field `token`") => {
            return Some(String::new());
        }
        Err(_) => return None,
    };
    match parsed.token? {
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
    fn query_names_are_read_decoded_and_split_on_semicolons() {
        assert_eq!(
            found(&req("/x?%74oken=q", &[])),
            Some((Location::Query, "q".into()))
        );
        assert_eq!(
            found(&req("/x?a=1;token=q", &[])),
            Some((Location::Query, "q".into()))
        );
        assert_eq!(found(&req("/x?x=token=q", &[])), None);
        assert_eq!(found(&req("/x?a=%20", &[])), None);
    }

    #[test]
    fn two_tokens_in_one_location_are_unreadable() {
        assert_eq!(
            found(&req("/x?token=a&token=b", &[])),
            Some((Location::Query, "".into()))
        );
        assert_eq!(
            found(&req("/x?token=a;%74oken=b", &[])),
            Some((Location::Query, "".into()))
        );
        assert_eq!(
            found(&req(
                "/x",
                &[("x-access-token", "a"), ("x-access-token", "b")]
            )),
            Some((Location::AccessTokenHeader, "".into()))
        );
        assert_eq!(
            found(&req(
                "/x",
                &[("authorization", "Bearer a"), ("authorization", "Bearer b")]
            )),
            Some((Location::Bearer, "".into()))
        );
        assert_eq!(
            found(&req(
                "/x",
                &[("authorization", "Basic x"), ("authorization", "Bearer b")]
            )),
            Some((Location::Bearer, "b".into()))
        );
        assert_eq!(
            body_token(br#"{"token":"a","token":"b"}"#),
            Some(String::new())
        );
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
