# The gantry operator image: one static binary on distroless, non-root.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/gantry-dev/gantry:0.1.0 --push .
#
# ghcr.io/gantry-dev/gantry is the default image of chart/gantry. The build is
# reproducible: the lock file is used as is (--locked), paths are remapped,
# and SOURCE_DATE_EPOCH pins timestamps. Without a container engine, the same
# binary comes from `cargo build --profile dist --locked --target <arch>-unknown-linux-musl
# -p gantry --bin gantry` with the same RUSTFLAGS (profile `dist`: the
# release profile with fat LTO, see Cargo.toml).

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl > /target ;; \
      arm64) echo aarch64-unknown-linux-musl > /target ;; \
      *) echo "unsupported architecture $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && rustup target add "$(cat /target)" \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && if [ "$TARGETARCH" = arm64 ]; then apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu; fi \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV SOURCE_DATE_EPOCH=0 \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
    RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=/src=. --remap-path-prefix=/usr/local/cargo=cargo"
RUN cargo build --profile dist --locked --target "$(cat /target)" -p gantry --bin gantry \
 && cp "target/$(cat /target)/dist/gantry" /gantry

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="gantry" \
      org.opencontainers.image.description="Hosted Kubernetes control planes for private clouds" \
      org.opencontainers.image.source="https://github.com/gantry-dev/gantry" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /gantry /gantry
USER 65532:65532
ENTRYPOINT ["/gantry"]
CMD ["run", "--leader-elect"]
