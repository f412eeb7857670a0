//! Password hashing: argon2id (OWASP parameters) for new hashes, argon2 and bcrypt accepted.
//!
//! Hashing is CPU-bound for tens of milliseconds, so it runs on Tokio's blocking pool behind a
//! semaphore: Pingora's event loop never waits on it, and a flood of signins cannot queue up
//! unbounded memory (each argon2id hash holds 19 MiB while it runs).

use std::sync::Arc;

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::GatewayError;

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
fn argon2id() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn is_supported_hash(hash: &str) -> bool {
    hash.starts_with("$argon2id$")
        || hash.starts_with("$argon2i$")
        || hash.starts_with("$argon2d$")
        || is_bcrypt(hash)
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p))
}

/// Hash a password with argon2id and a fresh random salt (blocking).
pub fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2id()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Check a password against a stored hash (blocking). Any unreadable hash is a mismatch.
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    if is_bcrypt(hash) {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    match PasswordHash::new(hash) {
        // The parameters come from the hash itself; Argon2's comparison is constant time.
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub struct Passwords {
    permits: Semaphore,
    /// Verified against when the email is unknown, so that both failures cost the same.
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub fn new(max_concurrent: usize) -> Passwords {
        let dummy_hash = hash_blocking("authgate-timing-equalizer")
            .unwrap_or_else(|_| "$argon2id$v=19$m=19456,t=2,p=1$invalid".into());
        Passwords {
            permits: Semaphore::new(max_concurrent.max(1)),
            dummy_hash: dummy_hash.into(),
        }
    }

    /// Verify `password` against `hash`, or against a dummy hash when there is no user, so an
    /// unknown email takes as long as a wrong password.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, GatewayError> {
        let known = hash.is_some();
        let hash: Arc<str> = match hash {
            Some(h) => h.into(),
            None => Arc::clone(&self.dummy_hash),
        };
        let password = password.to_owned();
        let ok = self.run(move || verify_blocking(&password, &hash)).await?;
        Ok(ok && known)
    }

    pub async fn hash(&self, password: &str) -> Result<String, GatewayError> {
        let password = password.to_owned();
        self.run(move || hash_blocking(&password))
            .await?
            .map_err(|e| GatewayError::Unavailable(format!("password hashing failed: {e}")))
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, GatewayError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| GatewayError::Unavailable("password hasher closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| GatewayError::Unavailable(format!("password task failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_with_owasp_params() {
        let h = hash_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("wrong horse", &h));
    }

    #[test]
    fn bcrypt_hashes_are_accepted() {
        let h = bcrypt::hash("iLovePria123", 4).unwrap();
        assert!(is_supported_hash(&h));
        assert!(verify_blocking("iLovePria123", &h));
        assert!(!verify_blocking("iLovePria124", &h));
    }

    #[test]
    fn garbage_hash_never_matches() {
        assert!(!verify_blocking("x", "not a hash"));
        assert!(!verify_blocking("x", "$argon2id$broken"));
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let p = Passwords::new(2);
        assert!(!p.verify("authgate-timing-equalizer", None).await.unwrap());
    }
}
