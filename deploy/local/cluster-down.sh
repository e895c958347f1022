#!/usr/bin/env bash
# Stops the processes cluster-up.sh started (the ClickHouse nodes, then ZooKeeper), by their pid
# files. Data stays under .secpipe/cluster/; the local stack's single server is not touched.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/deploy/local/cluster-lib.sh"
stop() {
    local name=$1 pidfile=$2 pid
    if pid_alive "$pidfile"; then
        pid=$(cat "$pidfile")
        say "stopping $name (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { say "$name did not stop in 15 s; killing"; kill -9 "$pid"; }
    else
        say "$name is not running (from this checkout)"
    fi
    rm -f "$pidfile"
}
for n in "${CLUSTER_NODES[@]}"; do stop "ClickHouse node $n" "$CLUSTER_DIR/node$n.pid"; done
stop ZooKeeper "$CLUSTER_DIR/zookeeper.pid"
