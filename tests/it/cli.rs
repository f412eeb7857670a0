//! Operators validate configuration before deploying it and make password hashes for users.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;

fn check(config: &str, users: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let users_path = dir.path().join("users.toml");
    std::fs::write(
        &users_path,
        users.map(str::to_string).unwrap_or_else(sample_users),
    )
    .unwrap();
    let config = config.replace("USERS", &users_path.display().to_string());
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("JWT_SECRET")
        .env_remove("JWT_VALIDITY_SEC")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

const GOOD: &str = "[store]\nusers_file = \"USERS\"\n[[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:3000\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n";

#[test]
fn the_shipped_config_is_valid() {
    let out = Command::new(bin())
        .args(["check-config", "--config", "conf/authgate.toml"])
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn good_config_passes() {
    let (code, text) = check(GOOD, None);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: mfa.delivery = \"log\""),
        "log delivery is flagged: {text}"
    );
    let webhook = format!(
        "{GOOD}[mfa]\ndelivery = \"webhook\"\nwebhook_url = \"http://127.0.0.1:8025/mail\"\n"
    );
    let (code, text) = check(&webhook, None);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("mfa.delivery"), "{text}");
}

#[test]
fn broken_configs_fail_naming_the_key() {
    let cases = [
        (
            format!("{GOOD}[server]\nlisten_port = 8080\n"),
            "server.listen_port",
        ),
        (
            format!("{GOOD}[token]\nvalidity_secs = \"six hours\"\n"),
            "token.validity_secs",
        ),
        (
            format!("{GOOD}[token]\nsecret = \"change-me\"\n"),
            "token.secret",
        ),
        (
            format!("{GOOD}[server]\nlisten = \"nowhere\"\n"),
            "server.listen",
        ),
        (
            GOOD.replace("upstream = \"app\"", "upstream = \"ghost\""),
            "routes[0].upstream",
        ),
        (
            format!("{GOOD}[rate_limit]\nauth_per_minute = 0\n"),
            "rate_limit.auth_per_minute",
        ),
        (
            GOOD.replace("[store]\n", "[store]\nbackend = \"postgres\"\n"),
            "store.backend",
        ),
        ("[server\nlisten = 1".to_string(), "<syntax>"),
        (
            GOOD.replace(
                "[[routes]]\nprefix = \"/\"",
                "[[routes]]\nprefix = \"/\"\nauth = \"sometimes\"",
            ),
            "routes[0].auth",
        ),
    ];
    for (config, key) in cases {
        let (code, text) = check(&config, None);
        assert_ne!(code, 0, "accepted:\n{config}");
        assert!(text.contains(key), "expected `{key}` in: {text}");
    }
}

#[test]
fn broken_users_file_fails_naming_the_key() {
    let users = sample_users().replace("account_type = \"user\"", "account_type = \"root\"");
    let (code, text) = check(GOOD, Some(&users));
    assert_ne!(code, 0);
    assert!(text.contains("users[0].account_type"), "{text}");
}

#[test]
fn short_secret_stops_the_gateway_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(
        &path,
        format!(
            "{}[token]\nsecret = \"short\"\n",
            GOOD.replace("USERS", &repo_path("conf/users.toml").display().to_string())
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token.secret"));
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    let mut child = Command::new(bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret-Passw0rd\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(authgate::password::verify_blocking(
        "s3cret-Passw0rd",
        &hash
    ));
    assert!(!authgate::password::verify_blocking(
        "s3cret-Passw0rd\n",
        &hash
    ));
}
