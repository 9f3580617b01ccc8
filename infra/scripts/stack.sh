#!/usr/bin/env bash
# The local stack without Docker: a real MLflow tracking server on 127.0.0.1 with a SQLite backend and
# artifacts under runtime/ (proxied, so clients need no storage settings).
#
#   infra/scripts/stack.sh up       start it (no-op when already running) and wait until /health answers
#   infra/scripts/stack.sh status   print health; exit 0 when healthy, 3 when not running, 1 when unhealthy
#   infra/scripts/stack.sh down     stop the whole process group
#
# Environment: RECOPS_MLFLOW_PORT (default 5000), RECOPS_RUNTIME_DIR (default runtime), MLFLOW (the mlflow
# executable; default: mlflow on PATH, else .venv/bin/mlflow).
# Point the pipeline at it with RECOPS_MLFLOW_TRACKING_URI=http://127.0.0.1:<port>.
set -euo pipefail
cd "$(dirname "$0")/../.."

HOST=127.0.0.1
PORT="${RECOPS_MLFLOW_PORT:-5000}"
URL="http://${HOST}:${PORT}"
RUNTIME="${RECOPS_RUNTIME_DIR:-runtime}"   # same variable as core/settings.py
PID_FILE="${RUNTIME}/mlflow-server.pid"
LOG_FILE="${RUNTIME}/logs/mlflow-server.log"
BACKEND="sqlite:///${RUNTIME}/mlflow-server.db"   # relative RUNTIME: relative to the repository root
ARTIFACTS="${RUNTIME}/mlartifacts"
START_TIMEOUT_S=90

mlflow_bin() {
    if [[ -n "${MLFLOW:-}" ]]; then
        echo "${MLFLOW}"
    elif command -v mlflow >/dev/null 2>&1; then
        command -v mlflow
    elif [[ -x .venv/bin/mlflow ]]; then
        echo ".venv/bin/mlflow"
    else
        echo "error: no mlflow executable (run 'make setup' or set MLFLOW)" >&2
        exit 2
    fi
}

running_pid() {
    # The recorded pid when that process is still alive, else nothing (a stale pid file is removed).
    [[ -f "${PID_FILE}" ]] || return 0
    local pid
    pid="$(cat "${PID_FILE}")"
    if [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null; then
        echo "${pid}"
    else
        rm -f "${PID_FILE}"
    fi
}

healthy() {
    curl --silent --fail --max-time 3 "${URL}/health" >/dev/null 2>&1
}

cmd_up() {
    local pid
    pid="$(running_pid)"
    if [[ -n "${pid}" ]]; then
        echo "mlflow server already running (pid ${pid}) at ${URL}"
        return 0
    fi
    if healthy; then
        echo "error: something else already answers on ${URL}; set RECOPS_MLFLOW_PORT" >&2
        exit 1
    fi
    local mlflow
    mlflow="$(mlflow_bin)"
    mkdir -p "${RUNTIME}/logs" "${ARTIFACTS}"
    echo "== $(date -u +%FT%TZ) starting mlflow server on ${URL}" >>"${LOG_FILE}"
    # setsid: the server and its workers get their own process group, so `down` can stop all of them.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "${mlflow}" server \
        --backend-store-uri "${BACKEND}" \
        --artifacts-destination "${ARTIFACTS}" \
        --host "${HOST}" --port "${PORT}" --workers 1 \
        >>"${LOG_FILE}" 2>&1 </dev/null &
    pid=$!
    echo "${pid}" >"${PID_FILE}"
    local waited=0
    until healthy; do
        if ! kill -0 "${pid}" 2>/dev/null; then
            rm -f "${PID_FILE}"
            echo "error: mlflow server exited during start; last lines of ${LOG_FILE}:" >&2
            tail -n 30 "${LOG_FILE}" >&2
            exit 1
        fi
        if ((waited >= START_TIMEOUT_S)); then
            echo "error: mlflow server not healthy after ${START_TIMEOUT_S}s; last lines of ${LOG_FILE}:" >&2
            tail -n 30 "${LOG_FILE}" >&2
            cmd_down >/dev/null
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "mlflow server running (pid ${pid}) at ${URL}; log: ${LOG_FILE}"
    echo "use it with: export RECOPS_MLFLOW_TRACKING_URI=${URL}"
}

cmd_down() {
    local pid
    pid="$(running_pid)"
    if [[ -z "${pid}" ]]; then
        echo "mlflow server not running"
        return 0
    fi
    local pgid
    pgid="$(ps -o pgid= -p "${pid}" | tr -d ' ')"
    kill -TERM -- "-${pgid}" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 -- "-${pgid}" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL -- "-${pgid}" 2>/dev/null || true
    rm -f "${PID_FILE}"
    echo "mlflow server stopped (process group ${pgid})"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -z "${pid}" ]]; then
        echo "mlflow server: not running"
        return 3
    fi
    if healthy; then
        echo "mlflow server: healthy (pid ${pid}) at ${URL}"
    else
        echo "mlflow server: running (pid ${pid}) but ${URL}/health does not answer"
        return 1
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
