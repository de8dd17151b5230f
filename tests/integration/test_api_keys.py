"""API keys and tenant isolation in the ledger, on a SQLite file and on Postgres."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.api import cli
from embedq.errors import PermanentError
from embedq.jobs.clock import moment
from embedq.jobs.db import alembic_config
from embedq.jobs.schema import ApiKey

Sessions = sessionmaker[Session]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated ledger of each kind (Postgres: a fresh schema of its own)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    engine = jobs.make_engine(url)
    jobs.migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Sessions:
    return jobs.make_sessions(engine)


def stored_keys(sessions: Sessions) -> list[dict[str, Any]]:
    """The api_keys table's rows, every column, as the database holds them."""
    with sessions() as s:
        return [dict(row._mapping) for row in s.execute(select(ApiKey.__table__))]


# --- keys -------------------------------------------------------------------------------


def test_a_new_key_authenticates_and_only_its_hash_is_stored(sessions: Sessions) -> None:
    key = jobs.create_api_key(sessions, tenant="acme", name="ingest bot")
    assert key.secret.startswith("eq_") and len(key.secret) >= 3 + 43  # 32 bytes, base64
    assert (key.tenant, key.name) == ("acme", "ingest bot")
    assert key.secret not in repr(key)

    [row] = stored_keys(sessions)
    assert row["id"] == key.id
    assert row["secret_hash"] == hashlib.sha256(key.secret.encode()).hexdigest()
    assert not any(key.secret in str(value) for value in row.values())

    view = jobs.authenticate(sessions, key.secret)
    assert view is not None
    assert (view.id, view.tenant, view.name, view.revoked) == (key.id, "acme", "ingest bot", False)


def test_every_key_gets_its_own_id_and_secret(sessions: Sessions) -> None:
    keys = [jobs.create_api_key(sessions, tenant="acme") for _ in range(5)]
    assert len({key.id for key in keys}) == len({key.secret for key in keys}) == 5
    for key in keys:
        view = jobs.authenticate(sessions, key.secret)
        assert view is not None and view.id == key.id


@pytest.mark.parametrize(
    "secret", ["", "eq_", "eq_not-a-real-secret", "Bearer eq_x", "eq_\u00e9t\u00e9", "\ud800"]
)
def test_an_unknown_secret_does_not_authenticate(sessions: Sessions, secret: str) -> None:
    jobs.create_api_key(sessions, tenant="acme")
    assert jobs.authenticate(sessions, secret) is None


def test_a_secret_off_by_one_character_does_not_authenticate(sessions: Sessions) -> None:
    secret = jobs.create_api_key(sessions, tenant="acme").secret
    changed = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert jobs.authenticate(sessions, changed) is None
    assert jobs.authenticate(sessions, secret + "x") is None


def test_a_revoked_key_no_longer_authenticates(sessions: Sessions) -> None:
    key = jobs.create_api_key(sessions, tenant="acme")
    other = jobs.create_api_key(sessions, tenant="acme")

    assert jobs.revoke_api_key(sessions, key_id=key.id) is True
    assert jobs.authenticate(sessions, key.secret) is None
    assert jobs.authenticate(sessions, other.secret) is not None  # only that key
    assert jobs.revoke_api_key(sessions, key_id=key.id) is False  # already revoked
    assert jobs.revoke_api_key(sessions, key_id="no-such-key") is False

    revoked = {view.id: view.revoked for view in jobs.list_api_keys(sessions)}
    assert revoked == {key.id: True, other.id: False}


def test_last_use_is_written_at_most_once_a_minute(sessions: Sessions) -> None:
    key = jobs.create_api_key(sessions, tenant="acme")
    [row] = stored_keys(sessions)
    assert row["last_used_at"] is None
    start = moment()

    first = jobs.authenticate(sessions, key.secret, now=start)
    assert first is not None and first.last_used_at == start
    soon = jobs.authenticate(sessions, key.secret, now=start + timedelta(seconds=59))
    assert soon is not None and soon.last_used_at == start  # no write
    assert [view.last_used_at for view in jobs.list_api_keys(sessions)] == [start]

    later = start + timedelta(seconds=61)
    again = jobs.authenticate(sessions, key.secret, now=later)
    assert again is not None and again.last_used_at == later
    assert [view.last_used_at for view in jobs.list_api_keys(sessions)] == [later]


