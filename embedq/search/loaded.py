"""Query-side models, loaded once per process and kept, so repeated searches reuse them."""

from __future__ import annotations

import logging

from embedq.models import Embedder, Reranker
from embedq.search.index import IndexSettings
from embedq.workers.context import MODEL_OPTIONS, BatchEmbedder

logger = logging.getLogger(__name__)

# Keyed as workers key theirs (model and the options that decide how it loads), plus
# where it runs, which a worker fixes per process but a caller of search may vary.
_embedders: dict[tuple, BatchEmbedder] = {}
_rerankers: dict[tuple, Reranker] = {}


def query_embedder(
    index: IndexSettings,
    outputs: frozenset[str],
    *,
    device: str | None = None,
    memory_budget: str | None = None,
) -> BatchEmbedder:
    """The embedder that encodes queries as ``index``'s documents were, for ``outputs``.

    A query is one chunk (truncated), whatever the collection did with long texts:
    a document's chunks are embedded alike either way, so vectors still compare.
    """
    options = {**index.options, "outputs": ",".join(sorted(outputs)), "long_text": "truncate"}
    key = (index.model, *(str(options.get(name)) for name in MODEL_OPTIONS), device, memory_budget)
    if key not in _embedders:
        logger.info("search loads %s %s", index.model, options)
        _embedders[key] = Embedder.load(
            index.model,
            device=device,
            memory_budget=memory_budget,
            max_length=options.get("max_length"),
            long_text="truncate",
            outputs=options["outputs"],
        )
    return _embedders[key]


def reranker(
    model: str, *, device: str | None = None, memory_budget: str | None = None
) -> Reranker:
    key = (model, device, memory_budget)
    if key not in _rerankers:
        logger.info("search loads reranker %s", model)
        _rerankers[key] = Reranker.load(model, device=device, memory_budget=memory_budget)
    return _rerankers[key]
