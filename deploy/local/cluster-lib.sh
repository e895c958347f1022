# The local ClickHouse cluster of the cluster tests (deploy/local/cluster-up.sh): ports and folders,
# apart from the single server of the local stack (8123/9000), which it never touches.
# Overridable through the environment; tests/clickhouse_cluster_e2e.rs reads the same variables.
CLUSTER_DIR="${SECPIPE_CLUSTER_DIR:-$REPO_ROOT/.secpipe/cluster}"
CLUSTER_NAME="${SECPIPE_CLUSTER_NAME:-secpipe_local}"
ZK_PORT="${SECPIPE_CLUSTER_ZK_PORT:-12181}"
# Two shards: shard 1 on nodes 1 and 2 (two replicas), shard 2 on node 3. Node i listens on
# HTTP 18122+i, TCP 18999+i, interserver 19099+i.
CLUSTER_NODES=(1 2 3)
node_shard() { if [ "$1" -le 2 ]; then echo 1; else echo 2; fi; }
node_http_port() { echo $((18122 + $1)); }
node_tcp_port() { echo $((18999 + $1)); }
node_interserver_port() { echo $((19099 + $1)); }

# Serving, not only running: `ruok` says imok while ZooKeeper still loads its database, and a
# ClickHouse node started then cannot load its replicated tables and exits. `srvr` names the
# mode only once requests are served.
zk_ok() {
    local reply
    reply="$( (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf srvr >&3 && timeout 2 cat <&3) 2>/dev/null)" || return 1
    [[ "$reply" == *"Mode: "* ]]
}
node_ok() { curl -fsS --max-time 2 "http://127.0.0.1:$(node_http_port "$1")/ping" >/dev/null 2>&1; }
node_query() { curl -fsS --max-time 5 "http://127.0.0.1:$(node_http_port "$1")/" --data-binary "$2" 2>/dev/null; }
# A node is ready for the tests when it answers, its ZooKeeper session works, and every
# replicated table has started replicating: after a kill -9 a restarted node waits for its old
# session to expire (session_timeout_ms) and is read-only until then.
node_ready() {
    node_ok "$1" \
        && [ "$(node_query "$1" "SELECT count() FROM system.zookeeper WHERE path = '/'")" -gt 0 ] 2>/dev/null \
        && [ "$(node_query "$1" "SELECT count() FROM system.replicas WHERE is_readonly OR is_session_expired")" = 0 ]
}
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
