//! The per-request cost of finding and verifying a token, for each location, and of adding
//! the identity headers to the forwarded request, and of normalising its path.
//!
//! Run with `cargo bench --bench token`.

use std::hint::black_box;

use authgate::config::UnderscoreHeaders;
use authgate::model::AccountType;
use authgate::path::normalize_request;
use authgate::token::{Claims, JwtKeys, body_token, header_or_query_token};
use authgate::upstream::{set_forwarding_headers, set_identity_headers};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use pingora::http::RequestHeader;

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

fn token(keys: &JwtKeys) -> String {
    keys.issue(&Claims {
        user_id: "6430736fd62d650040420674".into(),
        email: "john.doe@mydomain.com".into(),
        customer_id: "cus_Nxxxxxx".into(),
        account_type: AccountType::User,
        session_id: "374c1f0d2bce576df42b980b35a6b4e8".into(),
        iat: 1_700_000_000,
        exp: 4_000_000_000,
        session_start: None,
    })
    .expect("sign")
}

fn request(uri: &str, headers: &[(&'static str, String)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", uri.as_bytes(), None).expect("request");
    for (k, v) in headers {
        r.append_header(*k, v.as_str()).expect("header");
    }
    r.append_header("user-agent", "bench/1.0").expect("header");
    r.append_header("accept", "application/json")
        .expect("header");
    r
}

fn bench(c: &mut Criterion) {
    let keys = JwtKeys::new(SECRET);
    let t = token(&keys);
    let now = 1_800_000_000;

    let header = request("/api/cases", &[("x-access-token", t.clone())]);
    let bearer = request("/api/cases", &[("authorization", format!("Bearer {t}"))]);
    let query = request(&format!("/api/cases?page=2&token={t}"), &[]);
    let none = request("/api/cases?page=2", &[]);
    let body = format!("{{\"token\":\"{t}\",\"title\":\"A case\",\"tags\":[\"a\",\"b\"]}}");

    let mut g = c.benchmark_group("extract");
    g.bench_function("x-access-token", |b| {
        b.iter(|| header_or_query_token(black_box(&header)).map(|(_, t)| t.len()))
    });
    g.bench_function("bearer", |b| {
        b.iter(|| header_or_query_token(black_box(&bearer)).map(|(_, t)| t.len()))
    });
    g.bench_function("query", |b| {
        b.iter(|| header_or_query_token(black_box(&query)).map(|(_, t)| t.len()))
    });
    g.bench_function("absent", |b| {
        b.iter(|| header_or_query_token(black_box(&none)).is_none())
    });
    g.bench_function("json-body", |b| {
        b.iter(|| body_token(black_box(body.as_bytes())))
    });
    g.finish();

    let mut g = c.benchmark_group("verify");
    g.bench_function("hs256", |b| {
        b.iter(|| keys.verify_uncached(black_box(&t), now).is_ok())
    });
    g.bench_function("hs256-cached", |b| {
        b.iter(|| keys.verify(black_box(&t), now).is_ok())
    });
    g.bench_function("hs256-bad-signature", |b| {
        let other = JwtKeys::new(b"another-secret-another-secret-another!!");
        b.iter(|| other.verify_uncached(black_box(&t), now).is_err())
    });
    g.finish();

    let mut g = c.benchmark_group("extract+verify");
    g.bench_function("x-access-token", |b| {
        b.iter(|| {
            let (_, tok) = header_or_query_token(black_box(&header)).expect("token");
            keys.verify_uncached(&tok, now).is_ok()
        })
    });
    g.bench_function("query", |b| {
        b.iter(|| {
            let (_, tok) = header_or_query_token(black_box(&query)).expect("token");
            keys.verify_uncached(&tok, now).is_ok()
        })
    });
    g.bench_function("json-body", |b| {
        b.iter(|| {
            let tok = body_token(black_box(body.as_bytes())).expect("token");
            keys.verify_uncached(&tok, now).is_ok()
        })
    });
    g.finish();

    // What the gateway adds to every forwarded request: the identity headers of the verified
    // token (after removing any the client sent), X-Forwarded-For and X-Real-IP.
    let verified = keys.verify(&t, now).expect("verified");
    let client = std::net::IpAddr::from([203, 0, 113, 7]);
    let spoofed = request("/api/cases", &[("X-User-Id", "someone-else".into())]);
    let mut g = c.benchmark_group("forward");
    for (name, req) in [
        ("identity-headers", &bearer),
        ("identity-headers-spoofed", &spoofed),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || req.clone(),
                |req| {
                    set_identity_headers(req, Some(&verified), UnderscoreHeaders::Drop)
                        .expect("identity");
                    set_forwarding_headers(req, client, false, client).expect("xff");
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    // Every request's path is normalised before routing; a plain path must stay nearly free.
    let mut g = c.benchmark_group("path");
    for (name, target) in [
        ("plain", "/api/cases/42/documents?page=2"),
        ("dot-segments", "/public/%2e%2e/api/./cases//42?page=2"),
    ] {
        let req = request(target, &[]);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || req.clone(),
                |req| normalize_request(black_box(req)).expect("normal"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
