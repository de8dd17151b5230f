"""Errors the job ledger raises, each a retryable or a permanent one (or a lost lease)."""

from __future__ import annotations

from embedq.errors import EmbedqError, NotFoundError, PermanentError, RetryableError


class LedgerUnavailableError(RetryableError):
    """The ledger database cannot be reached, is locked by another writer, or chose us to abort."""


class SchemaOutOfDateError(PermanentError):
    """The ledger database's schema is not the one this version of embedq expects."""


class JobNotFoundError(NotFoundError):
    """No job has this id."""


class BatchNotFoundError(NotFoundError):
    """No batch has this id."""


class JobClosedError(PermanentError):
    """The job is sealed or has ended, so it takes no new documents."""


class InvalidBatchError(PermanentError, ValueError):
    """A batch, its halves, or the counts reported for it do not add up."""


class InvalidApiKeyError(PermanentError, ValueError):
    """An API key's tenant or name is not one the ledger accepts."""


class CollectionBusyError(PermanentError):
    """The collection is being re-indexed: a removal now would come back with the new version."""


class LeaseLostError(EmbedqError):
    """Another worker took the batch over: this one drops it and writes nothing more of it."""
