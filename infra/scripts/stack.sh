#!/usr/bin/env bash
# The local stack without Docker: a real Airflow 3 (api-server, scheduler, dag-processor, triggerer;
# LocalExecutor) on the local PostgreSQL, and an MLflow tracking server with a PostgreSQL backend and
# artifacts in local files, all bound to 127.0.0.1.
#
#   infra/scripts/stack.sh up       create the databases if missing, migrate, start everything, wait for health
#   infra/scripts/stack.sh status   each process and the health endpoints; exit 0 healthy, 3 not running, 1 not healthy
#   infra/scripts/stack.sh down     stop every process group this script started (and nothing else)
#   infra/scripts/stack.sh env      print the environment (source it to run `airflow ...` against the stack)
#
# Each process runs under `setsid` in its own process group; its pid is recorded under
# <runtime>/stack/pids/. `down` signals only those groups, after checking that the recorded pid still runs
# the command it started (a recycled pid is left alone). Airflow authentication is on (SimpleAuthManager):
# user `admin`, password generated on the first `up` into <runtime>/airflow/passwords.json (mode 600,
# gitignored) and printed that one time. The JWT secret shared by the Airflow components is generated
# into <runtime>/stack/secrets/ the same way and read through AIRFLOW__API_AUTH__JWT_SECRET_CMD.
#
# Environment (all optional):
#   RECOPS_PROJECT_DIR        the workspace the DAGs work in (data/, artifacts/, runtime/); default: this repo
#   RECOPS_RUNTIME_DIR        default <project>/runtime
#   RECOPS_AIRFLOW_DB_URL     default postgresql+psycopg2://postgres@127.0.0.1:5432/recops_airflow
#   RECOPS_MLFLOW_BACKEND_URI default postgresql+psycopg2://postgres@127.0.0.1:5432/recops_mlflow
#   RECOPS_AIRFLOW_PORT       default 8080        RECOPS_MLFLOW_PORT   default 5000
#   RECOPS_INGEST_START / RECOPS_INGEST_END       the ingest DAG's window (YYYY-MM-DD; see dags/recops_common.py)
#   RECOPS_AIRFLOW_PARALLELISM default 4
# The databases named in the two URLs are created when missing (the server must accept the URL's user).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
cd "${REPO}"

