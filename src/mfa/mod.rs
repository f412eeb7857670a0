//! Email MFA: challenge ids and codes from the OS CSPRNG, keyed code hashes, masked emails and
//! trusted-device tokens. The flow itself lives in `auth::admit` and `endpoints::mfa`.

pub mod delivery;

use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 24 lowercase hex characters (96 bits).
pub fn new_challenge_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Six decimal digits, uniformly drawn.
pub fn new_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// HMAC-SHA256 of the code, keyed by the gateway's secret and bound to its challenge: a leaked
/// store does not give the codes away (a bare hash of six digits would be reversed at once),
/// and a code cannot be replayed against another challenge.
pub fn code_hash(key: &[u8], challenge_id: &str, code: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(b"authgate-mfa-code\0");
    mac.update(challenge_id.as_bytes());
    mac.update(b"\0");
    mac.update(code.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time comparison of two hashes.
pub fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `john.doe@example.com` -> `j*****e@example.com`: first and last character of the local
/// part around five asterisks.
pub fn mask_email(email: &str) -> String {
    let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
    let mut chars = local.chars();
    let first = chars.next().map(String::from).unwrap_or_default();
    let last = chars.next_back().map(String::from).unwrap_or_default();
    if domain.is_empty() {
        format!("{first}*****{last}")
    } else {
        format!("{first}*****{last}@{domain}")
    }
}

/// A trusted-device token: 256 bits, hex. Only its hash is stored.
pub fn new_device_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn device_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v.trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_ids_are_24_lowercase_hex() {
        let a = new_challenge_id();
        assert_eq!(a.len(), 24);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_ne!(a, new_challenge_id());
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let c = new_code();
            assert_eq!(c.len(), 6);
            assert!(c.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn code_hashes_bind_key_challenge_and_code() {
        let h = code_hash(b"k", "c1", "123456");
        assert_eq!(h.len(), 64);
        assert_eq!(h, code_hash(b"k", "c1", "123456"));
        assert_ne!(h, code_hash(b"k", "c2", "123456"));
        assert_ne!(h, code_hash(b"k", "c1", "123457"));
        assert_ne!(h, code_hash(b"other", "c1", "123456"));
        assert!(same_hash(&h, &code_hash(b"k", "c1", "123456")));
        assert!(!same_hash(&h, ""));
    }

    #[test]
    fn masking() {
        assert_eq!(mask_email("john.doe@example.com"), "j*****e@example.com");
        assert_eq!(mask_email("jo@x.io"), "j*****o@x.io");
        assert_eq!(mask_email("j@x.io"), "j*****@x.io");
    }

    #[test]
    fn cookies() {
        assert_eq!(
            cookie("a=1; authgate_device=abc; b=2", "authgate_device"),
            Some("abc")
        );
        assert_eq!(cookie("xauthgate_device=abc", "authgate_device"), None);
        assert_eq!(cookie("", "authgate_device"), None);
    }
}
