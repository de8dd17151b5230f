"""Opening a Qdrant client: a server by URL or local mode in a folder."""

from __future__ import annotations

import math
from pathlib import Path

from qdrant_client import QdrantClient

from embedq.errors import InvalidSettingError
from embedq.store.errors import QdrantUnavailableError


def connect(
    *,
    url: str | None = None,
    path: str | Path | None = None,
    api_key: str | None = None,
    timeout: float = 60,
) -> QdrantClient:
    """A client for a Qdrant server (``url``) or a local-mode folder (``path``), not both.

    Local mode allows one process per folder and one thread per client.
    """
    if (url is None) == (path is None):
        raise InvalidSettingError("give exactly one of a Qdrant url or a local-mode path")
    if path is None:
        # cloud_inference=True only skips the client's walk over every float of every point
        # looking for objects to embed locally (about half of an upsert's time with 1024-d
        # vectors); embedq sends plain vectors, so there is never anything to embed.
        return QdrantClient(
            url=url, api_key=api_key, timeout=math.ceil(timeout), cloud_inference=True
        )
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as error:  # another process holds the folder's lock
        raise QdrantUnavailableError(f"local Qdrant folder {path} is in use: {error}") from error
