#!/usr/bin/env python3
"""Applies secpipe's ClickHouse migrations to a current ClickHouse (chdb, in process) and selects
from every view; parses the cluster-mode rewrite of every statement (chdb has no ZooKeeper or
cluster to run ON CLUSTER DDL, so those are checked with EXPLAIN AST).

Input (a JSON file named by argv[1], written by tests/clickhouse_current_ddl.rs):
  {"single": [statements...], "cluster": [statements...], "database": "name"}
Prints one line per check; exits non-zero naming the first statement that fails."""
import json
import sys
import tempfile

try:
    import chdb
    from chdb import session as chs
except ImportError:
    sys.exit("chdb is not installed: python3 -m pip install chdb==4.4.0 (deploy/local/test.sh does it)")

spec = json.load(open(sys.argv[1]))
db = spec["database"]
with tempfile.TemporaryDirectory() as path:
    sess = chs.Session(path)
    version = sess.query("SELECT version()", "CSV").bytes().decode().strip().strip('"')
    print(f"chdb {chdb.__version__}, ClickHouse {version}")
    sess.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    sess.query(f"USE `{db}`")
    for i, stmt in enumerate(spec["single"]):
        try:
            sess.query(stmt)
        except Exception as e:  # chdb raises a plain RuntimeError with the server's message
            sys.exit(f"single-server statement {i} failed on ClickHouse {version}: {e}\n{stmt}")
    print(f"applied {len(spec['single'])} single-server statements")
    views = sess.query(
        f"SELECT name FROM system.tables WHERE database = '{db}' AND engine = 'View' ORDER BY name",
        "CSV",
    ).bytes().decode().split()
    views = [v.strip('"') for v in views]
    if not views:
        sys.exit("no views were created")
    for v in views:
        try:
            sess.query(f"SELECT * FROM `{db}`.`{v}` LIMIT 1", "CSV")
        except Exception as e:
            sys.exit(f"SELECT from view {v} failed on ClickHouse {version}: {e}")
        print(f"view {v}: selects")
    for i, stmt in enumerate(spec["cluster"]):
        try:
            sess.query(f"EXPLAIN AST {stmt}", "CSV")
        except Exception as e:
            sys.exit(f"cluster-mode statement {i} does not parse on ClickHouse {version}: {e}\n{stmt}")
    print(f"parsed {len(spec['cluster'])} cluster-mode statements")
    sess.close()
