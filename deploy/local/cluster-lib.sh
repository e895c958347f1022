# The local ClickHouse cluster of the cluster tests (deploy/local/cluster-up.sh): ports and folders,
# apart from the single server of the local stack (8123/9000), which it never touches.
# Overridable through the environment; tests/clickhouse_cluster_e2e.rs reads the same variables.
CLUSTER_DIR="${SECPIPE_CLUSTER_DIR:-$REPO_ROOT/.secpipe/cluster}"
CLUSTER_NAME="${SECPIPE_CLUSTER_NAME:-secpipe_local}"
ZK_PORT="${SECPIPE_CLUSTER_ZK_PORT:-12181}"
# One shard, two replicas: node i listens on HTTP 18123+i, TCP 19000+i, interserver 19100+i.
CLUSTER_NODES=(1 2)
node_http_port() { echo $((18122 + $1)); }
node_tcp_port() { echo $((18999 + $1)); }
node_interserver_port() { echo $((19099 + $1)); }

zk_ok() {
    local reply
    reply="$( (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null)" || return 1
    [ "$reply" = imok ]
}
node_ok() { curl -fsS --max-time 2 "http://127.0.0.1:$(node_http_port "$1")/ping" >/dev/null 2>&1; }
# A node is ready for the tests when it answers and its ZooKeeper session works.
node_ready() {
    node_ok "$1" && [ "$(curl -fsS --max-time 5 "http://127.0.0.1:$(node_http_port "$1")/" \
        --data-binary "SELECT count() FROM system.zookeeper WHERE path = '/'" 2>/dev/null)" -gt 0 ] 2>/dev/null
}
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
