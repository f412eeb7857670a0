//! The integration tests, as one binary: each module is a user story against the real
//! `authgate` binary, a recording upstream and, where it matters, a real `redis-server`, all on
//! free loopback ports. `common` starts them.

mod common;

mod admin_api;
mod cli;
mod connections;
mod cors;
mod demotion;
mod errors;
mod hashing;
mod headers;
mod lifetimes;
mod lockout;
mod mfa;
mod observability;
mod paths;
mod praxis;
mod rate_limit;
mod reload;
mod routes;
mod sessions;
mod several_instances;
mod signin;
mod sso;
mod store_contract;
mod tls;
mod tokens;
