"""Qdrant failures as embedq errors: retryable when Qdrant struggles, permanent when refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from embedq.errors import PermanentError, RetryableError

# 4xx statuses that mean "not now" rather than "never": a timeout and rate limiting.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})


class QdrantUnavailableError(RetryableError):
    """Qdrant did not answer, or failed on its side (5xx, timeout, rate limit)."""


class QdrantRejectedError(PermanentError):
    """Qdrant refused a request as wrong (bad input, a missing collection)."""


class InvalidPointError(QdrantRejectedError):
    """A point that cannot be stored: a malformed vector, or one Qdrant refused."""


class IncompatibleCollectionError(PermanentError):
    """An existing collection's vectors do not match what the job produces."""


@contextmanager
def translated(
    action: str, permanent: type[PermanentError] = QdrantRejectedError
) -> Iterator[None]:
    """Re-raise qdrant-client failures inside the block as retryable or permanent errors."""
    try:
        yield
    except UnexpectedResponse as error:
        status = error.status_code or 0
        if 400 <= status < 500 and status not in _RETRYABLE_CLIENT_STATUSES:
            raise permanent(f"Qdrant refused to {action}: {_reason(error)}") from error
        raise QdrantUnavailableError(f"Qdrant failed to {action}: {_reason(error)}") from error
    except (ResponseHandlingException, ResourceExhaustedResponse, OSError) as error:
        # ResponseHandlingException wraps every transport error (refused, reset, timed out).
        raise QdrantUnavailableError(f"Qdrant failed to {action}: {error}") from error
    except ValueError as error:
        # Local mode refuses bad input with ValueError, as does the client's own validation.
        raise permanent(f"Qdrant refused to {action}: {error}") from error


def _reason(error: UnexpectedResponse) -> str:
    """Qdrant's own explanation from the response body, else the HTTP status."""
    try:
        return str(error.structured()["status"]["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {error.status_code} {error.reason_phrase}"
