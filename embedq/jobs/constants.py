"""Names and default numbers of the job ledger, kept in one place."""

LEASE_SECONDS = 60
"""How long a claimed batch stays a worker's without a renewal; after that another may take it."""

RENEW_EVERY_SECONDS = 20
"""How often a worker should renew its lease: a third of it, so two renewals may be missed."""

MAX_ATTEMPTS = 5
"""Claims of one batch before it is failed instead of run again (a batch that kills its worker)."""

EXPIRED_BATCHES_LIMIT = 100
"""Default page of expired leases handed to a reaper in one call."""

REPUBLISH_RELEASED_AFTER_SECONDS = 600
"""A released batch not claimed again within this is published again by a reaper: the message
that should have brought it back may never have been sent (the broker was down just then).
Longer than any retry delay (a lease's length, Celery's backoff), so a duplicate is rare, and
harmless: the second claim finds the batch taken."""

SWEEP = "sweep"
"""The role of a sync's last batch, which removes the documents its input no longer holds."""

QUEUED_BATCHES_LIMIT = 1000
"""Default page of queued batch ids handed to a reaper in one call."""

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

SQLITE_BUSY_TIMEOUT_SECONDS = 30
"""How long a SQLite connection waits for another process's write lock before giving up."""

MIGRATE_COMMAND = "embedq migrate"
"""The command users are told to run when the ledger's schema is behind the code."""
