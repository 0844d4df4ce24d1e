# syntax=docker/dockerfile:1
# probewatch container image: a multi-stage build (the Rust toolchain stays in
# the first stage), a Debian slim runtime with curl for the HEALTHCHECK, and a
# non-root user. See the README, "Deploy" > "Docker Compose".
#
#   docker build -t probewatch:local .
#   docker run --rm -p 19464:19464 -v /data/runs/my-run:/runs/run:ro probewatch:local
#
# The default config (/etc/probewatch/probewatch.toml, from
# deploy/compose/probewatch.toml) listens on 0.0.0.0:19464, watches /runs/run
# and keeps its history in /var/lib/probewatch. Mount your own config over it.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The workspace: the binary (src/), the library crates and the dev tooling
# crate (a member, so cargo needs its manifest; it is not built here).
COPY src ./src
COPY crates ./crates
COPY xtask ./xtask
COPY config ./config
COPY README.md ./
# --locked: the versions of Cargo.lock, as CI builds them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin probewatch \
    && install -m 0755 target/release/probewatch /probewatch

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 probewatch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/probewatch --shell /usr/sbin/nologin probewatch \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/probewatch \
    && install -d -m 0755 /etc/probewatch /runs
COPY --from=build /probewatch /usr/local/bin/probewatch
COPY deploy/compose/probewatch.toml /etc/probewatch/probewatch.toml
USER 10001:10001
WORKDIR /var/lib/probewatch
VOLUME ["/var/lib/probewatch"]
EXPOSE 19464
# Liveness of the HTTP listener. With TLS in a web config, override it, e.g.
#   --health-cmd 'curl -fsSk https://127.0.0.1:19464/healthz'
# (/healthz and /readyz need no basic-auth password).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:19464/healthz"]
ENTRYPOINT ["/usr/local/bin/probewatch"]
CMD ["watch", "--config", "/etc/probewatch/probewatch.toml", "--log-format", "json"]
