"""Ingestion, producer side: reading input, screening what is stored, batching, submitting."""
