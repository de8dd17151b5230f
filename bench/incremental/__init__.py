"""Incremental ingestion on SciFact: what re-ingesting costs when nothing, or 1%, changed."""
