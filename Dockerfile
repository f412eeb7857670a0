# Build: docker build -t authgate .
# Run:   docker run -p 8080:8080 -e JWT_SECRET=... -v $PWD/conf:/etc/authgate authgate
#        (with [server.tls]: -p 8443:8443 -v /etc/letsencrypt:/etc/letsencrypt:ro)
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY conf ./conf
COPY benches ./benches
RUN cargo build --release --locked --bin authgate

FROM debian:bookworm-slim
# The system roots, for upstreams reached over TLS without a ca_file.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 authgate
COPY --from=build /src/target/release/authgate /usr/local/bin/authgate
COPY conf /etc/authgate
RUN sed -i 's#users_file = "conf/users.toml"#users_file = "/etc/authgate/users.toml"#' /etc/authgate/authgate.toml \
 && chown -R authgate /etc/authgate
USER authgate
EXPOSE 8080 8443 9090
ENTRYPOINT ["/usr/local/bin/authgate", "--config", "/etc/authgate/authgate.toml"]
