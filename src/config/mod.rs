//! Configuration: TOML file + environment -> a validated, typed `Config`.
//!
//! The pipeline is parse (`raw`), override from the environment (`env`), then validate
//! (`validate`) into the typed settings (`settings`). Every error names the offending key, so a
//! bad file fails at start, not on first use.

mod env;
mod raw;
mod settings;
mod validate;

use std::path::{Path, PathBuf};

use rand::RngCore;

pub use env::{EnvLookup, process_env};
use raw::RawConfig;
pub use settings::*;
pub use validate::is_provider_url;

/// The configuration the gateway runs on when no file is given.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../conf/authgate.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: key `{key}`: {message}")]
    Parse {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

impl Config {
    /// Without a configured secret, make a random 64-byte one for this process (start-up only:
    /// validation never invents one).
    pub fn generate_missing_secret(&mut self) {
        if self.token.secret.is_empty() {
            let mut secret = vec![0u8; 64];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            self.token.secret = secret;
            self.token.secret_generated = true;
        }
    }

    /// Load `path`, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text, &path.display().to_string(), env)
            }
            None => Config::from_toml(EMBEDDED_DEFAULTS, "embedded defaults", env),
        }
    }

    pub fn from_toml(text: &str, origin: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let mut raw = parse(text, origin)?;
        env::apply_env(&mut raw, env);
        validate::validate(raw, origin)
    }
}

fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
        origin: origin.into(),
        key: "<syntax>".into(),
        message: e.to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let message = e.into_inner().message().to_string();
        ConfigError::Parse {
            origin: origin.into(),
            key,
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", &no_env)
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let cfg = load(EMBEDDED_DEFAULTS).unwrap();
        assert_eq!(cfg.server.listen.map(|a| a.port()), Some(8080));
        assert!(cfg.server.tls.is_none());
        assert_eq!(cfg.admin.listen.port(), 9090);
        assert_eq!(cfg.token.validity, Duration::from_secs(21_600));
        assert!(
            cfg.token.secret.is_empty(),
            "no secret is invented while validating"
        );
        let mut cfg = cfg;
        cfg.generate_missing_secret();
        assert_eq!(cfg.token.secret.len(), 64);
        assert!(cfg.token.secret_generated);
        assert!(matches!(cfg.store.backend, Backend::Memory));
        assert_eq!(cfg.rate_limit.auth_per_minute.get(), 10);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load("[server]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen_typo"), "{text}");
    }

    #[test]
    fn hash_priority_is_idle_unless_set_low() {
        assert_eq!(load("").unwrap().password.hash_priority, HashPriority::Idle);
        let cfg = load("[password]\nhash_priority = \"low\"\n").unwrap();
        assert_eq!(cfg.password.hash_priority, HashPriority::Low);
        let err = load("[password]\nhash_priority = \"fast\"\n").unwrap_err();
        assert!(err.to_string().contains("password.hash_priority"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load("[token]\nvalidity_secs = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("token.validity_secs"), "{err}");
    }

    #[test]
    fn short_secret_is_refused() {
        let err = load("[token]\nsecret = \"change-me\"\n").unwrap_err();
        assert!(err.to_string().contains("token.secret"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let env = |k: &str| match k {
            "JWT_SECRET" => Some("x".repeat(40)),
            "JWT_VALIDITY_SEC" => Some("60".into()),
            _ => None,
        };
        let cfg = Config::from_toml("[token]\nvalidity_secs = 100\n", "t", &env).unwrap();
        assert_eq!(cfg.token.validity, Duration::from_secs(60));
        assert_eq!(cfg.token.secret, "x".repeat(40).into_bytes());
        assert!(!cfg.token.secret_generated);
    }

    #[test]
    fn redis_urls_from_file_or_env() {
        let cfg = load("[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n")
            .unwrap();
        let Backend::Redis(r) = cfg.store.backend else {
            panic!()
        };
        assert_eq!(r.urls, vec!["redis://127.0.0.1:6379/0"]);
        assert_eq!(r.timeout, Duration::from_millis(500));
        let env = |k: &str| (k == "REDIS_URL").then(|| "redis://a:1,redis://b:2".to_string());
        let cfg = Config::from_toml("[store]\nbackend = \"redis\"\n", "t", &env).unwrap();
        let Backend::Redis(r) = cfg.store.backend else {
            panic!()
        };
        assert_eq!(r.urls, vec!["redis://a:1", "redis://b:2"]);
        let err = load("[store]\nbackend = \"redis\"\n").unwrap_err();
        assert!(err.to_string().contains("store.redis_url"), "{err}");
    }

    const PROVIDER: &str = "[[sso.providers]]\nname = \"google\"\n\
        issuer = \"https://accounts.google.com\"\nclient_id = \"id\"\n\
        redirect_uri = \"https://app.example.com/sso/callback\"\n";

    #[test]
    fn sso_providers_are_validated_naming_the_key() {
        let env = |k: &str| (k == "SSO_GOOGLE_CLIENT_SECRET").then(|| "from-env".to_string());
        let cfg = Config::from_toml(PROVIDER, "t", &env).unwrap();
        let p = &cfg.sso.providers[0];
        assert_eq!(p.client_secret, "from-env");
        assert_eq!(p.issuer, "https://accounts.google.com");
        assert_eq!(p.allowed_algs, [jsonwebtoken::Algorithm::RS256]);
        assert_eq!(p.scopes, ["openid", "email", "profile"]);
        assert!(
            !format!("{p:?}").contains("from-env"),
            "the secret is never printed"
        );
        assert_eq!(cfg.sso.state_ttl, Duration::from_secs(600));

        let with_secret = format!("{PROVIDER}client_secret = \"s\"\n");
        for (text, key) in [
            (PROVIDER.to_string(), "sso.providers[0].client_secret"),
            (
                with_secret.replace("https://accounts", "http://accounts"),
                "sso.providers[0].issuer",
            ),
            (
                format!("{with_secret}allowed_algs = [\"RS256\", \"none\"]\n"),
                "sso.providers[0].allowed_algs",
            ),
            (
                format!("{with_secret}scopes = [\"email\"]\n"),
                "sso.providers[0].scopes",
            ),
            (
                format!("{with_secret}email_domains = [\"a@b.c\"]\n"),
                "sso.providers[0].email_domains",
            ),
            (
                format!("{with_secret}{with_secret}"),
                "sso.providers[1].name",
            ),
            (
                format!(
                    "{with_secret}auto_provision = {{ org = \"o\", account_type = \"root\" }}\n"
                ),
                "sso.providers[0].auto_provision.account_type",
            ),
            (format!("{with_secret}typo = 1\n"), "typo"),
        ] {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(key), "expected {key} in: {err}");
        }
        // A provider under test may speak plain http on loopback.
        let local = with_secret.replace("https://accounts.google.com", "http://127.0.0.1:4000");
        assert!(load(&local).is_ok());
    }

    #[test]
    fn operations_keys_are_validated_naming_the_key() {
        const KEY: &str = "0123456789abcdef0123456789abcdef";
        let env = |k: &str| (k == "ADMIN_TOKEN").then(|| "admin-token-from-env".to_string());
        let cfg = Config::from_toml(
            &format!(
                "[server]\naccess_log_format = \"json\"\n\
                 [[token.keys]]\nkid = \"2026-11\"\nsecret = \"{KEY}\"\n\
                 [cors]\nallowed_origins = [\"https://App.example.com\", \"http://localhost:5173\"]\n"
            ),
            "t",
            &env,
        )
        .unwrap();
        assert_eq!(cfg.server.access_log_format, AccessLogFormat::Json);
        assert_eq!(cfg.admin.token.as_deref(), Some("admin-token-from-env"));
        assert!(!format!("{:?}", cfg.admin).contains("from-env"));
        assert_eq!(cfg.token.keys[0].kid, "2026-11");
        assert!(!format!("{:?}", cfg.token).contains(KEY));
        assert_eq!(
            cfg.cors.allowed_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        assert!(cfg.cors.allow_credentials && !cfg.cors.any_origin);
        assert!(load("").unwrap().admin.token.is_none());

        for (text, key) in [
            ("[admin]\ntoken = \"short\"\n".to_string(), "admin.token"),
            (
                "[[token.keys]]\nkid = \"a\"\nsecret = \"short\"\n".into(),
                "token.keys[0].secret",
            ),
            (
                format!(
                    "[[token.keys]]\nkid = \"a\"\nsecret = \"{KEY}\"\n\
                     [[token.keys]]\nkid = \"a\"\nsecret = \"{KEY}\"\n"
                ),
                "token.keys[1].kid",
            ),
            (
                "[cors]\nallowed_origins = [\"https://a.example/app\"]\n".into(),
                "cors.allowed_origins[0]",
            ),
            (
                "[cors]\nallowed_origins = [\"*\"]\n".into(),
                "cors.allowed_origins",
            ),
            (
                "[server]\naccess_log_format = \"xml\"\n".into(),
                "server.access_log_format",
            ),
        ] {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(key), "expected {key} in: {err}");
        }
        let any = load("[cors]\nallowed_origins = [\"*\"]\nallow_credentials = false\n").unwrap();
        assert!(any.cors.any_origin);
    }

    const TLS: &str = "[server.tls]\nlisten = \"127.0.0.1:8443\"\n\
        cert_file = \"/etc/letsencrypt/live/a/fullchain.pem\"\n\
        key_file = \"/etc/letsencrypt/live/a/privkey.pem\"\n";

    #[test]
    fn tls_keys_are_validated_naming_the_key() {
        let cfg = load(&format!(
            "[server]\nlisten = \"\"\n{TLS}\
             [[server.tls.sni]]\nhost = \"API.Example.com.\"\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\n\
             [[server.tls.sni]]\nhost = \"*.apps.example.com\"\ncert_file = \"w.pem\"\nkey_file = \"w.key\"\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"app.internal:443\", \"[::1]:8443\"]\ntls = true\n\
             [[upstreams]]\nname = \"dev\"\nservers = [\"127.0.0.1:1\"]\ntls = true\nsni = \"dev.test\"\nverify = false\n"
        ))
        .unwrap();
        assert_eq!(cfg.server.listen, None, "the plain listener is off");
        let tls = cfg.server.tls.as_ref().unwrap();
        assert_eq!(tls.listen.port(), 8443);
        assert_eq!(tls.sni[0].host, "api.example.com");
        assert_eq!(tls.sni[1].host, "*.apps.example.com");
        let app = cfg.upstreams[0].tls.as_ref().unwrap();
        assert!(app.verify && app.ca_file.is_none());
        assert_eq!(app.sni_for("app.internal:443"), "app.internal");
        assert_eq!(app.sni_for("[::1]:8443"), "::1");
        assert_eq!(
            cfg.upstreams[1]
                .tls
                .as_ref()
                .unwrap()
                .sni_for("127.0.0.1:1"),
            "dev.test"
        );
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.starts_with("upstreams[1].verify = false")),
            "{:?}",
            cfg.warnings
        );
        assert_eq!(
            load(TLS).unwrap().server.tls.unwrap().default.cert_file,
            std::path::Path::new("/etc/letsencrypt/live/a/fullchain.pem")
        );

        let up = "[[upstreams]]\nname = \"a\"\nservers = [\"app:443\"]\n";
        for (text, key) in [
            ("[server]\nlisten = \"\"\n".to_string(), "server.listen"),
            ("[server.tls]\ncert_file = \"c\"\n".into(), "server.tls"),
            (
                TLS.replace(
                    "cert_file = \"/etc/letsencrypt/live/a/fullchain.pem\"",
                    "cert_file = \"\"",
                ),
                "server.tls.cert_file",
            ),
            (
                format!("[server]\nlisten = \"0.0.0.0:8443\"\n{TLS}"),
                "server.tls.listen",
            ),
            (
                format!("[admin]\nlisten = \"127.0.0.1:8443\"\n{TLS}"),
                "admin.listen",
            ),
            (
                format!(
                    "{TLS}[[server.tls.sni]]\nhost = \"10.0.0.1\"\ncert_file = \"a\"\nkey_file = \"b\"\n"
                ),
                "server.tls.sni[0].host",
            ),
            (
                format!(
                    "{TLS}[[server.tls.sni]]\nhost = \"a.test\"\ncert_file = \"a\"\nkey_file = \"b\"\n\
                     [[server.tls.sni]]\nhost = \"A.test\"\ncert_file = \"a\"\nkey_file = \"b\"\n"
                ),
                "server.tls.sni[1].host",
            ),
            (format!("{up}sni = \"app\"\n"), "upstreams[0].sni"),
            (format!("{up}verify = false\n"), "upstreams[0].verify"),
            (
                format!("{up}tls = true\nca_file = \" \"\n"),
                "upstreams[0].ca_file",
            ),
            (
                format!("{up}tls = true\nsni = \"a b\"\n"),
                "upstreams[0].sni",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nservers = [\"bad host:443\"]\ntls = true\n".into(),
                "upstreams[0].servers[0]",
            ),
        ] {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(key), "expected {key} in: {err}");
        }
    }

    #[test]
    fn route_must_name_known_upstream() {
        let err = load("[[routes]]\nprefix = \"/\"\nupstream = \"nope\"\n").unwrap_err();
        assert!(err.to_string().contains("routes[0].upstream"), "{err}");
    }

    #[test]
    fn trusted_proxies_accept_cidrs_and_addresses() {
        let cfg = load("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\"]\n").unwrap();
        assert_eq!(cfg.server.trusted_proxies.len(), 2);
        let err = load("[server]\ntrusted_proxies = [\"nonsense\"]\n").unwrap_err();
        assert!(
            err.to_string().contains("server.trusted_proxies[0]"),
            "{err}"
        );
    }
}
