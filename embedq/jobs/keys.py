"""API keys: the secrets with which an HTTP client acts for one tenant.

A secret is shown once, when its key is created; the ledger keeps only its SHA-256.
The secret is 32 random bytes, so no slow key-derivation function is needed: a slow
hash protects guessable passwords, and nobody can guess 256 random bits, fast hash or not.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from embedq.jobs.clock import moment
from embedq.jobs.db import transaction
from embedq.jobs.errors import InvalidApiKeyError, LedgerUnavailableError
from embedq.jobs.records import ApiKeyView, NewApiKey
from embedq.jobs.schema import KEY_NAME_LENGTH, TENANT_LENGTH, ApiKey
from embedq.jobs.steps import apply

log = logging.getLogger(__name__)

SECRET_PREFIX = "eq_"  # tells a leaked secret apart from other tokens (secret scanners)
SECRET_BYTES = 32
KEY_ID_BYTES = 8  # 16 hex characters: short enough to type, 64 bits: no collisions to expect
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
TENANT_PATTERN = re.compile(rf"[A-Za-z0-9_.-]{{1,{TENANT_LENGTH}}}")


def create_api_key(
    sessions: sessionmaker[Session], *, tenant: str, name: str | None = None
) -> NewApiKey:
    """Record a new key for ``tenant`` and return it with its secret, which is not kept."""
    check_tenant(tenant)
    if name is not None and len(name) > KEY_NAME_LENGTH:
        raise InvalidApiKeyError(f"a key's name has at most {KEY_NAME_LENGTH} characters")
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    key = ApiKey(
        id=secrets.token_hex(KEY_ID_BYTES),
        tenant=tenant,
        name=name,
        secret_hash=hash_secret(secret),
        created_at=moment(),
    )
    with transaction(sessions) as s:
        s.add(key)
    return NewApiKey(id=key.id, tenant=tenant, name=name, created_at=key.created_at, secret=secret)


def authenticate(
    sessions: sessionmaker[Session], secret: str, *, now: datetime | None = None
) -> ApiKeyView | None:
    """The live key whose secret this is; None if there is none or it was revoked."""
    if not secret.startswith(SECRET_PREFIX) or not secret.isascii():
        return None  # not one of ours: no need to ask the database
    now = moment(now)
    # the lookup compares hashes, so its timing says nothing about the secret
    query = select(ApiKey).where(
        ApiKey.secret_hash == hash_secret(secret), ApiKey.revoked_at.is_(None)
    )
    with transaction(sessions, read_only=True) as s:
        key = s.scalars(query).one_or_none()
    if key is None:
        return None
    view = _view(key)
    stale = key.last_used_at is None or key.last_used_at <= now - TOUCH_EVERY
    if stale and _touch(sessions, key.id, now):
        view = replace(view, last_used_at=now)
    return view


def revoke_api_key(sessions: sessionmaker[Session], *, key_id: str) -> bool:
    """Stop a key from authenticating; False if there is no such key or it was revoked."""
    statement = (
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=moment())
    )
    with transaction(sessions) as s:
        return bool(apply(s, statement))


def list_api_keys(
    sessions: sessionmaker[Session], *, tenant: str | None = None
) -> list[ApiKeyView]:
    """Every key (of one tenant), revoked ones included, oldest first."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    with transaction(sessions, read_only=True) as s:
        return [_view(key) for key in s.scalars(query)]


def check_tenant(tenant: str) -> None:
    """Refuse a tenant name that is empty, too long or holds other than ``[A-Za-z0-9_.-]``."""
    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidApiKeyError(
            f"tenant {tenant!r} must be 1 to {TENANT_LENGTH} characters of "
            "letters, digits, '_', '.' and '-'"
        )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _touch(sessions: sessionmaker[Session], key_id: str, now: datetime) -> bool:
    # guarded, so that many requests at once write once; bookkeeping only, so a busy
    # ledger costs the timestamp, never the request
    statement = (
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - TOUCH_EVERY),
        )
        .values(last_used_at=now)
    )
    try:
        with transaction(sessions) as s:
            return bool(apply(s, statement))
    except LedgerUnavailableError as error:
        log.warning("could not record the use of API key %s: %s", key_id, error)
        return False


def _view(key: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=key.id,
        tenant=key.tenant,
        name=key.name,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )
