# The image the GitLab CI component runs imgbuild in. Build it into your own
# registry (see README, "GitLab CI"):
#   docker build -t registry.example.com/platform/imgbuild:1 .
#   docker build --target slim -t registry.example.com/platform/imgbuild:1-slim .
# `slim` builds AMIs only (no QEMU); the default also builds local images.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/imgbuild

# AMI builds: imgbuild, the SSH client, CA certificates, and Ansible and a
# shell for the ansible and shell-local provisioners.
FROM debian:bookworm-slim AS slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates openssh-client python3 python3-pip git \
 && pip3 install --no-cache-dir --break-system-packages 'ansible-core==2.18.12' \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/imgbuild /usr/local/bin/imgbuild
ENTRYPOINT []
CMD ["imgbuild", "--help"]

# Local builds too: QEMU and what bootstraps a Debian base.
FROM slim AS full
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils mmdebstrap e2fsprogs fdisk genisoimage zstd sudo \
 && rm -rf /var/lib/apt/lists/*
