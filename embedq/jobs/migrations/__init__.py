"""Alembic migrations of the ledger, shipped inside the package (run by ``embedq.jobs.migrate``)."""
