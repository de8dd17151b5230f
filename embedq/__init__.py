"""embedq: memory-budgeted embedding and reranking workers behind a job queue."""

__version__ = "0.1.0"