def test_listing_shows_keys_oldest_first_without_secrets(sessions: Sessions) -> None:
    first = jobs.create_api_key(sessions, tenant="acme", name="one")
    second = jobs.create_api_key(sessions, tenant="globex")
    third = jobs.create_api_key(sessions, tenant="acme", name="three")

    assert [view.id for view in jobs.list_api_keys(sessions)] == [first.id, second.id, third.id]
    assert [view.id for view in jobs.list_api_keys(sessions, tenant="acme")] == [
        first.id,
        third.id,
    ]
    assert jobs.list_api_keys(sessions, tenant="initech") == []

    names = {item.name for item in fields(jobs.ApiKeyView)}
    assert names == {"id", "tenant", "name", "created_at", "revoked_at", "last_used_at"}
    listed = json.dumps([asdict(view) for view in jobs.list_api_keys(sessions)], default=str)
    for key in (first, second, third):
        assert key.secret not in listed
        assert hashlib.sha256(key.secret.encode()).hexdigest() not in listed


@pytest.mark.parametrize(
    "tenant", ["", "a" * 65, "has space", "slash/ed", "\u00fcmlaut", "new\nline", "tab\t"]
)
def test_a_bad_tenant_name_is_refused(sessions: Sessions, tenant: str) -> None:
    with pytest.raises(jobs.InvalidApiKeyError, match="tenant"):
        jobs.create_api_key(sessions, tenant=tenant)
    assert stored_keys(sessions) == []


def test_a_name_over_200_characters_is_refused(sessions: Sessions) -> None:
    with pytest.raises(jobs.InvalidApiKeyError, match="200") as raised:
        jobs.create_api_key(sessions, tenant="acme", name="x" * 201)
    assert isinstance(raised.value, PermanentError)
    assert stored_keys(sessions) == []


def test_the_longest_names_allowed_are_accepted(sessions: Sessions) -> None:
    tenant = "Az09_.-" + "t" * 57
    key = jobs.create_api_key(sessions, tenant=tenant, name="x" * 200)
    [view] = jobs.list_api_keys(sessions, tenant=tenant)
    assert (view.id, view.name) == (key.id, "x" * 200)


# --- tenant scoping of jobs -------------------------------------------------------------


@dataclass(frozen=True)
class Tenants:
    """One job of tenant a, one of tenant b, one made on the ledger directly (no tenant)."""

    a: str
    b: str
    untenanted: str


def new_job(sessions: Sessions, tenant: str | None, **options: Any) -> str:
    job_id = jobs.create_job(
        sessions,
        kind=options.pop("kind", "ingest"),
        collection=options.pop("collection", "papers"),
        model="bge-m3",
        tenant=tenant,
    )
    documents = [jobs.Document(f"{job_id}-{i}", "text") for i in range(3)]
    jobs.add_batch(sessions, job_id=job_id, documents=documents)
    failure = jobs.Failure(line=7, reason=f"bad line in {job_id}")
    jobs.record_intake_failures(sessions, job_id=job_id, failures=[failure])
    return job_id


@pytest.fixture
def tenants(sessions: Sessions) -> Tenants:
    return Tenants(
        a=new_job(sessions, "a"), b=new_job(sessions, "b"), untenanted=new_job(sessions, None)
    )


def test_a_job_records_its_tenant(sessions: Sessions, tenants: Tenants) -> None:
    def tenant_of(job_id: str) -> str | None:
        view = jobs.get_job(sessions, job_id=job_id)
        assert view is not None
        return view.tenant

    assert [tenant_of(job) for job in (tenants.a, tenants.b, tenants.untenanted)] == [
        "a",
        "b",
        None,
    ]


