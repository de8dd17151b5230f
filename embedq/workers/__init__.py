"""The worker side: the Celery app and its thin tasks, and a batch's lifecycle from claim to end.

``lifecycle.process_batch`` claims a batch, runs it under a lease by the handler of its
kind (``handlers``: ``ingest/`` embeds and writes, or removes; ``rerank/`` scores), and
tells the hooks after a batch (``hooks/``) how it ended; ``reindex/`` takes a re-index
to its end. ``queues`` is how producers reach the workers; ``reaper`` publishes what
was lost.
"""
