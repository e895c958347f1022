#!/usr/bin/env bash
# Starts ClickHouse and the tansu broker for this checkout (no systemd, no Docker), waits until
# both answer, then applies ClickHouse migrations and creates the Kafka topics. Idempotent: a
# service that already answers is left alone.
#   SECPIPE__STACK__BROKER_STORAGE=memory deploy/local/up.sh   # fast, non-durable broker
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v clickhouse-server >/dev/null || die "clickhouse-server not installed: run deploy/local/install.sh"
command -v tansu >/dev/null || die "tansu not installed: run deploy/local/install.sh"
load_settings

CH_DIR="$SECPIPE_STATE_DIR/clickhouse"
if ch_http_ok; then
    say "ClickHouse already answers on $SECPIPE_CH_HOST:$SECPIPE_CH_HTTP_PORT"
else
    mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas"
    cat >"$CH_DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$SECPIPE_STATE_DIR/logs/clickhouse.log</log>
        <errorlog>$SECPIPE_STATE_DIR/logs/clickhouse.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>$SECPIPE_CH_HOST</listen_host>
    <http_port>$SECPIPE_CH_HTTP_PORT</http_port>
    <tcp_port>$SECPIPE_CH_TCP_PORT</tcp_port>
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>1073741824</mark_cache_size>
</yandex>
XML
    say "starting ClickHouse (data in $CH_DIR, HTTP $SECPIPE_CH_HOST:$SECPIPE_CH_HTTP_PORT)"
    nohup clickhouse-server --config-file="$CH_DIR/config.xml" \
        >"$SECPIPE_STATE_DIR/logs/clickhouse.stdout" 2>&1 &
    echo $! >"$SECPIPE_STATE_DIR/clickhouse.pid"
    wait_for ClickHouse 60 ch_http_ok "$SECPIPE_STATE_DIR/logs/clickhouse.err.log"
fi

BROKER_DIR="$SECPIPE_STATE_DIR/tansu"
if broker_ok; then
    say "broker already answers on $SECPIPE_BROKER_HOST:$SECPIPE_BROKER_PORT"
else
    mkdir -p "$BROKER_DIR"
    case "$SECPIPE_BROKER_STORAGE" in
        sqlite) STORAGE="sqlite://tansu.db" ;;
        memory) STORAGE="memory://tansu/" ;;
        *) die "unknown broker storage '$SECPIPE_BROKER_STORAGE' (expected sqlite or memory)" ;;
    esac
    say "starting tansu (storage $STORAGE in $BROKER_DIR, $SECPIPE_BROKER_HOST:$SECPIPE_BROKER_PORT)"
    (
        cd "$BROKER_DIR"
        nohup tansu broker \
            --listener-url "tcp://$SECPIPE_BROKER_HOST:$SECPIPE_BROKER_PORT" \
            --advertised-listener-url "tcp://$SECPIPE_BROKER_HOST:$SECPIPE_BROKER_PORT" \
            --storage-engine "$STORAGE" \
            >"$SECPIPE_STATE_DIR/logs/tansu.log" 2>&1 &
        echo $! >"$SECPIPE_STATE_DIR/tansu.pid"
    )
    wait_for tansu 60 broker_ok "$SECPIPE_STATE_DIR/logs/tansu.log"
fi

"$SECPIPE_BIN" migrate || die "secpipe migrate failed (ClickHouse log: $SECPIPE_STATE_DIR/logs/clickhouse.err.log)"
"$SECPIPE_BIN" topics create || die "secpipe topics create failed (broker log: $SECPIPE_STATE_DIR/logs/tansu.log)"
say "stack is up: ClickHouse http://$SECPIPE_CH_HOST:$SECPIPE_CH_HTTP_PORT, broker $SECPIPE_BROKER_HOST:$SECPIPE_BROKER_PORT ($SECPIPE_BROKER_STORAGE)"
