# Shared by the deploy/local scripts: paths, messages, and the stack's settings, which come from
# the same configuration as the pipeline (`secpipe stack env`: defaults, SECPIPE_CONFIG file,
# SECPIPE__* variables).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m[secpipe]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[secpipe] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

TANSU_VERSION=0.6.0

# Builds the secpipe binary (debug profile, shared with `cargo test`) and loads the stack settings.
load_settings() {
    cargo build --quiet --bin secpipe || die "cargo build of secpipe failed (see above)"
    SECPIPE_BIN="$REPO_ROOT/target/debug/secpipe"
    local env_out
    env_out="$("$SECPIPE_BIN" stack env)" || die "secpipe stack env: configuration is invalid (see above)"
    eval "$env_out"
    case "$SECPIPE_STATE_DIR" in /*) ;; *) SECPIPE_STATE_DIR="$REPO_ROOT/$SECPIPE_STATE_DIR" ;; esac
    mkdir -p "$SECPIPE_STATE_DIR/logs"
}

ch_http_ok() { curl -fsS --max-time 2 "http://$SECPIPE_CH_HOST:$SECPIPE_CH_HTTP_PORT/ping" >/dev/null 2>&1; }
broker_ok() { (exec 3<>"/dev/tcp/$SECPIPE_BROKER_HOST/$SECPIPE_BROKER_PORT") >/dev/null 2>&1; }

# wait_for NAME SECONDS CHECK LOGFILE
wait_for() {
    local name=$1 secs=$2 check=$3 log=$4 i
    for ((i = 0; i < secs * 10; i++)); do
        if $check; then return 0; fi
        sleep 0.1
    done
    say "last lines of $log:"
    tail -n 20 "$log" >&2 || true
    die "$name did not answer within ${secs}s"
}
