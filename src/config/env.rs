//! Environment overrides, applied to the raw file before it is validated.

use super::raw::{self, RawConfig};

/// Where environment overrides come from; tests pass a closure instead of the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Environment variables over the file: `JWT_SECRET`, `JWT_VALIDITY_SEC`, `MFA_SUPER_MANDATORY`,
/// `REDIS_URL`, `ADMIN_TOKEN`, and `SSO_<NAME>_CLIENT_SECRET` for each single sign-on provider.
pub(super) fn apply_env(raw: &mut RawConfig, env: EnvLookup<'_>) {
    if let Some(secret) = env("JWT_SECRET") {
        raw.token.secret = Some(secret);
    }
    if let Some(validity) = env("JWT_VALIDITY_SEC") {
        // An unparsable value is kept as 0 so that validation names the key.
        raw.token.validity_secs = validity.trim().parse().unwrap_or(0);
    }
    if let Some(flag) = env("MFA_SUPER_MANDATORY") {
        raw.mfa.super_mandatory = matches!(
            flag.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        );
    }
    if let Some(token) = env("ADMIN_TOKEN") {
        raw.admin.token = Some(token);
    }
    if let Some(url) = env("REDIS_URL") {
        let urls: Vec<String> = url
            .split([',', ' '])
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        raw.store.redis_url = Some(raw::RedisUrls::Many(urls));
    }
    for provider in &mut raw.sso.providers {
        if let Some(secret) = env(&provider_secret_env(&provider.name)) {
            provider.client_secret = Some(secret);
        }
    }
}

/// `SSO_GOOGLE_CLIENT_SECRET` for the provider named `google` (`-` read as `_`).
pub fn provider_secret_env(name: &str) -> String {
    format!(
        "SSO_{}_CLIENT_SECRET",
        name.to_ascii_uppercase().replace('-', "_")
    )
}
