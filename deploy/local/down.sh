#!/usr/bin/env bash
# Stops the ClickHouse and tansu processes that up.sh started. Data stays in the state folder.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings
for svc in tansu clickhouse; do
    pidfile="$SECPIPE_STATE_DIR/$svc.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        pid=$(cat "$pidfile")
        say "stopping $svc (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { say "$svc did not stop in 10 s; killing"; kill -9 "$pid"; }
    else
        say "$svc is not running (from this checkout)"
    fi
    rm -f "$pidfile"
done
