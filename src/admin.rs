//! The admin listener: health for orchestrators, kept off the public port.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub struct Admin;

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body) = match session.req_header().uri.path() {
            "/healthz" => (StatusCode::OK, r#"{"status":"ok"}"#),
            _ => (
                StatusCode::NOT_FOUND,
                r#"{"error":"Not Found","message":"Unknown admin path"}"#,
            ),
        };
        json(status, body.as_bytes().to_vec())
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
