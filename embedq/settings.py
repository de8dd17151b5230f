"""Typed settings from ``EMBEDQ_*`` environment variables, built by a factory, never at import.

With nothing set, everything runs on embedded defaults on one machine: a SQLite
ledger file, a Qdrant local-mode folder and tasks run in-process, all under
``EMBEDQ_HOME``. Each of ``EMBEDQ_BROKER_URL``, ``EMBEDQ_DATABASE_URL`` and
``EMBEDQ_QDRANT_URL`` switches one of the three to a server on its own.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from embedq.jobs.constants import DEFAULT_BATCH_SIZE, LEASE_SECONDS
from embedq.jobs.contracts import LongText

DEFAULT_MODEL = "BAAI/bge-m3"


class Settings(BaseSettings):
    """Everything a producer or a worker needs to know about where things live."""

    model_config = SettingsConfigDict(env_prefix="EMBEDQ_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path(user_data_dir("embedq")))
    broker_url: str | None = None
    database_url: str | None = None
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None

    model: str = DEFAULT_MODEL
    device: str | None = None
    memory_budget: str | None = None
    max_length: int | None = None
    long_text: LongText = "chunk"
    outputs: str | None = None

    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=100_000)
    # the largest share of a collection an ``ingest --sync`` deletes without --force
    sync_max_delete_share: float = Field(default=0.5, ge=0.0, le=1.0)
    high_water_mark: int = Field(default=64, ge=1)
    lease_seconds: int = Field(default=LEASE_SECONDS, ge=5)
    task_time_limit: int = Field(default=3600, ge=60)
    # an open job nothing was added to for this long, never sealed, is ended by a reaper as
    # abandoned (its producer was killed or cut off); a producer held back by a full queue
    # shows it is alive every 30 s
    abandon_after_seconds: int = Field(default=3600, ge=10)
    queue: str = "embedq.ingest"
    # re-index batches: their own queue, served only when the ingestion queue is empty,
    # and at most this many a worker process takes (Celery's rate limit, e.g. "30/m")
    reindex_queue: str = "embedq.reindex"
    reindex_rate_limit: str | None = None

    # where the command line sends job commands instead of the ledger, and with which key
    api_url: str | None = None
    api_key: str | None = None
    # the HTTP API: without keys it refuses to start, unless in dev mode (no keys, one machine)
    api_dev_mode: bool = False
    api_max_body_bytes: int = Field(default=32 * 2**20, ge=1024)

    @field_validator("home")
    @classmethod
    def _expand(cls, home: Path) -> Path:
        return home.expanduser()

    def max_delete_share(self, *, force: bool) -> float:
        """The share of a collection a sync may delete: all of it when forced."""
        return 1.0 if force else self.sync_max_delete_share

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'ledger.sqlite3'}"

    @property
    def qdrant_path(self) -> Path | None:
        """The local-mode folder, or None when a Qdrant server is configured."""
        return None if self.qdrant_url else self.home / "qdrant"


def get_settings(**overrides: object) -> Settings:
    """Read the environment now (not at import), with explicit overrides (CLI flags) on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)  # type: ignore[arg-type]
