//! Session lookup and rate-limit decisions: memory store against Redis (with and without the
//! local session cache). Starts its own `redis-server` on a free port; Redis cases are skipped
//! when it is not installed.
//!
//! Run with `cargo bench --bench store`.

use std::hint::black_box;
use std::net::{IpAddr, TcpListener};
use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authgate::config::RedisSettings;
use authgate::model::Session;
use authgate::ratelimit::IpLimiter;
use authgate::store::memory::MemorySessions;
use authgate::store::redis::RedisStore;
use authgate::store::{LimitStore, SessionStore};
use criterion::{Criterion, criterion_group, criterion_main};

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<Redis> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Redis(child, port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn settings(port: u16, cache_secs: u64) -> RedisSettings {
    RedisSettings {
        urls: vec![format!("redis://127.0.0.1:{port}")],
        key_prefix: format!("bench{cache_secs}:"),
        timeout: Duration::from_millis(500),
        session_cache: Duration::from_secs(cache_secs),
        seed_users: false,
    }
}

fn session() -> Session {
    Session {
        id: "374c1f0d2bce576df42b980b35a6b4e8".into(),
        user_id: "6430736fd62d650040420674".into(),
        created_at: 1_700_000_000,
        expires_at: 4_000_000_000,
        family: authgate::model::Family::Profile,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = session();
    let now = 1_800_000_000;

    let mut g = c.benchmark_group("session-get");
    let memory = MemorySessions::default();
    rt.block_on(memory.create(s.clone())).expect("create");
    g.bench_function("memory", |b| {
        b.iter(|| rt.block_on(memory.is_live(black_box(&s.user_id), black_box(&s.id), now)))
    });

    let redis = start_redis();
    let stores = redis.as_ref().map(|r| {
        let cached = RedisStore::connect(&settings(r.1, 30)).expect("connect");
        let uncached = RedisStore::connect(&settings(r.1, 0)).expect("connect");
        (cached, uncached)
    });
    if let Some((cached, uncached)) = &stores {
        // Let the change listener subscribe, which is when the cache becomes usable.
        std::thread::sleep(Duration::from_millis(500));
        rt.block_on(cached.create(s.clone())).expect("create");
        rt.block_on(uncached.create(s.clone())).expect("create");
        g.bench_function("redis-cache-hit", |b| {
            b.iter(|| rt.block_on(cached.is_live(black_box(&s.user_id), black_box(&s.id), now)))
        });
        g.bench_function("redis-round-trip", |b| {
            b.iter(|| rt.block_on(uncached.is_live(black_box(&s.user_id), black_box(&s.id), now)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rate-limit");
    let per_minute = NonZeroU32::new(u32::MAX).expect("nonzero");
    let local = IpLimiter::per_minute(per_minute);
    let ip: IpAddr = "192.0.2.1".parse().expect("ip");
    g.bench_function("memory", |b| b.iter(|| local.check(black_box(ip)).is_ok()));
    if let Some((_, uncached)) = &stores {
        g.bench_function("redis", |b| {
            b.iter(|| rt.block_on(uncached.hit(black_box("auth:192.0.2.1"), per_minute)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
