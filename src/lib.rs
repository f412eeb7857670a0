//! authgate: a reverse-proxy authentication gateway on Pingora.
//!
//! Start at `proxy` to follow a request from top to bottom; `server` assembles the process.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod connections;
pub mod cors;
pub mod endpoints;
pub mod error;
pub mod live;
pub mod metrics;
pub mod mfa;
pub mod model;
pub mod password;
pub mod path;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod revocation;
pub mod server;
pub mod sso;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod trace;
pub mod ufo;
pub mod upstream;
pub mod views;
