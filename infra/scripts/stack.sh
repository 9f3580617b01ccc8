#!/usr/bin/env bash
# The local stack without Docker: a real Airflow 3 (api-server, scheduler, dag-processor, triggerer;
# LocalExecutor, or CeleryExecutor with a separate `airflow celery worker`) on the local PostgreSQL, and an
# MLflow tracking server with a PostgreSQL backend and artifacts in local files, all bound to 127.0.0.1.
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
#   RECOPS_STACK_EXECUTOR     local (default: LocalExecutor, tasks run as children of the scheduler) or celery
#                             (the scale-out path: CeleryExecutor plus one `airflow celery worker` process, in
#                             its own process group, that runs every task; its task instances carry its name)
#   RECOPS_CELERY_BROKER_URL  default redis://127.0.0.1:6379/9 (the local Redis, db 9: neither the online
#                             store's db 0 nor the tests' db 15); amqp://guest:guest@127.0.0.1:5672// works too
#   RECOPS_CELERY_QUEUE       default recops: the queue the tasks are sent to and the worker consumes
#   RECOPS_WORKER_NAME        default recops-worker-1: the worker's name, recorded as each task instance's hostname
#   RECOPS_CELERY_CONCURRENCY default 2: task processes the worker runs at once
#   RECOPS_STACK_STOP_TIMEOUT_S default 20: how long `down` lets a process group (the worker's running tasks
#                             included) stop on SIGTERM before it sends SIGKILL
# The executor is chosen at `up`; `status` and `down` use the one the running stack was started with.
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
STOP_TIMEOUT_S="${RECOPS_STACK_STOP_TIMEOUT_S:-20}"
[[ "${STOP_TIMEOUT_S}" =~ ^[0-9]+$ ]] || {
    echo "error: RECOPS_STACK_STOP_TIMEOUT_S must be whole seconds, not '${STOP_TIMEOUT_S}'" >&2; exit 2; }
AIRFLOW_COMPONENTS=(api-server scheduler dag-processor triggerer)
# The running stack's executor (written by `up`) wins over the environment: `down` needs no variables.
EXECUTOR="${RECOPS_STACK_EXECUTOR:-local}"
[[ "${1:-}" != up && -s "${STATE}/executor" ]] && EXECUTOR="$(cat "${STATE}/executor")"
case "${EXECUTOR}" in
    local) AIRFLOW_EXECUTOR=LocalExecutor ;;
    celery) AIRFLOW_EXECUTOR=CeleryExecutor; AIRFLOW_COMPONENTS+=(celery-worker) ;;
    *) echo "error: RECOPS_STACK_EXECUTOR must be local or celery, not '${EXECUTOR}'" >&2; exit 2 ;;
esac
CELERY_QUEUE="${RECOPS_CELERY_QUEUE:-recops}"
WORKER_NAME="${RECOPS_WORKER_NAME:-recops-worker-1}"
NAME_PATTERN='^[A-Za-z0-9][A-Za-z0-9._-]*$'
for setting in "RECOPS_CELERY_QUEUE=${CELERY_QUEUE}" "RECOPS_WORKER_NAME=${WORKER_NAME}"; do
    if [[ ! "${setting#*=}" =~ ${NAME_PATTERN} ]]; then
        echo "error: ${setting%%=*} must be letters, digits, '.', '_' or '-' (starting with a letter or" \
            "digit), not '${setting#*=}'" >&2
        exit 2
    fi
done

die() { echo "error: $*" >&2; exit 1; }

