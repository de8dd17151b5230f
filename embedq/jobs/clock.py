"""The ledger's notion of now: timezone-aware UTC, overridable so tests need not sleep."""

from __future__ import annotations

from datetime import datetime, timezone


def moment(now: datetime | None = None) -> datetime:
    """``now`` (which must carry a timezone), or the current UTC time."""
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: pass a timezone-aware one")
    return now.astimezone(timezone.utc)
