//! Tokens: where a request carries one (`extract`) and how it is issued and checked (`jwt`).

pub mod extract;
pub mod jwt;

pub use extract::{Location, body_token, header_or_query_token};
pub use jwt::{Claims, JwtKeys, TokenError};
