//! An operator edits `authgate.toml` (or sends SIGHUP) and the running gateway takes the new
//! configuration without a restart; a broken file changes nothing; requests in flight never
//! fail or go astray.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

const KEY1: &str = "key-one-key-one-key-one-key-one-1";
const KEY2: &str = "key-two-key-two-key-two-key-two-2";

/// Replace the configuration file as editors and orchestrators do: a new file renamed over
/// the old one, so the gateway never reads half a file.
fn write_config(gw: &Gateway, text: &str) {
    let tmp = gw.config_path.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &gw.config_path).unwrap();
}

fn config(gw: &Gateway) -> String {
    std::fs::read_to_string(&gw.config_path).unwrap()
}

fn count(gw: &Gateway, line: &str) -> usize {
    gw.log().matches(line).count()
}

/// Wait until the log holds `n` lines containing `line`.
async fn wait_for_log(gw: &Gateway, line: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while count(gw, line) < n {
        assert!(
            Instant::now() < deadline,
            "waited for {n} x {line:?}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "configuration not reloaded";

async fn get(gw: &Gateway, path: &str, token: &str) -> Answer {
    read(
        client()
            .get(gw.url(path))
            .header("x-access-token", token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn two_routes(b: &Upstream) -> String {
    format!(
        "[[upstreams]]\nname = \"b\"\nservers = [\"{}\"]\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
         [[routes]]\nprefix = \"/b\"\nupstream = \"b\"\n",
        b.addr
    )
}

#[tokio::test]
async fn an_edited_file_is_put_in_force_and_sighup_reloads() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let gw = Gateway::start(&a, Options::default());
    let token = signin(&gw).await;
    assert_eq!(get(&gw, "/b/x", &token).await.status, 200);
    assert_eq!((a.count(), b.count()), (1, 0));

    // A new route, by editing the file: no signal needed.
    let text = config(&gw).replace(
        "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n",
        &two_routes(&b),
    );
    write_config(&gw, &text);
    wait_for_log(&gw, RELOADED, 1).await;
    let reply = get(&gw, "/b/x", &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(b.count(), 1, "the new route reaches its upstream");
    assert_eq!(get(&gw, "/", &token).await.status, 200);
    assert_eq!(a.count(), 2);
    assert_eq!(
        get(&gw, "/b/x", &token).await.status,
        200,
        "the session survives a reload"
    );

    // SIGHUP reloads too, file changed or not.
    gw.signal("HUP");
    wait_for_log(&gw, RELOADED, 2).await;
    assert!(gw.log().contains("SIGHUP: reloading"));
    assert_eq!(count(&gw, REFUSED), 0);
}

#[tokio::test]
async fn a_broken_file_is_refused_and_the_running_configuration_stays() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let gw = Gateway::start(&a, Options::default());
    let token = signin(&gw).await;
    let good = config(&gw);

    write_config(&gw, &format!("{good}\n[server]\nlisten_typo = 1\n"));
    wait_for_log(&gw, REFUSED, 1).await;
    // A bad route target, this time: also refused, with the key named.
    let bad_route = good.replace("upstream = \"app\"\nauth", "upstream = \"nowhere\"\nauth");
    write_config(&gw, &bad_route);
    wait_for_log(&gw, REFUSED, 2).await;
    let log = gw.log();
    assert!(log.contains("routes[0].upstream"), "{log}");
    assert_eq!(count(&gw, RELOADED), 0);
    let reply = get(&gw, "/x", &token).await;
    assert_eq!(reply.status, 200, "still served as before: {}", reply.text);
    assert_eq!(a.count(), 1);

    // The next good file is taken.
    write_config(
        &gw,
        &good.replace(
            "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n",
            &two_routes(&b),
        ),
    );
    wait_for_log(&gw, RELOADED, 1).await;
    assert_eq!(get(&gw, "/b", &token).await.status, 200);
    assert_eq!(b.count(), 1);

    // Counted for alerting.
    let metrics = admin_get(&gw, "/metrics").await.text;
    for (outcome, n) in [("ok", 1), ("failed", 2)] {
        let line = format!("authgate_config_reloads_total{{outcome=\"{outcome}\"}} {n}");
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn settings_that_need_a_restart_are_logged_and_kept() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            rate_limit_section: "[rate_limit]\nauth_per_minute = 1000\n".into(),
            ..Options::default()
        },
    );
    let other_port = free_port();
    let text = config(&gw)
        .replace(
            &format!("listen = \"{}\"", gw.addr),
            &format!("listen = \"127.0.0.1:{other_port}\""),
        )
        .replace("auth_per_minute = 1000", "auth_per_minute = 2");
    write_config(&gw, &text);
    wait_for_log(&gw, RELOADED, 1).await;
    assert!(
        gw.log()
            .contains("server.listen changed: it takes effect after a restart"),
        "{}",
        gw.log()
    );
    // Still on the old address, not on the new one; the rest of the file applies.
    assert!(std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err());
    let creds = json!({"email": EMAIL, "password": PASSWORD});
    for _ in 0..2 {
        assert_eq!(
            post_json(&gw.url("/api/auth/signin"), creds.clone())
                .await
                .status,
            200
        );
    }
    let third = post_json(&gw.url("/api/auth/signin"), creds).await;
    assert_eq!(
        third.status, 429,
        "the new limit is in force: {}",
        third.text
    );
}

#[tokio::test]
async fn rate_limit_counts_survive_a_reload_that_leaves_the_limit_alone() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let gw = Gateway::start(
        &a,
        Options {
            rate_limit_section: "[rate_limit]\nauth_per_minute = 3\n".into(),
            ..Options::default()
        },
    );
    let creds = json!({"email": EMAIL, "password": "wrong-password-1"});
    for _ in 0..3 {
        assert_eq!(
            post_json(&gw.url("/api/auth/signin"), creds.clone())
                .await
                .status,
            401
        );
    }
    // An unrelated change.
    write_config(
        &gw,
        &config(&gw).replace(
            "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n",
            &two_routes(&b),
        ),
    );
    wait_for_log(&gw, RELOADED, 1).await;
    let fourth = post_json(&gw.url("/api/auth/signin"), creds).await;
    assert_eq!(fourth.status, 429, "{}", fourth.text);
}

#[tokio::test]
async fn signing_keys_rotate_by_reload() {
    let up = Upstream::start();
    let keys = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(kid, secret)| {
                format!("[[token.keys]]\nkid = \"{kid}\"\nsecret = \"{secret}\"\n")
            })
            .collect::<String>()
    };
    let gw = Gateway::start(
        &up,
        Options {
            token_section: format!("[token]\nsecret = \"{SECRET}\"\n{}", keys(&[("k1", KEY1)])),
            rate_limit_section: "[rate_limit]\nauth_per_minute = 1000\n".into(),
            ..Options::default()
        },
    );
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid;
    let t1 = signin(&gw).await;
    assert_eq!(kid(&t1).as_deref(), Some("k1"));
    // A token as issued before keys existed: no kid, signed with token.secret.
    let legacy = sign(&claims(&t1), SECRET);
    assert_eq!(kid(&legacy), None);
    assert_eq!(get(&gw, "/x", &legacy).await.status, 200);

    // k2 in front: new tokens carry it; k1's still work.
    let base = config(&gw);
    let both = base.replace(&keys(&[("k1", KEY1)]), &keys(&[("k2", KEY2), ("k1", KEY1)]));
    write_config(&gw, &both);
    wait_for_log(&gw, RELOADED, 1).await;
    let t2 = signin(&gw).await;
    assert_eq!(kid(&t2).as_deref(), Some("k2"));
    for t in [&t1, &t2, &legacy] {
        assert_eq!(get(&gw, "/x", t).await.status, 200);
    }

    // k1 removed: its tokens are refused; k2's and the legacy one still pass.
    write_config(
        &gw,
        &base.replace(&keys(&[("k1", KEY1)]), &keys(&[("k2", KEY2)])),
    );
    wait_for_log(&gw, RELOADED, 2).await;
    let refused = get(&gw, "/x", &t1).await;
    assert_error(&refused, 401, "Invalid token", "invalid signature");
    assert_eq!(get(&gw, "/x", &t2).await.status, 200);
    assert_eq!(get(&gw, "/x", &legacy).await.status, 200);
    // An unknown kid is an invalid token too.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k9".into());
    let unknown = jsonwebtoken::encode(
        &header,
        &claims(&t2),
        &jsonwebtoken::EncodingKey::from_secret(KEY2.as_bytes()),
    )
    .unwrap();
    assert_error(
        &get(&gw, "/x", &unknown).await,
        401,
        "Invalid token",
        "invalid signature",
    );
    let before = up.count();
    assert_eq!(get(&gw, "/x", &t1).await.status, 401);
    assert_eq!(up.count(), before, "a refused token reaches nobody");
}

#[tokio::test]
async fn twenty_reloads_under_steady_load_fail_and_misroute_nothing() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let routes = |extra: &str| {
        format!(
            "[[upstreams]]\nname = \"b\"\nservers = [\"{}\"]\n{extra}\n\
             [[routes]]\nprefix = \"/a\"\nupstream = \"app\"\n\
             [[routes]]\nprefix = \"/b\"\nupstream = \"b\"\n",
            b.addr
        )
    };
    let gw = Gateway::start(
        &a,
        Options {
            routes: Some(routes("")),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;
    let base = config(&gw);
    // Each variant changes something real: a limit on /a, health checking of b, a third route.
    let variants = [
        routes("health_check_secs = 2"),
        routes("").replace(
            "prefix = \"/a\"\nupstream = \"app\"\n",
            "prefix = \"/a\"\nupstream = \"app\"\nrate_limit_per_minute = 100000\n",
        ),
        format!(
            "{}[[routes]]\nprefix = \"/c\"\nupstream = \"b\"\n",
            routes("")
        ),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, sent, token) = (Arc::clone(&stop), Arc::clone(&sent), token.clone());
        let (url_a, url_b) = (gw.url("/a/x"), gw.url("/b/x"));
        workers.push(tokio::spawn(async move {
            let http = client();
            let mut failures = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let url = if i % 2 == 0 { &url_a } else { &url_b };
                i += 1;
                match http.get(url).header("x-access-token", &token).send().await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failures.push(format!("{url}: {}", r.status())),
                    Err(e) => failures.push(format!("{url}: {e}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }

    let current = base.clone();
    let old_routes = routes("");
    for i in 0..20 {
        let next = current.replace(&old_routes, &variants[i % variants.len()]);
        let before = sent.load(Ordering::Relaxed);
        if i % 2 == 0 {
            write_config(&gw, &next);
        } else {
            // The same change through SIGHUP; the file watcher may see it as well.
            write_config(&gw, &next);
            gw.signal("HUP");
        }
        wait_for_log(&gw, RELOADED, i + 1).await;
        // Some traffic between reloads, so every configuration serves requests.
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent.load(Ordering::Relaxed) < before + 20 {
            assert!(Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(count(&gw, REFUSED), 0, "{}", gw.log());
    let total = sent.load(Ordering::Relaxed);
    assert!(total >= 400, "{total} requests");
    assert!(
        a.requests().iter().all(|s| s.uri.starts_with("/a")),
        "misrouted to a"
    );
    assert!(
        b.requests().iter().all(|s| s.uri.starts_with("/b")),
        "misrouted to b"
    );
    assert_eq!(
        a.count() + b.count(),
        total,
        "every request reached its upstream once"
    );
}

#[tokio::test]
async fn an_identity_provider_added_by_reload_serves_logins() {
    let up = Upstream::start();
    let provider = OidcProvider::start(provider_config());
    let gw = Gateway::start(
        &up,
        Options {
            rate_limit_section: "[rate_limit]\nauth_per_minute = 1000\n".into(),
            ..Options::default()
        },
    );
    let none = sso_start_raw(&gw, PROVIDER, None).await;
    assert_error(&none, 400, "Bad Request", "Unknown identity provider");

    write_config(
        &gw,
        &format!(
            "{}\n{}",
            config(&gw),
            sso_toml(&provider.issuer, DOMAINS, "")
        ),
    );
    wait_for_log(&gw, RELOADED, 1).await;
    wait_provider_status(&gw, "up", Duration::from_secs(20)).await;
    let a = sso_login(&gw, &provider, account::JOHN).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(claims(a.json["token"].as_str().unwrap())["_id"], USER_ID);
}
