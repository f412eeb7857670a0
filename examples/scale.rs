//! Scale figures for `benches/load/scale.sh`: memory per live session and session lookup time
//! in the memory store and in Redis, the verified-token cache with more distinct tokens than it
//! holds, and tokens for load runs. Sessions are made directly through the store API (signing
//! in a million users would take hours of argon2).
//!
//! ```text
//! cargo run --release --example scale -- memory N
//! cargo run --release --example scale -- redis REDIS_URL PREFIX N
//! cargo run --release --example scale -- token-cache N...
//! cargo run --release --example scale -- tokens SECRET TOKEN N OUT       # N tokens like TOKEN
//! cargo run --release --example scale -- redis-sessions REDIS_URL PREFIX SECRET TOKEN N OUT
//! ```
//!
//! Every mode prints one tab-separated line of results on stdout (see each function).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::config::RedisSettings;
use authgate::model::Session;
use authgate::store::SessionStore;
use authgate::store::memory::MemorySessions;
use authgate::store::redis::RedisStore;
use authgate::token::jwt::Verified;
use authgate::token::{Claims, JwtKeys};
use futures_util::FutureExt;
use futures_util::stream::{self, StreamExt};

// The gateway's allocator, so that memory per session is what the gateway would spend.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A future time for every session's expiry (2096), so none is dead when looked up.
const EXPIRES_AT: i64 = 4_000_000_000;
const NOW: i64 = 1_800_000_000;

/// A small deterministic generator (SplitMix64): the same ids on every run, no extra crate.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Session `i`: a 32-hex-digit id as the gateway makes them, and its own user (a 24-hex-digit
/// id, as in the users file): one session per user, the most keys per session in Redis.
fn session(i: u64) -> Session {
    let mut m = Mix(i);
    Session {
        id: format!("{:016x}{:016x}", m.next(), m.next()),
        user_id: format!(
            "{:024x}",
            u128::from(m.next()) << 32 | u128::from(m.next() >> 32)
        ),
        created_at: NOW,
        expires_at: EXPIRES_AT,
        family: authgate::model::Family::Profile,
    }
}

/// Resident memory of this process, in bytes (`/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64) * p / 100.0).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1].as_nanos() as f64
}

/// `memory N`: N sessions in `MemorySessions` (the memory store's map). Prints
/// `N  rss_bytes_per_session  lookup_mean_ns  lookup_p50_ns  lookup_p99_ns`.
fn memory(n: u64) {
    let store = MemorySessions::default();
    let before = rss();
    for i in 0..n {
        store
            .create(session(i))
            .now_or_never()
            .expect("the memory store never waits")
            .expect("create");
    }
    let per_session = (rss().saturating_sub(before)) as f64 / n as f64;
    // Lookups of live sessions in random order (ids made before the clock starts).
    let mut m = Mix(0xC0FFEE);
    let keys: Vec<Session> = (0..200_000).map(|_| session(m.next() % n)).collect();
    let mut times = Vec::with_capacity(keys.len());
    let started = Instant::now();
    for s in &keys {
        let t = Instant::now();
        let live = store
            .is_live(black_box(&s.user_id), black_box(&s.id), NOW)
            .now_or_never()
            .expect("the memory store never waits")
            .expect("lookup");
        times.push(t.elapsed());
        assert!(live, "session {} is not live", s.id);
    }
    let mean = started.elapsed().as_nanos() as f64 / keys.len() as f64;
    times.sort();
    println!(
        "{n}\t{per_session:.0}\t{mean:.0}\t{:.0}\t{:.0}",
        percentile(&times, 50.0),
        percentile(&times, 99.0)
    );
}

fn redis_store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect(&RedisSettings {
        urls: vec![url.to_owned()],
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_secs(5),
        session_cache: Duration::ZERO,
        seed_users: false,
    })
    .expect("connect to redis")
}

fn used_memory(client: &redis::Client) -> u64 {
    let mut conn = client.get_connection().expect("redis connection");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut conn)
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Create `sessions` through the store, `concurrency` at a time.
async fn create_all(store: &RedisStore, sessions: impl Iterator<Item = Session>) {
    stream::iter(sessions)
        .for_each_concurrent(256, |s| async move {
            store.create(s).await.expect("create session in redis");
        })
        .await;
}

/// `redis URL PREFIX N`: N sessions through `RedisStore` (each one a session key and a member of
/// its user's set). Prints `N  used_memory_bytes_per_session  lookup_mean_us  lookup_p50_us
/// lookup_p99_us` (a lookup is one round trip: GET and JSON decoding, no local cache).
fn redis_sessions(url: &str, prefix: &str, n: u64) {
    let client = redis::Client::open(url).expect("redis url");
    let store = redis_store(url, prefix);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let before = used_memory(&client);
    rt.block_on(create_all(&store, (0..n).map(session)));
    let per_session = (used_memory(&client).saturating_sub(before)) as f64 / n as f64;
    let mut m = Mix(0xC0FFEE);
    let keys: Vec<Session> = (0..20_000).map(|_| session(m.next() % n)).collect();
    let mut times = Vec::with_capacity(keys.len());
    rt.block_on(async {
        for s in &keys {
            let t = Instant::now();
            let live = store.is_live(&s.user_id, &s.id, NOW).await.expect("lookup");
            times.push(t.elapsed());
            assert!(live, "session {} is not live", s.id);
        }
    });
    let mean = times.iter().sum::<Duration>().as_nanos() as f64 / times.len() as f64;
    times.sort();
    println!(
        "{n}\t{per_session:.0}\t{:.1}\t{:.1}\t{:.1}",
        mean / 1000.0,
        percentile(&times, 50.0) / 1000.0,
        percentile(&times, 99.0) / 1000.0
    );
}

