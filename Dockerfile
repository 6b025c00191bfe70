# Panicle server image: `docker compose up` builds it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p panicle-cli && cp target/release/panicle /usr/local/bin/panicle

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/panicle panicle \
    && mkdir -p /var/lib/panicle && chown panicle /var/lib/panicle
COPY --from=build /usr/local/bin/panicle /usr/local/bin/panicle
USER panicle
WORKDIR /var/lib/panicle
ENV PANICLE_LISTEN=0.0.0.0:8471
EXPOSE 8471
ENTRYPOINT ["panicle"]
CMD ["serve"]
