#!/usr/bin/env bash
# Starts the local ClickHouse cluster of the cluster tests: one ZooKeeper (Debian's `zookeeper`
# package, installed when missing, run directly with java, not as a system service) and three
# clickhouse-server processes forming cluster `secpipe_local` (two shards: one of two replicas,
# one of a single replica), each on
# its own ports with its own config and data under .secpipe/cluster/. The local stack's single
# server (8123/9000) is left alone. Idempotent: what already answers is left running.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/deploy/local/cluster-lib.sh"
command -v clickhouse-server >/dev/null || die "clickhouse-server not installed: run deploy/local/install.sh"
mkdir -p "$CLUSTER_DIR/logs"
started=$(date +%s)

ZK_JAR=/usr/share/java/zookeeper.jar
if [ ! -f "$ZK_JAR" ]; then
    command -v apt-get >/dev/null || die "apt-get not found: install Debian's zookeeper package by hand"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing Debian's zookeeper package"
    $SUDO apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq zookeeper >/dev/null \
        || die "apt-get install zookeeper failed"
fi
command -v java >/dev/null || die "java not found (ZooKeeper needs a JRE: apt-get install openjdk-17-jre-headless)"

ZK_DIR="$CLUSTER_DIR/zookeeper"
if zk_ok; then
    say "ZooKeeper already answers on 127.0.0.1:$ZK_PORT"
else
    pid_alive "$CLUSTER_DIR/zookeeper.pid" && die "ZooKeeper (pid $(cat "$CLUSTER_DIR/zookeeper.pid")) runs but does not answer on $ZK_PORT"
    mkdir -p "$ZK_DIR/data"
    cat >"$ZK_DIR/zoo.cfg" <<CFG
tickTime=2000
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CFG
    cat >"$ZK_DIR/log4j.properties" <<CFG
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$CLUSTER_DIR/logs/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n
CFG
    say "starting ZooKeeper (data in $ZK_DIR, 127.0.0.1:$ZK_PORT)"
    nohup java -Xmx256m -Dlog4j.configuration="file:$ZK_DIR/log4j.properties" \
        -Dzookeeper.log.dir="$CLUSTER_DIR/logs" \
        -cp "$ZK_JAR:/usr/share/java/log4j-1.2.jar:/usr/share/java/slf4j-log4j12.jar" \
        org.apache.zookeeper.server.ZooKeeperServerMain "$ZK_DIR/zoo.cfg" \
        >"$CLUSTER_DIR/logs/zookeeper.stdout" 2>&1 &
    echo $! >"$CLUSTER_DIR/zookeeper.pid"
    wait_for ZooKeeper 60 zk_ok "$CLUSTER_DIR/logs/zookeeper.stdout"
fi

shards=""
for shard in 1 2; do
    shards+="
            <shard>
                <internal_replication>true</internal_replication>"
    for n in "${CLUSTER_NODES[@]}"; do
        [ "$(node_shard "$n")" = "$shard" ] || continue
        shards+="
                <replica><host>127.0.0.1</host><port>$(node_tcp_port "$n")</port></replica>"
    done
    shards+="
            </shard>"
done

for n in "${CLUSTER_NODES[@]}"; do
    dir="$CLUSTER_DIR/node$n"
    if node_ok "$n"; then
        say "ClickHouse node $n already answers on 127.0.0.1:$(node_http_port "$n")"
        continue
    fi
    pid_alive "$dir.pid" && die "ClickHouse node $n (pid $(cat "$dir.pid")) runs but does not answer"
    mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
    cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$CLUSTER_DIR/logs/node$n.log</log>
        <errorlog>$CLUSTER_DIR/logs/node$n.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$(node_http_port "$n")</http_port>
    <tcp_port>$(node_tcp_port "$n")</tcp_port>
    <interserver_http_port>$(node_interserver_port "$n")</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <remote_servers>
        <$CLUSTER_NAME>$shards
        </$CLUSTER_NAME>
    </remote_servers>
    <zookeeper>
        <node><host>127.0.0.1</host><port>$ZK_PORT</port></node>
        <!-- Short: a node killed with -9 and restarted waits this long for its old session. -->
        <session_timeout_ms>6000</session_timeout_ms>
    </zookeeper>
    <macros>
        <shard>0$(node_shard "$n")</shard>
        <replica>node$n</replica>
    </macros>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
</yandex>
XML
    say "starting ClickHouse node $n (data in $dir, HTTP 127.0.0.1:$(node_http_port "$n"), TCP $(node_tcp_port "$n"))"
    nohup clickhouse-server --config-file="$dir/config.xml" >"$CLUSTER_DIR/logs/node$n.stdout" 2>&1 &
    echo $! >"$dir.pid"
done
for n in "${CLUSTER_NODES[@]}"; do
    check() { node_ready "$n"; }
    wait_for "ClickHouse node $n" 90 check "$CLUSTER_DIR/logs/node$n.err.log"
done
say "cluster $CLUSTER_NAME is up in $(($(date +%s) - started)) s: ZooKeeper 127.0.0.1:$ZK_PORT, nodes on HTTP $(for n in "${CLUSTER_NODES[@]}"; do printf '%s ' "$(node_http_port "$n")"; done)"
