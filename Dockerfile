# ipfrs-store and ipfrs-bench in a container. Docker's default seccomp profile refuses
# io_uring; the engine's default I/O driver (`auto`) then runs on its fallback driver (plain
# system calls, same on-disk format), so the image needs no extra privilege or flag.
#
#   docker build -t ipfrs .
#   docker run --rm -v ipfrs-data:/data ipfrs init
#   docker run --rm -v ipfrs-data:/data ipfrs repo stat
#   docker run --rm --entrypoint ipfrs-bench ipfrs -w ingest,get --blocks 2000 --dir /data

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ipfrs-tools --bin ipfrs-store --bin ipfrs-bench

FROM debian:bookworm-slim
COPY --from=build /src/target/release/ipfrs-store /src/target/release/ipfrs-bench /usr/local/bin/
# The repository lives on a volume: a container's own layer is overlayfs, which refuses
# O_DIRECT on some kernels and is lost with the container.
VOLUME /data
ENV IPFRS_STORE_REPO=/data
ENTRYPOINT ["ipfrs-store"]
CMD ["--help"]
