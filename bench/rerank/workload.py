"""The query sets: a SciFact query each, against SciFact abstracts mixed with PEP documents."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.rerank.config import SCIFACT_PER_PEP, SEED, TRIAL_PAIRS, WARMUP_PAIRS
from bench.runtime.corpus import read_documents

Pair = tuple[str, str]


@dataclass(frozen=True)
class QuerySet:
    """One query's candidates as (query, candidate) pairs, and how many came from each corpus."""

    pairs: list[Pair]
    scifact: int
    peps: int


def read_queries(data: Path) -> list[str]:
    with (data / "scifact" / "queries.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]


def query_sets(data: Path, sets: int, candidates: int) -> list[QuerySet]:
    """``sets`` fixed samples, each its own query and candidates, shuffled so lengths mix."""
    rng = random.Random(SEED)
    queries = read_queries(data)
    science, proposals = read_documents(data, "scifact"), read_documents(data, "peps")
    peps = min(len(proposals), round(candidates / (SCIFACT_PER_PEP + 1)))
    result = []
    for _ in range(sets):
        query = rng.choice(queries)
        chosen = rng.sample(science, candidates - peps) + rng.sample(proposals, peps)
        rng.shuffle(chosen)
        result.append(QuerySet([(query, text) for text in chosen], candidates - peps, peps))
    return result


def pair_lengths(tokenizer: Any, pairs: Sequence[Pair], max_length: int) -> list[int]:
    """Tokens each pair becomes as both methods build it.

    The query is cut to three quarters of ``max_length``, so the passage always has room
    and the pair is cut at ``max_length`` exactly.
    """
    options = {"add_special_tokens": False, "truncation": True}
    queries = tokenizer([q for q, _ in pairs], max_length=max_length * 3 // 4, **options)
    passages = tokenizer([p for _, p in pairs], max_length=max_length, **options)
    special = tokenizer.num_special_tokens_to_add(pair=True)
    return [
        min(len(q) + len(p) + special, max_length)
        for q, p in zip(queries["input_ids"], passages["input_ids"], strict=True)
    ]


def spread(pairs: Sequence[Pair], lengths: Sequence[int], count: int) -> list[Pair]:
    """``count`` pairs spread evenly over the length range."""
    order = sorted(range(len(pairs)), key=lengths.__getitem__)
    picks = np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int)
    return [pairs[order[pick]] for pick in dict.fromkeys(picks.tolist())]


def warmup_pairs(first: QuerySet, lengths: Sequence[int]) -> list[Pair]:
    return spread(first.pairs, lengths, WARMUP_PAIRS)


def trial_pairs(first: QuerySet) -> list[Pair]:
    """Every k-th pair of the first set: its mix of lengths, at a fraction of the cost."""
    step = max(1, len(first.pairs) // TRIAL_PAIRS)
    return first.pairs[::step][:TRIAL_PAIRS]


def length_summary(lengths: Sequence[int], max_length: int) -> dict[str, Any]:
    values = np.asarray(lengths)
    return {
        "pairs": len(values),
        "real_tokens": int(values.sum()),
        "min": int(values.min()),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "max": int(values.max()),
        "at_max_length": int((values >= max_length).sum()),
    }
