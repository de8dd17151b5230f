"""Alembic environment: runs the ledger's migrations on the connection ``migrate`` passes in.

Without one (the ``alembic`` command line, e.g. to write a new revision), it connects to
the ``sqlalchemy.url`` of the Alembic configuration.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from embedq.jobs.constants import VERSION_TABLE
from embedq.jobs.db import make_engine
from embedq.jobs.schema import Base


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode copies the table instead
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            run_on(connection)
    finally:
        engine.dispose()


run()
