# shipit's own image: the binary built by cargo in a Rust image, run from a small Debian image
# as a non-root user, with CA certificates (registries, AWS) and git.
#
#   DOCKER_BUILDKIT=1 docker build -t shipit .                (or docker buildx build)
#   shipit run -f pipelines/shipit.yaml --only build:shipit   (the same build, through shipit)
#
# The base images are build arguments, so a mirror, a company registry or a pinned digest can
# stand in for Docker Hub's: --build-arg RUST_IMAGE=registry.example.com/rust:1.95-slim-bookworm.
# Both must be the same Debian release, since the binary links the build image's C library.
#
# There is no `# syntax=` line on purpose: the Dockerfile frontend built into the daemon (Docker
# 20.10 and later) understands the cache mounts below, and naming a frontend image would make
# every build pull one.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# git2's HTTPS and SSH transports (the daemon's fetches) link the system's OpenSSL: its headers,
# and pkg-config to find them. libssh2 itself is compiled in from its crate.
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The crates cargo downloads and its target folder are cache mounts, kept by the daemon between
# builds: a rebuild after a change to src/ compiles shipit alone, not its 300 dependencies.
# `locked` sharing, because two cargo processes must not write one target folder at once. A cache
# mount is not part of the image, so the binary is copied out of it in the same step.
# /usr/local/cargo is CARGO_HOME in the official Rust images.
RUN --mount=type=cache,id=shipit-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=shipit-cargo-target,target=/build/target,sharing=locked \
    cargo build --release --locked \
 && cp target/release/shipit /usr/local/bin/shipit

FROM ${RUNTIME_IMAGE} AS runtime
# git for the jobs that run next to shipit in the same container; CA certificates for the TLS
# of registries, AWS and git remotes (shipit reads the system's trusted roots); OpenSSL's
# library, which the daemon's git fetches over HTTPS and SSH use.
#
# safe.directory '*': the workspace is mounted from the host and owned by another user than the
# one shipit runs as, and git (and libgit2, which shipit reads the checkout with) refuse a
# repository owned by someone else unless told it is safe. In a container that only ever works
# on the one mounted checkout, that guard protects nothing.
#
# The user is numeric (10001) so that runtimes that enforce "not root" (Kubernetes'
# runAsNonRoot) can check it without reading /etc/passwd.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git libssl3 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory '*' \
 && groupadd --gid 10001 shipit \
 && useradd --uid 10001 --gid shipit --no-log-init --create-home --home-dir /home/shipit \
      --shell /usr/sbin/nologin shipit \
 && install -d -o shipit -g shipit /workspace
COPY --from=build /usr/local/bin/shipit /usr/local/bin/shipit
# Declared after the steps above so that a new version or revision changes only the labels and
# reuses every layer. shipit's own builds add revision, source and created labels of their own.
ARG VERSION=""
ARG REVISION=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="shipit" \
      org.opencontainers.image.description="CI/CD pipeline runner: builds, pushes and deploys container images" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
# The Docker daemon: the socket mounted at /var/run/docker.sock (shipit's default when
# DOCKER_HOST is unset) with the socket's group added (`--group-add`), or DOCKER_HOST naming a
# daemon over TCP. The README's "shipit's image" section shows both.
USER 10001:10001
WORKDIR /workspace
ENTRYPOINT ["shipit"]
CMD ["--help"]