def test_get_job_shows_a_tenant_only_its_own_jobs(sessions: Sessions, tenants: Tenants) -> None:
    own = jobs.get_job(sessions, job_id=tenants.a, tenant="a")
    assert own is not None and own.id == tenants.a
    assert jobs.get_job(sessions, job_id=tenants.b, tenant="a") is None
    assert jobs.get_job(sessions, job_id=tenants.untenanted, tenant="a") is None
    assert jobs.get_job(sessions, job_id="no-such-job", tenant="a") is None
    # no tenant: the ledger's own users see everything
    assert jobs.get_job(sessions, job_id=tenants.b) is not None


def test_list_jobs_shows_a_tenant_only_its_own_jobs(sessions: Sessions, tenants: Tenants) -> None:
    second_a = new_job(sessions, "a")

    def listed(**options: Any) -> list[str]:
        return [view.id for view in jobs.list_jobs(sessions, **options)]

    assert listed(tenant="a") == [second_a, tenants.a]  # newest first
    assert listed(tenant="b") == [tenants.b]
    assert listed(tenant="c") == []
    assert set(listed()) == {second_a, tenants.a, tenants.b, tenants.untenanted}


def test_list_jobs_filters_by_kind_collection_and_status(
    sessions: Sessions, tenants: Tenants
) -> None:
    rerank = new_job(sessions, "a", kind="rerank")
    other_collection = new_job(sessions, "a", collection="patents")
    jobs.cancel_job(sessions, job_id=other_collection)

    def listed(**options: Any) -> list[str]:
        return [view.id for view in jobs.list_jobs(sessions, tenant="a", **options)]

    assert listed(kind="rerank") == [rerank]
    assert listed(kind=jobs.JobKind.ingest) == [other_collection, tenants.a]
    assert listed(collection="patents") == [other_collection]
    assert listed(status=jobs.JobStatus.cancelled) == [other_collection]
    assert listed(kind="ingest", collection="papers", status=jobs.JobStatus.pending) == [tenants.a]
    assert listed(kind="reindex") == []
    assert listed(limit=2) == [other_collection, rerank]
    assert listed(limit=2, offset=2) == [tenants.a]
    # the other tenant's matching job stays out of every filter's reach
    assert tenants.b not in listed(kind="ingest", collection="papers")
    with pytest.raises(ValueError):
        listed(kind="no-such-kind")


def test_failures_and_batches_of_another_tenants_job_are_empty(
    sessions: Sessions, tenants: Tenants
) -> None:
    failures = jobs.list_failures(sessions, job_id=tenants.a, tenant="a")
    assert [failure.reason for failure in failures] == [f"bad line in {tenants.a}"]
    assert len(jobs.list_batches(sessions, job_id=tenants.a, tenant="a")) == 1

    for job_id in (tenants.b, tenants.untenanted, "no-such-job"):
        assert jobs.list_failures(sessions, job_id=job_id, tenant="a") == []
        assert jobs.list_batches(sessions, job_id=job_id, tenant="a") == []
    assert len(jobs.list_failures(sessions, job_id=tenants.b)) == 1
    assert len(jobs.list_batches(sessions, job_id=tenants.b)) == 1


def test_a_tenant_cannot_cancel_another_tenants_job(sessions: Sessions, tenants: Tenants) -> None:
    # exactly like a job that does not exist: the same error, the same message
    with pytest.raises(jobs.JobNotFoundError) as missing:
        jobs.cancel_job(sessions, job_id="no-such-job", tenant="a")
    for job_id in (tenants.b, tenants.untenanted):
        with pytest.raises(jobs.JobNotFoundError) as foreign:
            jobs.cancel_job(sessions, job_id=job_id, tenant="a")
        assert str(foreign.value) == str(missing.value).replace("no-such-job", job_id)
        view = jobs.get_job(sessions, job_id=job_id)
        assert view is not None and view.status == jobs.JobStatus.pending

    assert jobs.cancel_job(sessions, job_id=tenants.a, tenant="a") is True
    assert jobs.cancel_job(sessions, job_id=tenants.a, tenant="a") is False  # already ended
    batches = jobs.list_batches(sessions, job_id=tenants.a)
    assert [batch.status for batch in batches] == [jobs.BatchStatus.cancelled]
    # no tenant: the ledger's own users may cancel any job
    assert jobs.cancel_job(sessions, job_id=tenants.b) is True