/// The claims of a token (its payload, not checked: it only serves as a pattern).
fn claims_of(token: &str) -> Claims {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&json).expect("claims")
}

/// Token `i` like `pattern`, for session `session_id`: only `iat` differs between two tokens of
/// one session, so each has its own text (and its own slot in the verified-token cache).
fn token_like(keys: &JwtKeys, pattern: &Claims, session_id: &str, i: u64) -> String {
    let claims = Claims {
        session_id: session_id.to_owned(),
        iat: pattern.iat - i as i64,
        ..pattern.clone()
    };
    keys.issue(&claims).expect("issue")
}

/// `token-cache N...`: for each N, N distinct valid tokens go through `JwtKeys::verify` (the
/// gateway's verification with its 100k-entry TinyUFO cache), first in random order, then in a
/// fixed cycle. A call is a hit when it returns the very `Verified` the previous call for that
/// token returned (a miss verifies again and makes a new one; the previous one is still held
/// here, so its address cannot be reused). Prints per N and order: `N  order  hit_rate
/// mean_ns_per_verify`, then a line `full  ns` with the cost of a verification without the cache.
fn token_cache(sizes: &[u64]) {
    let now = NOW;
    let pattern = Claims {
        user_id: "6430736fd62d650040420674".into(),
        email: "john.doe@mydomain.com".into(),
        customer_id: "cus_Nxxxxxx".into(),
        account_type: authgate::model::AccountType::User,
        session_id: "374c1f0d2bce576df42b980b35a6b4e8".into(),
        iat: now,
        exp: EXPIRES_AT,
        session_start: Some(now),
    };
    for &n in sizes {
        for order in ["random", "cycle"] {
            let keys = JwtKeys::new(b"scale-secret-scale-secret-scale-secret");
            let tokens: Vec<String> = (0..n)
                .map(|i| token_like(&keys, &pattern, &pattern.session_id, i))
                .collect();
            let mut last: Vec<Option<Arc<Verified>>> = vec![None; tokens.len()];
            let mut m = Mix(n);
            let calls = (3 * n).max(300_000);
            let mut pick = |k: u64| -> usize {
                if order == "random" {
                    (m.next() % n) as usize
                } else {
                    (k % n) as usize
                }
            };
            // Warm up: every token seen (and the cache in its steady state).
            let mut hits = 0u64;
            let mut run = |hits: &mut u64, k: u64| {
                let i = pick(k);
                let verified = keys.verify(&tokens[i], now).expect("valid");
                *hits += u64::from(last[i].as_ref().is_some_and(|p| Arc::ptr_eq(p, &verified)));
                last[i] = Some(verified);
            };
            for k in 0..calls {
                run(&mut hits, k);
            }
            hits = 0;
            let started = Instant::now();
            for k in 0..calls {
                run(&mut hits, k);
            }
            let took = started.elapsed();
            println!(
                "{n}\t{order}\t{:.3}\t{:.0}",
                hits as f64 / calls as f64,
                took.as_nanos() as f64 / calls as f64
            );
        }
    }
    let probe = JwtKeys::new(b"scale-secret-scale-secret-scale-secret");
    let sample: Vec<String> = (0..20_000)
        .map(|i| token_like(&probe, &pattern, &pattern.session_id, i))
        .collect();
    let started = Instant::now();
    for s in &sample {
        black_box(probe.verify_uncached(s, now).expect("valid"));
    }
    println!(
        "full\t{:.0}",
        started.elapsed().as_nanos() as f64 / sample.len() as f64
    );
}

/// `tokens SECRET TOKEN N OUT`: N distinct tokens with TOKEN's claims (its session) but for
/// their `iat`, signed with SECRET, one a line in OUT.
fn tokens(secret: &str, token: &str, n: u64, out: &str) {
    let keys = JwtKeys::new(secret.as_bytes());
    let pattern = claims_of(token);
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&token_like(&keys, &pattern, &pattern.session_id, i));
        text.push('\n');
    }
    std::fs::write(out, text).expect("write tokens");
    println!("{n}");
}

/// `redis-sessions URL PREFIX SECRET TOKEN N OUT`: N sessions of TOKEN's user created in Redis
/// (under PREFIX, the gateway's key prefix), and one token for each in OUT.
fn redis_sessions_for(url: &str, prefix: &str, secret: &str, token: &str, n: u64, out: &str) {
    let keys = JwtKeys::new(secret.as_bytes());
    let pattern = claims_of(token);
    let store = redis_store(url, prefix);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sessions: Vec<Session> = (0..n)
        .map(|i| Session {
            user_id: pattern.user_id.clone(),
            ..session(i)
        })
        .collect();
    let mut text = String::new();
    for s in &sessions {
        text.push_str(&token_like(&keys, &pattern, &s.id, 0));
        text.push('\n');
    }
    rt.block_on(create_all(&store, sessions.into_iter()));
    std::fs::write(out, text).expect("write tokens");
    println!("{n}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map_or("", String::as_str) };
    let num = |i: usize| -> u64 { arg(i).parse().expect("a number") };
    match arg(0) {
        "memory" => memory(num(1)),
        "redis" => redis_sessions(arg(1), arg(2), num(3)),
        "token-cache" => {
            let sizes: Vec<u64> = (1..args.len()).map(num).collect();
            token_cache(&sizes);
        }
        "tokens" => tokens(arg(1), arg(2), num(3), arg(4)),
        "redis-sessions" => {
            redis_sessions_for(arg(1), arg(2), arg(3), arg(4), num(5), arg(6));
        }
        _ => {
            eprintln!("usage: see the top of examples/scale.rs");
            std::process::exit(2);
        }
    }
}
