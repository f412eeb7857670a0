//! Per-client-IP rate limits (GCRA via `governor`), one limiter per bucket.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::error::GatewayError;

pub struct IpLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
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
            limiter: RateLimiter::new(
                Quota::per_minute(n),
                DashMapStateStore::default(),
                clock.clone(),
            ),
            clock,
        }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), GatewayError> {
        self.limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            GatewayError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
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
