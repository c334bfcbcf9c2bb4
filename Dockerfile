# syntax=docker/dockerfile:1
#
# The mlrollout operator image: a static (musl) binary on distroless, running as UID 65532.
#
#   docker build -t mlrollout:0.1.0 .
#   kind load docker-image mlrollout:0.1.0        # or push it and set image.repository
#
# The same binary is the kubectl plugin (`kubectl-mlrollout`); ENTRYPOINT + CMD run the operator,
# and the Helm chart passes `run ...` as args.

ARG RUST_VERSION=1.92

# ---------------------------------------------------------------- build
FROM rust:${RUST_VERSION}-alpine AS builder
# ring (rustls' crypto) compiles C and assembly; musl-dev brings the static C library.
RUN apk add --no-cache musl-dev gcc
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Declared in Cargo.toml ([[bench]]), so cargo needs the file to load the manifest.
COPY benches ./benches
# On Alpine the host target is x86_64/aarch64-unknown-linux-musl, which links statically.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# Cached registry and target directory (BuildKit); the binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mlrollout \
    && cp target/release/mlrollout /mlrollout

# ---------------------------------------------------------------- runtime
# distroless/static: CA certificates, /etc/passwd with nonroot (65532), tzdata; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="mlrollout" \
      org.opencontainers.image.description="Kubernetes operator that keeps machine-learning models healthy after they ship" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder --chown=0:0 --chmod=0555 /mlrollout /mlrollout
USER 65532:65532
# distroless/static has no libc and no shell: this exec-form RUN fails the build unless the
# binary is static.
RUN ["/mlrollout", "--version"]
EXPOSE 8080
ENTRYPOINT ["/mlrollout"]
CMD ["run"]
