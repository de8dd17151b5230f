"""Searching a collection with the model it was built with, to check what an index holds.

The model and its settings come from the ledger (the newest job that wrote the
collection), never from the caller, so an index cannot be queried with the wrong
model by accident. Models come from the caller's registry (one per process).
"""

from embedq.search.errors import (
    InvalidQueryError,
    NotIndexedError,
    RerankFailedError,
    UnsupportedModeError,
)
from embedq.search.index import IndexSettings, index_settings
from embedq.search.query import MODES, Hit
from embedq.search.searcher import (
    RERANK_POOL,
    QueryPlan,
    hybrid_candidates,
    plan_search,
    reranked,
    search,
)

__all__ = [
    "MODES",
    "RERANK_POOL",
    "Hit",
    "IndexSettings",
    "InvalidQueryError",
    "NotIndexedError",
    "QueryPlan",
    "RerankFailedError",
    "UnsupportedModeError",
    "hybrid_candidates",
    "index_settings",
    "plan_search",
    "reranked",
    "search",
]
