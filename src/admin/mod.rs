//! The admin listener: liveness and readiness for orchestrators, Prometheus metrics, the
//! OpenAPI description of the gateway's endpoints, and (with `admin.token`) the revocation API,
//! kept off the public port.

mod revoke;

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use serde_json::json;

use crate::auth::unix_now;
use crate::live::Live;
use crate::metrics::{self, metrics};
use crate::store::StoreHealth;

pub use revoke::{Revocation, Revoker};

/// The OpenAPI 3.1 description of the gateway's own endpoints (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub struct Admin {
    pub health: Arc<dyn StoreHealth>,
    /// The configuration in force: `admin.token`, the providers' reachability, and the
    /// upstream health `/metrics` reports.
    pub live: Arc<ArcSwap<Live>>,
    pub revoker: Revoker,
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/openapi.json" => return json_response(StatusCode::OK, OPENAPI.as_bytes().to_vec()),
            "/metrics" => {
                let body = metrics().render(&self.live.load());
                return response(StatusCode::OK, metrics::CONTENT_TYPE, body);
            }
            _ => {}
        }
        if session.req_header().uri.path() == "/admin/revoke" {
            // Without a configured admin token the API does not exist: 404 like any unknown path.
            let live = self.live.load_full();
            if let Some(token) = live.config.admin.token.as_deref() {
                let (status, body) = self.revoker.serve(session, token, unix_now()).await;
                let mut resp = json_response(status, body.to_vec());
                if status == StatusCode::UNAUTHORIZED {
                    resp.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer realm=\"authgate admin\""),
                    );
                }
                return resp;
            }
        }
        let (status, mut body) = match session.req_header().uri.path() {
            // Alive: the process answers. Restarting it would not fix a store outage.
            "/healthz" => (StatusCode::OK, json!({"status": "ok"})),
            // Ready: the store answers too, so requests can be authenticated.
            "/readyz" => match self.health.check().await {
                Ok(()) => (
                    StatusCode::OK,
                    json!({"status": "ready", "store": self.health.backend(), "storeStatus": "up"}),
                ),
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "unavailable", "store": self.health.backend(), "storeStatus": "down", "message": e.to_string()}),
                ),
            },
            _ => (
                StatusCode::NOT_FOUND,
                json!({"error": "Not Found", "message": "Unknown admin path"}),
            ),
        };
        let live = self.live.load();
        if session.req_header().uri.path() == "/readyz" && !live.sso.providers().is_empty() {
            // Informational: a provider that is down fails only its own logins, so it does not
            // make the gateway unready.
            let providers: serde_json::Map<String, serde_json::Value> = live
                .sso
                .providers()
                .iter()
                .map(|p| {
                    let state = if p.is_reachable() {
                        "up"
                    } else {
                        "unreachable"
                    };
                    (p.name().to_owned(), json!(state))
                })
                .collect();
            body["sso"] = serde_json::Value::Object(providers);
        }
        json_response(status, body.to_string().into_bytes())
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    response(status, "application/json", body)
}

fn response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}