stack_env() {
    # The environment of every stack process (and of `airflow` commands a person runs against the stack).
    cat <<EOF
export PATH="${BIN}:\${PATH}"
export AIRFLOW_HOME="${AF_HOME}"
export AIRFLOW__CORE__DAGS_FOLDER="${REPO}/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=${AIRFLOW_EXECUTOR}
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
    if [[ "${EXECUTOR}" == celery ]]; then
        # The result backend stays Airflow's default: the metadata database (db+<sql_alchemy_conn>).
        echo "export AIRFLOW__CELERY__BROKER_URL=\"${RECOPS_CELERY_BROKER_URL:-redis://127.0.0.1:6379/9}\""
        echo "export AIRFLOW__OPERATORS__DEFAULT_QUEUE=${CELERY_QUEUE}"
        echo "export AIRFLOW__CELERY__WORKER_CONCURRENCY=${RECOPS_CELERY_CONCURRENCY:-2}"
        # A task not acknowledged within this is redelivered: longer than the tasks' 2 h execution_timeout.
        echo "export AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT=21600"
    fi
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
            # celery renames its main process: "[celeryd: <name>@<host>:MainProcess] ... (celery worker ...)"
            celery-worker) [[ "${args}" == *celery* ]] && echo "${pid}" && return 0 ;;
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
    # stop NAME...: SIGTERM to each one's process group at once, wait for all (STOP_TIMEOUT_S), then SIGKILL
    # what is left.
    local name pid pgid left
    local -a groups=() names=()
    for name in "$@"; do
        pid="$(pid_of "${name}")"
        [[ -n "${pid}" ]] || continue
        pgid="$(ps -o pgid= -p "${pid}" | tr -d ' ')"
        [[ -n "${pgid}" ]] || continue
        kill -TERM -- "-${pgid}" 2>/dev/null || true
        groups+=("${pgid}")
        names+=("${name}")
    done
    for _ in $(seq 1 $((STOP_TIMEOUT_S * 2))); do
        left=0
        for pgid in "${groups[@]}"; do
            kill -0 -- "-${pgid}" 2>/dev/null && left=1
        done
        ((left)) || break
        sleep 0.5
    done
    for pgid in "${groups[@]}"; do
        kill -KILL -- "-${pgid}" 2>/dev/null || true
    done
    for _ in $(seq 1 20); do  # a killed process is gone once its parent (or init) has reaped it
        left=0
        for pgid in "${groups[@]}"; do
            kill -0 -- "-${pgid}" 2>/dev/null && left=1
        done
        ((left)) || break
        sleep 0.5
    done
    for i in "${!groups[@]}"; do
        rm -f "${PIDS}/${names[i]}.pid"
        echo "stopped ${names[i]} (process group ${groups[i]})"
    done
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
    local running
    running="$(cat "${STATE}/executor" 2>/dev/null || true)"
    if [[ -n "${running}" && "${running}" != "${EXECUTOR}" && -n "$(pid_of scheduler)" ]]; then
        die "the stack runs with the ${running} executor: stop it first (stack.sh down), then up with ${EXECUTOR}"
    fi
    echo "${EXECUTOR}" >"${STATE}/executor"
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
    # --skip-serve-logs: Airflow's log servers (scheduler/worker 8793, triggerer 8794) bind every interface;
    # task logs are files in the one log folder the api-server reads.
    start scheduler "${BIN}/airflow" scheduler --skip-serve-logs
    start dag-processor "${BIN}/airflow" dag-processor
    start triggerer "${BIN}/airflow" triggerer --skip-serve-logs
    if [[ "${EXECUTOR}" == celery ]]; then
        # Only the worker names itself: [core] hostname_callable reads RECOPS_WORKER_NAME (workers.py).
        RECOPS_WORKER_NAME="${WORKER_NAME}" \
            AIRFLOW__CORE__HOSTNAME_CALLABLE=pipelines.orchestration.workers.worker_name \
            start celery-worker "${BIN}/airflow" celery worker --queues "${CELERY_QUEUE}" \
            --celery-hostname "${WORKER_NAME}@%h" --skip-serve-logs
    fi
    wait_for mlflow "${MLFLOW_URL}/health" || { cmd_down >/dev/null; exit 1; }
    wait_for api-server "${AF_URL}/api/v2/monitor/health" || { cmd_down >/dev/null; exit 1; }
    cat <<EOF
stack running:
  Airflow   ${AF_URL}  (user admin; password in ${AF_HOME}/passwords.json; ${AIRFLOW_EXECUTOR})
  MLflow    ${MLFLOW_URL}
  logs      ${LOGS}/
  CLI       source ${STATE}/env.sh; airflow dags list
EOF
}

cmd_down() {
    local -a recorded=()
    # The worker first, while the api-server its tasks report to still runs: a warm shutdown lets running
    # tasks finish (RECOPS_STACK_STOP_TIMEOUT_S, then its whole group is killed). Then every other recorded
    # group at once (task processes the LocalExecutor started belong to the scheduler's group).
    stop celery-worker
    for file in "${PIDS}"/*.pid; do
        [[ -e "${file}" ]] && recorded+=("$(basename "${file}" .pid)")
    done
    stop "${recorded[@]}"
    rm -f "${STATE}/executor"
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
