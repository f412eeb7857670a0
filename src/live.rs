//! The live configuration: everything a reload replaces in one atomic `ArcSwap` store.

use crate::config::Config;
use crate::ratelimit::IpLimiter;
use crate::token::JwtKeys;
use crate::upstream::Router;

pub struct Live {
    pub config: Config,
    pub keys: JwtKeys,
    pub router: Router,
    /// Shared by every credential endpoint (signin, login, register, MFA verify, SSO callback,
    /// change-password), keyed by client IP.
    pub auth_limiter: IpLimiter,
}

impl Live {
    pub fn build(config: Config) -> std::io::Result<Live> {
        Ok(Live {
            keys: JwtKeys::new(&config.token.secret),
            router: Router::build(&config)?,
            auth_limiter: IpLimiter::per_minute(config.rate_limit.auth_per_minute),
            config,
        })
    }

    pub fn validity_secs(&self) -> i64 {
        i64::try_from(self.config.token.validity.as_secs()).unwrap_or(i64::MAX)
    }
}
