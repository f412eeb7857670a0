//! One contract per store trait, run against the memory store and against Redis: whatever the
//! backend, sessions, challenges, trusted devices, users and limits behave the same.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{RedisServer, now};
use authgate::config::RedisSettings;
use authgate::model::{
    AccountType, Challenge, Family, IdentityLink, Org, PendingLogin, Session, Status, User,
};
use authgate::revocation::Revocations;
use authgate::store::cache::{Cache, Cached};
use authgate::store::memory::{
    MemoryLogins, MemoryMfa, MemoryRevocations, MemorySessions, MemoryUsers,
};
use authgate::store::redis::RedisStore;
use authgate::store::users_file::UsersFile;
use authgate::store::{
    Attempt, ChallengeStore, Claim, DeviceStore, LimitStore, Linked, LoginStore, RevocationStore,
    SessionStore, StoreError, UserStore,
};

/// A Redis store on a fresh `redis-server`; the server lives as long as the returned guard.
async fn redis() -> (RedisServer, RedisStore) {
    let server = RedisServer::start();
    let settings = RedisSettings {
        urls: vec![server.url()],
        key_prefix: "contract:".into(),
        timeout: Duration::from_millis(500),
        session_cache: Duration::from_secs(30),
        seed_users: false,
    };
    // Connecting blocks on the store's own runtime: not from inside this test's.
    let store = tokio::task::spawn_blocking(move || RedisStore::connect(&settings))
        .await
        .unwrap()
        .expect("connect");
    (server, store)
}

fn session(id: &str, user: &str, expires_at: i64) -> Session {
    Session {
        id: id.into(),
        user_id: user.into(),
        created_at: now(),
        expires_at,
        family: authgate::model::Family::Profile,
    }
}

async fn sessions_contract(store: &dyn SessionStore) {
    let t = now();
    store.create(session("s1", "u1", t + 60)).await.unwrap();
    store.create(session("s2", "u1", t + 60)).await.unwrap();
    store.create(session("s3", "u2", t + 60)).await.unwrap();
    assert!(store.is_live("u1", "s1", t).await.unwrap());
    assert!(
        !store.is_live("u2", "s1", t).await.unwrap(),
        "another owner's id"
    );
    assert!(!store.is_live("u1", "nope", t).await.unwrap());
    assert!(
        !store.is_live("u1", "s1", t + 60).await.unwrap(),
        "dead at expires_at"
    );
    // A session known only by its id (the admin API) is found with its owner.
    assert_eq!(store.owner("s1", t).await.unwrap().as_deref(), Some("u1"));
    assert_eq!(store.owner("s3", t).await.unwrap().as_deref(), Some("u2"));
    assert_eq!(store.owner("nope", t).await.unwrap(), None);

    assert!(store.extend("u1", "s1", t + 120, t).await.unwrap());
    assert!(store.is_live("u1", "s1", t + 90).await.unwrap());
    assert!(!store.extend("u1", "nope", t + 120, t).await.unwrap());

    assert!(
        !store.revoke("u2", "s1").await.unwrap(),
        "only the owner's session"
    );
    assert_eq!(
        store.owner("s1", t).await.unwrap().as_deref(),
        Some("u1"),
        "revoking in another user's name leaves the owner alone"
    );
    assert!(store.revoke("u1", "s1").await.unwrap());
    assert!(!store.revoke("u1", "s1").await.unwrap(), "already gone");
    assert!(!store.is_live("u1", "s1", t).await.unwrap());
    assert_eq!(store.owner("s1", t).await.unwrap(), None, "revoked");

    store.create(session("s4", "u1", t + 60)).await.unwrap();
    assert_eq!(store.revoke_user("u1", Some("s4")).await.unwrap(), 1);
    assert!(store.is_live("u1", "s4", t).await.unwrap(), "the kept one");
    assert!(!store.is_live("u1", "s2", t).await.unwrap());
    assert!(
        store.is_live("u2", "s3", t).await.unwrap(),
        "other users untouched"
    );
    assert_eq!(
        store.owner("s2", t).await.unwrap(),
        None,
        "revoked with its user"
    );
    assert_eq!(store.owner("s4", t).await.unwrap().as_deref(), Some("u1"));
    assert_eq!(store.revoke_user("u1", None).await.unwrap(), 1);
    assert!(!store.is_live("u1", "s4", t).await.unwrap());
    assert_eq!(store.owner("s4", t).await.unwrap(), None);
    assert_eq!(store.owner("s3", t).await.unwrap().as_deref(), Some("u2"));
}

