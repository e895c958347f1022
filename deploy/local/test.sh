#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, bring the stack up, then
# `cargo test --workspace` (unit tests and the end-to-end tests against the real broker and
# ClickHouse).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/deploy/local/install.sh"
"$REPO_ROOT/deploy/local/up.sh"
say "running cargo test --workspace"
cargo test --workspace "$@"
