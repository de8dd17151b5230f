"""Rerank jobs, worker side: finding candidates and ranking them."""
