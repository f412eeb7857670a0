//! Per-client-IP rate limits: GCRA in process (`governor`), or shared by every instance through
//! the store, with the in-process limiter standing in whenever the store cannot answer.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;

use crate::error::GatewayError;
use crate::store::LimitStore;

/// One rate-limited bucket (the credential endpoints, or one route).
pub struct RateLimiter {
    name: String,
    per_minute: NonZeroU32,
    shared: Option<Arc<dyn LimitStore>>,
    /// Always counts, so that it holds a realistic history when it has to take over.
    local: IpLimiter,
}

impl RateLimiter {
    pub fn new(
        name: &str,
        per_minute: NonZeroU32,
        shared: Option<Arc<dyn LimitStore>>,
    ) -> RateLimiter {
        RateLimiter {
            name: name.to_owned(),
            per_minute,
            shared,
            local: IpLimiter::per_minute(per_minute),
        }
    }

    pub async fn check(&self, ip: IpAddr) -> Result<(), GatewayError> {
        let local = self.local.check(ip);
        let Some(shared) = &self.shared else {
            return local;
        };
        let key = format!("{}:{ip}", self.name);
        match shared.hit(&key, self.per_minute).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(limited(wait)),
            Err(e) => {
                // Never unlimited: without the shared store, this instance's own count decides.
                tracing::warn!(bucket = %self.name, "shared rate limit unavailable, using the local one: {e}");
                local
            }
        }
    }

    pub fn sweep(&self) {
        self.local.sweep();
    }
}

fn limited(wait: Duration) -> GatewayError {
    GatewayError::RateLimited {
        retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
    }
}

pub struct IpLimiter<C: Clock = DefaultClock> {
    limiter:
        governor::RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl IpLimiter<DefaultClock> {
    pub fn per_minute(n: NonZeroU32) -> IpLimiter<DefaultClock> {
        IpLimiter::with_clock(n, DefaultClock::default())
    }
}

impl<C: Clock + Clone> IpLimiter<C> {
    /// `n` requests at once, refilled evenly over a minute: the (n+1)th request within a
    /// minute is refused.
    pub fn with_clock(n: NonZeroU32, clock: C) -> IpLimiter<C> {
        IpLimiter {
            limiter: governor::RateLimiter::new(
                Quota::per_minute(n),
                DashMapStateStore::default(),
                clock.clone(),
            ),
            clock,
        }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), GatewayError> {
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| limited(not_until.wait_time_from(self.clock.now())))
    }

    /// Forget clients whose budget is full again, so the table does not grow without bound.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn eleventh_request_in_a_minute_is_refused_with_retry_after() {
        let clock = FakeRelativeClock::default();
        let limiter = IpLimiter::with_clock(NonZeroU32::new(10).unwrap(), clock.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            assert!(limiter.check(ip).is_ok());
        }
        match limiter.check(ip) {
            Err(GatewayError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 6),
            other => panic!("{other:?}"),
        }
        // Another client is not affected.
        assert!(limiter.check("192.0.2.2".parse().unwrap()).is_ok());
        // One slot comes back every six seconds.
        clock.advance(Duration::from_secs(6));
        assert!(limiter.check(ip).is_ok());
        assert!(limiter.check(ip).is_err());
    }
}