# --- migration --------------------------------------------------------------------------


def test_the_migration_downgrades_and_upgrades_again(engine: Engine) -> None:
    new_job(jobs.make_sessions(engine), None)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0002")
    schema = inspect(engine)
    assert "api_keys" not in schema.get_table_names()
    assert "tenant" not in {column["name"] for column in schema.get_columns("jobs")}
    with engine.connect() as connection:  # read plainly: the code's model is of the newest schema
        assert connection.execute(text("SELECT count(*) FROM batches")).scalar_one() == 1

    jobs.migrate(engine)
    assert jobs.current_revision(engine) == jobs.head_revision()
    [view] = jobs.list_jobs(jobs.make_sessions(engine))
    assert view.tenant is None


def _only_job(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SELECT id FROM jobs")).scalar_one())


# --- the command line -------------------------------------------------------------------


@pytest.fixture
def embedq(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Any:
    """Runs ``embedq ARGS`` in this process on embedded defaults; returns (code, out, err)."""
    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path / "home"))
    for name in ("EMBEDQ_BROKER_URL", "EMBEDQ_DATABASE_URL", "EMBEDQ_QDRANT_URL"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def cli_sessions(tmp_path: Path) -> Sessions:
    return jobs.open_ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.sqlite3'}")


def test_keys_create_prints_the_secret_once(embedq: Any, tmp_path: Path) -> None:
    code, out, _ = embedq("keys", "create", "--tenant", "acme", "--name", "bot")
    assert code == 0
    secret = next(line.split()[-1] for line in out.splitlines() if line.startswith("secret:"))
    assert secret.startswith("eq_")
    assert "cannot be shown again" in out

    code, out, err = embedq("keys", "create", "--tenant", "acme", "--json")
    assert code == 0 and "cannot be shown again" in err
    created = json.loads(out)  # stdout stays plain JSON
    assert created["tenant"] == "acme" and created["name"] is None
    assert created["secret"].startswith("eq_")

    sessions = cli_sessions(tmp_path)
    for given in (secret, created["secret"]):
        view = jobs.authenticate(sessions, given)
        assert view is not None and view.tenant == "acme"


def test_keys_list_shows_no_secrets_and_filters_by_tenant(embedq: Any) -> None:
    secrets = []
    for tenant in ("acme", "globex"):
        code, out, _ = embedq("keys", "create", "--tenant", tenant, "--json")
        assert code == 0
        secrets.append(json.loads(out)["secret"])

    code, out, _ = embedq("keys", "list")
    assert code == 0
    assert "acme" in out and "globex" in out and "active" in out
    code, out, _ = embedq("keys", "list", "--tenant", "globex", "--json")
    [listed] = json.loads(out)
    assert listed["tenant"] == "globex" and "secret" not in listed and "secret_hash" not in listed
    code, out, _ = embedq("keys", "list", "--json")
    assert len(json.loads(out)) == 2
    assert not any(secret in out for secret in secrets)


def test_keys_revoke(embedq: Any, tmp_path: Path) -> None:
    code, out, _ = embedq("keys", "create", "--tenant", "acme", "--json")
    created = json.loads(out)

    code, out, _ = embedq("keys", "revoke", created["id"])
    assert (code, out.strip()) == (0, "revoked")
    assert jobs.authenticate(cli_sessions(tmp_path), created["secret"]) is None
    code, out, _ = embedq("keys", "list")
    assert "revoked" in out
    code, out, _ = embedq("keys", "revoke", created["id"])
    assert code == 1 and "not revoked" in out
    code, out, _ = embedq("keys", "revoke", "no-such-key")
    assert code == 1 and "not revoked" in out


def test_keys_create_with_a_bad_tenant_is_one_clear_line(embedq: Any) -> None:
    code, out, err = embedq("keys", "create", "--tenant", "not ok")
    assert code == 2 and out == ""
    assert err.startswith("embedq: tenant 'not ok'") and len(err.strip().splitlines()) == 1