async fn revocations_contract(store: &dyn RevocationStore) {
    assert_eq!(store.not_before().await.unwrap(), 0, "none at first");
    assert_eq!(store.raise_not_before(1_000).await.unwrap(), 1_000);
    assert_eq!(store.not_before().await.unwrap(), 1_000);
    assert_eq!(
        store.raise_not_before(500).await.unwrap(),
        1_000,
        "never lowered"
    );
    assert_eq!(store.not_before().await.unwrap(), 1_000);
    assert_eq!(store.raise_not_before(2_000).await.unwrap(), 2_000);
}

fn challenge(id: &str, code_hash: &str) -> Challenge {
    Challenge {
        id: id.into(),
        user_id: "u1".into(),
        code_hash: code_hash.into(),
        family: Family::Profile,
        mandatory_super: false,
        expires_at: now() + 60,
        attempts: 0,
    }
}

async fn challenges_contract(store: &dyn ChallengeStore) {
    let t = now();
    assert_eq!(
        store.attempt("none", "h", 3, t).await.unwrap(),
        Attempt::Unknown
    );
    store
        .create_challenge(challenge("c1", "right"))
        .await
        .unwrap();
    assert_eq!(
        store.attempt("c1", "wrong", 3, t).await.unwrap(),
        Attempt::Wrong { remaining: 2 }
    );
    assert_eq!(
        store.attempt("c1", "wrong", 3, t).await.unwrap(),
        Attempt::Wrong { remaining: 1 }
    );
    match store.attempt("c1", "right", 3, t).await.unwrap() {
        Attempt::Passed(c) => assert_eq!(c.user_id, "u1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.attempt("c1", "right", 3, t).await.unwrap(),
        Attempt::Unknown,
        "single use"
    );

    store
        .create_challenge(challenge("c2", "right"))
        .await
        .unwrap();
    for _ in 0..3 {
        store.attempt("c2", "wrong", 3, t).await.unwrap();
    }
    assert_eq!(
        store.attempt("c2", "right", 3, t).await.unwrap(),
        Attempt::Exhausted,
        "dead even for the right code"
    );

    store
        .create_challenge(challenge("c3", "right"))
        .await
        .unwrap();
    assert_eq!(
        store.attempt("c3", "right", 3, t + 60).await.unwrap(),
        Attempt::Unknown,
        "expired"
    );
    store
        .create_challenge(challenge("c4", "right"))
        .await
        .unwrap();
    store.delete_challenge("c4").await.unwrap();
    assert_eq!(
        store.attempt("c4", "right", 3, t).await.unwrap(),
        Attempt::Unknown
    );
}

async fn devices_contract(store: &dyn DeviceStore) {
    let t = now();
    store.trust_device("u1", "d1", t + 60).await.unwrap();
    store.trust_device("u1", "d2", t + 60).await.unwrap();
    store.trust_device("u2", "d3", t + 60).await.unwrap();
    assert!(store.is_trusted("u1", "d1", t).await.unwrap());
    assert!(
        !store.is_trusted("u2", "d1", t).await.unwrap(),
        "another user's device"
    );
    store.forget_devices("u1").await.unwrap();
    assert!(!store.is_trusted("u1", "d1", t).await.unwrap());
    assert!(!store.is_trusted("u1", "d2", t).await.unwrap());
    assert!(store.is_trusted("u2", "d3", t).await.unwrap());
}

fn org(id: &str) -> Org {
    Org {
        id: id.into(),
        name: "Org".into(),
        status: Status::Active,
        subscription_tier: "trial".into(),
        subscription_expiry: None,
        extra: Default::default(),
    }
}

fn user(id: &str, email: &str, org: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
        first_name: "A".into(),
        last_name: "B".into(),
        account_type: AccountType::Admin,
        customer_id: String::new(),
        org: org.into(),
        status: Status::Active,
        mfa_enabled: false,
        profile: Default::default(),
    }
}

