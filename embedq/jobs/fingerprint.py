"""A document's content hash: what its points were made from, so an unchanged one is skipped.

It covers everything a point holds that the document decides: the text (a title is
already in front of it), the metadata, and the settings the text was embedded with
(model, outputs, max length, long-text mode). Any change to one of them changes the
hash, so ``--skip-unchanged`` re-embeds exactly what would now come out different.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from embedq.jobs.contracts import Document, Embedding

# Bump when what goes into the hash changes: every stored hash then differs once.
HASH_VERSION = 1


def embedding_settings(model: str, embedding: Embedding) -> list[Any]:
    """The model and the settings that decide its vectors, in a fixed order."""
    return [model, embedding.outputs_text, embedding.max_length, embedding.long_text]


def content_hash(document: Document, settings: list[Any]) -> str:
    """The hex sha256 of a document (as a batch holds it) under ``settings``."""
    content = [HASH_VERSION, document.text, document.metadata, settings]
    # sort_keys: metadata written in another key order is the same metadata
    encoded = json.dumps(content, sort_keys=True, ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()
