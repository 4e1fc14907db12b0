# pipemedic's container image.
#
#   docker build -t pipemedic .
#   docker run --rm -p 8080:8080 --env-file deploy/pipemedic.env pipemedic
#
# The runtime image runs `pipemedic serve` as an unprivileged user (uid
# 10001) and needs no writable path but /var/lib/pipemedic (the SQLite
# store, when no PostgreSQL URL is given) and /tmp, so it runs with a
# read-only root filesystem. Playbooks and prompts live under
# /etc/pipemedic; mount your own over them, or point
# PIPEMEDIC_PLANNER__PLAYBOOKS_DIR / __PROMPTS_DIR elsewhere.
#
# Build arguments:
#   RUST_IMAGE     the toolchain image of the build stage
#   RUNTIME_IMAGE  a Debian bookworm image for the runtime stage (glibc and
#                  apt; the binary is linked against bookworm's glibc)
#   BINARY_FROM    "build" (default) compiles here with `cargo build
#                  --release --locked`; "prebuilt" takes the binary from
#                  prebuilt/pipemedic in the build context instead (CI
#                  hands over the release build it already has)

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
ARG BINARY_FROM=build

# ---- build: the release binary from the locked dependency set ----------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Cargo reads every target the manifest names (the benches) before it
# builds one; the binary itself embeds playbooks, prompts, migrations and
# the parsers' seed fixtures.
COPY benches benches
COPY src src
COPY playbooks playbooks
COPY prompts prompts
COPY tests/fixtures tests/fixtures
# The registry and the target directory are cache mounts, so a rebuild
# after a source change compiles only pipemedic itself.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pipemedic \
 && install -D -m 0755 target/release/pipemedic /out/pipemedic

# ---- prebuilt: a release binary built outside (BINARY_FROM=prebuilt) ---
FROM scratch AS prebuilt
COPY prebuilt/pipemedic /out/pipemedic

FROM ${BINARY_FROM} AS binary

# ---- runtime -------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pipemedic \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pipemedic \
      --no-create-home --shell /usr/sbin/nologin pipemedic \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/pipemedic
COPY --from=binary /out/pipemedic /usr/local/bin/pipemedic
COPY playbooks /etc/pipemedic/playbooks
COPY prompts /etc/pipemedic/prompts
# Every path the process uses is absolute, so the working directory never
# has to be writable. Listening on all interfaces requires every ingest
# secret to be set: `serve` refuses to start otherwise and says which.
ENV PIPEMEDIC_SERVER__LISTEN=0.0.0.0:8080 \
    PIPEMEDIC_STORE__URL=sqlite:///var/lib/pipemedic/pipemedic.db \
    PIPEMEDIC_PLANNER__PLAYBOOKS_DIR=/etc/pipemedic/playbooks \
    PIPEMEDIC_PLANNER__PROMPTS_DIR=/etc/pipemedic/prompts \
    HOME=/var/lib/pipemedic
WORKDIR /var/lib/pipemedic
VOLUME ["/var/lib/pipemedic"]
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pipemedic"]
CMD ["serve"]
