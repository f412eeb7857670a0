//! Per-client-IP rate limits: GCRA in process (`governor`), or shared by every instance through
//! the store, with the in-process limiter standing in whenever the store cannot answer.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;

use crate::metrics::{Counter, metrics};
use crate::store::LimitStore;

/// A request over its limit, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited for {retry_after_secs}s")]
pub struct Limited {
    pub retry_after_secs: u64,
}

/// One rate-limited bucket (the credential endpoints, or one route).
pub struct RateLimiter {
    name: String,
    per_minute: NonZeroU32,
    shared: Option<Arc<dyn LimitStore>>,
    /// Always counts, so that it holds a realistic history when it has to take over.
    local: IpLimiter,
    /// Requests this bucket refused.
    refused: Counter,
}

impl RateLimiter {
    /// `name` keys the shared counts: `auth`, `sso_start`, or `route:<prefix>`. The metrics
    /// bucket is the same without `route:`.
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
            refused: metrics().rate_limited(name.strip_prefix("route:").unwrap_or(name)),
        }
    }

    pub fn per_minute(&self) -> NonZeroU32 {
        self.per_minute
    }

    pub async fn check(&self, ip: IpAddr) -> Result<(), Limited> {
        self.decide(ip).await.inspect_err(|_| self.refused.inc())
    }

    async fn decide(&self, ip: IpAddr) -> Result<(), Limited> {
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

/// Password checks, counted per account and per client address and account, for known and
/// unknown emails alike (so a refusal says nothing about whether the account exists).
///
/// Every check is counted as a failure before it runs (`begin`), and a success clears the
/// count: so a burst of guesses sent at once cannot all start before the first has failed.
/// Once `per_account` (or `per_client` from one address) fall within one window, which starts
/// at the first of them, further attempts are refused with 429 until the window ends, before
/// any password hash is computed.
pub struct FailureLimiter {
    per_account: u32,
    per_client: u32,
    window: Duration,
    shared: Option<Arc<dyn LimitStore>>,
    /// Always counts, and decides whenever the shared store cannot answer.
    local: DashMap<String, (u32, Instant)>,
    /// Attempts refused because the account (or this address on it) is locked.
    refused: Counter,
}

/// The bucket of an account: a hash of its normalised email, so that neither the process nor
/// Redis keeps a list of the addresses people tried.
fn account_bucket(email: &str) -> String {
    let digest = Sha256::digest(email.as_bytes());
    hex::encode(&digest[..16])
}

fn client_bucket(account: &str, ip: IpAddr) -> String {
    format!("{account}:{ip}")
}

impl FailureLimiter {
    pub fn new(
        per_account: u32,
        per_client: u32,
        window: Duration,
        shared: Option<Arc<dyn LimitStore>>,
    ) -> FailureLimiter {
        FailureLimiter {
            per_account,
            per_client,
            window,
            shared,
            local: DashMap::new(),
            refused: metrics().rate_limited("account"),
        }
    }

    /// Count one attempt on the account from `ip`, or refuse it when the account, or this
    /// address on it, has used up its window.
    pub async fn begin(&self, email: &str, ip: IpAddr) -> Result<(), Limited> {
        self.reserve(email, ip)
            .await
            .inspect_err(|_| self.refused.inc())
    }

    async fn reserve(&self, email: &str, ip: IpAddr) -> Result<(), Limited> {
        let account = account_bucket(email);
        let client = client_bucket(&account, ip);
        let Some(shared) = &self.shared else {
            return self.reserve_local(&account, &client, true);
        };
        let limits = [self.per_account, self.per_client];
        match shared.reserve(&account, ip, limits, self.window).await {
            Ok(outcome) => {
                // The local count keeps a true history for when Redis cannot answer.
                let _ = self.reserve_local(&account, &client, false);
                outcome.map_or(Ok(()), |wait| Err(limited(wait)))
            }
            Err(e) => {
                tracing::warn!("shared sign-in counts unavailable, using the local ones: {e}");
                self.reserve_local(&account, &client, true)
            }
        }
    }

    /// The password was right: the account starts afresh.
    pub async fn succeeded(&self, email: &str, ip: IpAddr) {
        let account = account_bucket(email);
        self.local.remove(&client_bucket(&account, ip));
        self.local.remove(&account);
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.clear_failures(&account, ip).await {
                tracing::warn!("could not clear failed sign-in counts: {e}");
            }
        }
    }

    /// Check and count under each bucket's entry lock, account first; a refusal by the client
    /// bucket gives the account's count back.
    fn reserve_local(&self, account: &str, client: &str, enforce: bool) -> Result<(), Limited> {
        let now = Instant::now();
        let take = |key: &str, limit: u32| -> Result<(), Duration> {
            let mut entry = self
                .local
                .entry(key.to_owned())
                .or_insert((0, now + self.window));
            if entry.1 <= now {
                *entry = (0, now + self.window);
            }
            if enforce && entry.0 >= limit {
                return Err(entry.1 - now);
            }
            entry.0 = entry.0.saturating_add(1);
            Ok(())
        };
        take(account, self.per_account).map_err(limited)?;
        if let Err(wait) = take(client, self.per_client) {
            if let Some(mut entry) = self.local.get_mut(account) {
                entry.0 = entry.0.saturating_sub(1);
            }
            return Err(limited(wait));
        }
        Ok(())
    }

    /// Forget windows that are over.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.local.retain(|_, (_, end)| *end > now);
    }
}

fn limited(wait: Duration) -> Limited {
    Limited {
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

    pub fn check(&self, ip: IpAddr) -> Result<(), Limited> {
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

    #[tokio::test]
    async fn attempts_lock_the_account_from_every_address_until_a_success() {
        let limiter = FailureLimiter::new(3, 2, Duration::from_secs(60), None);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        );
        limiter.begin("x@y.z", a).await.unwrap();
        limiter.begin("x@y.z", a).await.unwrap();
        // Two from one address lock that address out of this account only.
        assert!(matches!(
            limiter.begin("x@y.z", a).await,
            Err(Limited {
                retry_after_secs: 60
            })
        ));
        limiter.begin("other@y.z", a).await.unwrap();
        limiter.begin("x@y.z", b).await.unwrap();
        // Three in all lock the account from everywhere.
        assert!(limiter.begin("x@y.z", c).await.is_err());
        limiter.succeeded("x@y.z", c).await;
        limiter.begin("x@y.z", c).await.unwrap();
    }

    #[test]
    fn eleventh_request_in_a_minute_is_refused_with_retry_after() {
        let clock = FakeRelativeClock::default();
        let limiter = IpLimiter::with_clock(NonZeroU32::new(10).unwrap(), clock.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            assert!(limiter.check(ip).is_ok());
        }
        match limiter.check(ip) {
            Err(Limited { retry_after_secs }) => assert_eq!(retry_after_secs, 6),
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
