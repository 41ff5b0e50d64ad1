#!/usr/bin/env bash
# A shared MLflow tracking server on PostgreSQL, locked down (docs/operations.md, "Security").
#
#   scripts/tracking-server.sh start   # local PostgreSQL cluster + mlflow server (loopback)
#   scripts/tracking-server.sh stop
#   HOST=0.0.0.0 scripts/tracking-server.sh start
#                                      # serve a group: MLflow's basic-auth app is then required
#   PG_URI=postgresql+psycopg2://mlflow@dbhost:5432/mlflow PGPASSFILE=~/.pgpass scripts/tracking-server.sh start
#                                      # an existing database; its password comes from PGPASSFILE
# Then: export MLFLOW_TRACKING_URI=http://HOST:PORT (plus MLFLOW_TRACKING_USERNAME/PASSWORD with auth).
#
# Lock-down:
# - PostgreSQL: scram-sha-256 password auth for every connection (no `trust`), listening on
#   127.0.0.1 only; the superuser's password and the dedicated `mlflow` role's password (LOGIN,
#   NOSUPERUSER, NOCREATEDB, NOCREATEROLE; owns only the `mlflow` database) are random and live in
#   0600 files; passwords never appear on a command line (libpq reads PGPASSFILE).
# - MLflow: beyond loopback the server runs as `--app-name basic-auth` with a random admin
#   password (0600 file); AUTH=none beyond loopback is refused.
#
# Settings (env): HOST (127.0.0.1), PORT (5000), PG_PORT (5433), SERVER_DIR (.rlreg/server),
# WORKERS (4), ARTIFACTS (SERVER_DIR/artifacts, or s3://… etc.), AUTH (auto | basic-auth | none;
# auto = basic-auth beyond loopback, none on loopback), ALLOWED_HOSTS (MLflow's --allowed-hosts,
# needed beyond loopback, e.g. "gpu-head:5000,10.0.0.5:5000").
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-127.0.0.1}; PORT=${PORT:-5000}; PG_PORT=${PG_PORT:-5433}; WORKERS=${WORKERS:-4}
SERVER_DIR=$(realpath -m "${SERVER_DIR:-.rlreg/server}"); ARTIFACTS=${ARTIFACTS:-$SERVER_DIR/artifacts}
AUTH=${AUTH:-auto}
MLFLOW=${MLFLOW:-.venv/bin/mlflow}; PY=${PY:-.venv/bin/python}
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null | tail -1)")
PGDIR=$SERVER_DIR/pg
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- env PGPASSFILE="$PGDIR/superuser.pgpass" "$@"; \
          else PGPASSFILE="$PGDIR/superuser.pgpass" "$@"; fi; }
die() { echo "Error: $1" >&2; exit "${2:-1}"; }
random_pw() { "$PY" -c "import secrets; print(secrets.token_hex(24))"; }
loopback() { case "$1" in 127.*|localhost|::1) return 0 ;; *) return 1 ;; esac; }

auth_mode() {
  case "$AUTH" in
    auto) if loopback "$HOST"; then echo none; else echo basic-auth; fi ;;
    basic-auth) echo basic-auth ;;
    none) loopback "$HOST" || die "HOST=$HOST serves beyond loopback without authentication (unset AUTH, or AUTH=basic-auth: MLflow's basic-auth app)" 2
          echo none ;;
    *) die "AUTH=$AUTH: use auto, basic-auth or none" 2 ;;
  esac
}

