//! The floor under any Pingora gateway: a pass-through proxy with no filters at all, stock
//! Pingora (its default modules, the system allocator), one worker thread.
//! Used by `benches/load/run.sh`.
//!
//! cargo run --release -p bare-pingora -- 127.0.0.1:6190 127.0.0.1:3000
//! curl http://127.0.0.1:6190/

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct PassThrough {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for PassThrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:6190".into());
    let upstream = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3000".into())
        .parse()
        .expect("upstream must be ip:port");
    let pid = std::process::id();
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: format!("/tmp/bare-pingora-{pid}.pid"),
        upgrade_sock: format!("/tmp/bare-pingora-{pid}.sock"),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, PassThrough { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
