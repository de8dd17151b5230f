"""Constants shared by every module of the pipeline benchmark: sizes, models, services, limits."""

from __future__ import annotations

import os
from dataclasses import dataclass

LOGGER = "bench.pipeline"

# the model part: MiniLM, truncated at 256 tokens, dense only
MAX_LENGTH = 256
LONG_TEXT = "truncate"
MODEL_OUTPUTS = "dense"

# defaults at the command line
DEFAULT_DOCS = {"cpu": 2048, "cuda": 5183}  # 5,183 is all of SciFact
DEFAULT_NULL_DOCS = 20_000
DEFAULT_BATCH_SIZE = 256  # embedq's own default (Settings.batch_size)

# the null model: BGE-M3's output sizes, no computation worth the name
NULL_DENSE_DIM = 1024
NULL_SPARSE_TOKENS = 60
NULL_VOCAB = 250_002
NULL_OUTPUTS = "dense,sparse"
NULL_SEED = 20_240_601

# the model part runs in rounds, each method in turn on each round's batches
MODEL_ROUNDS = 8

# the in-process ledger and the Celery run
LEASE_SECONDS = 30
JOB_POLL_S = 0.1
WORKER_START_TIMEOUT_S = 300
WORKER_STOP_TIMEOUT_S = 20
WARMUP_DOCS = 32
CELERY_S_PER_DOC = 1.0  # a Celery job may take this long a document (and the start) to end

# targets: pipeline documents/s over the component measured alone
MODEL_TARGET = 0.9
NULL_TARGET = 0.8


@dataclass(frozen=True)
class Services:
    """Where the real Postgres, Redis and Qdrant server are (the test suite's variables)."""

    database_url: str
    redis_url: str
    qdrant_url: str

    @classmethod
    def from_environment(cls) -> Services:
        return cls(
            database_url=os.environ.get(
                "EMBEDQ_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
            ),
            redis_url=os.environ.get("EMBEDQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
            qdrant_url=os.environ.get("EMBEDQ_TEST_QDRANT_URL", "http://127.0.0.1:6343"),
        )
