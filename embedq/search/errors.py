"""Why a search cannot run: all permanent, since asking again changes nothing."""

from __future__ import annotations

from embedq.errors import PermanentError


class NotIndexedError(PermanentError):
    """No job in the ledger has written the collection, so its model settings are unknown."""


class UnsupportedModeError(PermanentError):
    """The search mode asks for vectors the collection does not hold (or is not a mode)."""


class InvalidQueryError(PermanentError):
    """The query cannot be embedded (empty, or only characters the tokenizer drops)."""


class RerankFailedError(PermanentError):
    """The reranker could not score some of the hits."""
