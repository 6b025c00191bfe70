# Panicle server image: `docker compose up` builds it.
# Two stages: the Rust toolchain builds `panicle`; the image that runs holds
# only the binary (the dashboard, rules and migrations are compiled into it).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p panicle-cli \
    && cp target/release/panicle /usr/local/bin/panicle

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/panicle panicle \
    && mkdir -p /var/lib/panicle/debug-files && chown -R panicle /var/lib/panicle
COPY --from=build /usr/local/bin/panicle /usr/local/bin/panicle
USER panicle
WORKDIR /var/lib/panicle
ENV PANICLE_LISTEN=0.0.0.0:8471
EXPOSE 8471
# Ready means the database answers (`/readyz`), not only that the process
# runs. bash's /dev/tcp needs no curl in the image; the port follows
# PANICLE_LISTEN.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/${PANICLE_LISTEN##*:} && printf "GET /readyz HTTP/1.0\r\n\r\n" >&3 && head -n 1 <&3 | grep -q " 200 "'
ENTRYPOINT ["panicle"]
CMD ["serve"]
