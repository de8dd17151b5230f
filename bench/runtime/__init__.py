"""Throughput of embedq's runtime against FlagEmbedding and sentence-transformers.

Every method embeds the same documents, truncated to the same ``max_length``, as
a stream of 512-document tasks (a worker gets one task at a time), so every
method processes exactly the same real tokens and tokens per second compare
directly. Methods:

- ``embedq``: ``Embedder.embed`` per task (memory-budgeted, length-packed batches);
- ``flagembedding_default``: FlagEmbedding's ``encode`` at its default batch size;
- ``flagembedding_best_fixed``: the same at the fastest fixed batch size that fits the budget;
- ``sentence_transformers``: ``SentenceTransformer.encode`` at its defaults (not for BGE-M3).

One JSON object goes to stdout and to ``bench/results/runtime-<device>.json``, with a
plot of throughput by document length next to it. Logs go to stderr.

    python -m bench.runtime                      # CPU: all-MiniLM-L6-v2; GPU: random BGE-M3 shape
    python -m bench.runtime --docs 96 --bucket-docs 16    # a quick check of every code path

The command line is in ``cli``; ``config`` holds the shared constants, ``corpus`` the
documents and tasks, ``models`` what every method shares, ``measure`` and ``passes`` the
instruments, ``embedq_runner`` and ``baselines`` the methods, ``gpu`` the efficiency check,
``suite`` the run of every method and ``report`` the JSON and the plot.
"""
