"""Ingestion, worker side: writing embedded batches to Qdrant in the background."""
