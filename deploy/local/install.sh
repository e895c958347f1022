#!/usr/bin/env bash
# Installs what the local stack needs when it is missing: Debian's clickhouse-server and
# clickhouse-client, and the tansu broker (crates.io, with the storage features secpipe uses).
# Idempotent: installed pieces are skipped.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null; then
    say "ClickHouse already installed: $(clickhouse-client --version 2>/dev/null | head -n1)"
else
    command -v apt-get >/dev/null || die "apt-get not found: install clickhouse-server and clickhouse-client by hand"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing clickhouse-server and clickhouse-client from Debian"
    $SUDO apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clickhouse-server clickhouse-client curl >/dev/null \
        || die "apt-get install clickhouse-server clickhouse-client failed"
fi
command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
# librdkafka is built with OpenSSL (TLS and SASL/SCRAM to secured brokers).
if ! pkg-config --exists openssl 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing libssl-dev and pkg-config (librdkafka's TLS and SCRAM)"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libssl-dev pkg-config >/dev/null \
        || die "apt-get install libssl-dev pkg-config failed"
fi
# Headless Chromium for the admin page's browser test (tests/admin_page_e2e.rs).
if command -v chromium >/dev/null; then
    say "Chromium already installed: $(chromium --version 2>/dev/null | head -n1)"
else
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing Debian's chromium (the admin page's browser test)"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
        || die "apt-get install chromium failed"
fi

if command -v tansu >/dev/null && cargo install --list | grep -q "^tansu v$TANSU_VERSION:"; then
    say "tansu $TANSU_VERSION already installed"
else
    say "building tansu $TANSU_VERSION from crates.io (about 15-25 minutes on 2 cores)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql \
        || die "cargo install tansu $TANSU_VERSION failed"
fi
