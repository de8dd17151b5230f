"""Rerank pairs/s of embedq's ``Reranker`` against FlagEmbedding's ``FlagReranker``.

Every method scores exactly the same (query, candidate) pairs, truncated the same way
(``max_length`` 512, the query cut to three quarters of it): query sets of 1,000
candidates each, a SciFact query against SciFact abstracts mixed with long PEP
documents, so candidate lengths range from a few dozen tokens to the cut. Methods:

- ``embedq``: ``Reranker.score`` per set (memory-budgeted, length-packed batches);
- ``flagreranker_default``: ``FlagReranker.compute_score`` at its default batch size;
- ``flagreranker_best_fixed``: the same at the fastest fixed batch size that fits the budget.

The model is a cross-encoder of a real one's shape at random weights (speed does not
depend on the weights): MiniLM-L6 on the CPU, bge-reranker-base on a GPU; ``--model``
takes a real one. After a warm-up, the methods take turns on the sets (one round a set,
the order rotating), so a shared machine's drift falls on all of them alike.

One JSON object goes to stdout and to ``bench/results/rerank-<device>.json``; logs go
to stderr.

    python -m bench.rerank               # CPU: 2 sets (about 8 minutes); GPU: 4 sets
    python -m bench.rerank --quick       # 1 set of 100 candidates: a check of every code path

``cli`` holds the command line; ``config`` the constants and per-device defaults;
``workload`` the query sets; ``model`` the cross-encoder; ``methods`` the three
methods; ``rounds`` the measurement; ``report`` the JSON.
"""
