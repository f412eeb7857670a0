//! The configuration in force and what is built from it (token keys, routes, limiters, the
//! mailer, the identity providers), held behind one `ArcSwap` in `app::App`: each request takes
//! the whole of it at its start, and a reload swaps in a new one at once.
//!
//! A reload builds the new `Live` from the previous one, keeping every part whose settings did
//! not change: rate-limit counts, upstream health, the verified-token cache and what is known
//! of each identity provider survive it.

use std::sync::Arc;

use crate::config::Config;
use crate::mfa::delivery::Mailer;
use crate::model::Family;
use crate::ratelimit::{FailureLimiter, RateLimiter};
use crate::sso::Sso;
use crate::store::LimitStore;
use crate::token::JwtKeys;
use crate::upstream::Router;

pub struct Live {
    pub config: Config,
    pub keys: Arc<JwtKeys>,
    pub router: Router,
    /// Shared by every credential endpoint (`endpoints::Endpoint::is_credential`), keyed by
    /// client IP.
    pub auth_limiter: Arc<RateLimiter>,
    /// Single sign-on starts, keyed by client IP: each holds server-side state for a while.
    pub sso_start_limiter: Arc<RateLimiter>,
    /// Password attempts per account, shared through the limit store like the limits.
    pub failures: Arc<FailureLimiter>,
    /// Sends MFA codes (`mfa.delivery`).
    pub mailer: Arc<Mailer>,
    /// The OpenID Connect providers (`[[sso.providers]]`).
    pub sso: Arc<Sso>,
}

/// Why a configuration could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot set up upstreams: {0}")]
    Upstreams(#[from] std::io::Error),
    #[error("cannot set up mfa.delivery: {0}")]
    Mailer(#[from] crate::mfa::delivery::DeliveryError),
    #[error("cannot set up single sign-on: {0}")]
    Sso(#[from] reqwest::Error),
}

impl Live {
    pub fn build(config: Config, limits: Option<Arc<dyn LimitStore>>) -> Result<Live, BuildError> {
        Live::build_from(config, limits, None)
    }

    /// Build for `config`, reusing from `previous` whatever its settings leave unchanged.
    pub fn build_from(
        config: Config,
        limits: Option<Arc<dyn LimitStore>>,
        previous: Option<&Live>,
    ) -> Result<Live, BuildError> {
        let old = |same: &dyn Fn(&Config) -> bool| previous.filter(|p| same(&p.config));
        let keys = match old(&|c| {
            c.token.secret == config.token.secret && c.token.keys == config.token.keys
        }) {
            Some(p) => Arc::clone(&p.keys),
            None => Arc::new(JwtKeys::with_keys(&config.token.secret, &config.token.keys)),
        };
        let rate = &config.rate_limit;
        let auth_limiter = match old(&|c| c.rate_limit.auth_per_minute == rate.auth_per_minute) {
            Some(p) => Arc::clone(&p.auth_limiter),
            None => Arc::new(RateLimiter::new(
                "auth",
                rate.auth_per_minute,
                limits.clone(),
            )),
        };
        let sso_start_limiter =
            match old(&|c| c.sso.start_per_minute == config.sso.start_per_minute) {
                Some(p) => Arc::clone(&p.sso_start_limiter),
                None => Arc::new(RateLimiter::new(
                    "sso_start",
                    config.sso.start_per_minute,
                    limits.clone(),
                )),
            };
        let failures = match old(&|c| {
            (
                c.rate_limit.account_failures,
                c.rate_limit.account_client_failures,
                c.rate_limit.account_window,
            ) == (
                rate.account_failures,
                rate.account_client_failures,
                rate.account_window,
            )
        }) {
            Some(p) => Arc::clone(&p.failures),
            None => Arc::new(FailureLimiter::new(
                rate.account_failures,
                rate.account_client_failures,
                rate.account_window,
                limits.clone(),
            )),
        };
        let mailer = match old(&|c| c.mfa.delivery == config.mfa.delivery) {
            Some(p) => Arc::clone(&p.mailer),
            None => Arc::new(Mailer::new(&config.mfa.delivery)?),
        };
        let sso = Arc::new(Sso::new(&config.sso, previous.map(|p| p.sso.as_ref()))?);
        Ok(Live {
            router: Router::build(&config, limits, previous.map(|p| &p.router))?,
            keys,
            auth_limiter,
            sso_start_limiter,
            failures,
            mailer,
            sso,
            config,
        })
    }

    /// How long a token of `family` lives: a session keeps the family it was started in.
    pub fn lifetime_secs(&self, family: Family) -> i64 {
        let token = &self.config.token;
        let lifetime = match family {
            Family::Profile => token.validity,
            Family::UserFirm => token.login_validity,
        };
        i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)
    }

    /// When a session started at `created_at` and (re)issued at `now` ends: a full lifetime
    /// from now, but never past the absolute cap from sign-in.
    pub fn session_end(&self, family: Family, created_at: i64, now: i64) -> i64 {
        let end = now.saturating_add(self.lifetime_secs(family));
        match self.config.token.max_session {
            Some(cap) => {
                let cap = i64::try_from(cap.as_secs()).unwrap_or(i64::MAX);
                end.min(created_at.saturating_add(cap))
            }
            None => end,
        }
    }

    /// Whether an expired token of a session started at `session_start` ended at the
    /// session's absolute cap (then the session is over for good) rather than at the end of
    /// its own lifetime.
    pub fn ended_by_cap(&self, session_start: Option<i64>, exp: i64) -> bool {
        match (self.config.token.max_session, session_start) {
            (Some(cap), Some(start)) => {
                let cap = i64::try_from(cap.as_secs()).unwrap_or(i64::MAX);
                exp >= start.saturating_add(cap)
            }
            _ => false,
        }
    }
}
