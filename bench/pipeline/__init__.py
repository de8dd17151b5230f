"""Documents/s of embedq's whole ingestion pipeline against its parts measured alone.

The pipeline is the real one, end to end: the producer reads a JSON Lines file,
records the job and its batches in the Postgres ledger and publishes them; the
worker pipeline (``process_batch``) claims each batch, embeds it, upserts the
points to the Qdrant server and completes it in the ledger. It runs in this process
through ``InProcessQueue`` (the same code a Celery worker runs per task), so it and
its baseline use this process's cores the same way. Two parts:

- model: all-MiniLM-L6-v2 (max_length 256, truncate, dense) on SciFact abstracts,
  against ``Embedder.embed`` alone over the same batches (target: >= 0.9x); with
  ``--celery``, also a real ``embedq worker`` process, timed until the ledger says
  the job ended. The methods take turns on rounds of the batches (one job a round),
  so a shared machine's drift falls on all of them alike;
- null model: BGE-M3-sized outputs (1024-d dense + ~60 sparse weights, numpy random)
  injected through ``WorkerContext(models=...)``, against ``QdrantStore.upsert`` alone
  of the same points in the same batches, before and after the pipeline (target: >= 0.8x);
  the same points through qdrant-client's generated HTTP API (pydantic models, float64
  JSON text) are timed too: what a plain qdrant-client upsert costs, for comparison.

Each pipeline run also says where its time went: the producer's steps and the
worker's stages (``BatchOutcome.timings``: claim and embed on the producer's thread,
upsert and complete on the background writer's).
Each run gets a fresh Postgres schema, its own Qdrant collections and Redis queue,
all removed at the end. One JSON object goes to stdout and to
``bench/results/pipeline-<device>.json``; logs go to stderr.

    python -m bench.pipeline                                  # defaults, a few minutes on CPU
    python -m bench.pipeline --docs 256 --null-docs 2000 --out /tmp/pipe/pipeline.json

``cli`` holds the command line; ``config`` the constants; ``services`` and ``session``
the servers and one run's shared state; ``corpus`` the documents and batches;
``nullmodel`` the null model; ``instruments`` the stopwatches; ``baselines`` the parts
measured alone; ``inprocess`` and ``celery_run`` the pipeline runs; ``breakdown`` the
figures; ``model_part`` and ``null_part`` the two comparisons; ``report`` the JSON.
Service URLs come from ``EMBEDQ_TEST_DATABASE_URL``, ``EMBEDQ_TEST_REDIS_URL`` and
``EMBEDQ_TEST_QDRANT_URL`` (defaults: the local test services).
"""