init_cluster() {  # a new cluster: scram-sha-256 everywhere, a dedicated non-superuser role
  mkdir -p "$PGDIR"; [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGDIR"
  local super_pw role_pw; super_pw=$(random_pw); role_pw=$(random_pw)
  ( umask 077; printf '%s\n' "$super_pw" >"$PGDIR/superuser.pw"
    printf '127.0.0.1:%s:*:postgres:%s\n' "$PG_PORT" "$super_pw" >"$PGDIR/superuser.pgpass" )
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGDIR/superuser.pw" "$PGDIR/superuser.pgpass"
  as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=scram-sha-256 --pwfile="$PGDIR/superuser.pw" -E UTF8 >/dev/null
  rm -f "$PGDIR/superuser.pw"  # the pgpass file keeps it for admin work
  start_cluster
  # the password goes through stdin, never argv (visible in ps)
  as_pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE mlflow LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD '$role_pw';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
SQL
  ( umask 077; printf '127.0.0.1:%s:mlflow:mlflow:%s\n' "$PG_PORT" "$role_pw" >"$SERVER_DIR/mlflow.pgpass" )
}

start_cluster() {
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/pg.log" -w \
    -o "-p $PG_PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c password_encryption=scram-sha-256" start >/dev/null
}

setup_basic_auth() {  # MLflow's basic-auth app: users in SERVER_DIR/basic_auth.db, admin password 0600
  "$PY" -c "import mlflow.server.auth" 2>/dev/null || "$PY" -m pip install -q Flask-WTF
  if [ ! -f "$SERVER_DIR/basic_auth.ini" ]; then
    local admin_pw; admin_pw=$(random_pw)
    umask 077  # credentials: 0600
    printf '[mlflow]\ndefault_permission = NO_PERMISSIONS\ndatabase_uri = sqlite:///%s/basic_auth.db\nadmin_username = admin\nadmin_password = %s\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
      "$SERVER_DIR" "$admin_pw" >"$SERVER_DIR/basic_auth.ini"
    printf 'MLFLOW_TRACKING_USERNAME=admin\nMLFLOW_TRACKING_PASSWORD=%s\n' "$admin_pw" >"$SERVER_DIR/admin.env"
    printf '%s\n' "$(random_pw)" >"$SERVER_DIR/flask.secret"
    umask 022
  fi
  export MLFLOW_AUTH_CONFIG_PATH="$SERVER_DIR/basic_auth.ini"
  MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$SERVER_DIR/flask.secret"); export MLFLOW_FLASK_SERVER_SECRET_KEY
}

start() {
  local mode; mode=$(auth_mode)
  mkdir -p "$SERVER_DIR" "$ARTIFACTS" 2>/dev/null || true
  if [ -n "${PG_URI:-}" ]; then
    case "$PG_URI" in *://*:*@*) die "PG_URI holds a password (put it in a 0600 PGPASSFILE and drop it from the URI)" 2 ;; esac
  else
    [ -x "$PGBIN/postgres" ] || die "PostgreSQL not installed (bash scripts/system-deps.sh)"
    if [ ! -d "$PGDIR/data" ]; then
      init_cluster
    else
      grep -Eq '^[^#]*[[:space:]]trust([[:space:]]|$)' "$PGDIR/data/pg_hba.conf" && die \
        "$PGDIR was created with 'trust' auth by an older version of this script (stop it, pg_dump the mlflow database, move $PGDIR away and start again)" 2
      start_cluster
    fi
    PG_URI="postgresql+psycopg2://mlflow@127.0.0.1:$PG_PORT/mlflow"
    export PGPASSFILE="$SERVER_DIR/mlflow.pgpass"
  fi
  "$PY" -c "import psycopg2" 2>/dev/null || "$PY" -m pip install -q psycopg2-binary
  local app=()
  if [ "$mode" = basic-auth ]; then setup_basic_auth; app=(--app-name basic-auth); fi
  "$MLFLOW" db upgrade "$PG_URI" >/dev/null   # migrate once, before any worker or client
  nohup "$MLFLOW" server "${app[@]}" --backend-store-uri "$PG_URI" --artifacts-destination "$ARTIFACTS" \
    --host "$HOST" --port "$PORT" --workers "$WORKERS" ${ALLOWED_HOSTS:+--allowed-hosts "$ALLOWED_HOSTS"} \
    >"$SERVER_DIR/mlflow.log" 2>&1 &
  echo $! >"$SERVER_DIR/mlflow.pid"
  for _ in $(seq 120); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
      echo "export MLFLOW_TRACKING_URI=http://$HOST:$PORT"
      if [ "$mode" = basic-auth ]; then
        echo "# basic auth: admin credentials in $SERVER_DIR/admin.env (0600); create users with the MLflow auth API"
      fi
      return 0
    fi
    sleep 1
  done
  die "mlflow server did not start; see $SERVER_DIR/mlflow.log"
}

stop() {
  [ -f "$SERVER_DIR/mlflow.pid" ] && kill "$(cat "$SERVER_DIR/mlflow.pid")" 2>/dev/null || true
  rm -f "$SERVER_DIR/mlflow.pid"
  [ -d "$PGDIR/data" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
}

case "${1:-}" in start) start ;; stop) stop ;; *) echo "usage: $0 start|stop" >&2; exit 2 ;; esac
