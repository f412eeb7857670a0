//! Connections: one multiplexed connection to a single server (reconnecting by itself) or to a
//! cluster, driven on the store's own runtime so it outlives any one worker's.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::unavailable;
use crate::store::StoreError;

/// A multiplexed connection to one server (reconnecting by itself) or to a cluster.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The process-wide runtime that drives Redis connections and the change listener, apart from
/// Pingora's request runtimes.
pub(super) fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("authgate-redis")
        .enable_all()
        .build()
        .map_err(unavailable)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Whether the server at `url` runs in cluster mode. Unreachable servers count as single, so
/// the gateway can start before Redis and connect when it appears.
pub(super) async fn reports_cluster(url: &str, timeout: Duration) -> bool {
    let probe = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await?;
        Ok::<_, redis::RedisError>(info.contains("cluster_enabled:1"))
    };
    match tokio::time::timeout(timeout * 4, probe).await {
        Ok(Ok(cluster)) => cluster,
        Ok(Err(e)) => {
            tracing::warn!("redis at {url} not reachable at start ({e}); will keep trying");
            false
        }
        Err(_) => {
            tracing::warn!("redis at {url} did not answer at start; will keep trying");
            false
        }
    }
}