async fn users_contract(store: &dyn UserStore) {
    store
        .create_user(Some(org("o1")), user("u1", "a@b.c", "o1"))
        .await
        .unwrap();
    let taken = store
        .create_user(Some(org("o2")), user("u2", "a@b.c", "o2"))
        .await;
    assert!(matches!(taken, Err(StoreError::EmailTaken)), "{taken:?}");
    assert!(store.user_by_id("u2").await.unwrap().is_none());

    let found = store.user_by_email("a@b.c").await.unwrap().unwrap();
    assert_eq!(found.id, "u1");
    assert_eq!(store.org("o1").await.unwrap().unwrap().name, "Org");
    assert!(store.user_by_email("nobody@b.c").await.unwrap().is_none());

    store
        .save_user(User {
            mfa_enabled: true,
            ..user("u1", "a@b.c", "o1")
        })
        .await
        .unwrap();
    assert!(store.user_by_id("u1").await.unwrap().unwrap().mfa_enabled);

    // A user joining an existing organization.
    store
        .create_user(None, user("u3", "c@b.c", "o1"))
        .await
        .unwrap();
    assert_eq!(
        store.user_by_email("c@b.c").await.unwrap().unwrap().org,
        "o1"
    );

    // Identity links: one user per provider account, one account per user and issuer.
    let link = |subject: &str, user: &str| IdentityLink {
        issuer: "https://idp.example".into(),
        subject: subject.into(),
        user: user.into(),
    };
    assert_eq!(
        store
            .user_id_by_identity("https://idp.example", "s1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.link_identity(link("s1", "u1")).await.unwrap(),
        Linked::Owner("u1".into())
    );
    assert_eq!(
        store
            .user_id_by_identity("https://idp.example", "s1")
            .await
            .unwrap()
            .as_deref(),
        Some("u1")
    );
    assert_eq!(
        store.link_identity(link("s1", "u3")).await.unwrap(),
        Linked::Owner("u1".into()),
        "a linked account keeps its user"
    );
    assert_eq!(
        store.link_identity(link("s2", "u1")).await.unwrap(),
        Linked::Conflict,
        "a second account at the same issuer"
    );
    assert_eq!(
        store
            .user_id_by_identity("https://idp.example", "s2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .user_id_by_identity("https://other.example", "s1")
            .await
            .unwrap(),
        None,
        "the issuer is part of the identity"
    );
}

fn pending(binding: &str, expires_at: i64) -> PendingLogin {
    PendingLogin {
        provider: "p".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        binding: binding.into(),
        expires_at,
    }
}

async fn logins_contract(store: &dyn LoginStore) {
    let t = now();
    store.put_login("k1", pending("b1", t + 60)).await.unwrap();
    assert_eq!(
        store.take_login("k1", "b2", t).await.unwrap(),
        Claim::OtherBrowser
    );
    assert_eq!(
        store.take_login("k1", "b1", t).await.unwrap(),
        Claim::Taken(pending("b1", t + 60)),
        "another browser's attempt leaves it for its own"
    );
    assert_eq!(
        store.take_login("k1", "b1", t).await.unwrap(),
        Claim::Unknown,
        "single use"
    );
    store.put_login("k2", pending("b1", t + 60)).await.unwrap();
    assert_eq!(
        store.take_login("k2", "b1", t + 60).await.unwrap(),
        Claim::Unknown,
        "expired"
    );
    assert_eq!(
        store.take_login("nope", "b1", t).await.unwrap(),
        Claim::Unknown
    );

    // Racing callbacks with the same state: exactly one wins.
    store.put_login("k3", pending("b1", t + 60)).await.unwrap();
    let (a, b) = tokio::join!(
        store.take_login("k3", "b1", t),
        store.take_login("k3", "b1", t)
    );
    let taken = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|c| matches!(c, Claim::Taken(_)))
        .count();
    assert_eq!(taken, 1);
}

async fn limits_contract(store: &dyn LimitStore) {
    let per_minute = std::num::NonZeroU32::new(3).unwrap();
    for _ in 0..3 {
        assert_eq!(store.hit("bucket:a", per_minute).await.unwrap(), None);
    }
    let wait = store.hit("bucket:a", per_minute).await.unwrap();
    assert!(wait.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_secs(20)));
    assert_eq!(store.hit("bucket:b", per_minute).await.unwrap(), None);

    let ip = "192.0.2.1".parse().unwrap();
    let window = Duration::from_secs(60);
    for _ in 0..2 {
        assert_eq!(
            store.reserve("acct", ip, [2, 2], window).await.unwrap(),
            None
        );
    }
    let wait = store.reserve("acct", ip, [2, 2], window).await.unwrap();
    assert!(
        wait.is_some_and(|w| w > Duration::from_secs(50)),
        "{wait:?}"
    );
    store.clear_failures("acct", ip).await.unwrap();
    assert_eq!(
        store.reserve("acct", ip, [2, 2], window).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn memory_sessions() {
    sessions_contract(&MemorySessions::default()).await;
}

#[tokio::test]
async fn redis_sessions() {
    let (_server, store) = redis().await;
    sessions_contract(&store).await;
}

#[tokio::test]
async fn memory_revocations() {
    revocations_contract(&MemoryRevocations(Arc::new(Revocations::default()))).await;
}

#[tokio::test]
async fn redis_revocations() {
    let (server, store) = redis().await;
    revocations_contract(&store).await;
    assert_eq!(
        server.query::<String>(&["GET", "contract:not_before"]),
        "2000",
        "kept in Redis, where every instance reads it"
    );
}

/// The owner index lives in Redis next to the session and goes with it.
#[tokio::test]
async fn redis_session_owner_index() {
    let (server, store) = redis().await;
    let t = now();
    store.create(session("s1", "u1", t + 60)).await.unwrap();
    assert_eq!(server.query::<String>(&["GET", "contract:sid:{s1}"]), "u1");
    let ttl: i64 = server.query(&["TTL", "contract:sid:{s1}"]);
    assert!((55..=60).contains(&ttl), "expires with the session: {ttl}");
    assert!(store.extend("u1", "s1", t + 600, t).await.unwrap());
    let ttl: i64 = server.query(&["TTL", "contract:sid:{s1}"]);
    assert!(
        (595..=600).contains(&ttl),
        "extended with the session: {ttl}"
    );
    store.create(session("s2", "u1", t + 60)).await.unwrap();
    assert_eq!(store.revoke_user("u1", None).await.unwrap(), 2);
    let left: Vec<String> = server.query(&["KEYS", "contract:sid:*"]);
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn memory_challenges() {
    challenges_contract(&MemoryMfa::default()).await;
}

#[tokio::test]
async fn redis_challenges() {
    let (_server, store) = redis().await;
    challenges_contract(&store).await;
}

#[tokio::test]
async fn memory_devices() {
    devices_contract(&MemoryMfa::default()).await;
}

#[tokio::test]
async fn redis_devices() {
    let (_server, store) = redis().await;
    devices_contract(&store).await;
}

#[tokio::test]
async fn memory_users() {
    users_contract(&MemoryUsers::new(UsersFile::default(), None)).await;
}

#[tokio::test]
async fn redis_users() {
    let (_server, store) = redis().await;
    users_contract(&store).await;
}

#[tokio::test]
async fn memory_logins() {
    logins_contract(&MemoryLogins::default()).await;
}

#[tokio::test]
async fn redis_logins() {
    let (_server, store) = redis().await;
    logins_contract(&store).await;
}

/// The memory backend keeps limits in process (`ratelimit`); Redis shares them.
#[tokio::test]
async fn redis_limits() {
    let (_server, store) = redis().await;
    limits_contract(&store).await;
}

/// The read cache in use (as when the change listener is subscribed), in front of a store.
fn cached<S>(store: S) -> Cached<S> {
    let cache = Arc::new(Cache::new(Duration::from_secs(30)));
    cache.reset(true);
    Cached::new(store, cache)
}

#[tokio::test]
async fn cached_redis_sessions() {
    let (_server, store) = redis().await;
    sessions_contract(&cached(store)).await;
}

#[tokio::test]
async fn cached_redis_users() {
    let (_server, store) = redis().await;
    users_contract(&cached(store)).await;
}

#[tokio::test]
async fn cached_memory_sessions() {
    sessions_contract(&cached(MemorySessions::default())).await;
}
