"""Rerank jobs, producer side: reading query sets and submitting them."""