HOST=127.0.0.1
PROJECT="$(cd "${RECOPS_PROJECT_DIR:-${REPO}}" && pwd)"
RUNTIME="${RECOPS_RUNTIME_DIR:-${PROJECT}/runtime}"
[[ "${RUNTIME}" = /* ]] || RUNTIME="${PROJECT}/${RUNTIME}"
STATE="${RUNTIME}/stack"
PIDS="${STATE}/pids"
LOGS="${STATE}/logs"
SECRETS="${STATE}/secrets"
AF_HOME="${RUNTIME}/airflow"
AF_PORT="${RECOPS_AIRFLOW_PORT:-8080}"
MLFLOW_PORT="${RECOPS_MLFLOW_PORT:-5000}"
AF_URL="http://${HOST}:${AF_PORT}"
MLFLOW_URL="http://${HOST}:${MLFLOW_PORT}"
AF_DB="${RECOPS_AIRFLOW_DB_URL:-postgresql+psycopg2://postgres@127.0.0.1:5432/recops_airflow}"
MLFLOW_DB="${RECOPS_MLFLOW_BACKEND_URI:-postgresql+psycopg2://postgres@127.0.0.1:5432/recops_mlflow}"
BIN="${REPO}/.venv/bin"
[[ -x "${BIN}/airflow" ]] || BIN="$(dirname "$(command -v airflow || echo /nonexistent/airflow)")"
START_TIMEOUT_S=180
AIRFLOW_COMPONENTS=(api-server scheduler dag-processor triggerer)

die() { echo "error: $*" >&2; exit 1; }

stack_env() {
    # The environment of every stack process (and of `airflow` commands a person runs against the stack).
    cat <<EOF
export PATH="${BIN}:\${PATH}"
export AIRFLOW_HOME="${AF_HOME}"
export AIRFLOW__CORE__DAGS_FOLDER="${REPO}/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${RECOPS_AIRFLOW_PARALLELISM:-4}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AF_DB}"
export AIRFLOW__API__HOST=${HOST}
export AIRFLOW__API__PORT=${AF_PORT}
export AIRFLOW__API__BASE_URL="${AF_URL}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AF_URL}/execution/"
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="${AF_HOME}/passwords.json"
export AIRFLOW__API_AUTH__JWT_SECRET_CMD="cat ${SECRETS}/jwt_secret"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="${AF_HOME}/logs"
export RECOPS_PROJECT_DIR="${PROJECT}"
export RECOPS_RUNTIME_DIR="${RUNTIME}"
export RECOPS_MLFLOW_TRACKING_URI="${MLFLOW_URL}"
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=3
export MLFLOW_HTTP_REQUEST_TIMEOUT=60
export MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false
export OPENBLAS_NUM_THREADS=1
EOF
    [[ -n "${RECOPS_INGEST_START:-}" ]] && echo "export RECOPS_INGEST_START=${RECOPS_INGEST_START}"
    [[ -n "${RECOPS_INGEST_END:-}" ]] && echo "export RECOPS_INGEST_END=${RECOPS_INGEST_END}"
    return 0
}

# ----------------------------------------------------------------------------------------- processes

pid_of() {
    # The recorded pid of a component when that process still runs what we started, else nothing.
    local name="$1" file="${PIDS}/$1.pid" pid args
    [[ -f "${file}" ]] || return 0
    pid="$(cat "${file}")"
    if [[ "${pid}" =~ ^[0-9]+$ ]] && args="$(ps -o args= -p "${pid}" 2>/dev/null)"; then
        case "${name}" in
            mlflow) [[ "${args}" == *mlflow* ]] && echo "${pid}" && return 0 ;;
            *) [[ "${args}" == *airflow* ]] && echo "${pid}" && return 0 ;;
        esac
    fi
    rm -f "${file}"
}

start() {
    # start NAME COMMAND...: run it under setsid (its own process group), log to <state>/logs/NAME.log.
    local name="$1"; shift
    if [[ -n "$(pid_of "${name}")" ]]; then
        echo "${name} already running (pid $(pid_of "${name}"))"
        return 0
    fi
    echo "== $(date -u +%FT%TZ) starting ${name}: $*" >>"${LOGS}/${name}.log"
    setsid "$@" >>"${LOGS}/${name}.log" 2>&1 </dev/null &
    echo $! >"${PIDS}/${name}.pid"
}

stop() {
    local name="$1" pid pgid
    pid="$(pid_of "${name}")"
    [[ -n "${pid}" ]] || return 0
    pgid="$(ps -o pgid= -p "${pid}" | tr -d ' ')"
    kill -TERM -- "-${pgid}" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 -- "-${pgid}" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL -- "-${pgid}" 2>/dev/null || true
    rm -f "${PIDS}/${name}.pid"
    echo "stopped ${name} (process group ${pgid})"
}

wait_for() {
    # wait_for NAME URL: until URL answers 200, or the process died, or the timeout.
    local name="$1" url="$2" waited=0
    until curl --silent --fail --max-time 3 "${url}" >/dev/null 2>&1; do
        if [[ -z "$(pid_of "${name}")" ]]; then
            echo "error: ${name} exited during start; last lines of ${LOGS}/${name}.log:" >&2
            tail -n 40 "${LOGS}/${name}.log" >&2
            return 1
        fi
        if ((waited >= START_TIMEOUT_S)); then
            echo "error: ${name} not healthy after ${START_TIMEOUT_S}s (${url}); see ${LOGS}/${name}.log" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# ----------------------------------------------------------------------------------------- setup

ensure_database() {
    # Create the database named in a postgresql URL when missing (connecting to `postgres` on that server).
    "${BIN}/python" - "$1" <<'PY'
import sys
import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url

url = make_url(sys.argv[1])
if not url.drivername.startswith("postgresql"):
    sys.exit(0)
admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
conn = psycopg2.connect(admin, connect_timeout=5)
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
        print(f"created database {url.database}")
conn.close()
PY
}

ensure_secrets() {
    mkdir -p "${SECRETS}" "${AF_HOME}"
    chmod 700 "${SECRETS}"
    if [[ ! -s "${SECRETS}/jwt_secret" ]]; then
        (umask 077; "${BIN}/python" -c "import secrets; print(secrets.token_urlsafe(48))" >"${SECRETS}/jwt_secret")
    fi
    if [[ ! -s "${AF_HOME}/passwords.json" ]]; then
        local password
        password="$("${BIN}/python" -c "import secrets; print(secrets.token_urlsafe(18))")"
        (umask 077; printf '{"admin": "%s"}\n' "${password}" >"${AF_HOME}/passwords.json")
        echo "Airflow admin password (shown once; kept in ${AF_HOME}/passwords.json, mode 600): ${password}"
    fi
}

cmd_up() {
    mkdir -p "${PIDS}" "${LOGS}" "${RUNTIME}/mlartifacts"
    stack_env >"${STATE}/env.sh"
    # shellcheck disable=SC1091
    source "${STATE}/env.sh"
    for port in "${AF_PORT}" "${MLFLOW_PORT}"; do
        if [[ -z "$(pid_of api-server)$(pid_of mlflow)" ]] && curl --silent --max-time 2 "http://${HOST}:${port}/" >/dev/null 2>&1; then
            die "something else already answers on ${HOST}:${port}; set RECOPS_AIRFLOW_PORT / RECOPS_MLFLOW_PORT"
        fi
    done
    ensure_secrets
    ensure_database "${AF_DB}"
    ensure_database "${MLFLOW_DB}"

    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false start mlflow "${BIN}/mlflow" server \
        --backend-store-uri "${MLFLOW_DB}" \
        --artifacts-destination "${RUNTIME}/mlartifacts" \
        --host "${HOST}" --port "${MLFLOW_PORT}" --workers 1

    echo "migrating the Airflow metadata database"
    "${BIN}/airflow" db migrate >>"${LOGS}/airflow-migrate.log" 2>&1 || {
        tail -n 30 "${LOGS}/airflow-migrate.log" >&2
        die "airflow db migrate failed (log: ${LOGS}/airflow-migrate.log)"
    }
    "${BIN}/airflow" pools set recops_dvc 1 \
        "DVC tasks of recops: one workspace, one dvc.lock (docs/operations.md)" >>"${LOGS}/airflow-migrate.log" 2>&1

    start api-server "${BIN}/airflow" api-server --host "${HOST}" --port "${AF_PORT}" --workers 1
    for component in scheduler dag-processor triggerer; do
        start "${component}" "${BIN}/airflow" "${component}"
    done
    wait_for mlflow "${MLFLOW_URL}/health" || { cmd_down >/dev/null; exit 1; }
    wait_for api-server "${AF_URL}/api/v2/monitor/health" || { cmd_down >/dev/null; exit 1; }
    cat <<EOF
stack running:
  Airflow   ${AF_URL}  (user admin; password in ${AF_HOME}/passwords.json)
  MLflow    ${MLFLOW_URL}
  logs      ${LOGS}/
  CLI       source ${STATE}/env.sh; airflow dags list
EOF
}

cmd_down() {
    local component
    for component in triggerer dag-processor scheduler api-server mlflow; do
        stop "${component}"
    done
    # Task processes the LocalExecutor started belong to the scheduler's group; anything still recorded:
    for file in "${PIDS}"/*.pid; do
        [[ -e "${file}" ]] && stop "$(basename "${file}" .pid)"
    done
    echo "stack stopped"
}

cmd_status() {
    local running=0 missing=0 component pid
    for component in mlflow "${AIRFLOW_COMPONENTS[@]}"; do
        pid="$(pid_of "${component}")"
        if [[ -n "${pid}" ]]; then
            echo "${component}: running (pid ${pid})"
            running=$((running + 1))
        else
            echo "${component}: not running"
            missing=$((missing + 1))
        fi
    done
    ((running > 0)) || return 3
    curl --silent --fail --max-time 3 "${MLFLOW_URL}/health" >/dev/null && echo "mlflow health: ok" || { echo "mlflow health: failing"; return 1; }
    local health
    health="$(curl --silent --fail --max-time 3 "${AF_URL}/api/v2/monitor/health")" || { echo "airflow health: failing"; return 1; }
    echo "airflow health: ${health}"
    ((missing == 0)) || return 1
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) stack_env ;;
    *)
        echo "usage: $0 up|down|status|env" >&2
        exit 2
        ;;
esac
