"""Rerank jobs, worker side: finding candidates (``ranking``), scoring and ranking (``scoring``)."""
