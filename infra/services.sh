#!/usr/bin/env bash
# Make sure the backing services for the test suite are up on loopback:
# PostgreSQL (5432), Redis (6379) and the Qdrant test server (6343/6344).
#
# stdout carries only export lines, so a shell (or CI) can do
#   eval "$(bash infra/services.sh)"
# All progress and errors go to stderr. Exits non-zero naming the service
# that could not be brought up.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_HOST=127.0.0.1
PG_PORT=5432
PG_DB="test"
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
WAIT_S=30

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need() {
    command -v "$1" >/dev/null || die "$2: '$1' not found on PATH"
}

# Poll a check function until it passes or WAIT_S runs out.
wait_for() {
    local name="$1" check="$2" i
    for ((i = 0; i < WAIT_S; i++)); do
        "${check}" && return 0
        sleep 1
    done
    die "${name} did not become ready within ${WAIT_S}s"
}

pg_up() { pg_isready -q -h "${PG_HOST}" -p "${PG_PORT}" >/dev/null 2>&1; }

ensure_postgres() {
    need pg_isready postgres
    pg_up && return 0
    log "postgres not answering on ${PG_HOST}:${PG_PORT}; starting cluster"
    local version
    # Several installed majors is unusual; take the newest.
    version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null |
        sort -V | tail -n 1 || true)"
    [[ -n "${version}" ]] || die "postgres: no cluster under /etc/postgresql"
    pg_ctlcluster --skip-systemctl-redirect "${version}" main start >&2 ||
        die "postgres: pg_ctlcluster ${version} main start failed"
    wait_for postgres pg_up
}

# Which role can log in with trust auth differs between images (postgres on
# a stock install, root where a root role was created). Print the first one
# that can open the test database.
pg_role() {
    local role
    for role in postgres root "$(id -un)"; do
        if psql -h "${PG_HOST}" -p "${PG_PORT}" -U "${role}" -d "${PG_DB}" \
            -w -tAc 'select 1' </dev/null >/dev/null 2>&1; then
            echo "${role}"
            return 0
        fi
    done
    return 1
}

redis_up() {
    [[ "$(redis-cli -h "${REDIS_HOST}" -p "${REDIS_PORT}" ping 2>/dev/null)" == "PONG" ]]
}

ensure_redis() {
    need redis-cli redis
    redis_up && return 0
    log "redis not answering on ${REDIS_HOST}:${REDIS_PORT}; starting redis-server"
    need redis-server redis
    # No persistence: test data is throwaway.
    redis-server --daemonize yes --bind "${REDIS_HOST}" --port "${REDIS_PORT}" \
        --save "" --appendonly no >&2 || die "redis: redis-server failed to start"
    wait_for redis redis_up
}

ensure_qdrant() {
    # Its stdout is the URL; keep our stdout for export lines only.
    bash "${REPO_ROOT}/infra/qdrant-test-server.sh" start >&2 ||
        die "qdrant: test server could not be started (see .cache/qdrant/qdrant.log)"
}

main() {
    local role qdrant_port
    need psql postgres
    ensure_postgres
    role="$(pg_role)" ||
        die "postgres: no role among postgres/root/$(id -un) can connect to database '${PG_DB}'"
    log "postgres ready (role ${role})"
    ensure_redis
    log "redis ready"
    ensure_qdrant
    qdrant_port="${EMBEDQ_TEST_QDRANT_HTTP_PORT:-6343}"

    echo "export EMBEDQ_TEST_DATABASE_URL=postgresql+psycopg://${role}@${PG_HOST}:${PG_PORT}/${PG_DB}"
    echo "export EMBEDQ_TEST_REDIS_URL=redis://${REDIS_HOST}:${REDIS_PORT}/0"
    echo "export EMBEDQ_TEST_QDRANT_URL=http://127.0.0.1:${qdrant_port}"
}

main "$@"
