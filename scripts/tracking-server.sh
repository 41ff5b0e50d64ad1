#!/usr/bin/env bash
# A shared MLflow tracking server on PostgreSQL (docs/operations.md).
#
#   scripts/tracking-server.sh start   # local PostgreSQL cluster + mlflow server (loopback)
#   scripts/tracking-server.sh stop
#   PG_URI=postgresql+psycopg2://user:pw@dbhost:5432/mlflow scripts/tracking-server.sh start
#                                      # use an existing database instead of a local cluster
# Then: export MLFLOW_TRACKING_URI=http://HOST:PORT and run rlreg as usual.
#
# Settings (env): HOST (127.0.0.1; 0.0.0.0 to serve a group), PORT (5000), PG_PORT (5433),
# SERVER_DIR (.rlreg/server), WORKERS (4), ARTIFACTS (SERVER_DIR/artifacts, or s3://… etc.).
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-127.0.0.1}; PORT=${PORT:-5000}; PG_PORT=${PG_PORT:-5433}; WORKERS=${WORKERS:-4}
SERVER_DIR=$(realpath -m "${SERVER_DIR:-.rlreg/server}"); ARTIFACTS=${ARTIFACTS:-$SERVER_DIR/artifacts}
MLFLOW=${MLFLOW:-.venv/bin/mlflow}
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null | tail -1)")
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start() {
  mkdir -p "$SERVER_DIR" "$ARTIFACTS" 2>/dev/null || true
  if [ -z "${PG_URI:-}" ]; then
    [ -x "$PGBIN/postgres" ] || { echo "Error: PostgreSQL not installed (bash scripts/system-deps.sh)" >&2; exit 1; }
    if [ ! -d "$SERVER_DIR/pg" ]; then
      mkdir -p "$SERVER_DIR/pg"; [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$SERVER_DIR/pg"
      as_pg "$PGBIN/initdb" -D "$SERVER_DIR/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    as_pg "$PGBIN/pg_ctl" -D "$SERVER_DIR/pg/data" -l "$SERVER_DIR/pg/pg.log" -w \
      -o "-p $PG_PORT -k $SERVER_DIR/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres mlflow 2>/dev/null || true
    PG_URI="postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/mlflow"
  fi
  .venv/bin/python -c "import psycopg2" 2>/dev/null || .venv/bin/pip install -q psycopg2-binary
  "$MLFLOW" db upgrade "$PG_URI" >/dev/null   # migrate once, before any worker or client
  nohup "$MLFLOW" server --backend-store-uri "$PG_URI" --artifacts-destination "$ARTIFACTS" \
    --host "$HOST" --port "$PORT" --workers "$WORKERS" >"$SERVER_DIR/mlflow.log" 2>&1 &
  echo $! >"$SERVER_DIR/mlflow.pid"
  for _ in $(seq 120); do
    curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && { echo "export MLFLOW_TRACKING_URI=http://$HOST:$PORT"; return; }
    sleep 1
  done
  echo "Error: mlflow server did not start; see $SERVER_DIR/mlflow.log" >&2; exit 1
}

stop() {
  [ -f "$SERVER_DIR/mlflow.pid" ] && kill "$(cat "$SERVER_DIR/mlflow.pid")" 2>/dev/null || true
  rm -f "$SERVER_DIR/mlflow.pid"
  [ -d "$SERVER_DIR/pg/data" ] && as_pg "$PGBIN/pg_ctl" -D "$SERVER_DIR/pg/data" -m fast stop >/dev/null 2>&1 || true
}

case "${1:-}" in start) start ;; stop) stop ;; *) echo "usage: $0 start|stop" >&2; exit 2 ;; esac
