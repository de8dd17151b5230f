"""Names and default numbers of the job ledger, kept in one place."""

LEASE_SECONDS = 30
"""How long a claimed batch stays a worker's without a renewal; after that another may take it
(``EMBEDQ_LEASE_SECONDS`` sets it per deployment)."""

RENEWALS_PER_LEASE = 3
"""A worker renews its lease this often per lease, so it may miss all but one renewal."""

DEFAULT_BATCH_SIZE = 256
"""Documents a producer puts in one batch (one task) unless told otherwise."""

MAX_ATTEMPTS = 5
"""Claims of one batch before it is failed instead of run again (a batch that kills its worker)."""

EXPIRED_BATCHES_LIMIT = 100
"""Default page of expired leases handed to a reaper in one call."""

REPUBLISH_PERIOD_SECONDS = 30
"""How long a published batch waits before a reaper may judge its message lost, and so at
most how often one batch is published again, whichever worker's reaper does it."""

OVERTAKE_WINDOW_SECONDS = 600
"""How far back a reaper looks at batches workers took, to tell which queued ones they
overtook (a FIFO queue only overtakes a batch whose message is gone)."""

OVERTAKE_SLACK_SECONDS = 5
"""Publish times this close are not ordered: producers on several hosts have clocks apart."""

PUBLISH_ROUND_LIMIT = 1000
"""The most batches one reaper round publishes again."""

REAPER_LOCK_KEY = 0x656D6265_6472  # "embedr"
"""Postgres advisory lock key held by the one reaper that judges lost messages each round."""

SWEEP = "sweep"
"""The role of a sync's last batch, which removes the documents its input no longer holds."""

QUEUED_BATCHES_LIMIT = 1000
"""Default page of queued batch ids one listing returns."""

ABANDONED_JOBS_LIMIT = 100
"""Default number of abandoned jobs (open, unsealed, idle too long) one reaper call ends."""

JOBS_PAGE = 50
"""Default number of jobs one listing returns."""

FAILURES_PAGE = 100
"""Default number of document failures one listing returns."""

RESULTS_PAGE = 1000
"""Default number of rerank results one listing returns."""

VERSION_TABLE = "embedq_alembic_version"
"""Alembic's revision table, named for embedq so a shared database can hold other apps' too."""

MIGRATE_LOCK_KEY = 0x656D6265_6471  # "embedq"
"""Postgres advisory lock key that makes concurrent ``migrate`` calls wait for one another."""

POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
"""How long opening a ledger connection may take; libpq waits forever by default."""

POSTGRES_SESSION_LIMITS = {
    # a client gone quiet inside a transaction (its host cut off) loses it, and its locks
    "idle_in_transaction_session_timeout": "30s",
    # a transition waiting on a row lock gives up and is retried, rather than stalls
    "lock_timeout": "10s",
    "statement_timeout": "60s",
    # the server notices a vanished client in seconds, not the kernel's 2 hours
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
"""Settings of every Postgres session of the ledger: how long a lost client can hold anything."""

POSTGRES_CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}
"""libpq's side of the same: a worker notices a vanished server instead of waiting on it."""

SQLITE_BUSY_TIMEOUT_SECONDS = 30
"""How long a SQLite connection waits for another process's write lock before giving up."""

MIGRATE_COMMAND = "embedq migrate"
"""The command users are told to run when the ledger's schema is behind the code."""
