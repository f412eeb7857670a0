//! The `issuedBefore` cut-off this instance applies: every token issued before it is refused.
//!
//! Checked by `auth::authenticate` on every authenticated request, right after the token
//! verifies, so it is one atomic load and nothing more. Raised by the admin API
//! (`admin::revoke`), and with Redis also by the change listener, from the announcement of
//! another instance's revocation or from its once-a-second read of the stored value. It only
//! ever rises.

use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug, Default)]
pub struct Revocations {
    /// Unix seconds; a token whose `iat` is earlier is refused. 0 refuses nothing.
    not_before: AtomicI64,
}

impl Revocations {
    pub fn new(not_before: i64) -> Revocations {
        Revocations {
            not_before: AtomicI64::new(not_before),
        }
    }

    /// The cut-off in force.
    pub fn not_before(&self) -> i64 {
        // Nothing else is published through this value: relaxed is enough.
        self.not_before.load(Ordering::Relaxed)
    }

    /// Raise the cut-off to `t` unless it is already later; returns the cut-off now in force.
    pub fn raise(&self, t: i64) -> i64 {
        self.not_before.fetch_max(t, Ordering::Relaxed).max(t)
    }

    /// Whether a token issued at `iat` may still be used.
    pub fn admits(&self, iat: i64) -> bool {
        iat >= self.not_before()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_off_only_rises() {
        let r = Revocations::default();
        assert!(r.admits(0) && r.admits(1), "nothing is refused at first");
        assert_eq!(r.raise(100), 100);
        assert!(!r.admits(99));
        assert!(r.admits(100), "a token issued at the cut-off is after it");
        assert_eq!(r.raise(50), 100, "an earlier cut-off changes nothing");
        assert_eq!(r.not_before(), 100);
        assert_eq!(r.raise(200), 200);
        assert!(!r.admits(150));
    }
}
