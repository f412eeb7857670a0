//! The configuration in force and what is built from it (token keys, routes, limiters), held
//! behind one `ArcSwap` in `app::App`: each request takes the whole of it at its start.

use std::sync::Arc;

use crate::config::Config;
use crate::ratelimit::{FailureLimiter, RateLimiter};
use crate::store::LimitStore;
use crate::token::JwtKeys;
use crate::upstream::Router;

pub struct Live {
    pub config: Config,
    pub keys: JwtKeys,
    pub router: Router,
    /// Shared by every credential endpoint (`endpoints::Endpoint::is_credential`), keyed by
    /// client IP.
    pub auth_limiter: RateLimiter,
    /// Single sign-on starts, keyed by client IP: each holds server-side state for a while.
    pub sso_start_limiter: RateLimiter,
    /// Password attempts per account, shared through the limit store like the limits.
    pub failures: FailureLimiter,
}

impl Live {
    pub fn build(config: Config, limits: Option<Arc<dyn LimitStore>>) -> std::io::Result<Live> {
        Ok(Live {
            keys: JwtKeys::with_keys(&config.token.secret, &config.token.keys),
            router: Router::build(&config, limits.clone())?,
            auth_limiter: RateLimiter::new(
                "auth",
                config.rate_limit.auth_per_minute,
                limits.clone(),
            ),
            sso_start_limiter: RateLimiter::new(
                "sso_start",
                config.sso.start_per_minute,
                limits.clone(),
            ),
            failures: FailureLimiter::new(
                config.rate_limit.account_failures,
                config.rate_limit.account_client_failures,
                config.rate_limit.account_window,
                limits,
            ),
            config,
        })
    }

    pub fn validity_secs(&self) -> i64 {
        i64::try_from(self.config.token.validity.as_secs()).unwrap_or(i64::MAX)
    }
}
