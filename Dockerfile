# The testpool daemon image, built from this repository on top of testpool's PostgreSQL base image
# (scripts/build-base-image.sh), with no container registry: the builder stage installs the
# compilers and -dev packages with apt from the Debian mirror the base image was bootstrapped from
# (its /etc/apt/sources.list), so the build needs the host's network:
#
#   ./scripts/build-base-image.sh
#   docker build --network host -t testpool/daemon:dev .
#
# (docker-compose.yml does the same with `build: {network: host}`.) The final image is the base
# image plus one binary: the PostgreSQL client tools stay at hand, and the same libraries the
# binary was linked against are the ones it runs with.
ARG BASE_IMAGE=testpool/base:pg15-bookworm

FROM ${BASE_IMAGE} AS builder
# The build dependencies of scripts/install-deps.sh, less the test, bench and server packages.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ make cmake pkg-config libpq-dev libboost-dev libboost-program-options-dev \
      libboost-filesystem-dev libcpp-httplib-dev nlohmann-json3-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the daemon is built from (tests and benches are switched off below), so an edit
# elsewhere in the tree does not rebuild the image.
COPY CMakeLists.txt ./
COPY orchestrator ./orchestrator
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTESTPOOL_BUILD_TESTS=OFF -DTESTPOOL_BUILD_BENCH=OFF -DTESTPOOL_BUILD_CLIENTS=OFF \
 && cmake --build build --target testpool -j2 \
 && install -s -m 755 build/testpool /usr/local/bin/testpool \
 && testpool --version

FROM ${BASE_IMAGE}
COPY --from=builder /usr/local/bin/testpool /usr/local/bin/testpool
ENTRYPOINT ["testpool"]
CMD ["--help"]
