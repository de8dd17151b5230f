"""The benchmark's documents: the mixed corpus, token counts, tasks, warm-up and length buckets."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtime.config import DATA, SEED, TASK_SIZE, Profile

SCIFACT_PER_PEP = 7
WARMUP_DOCS = 32  # spread over the length range; fewer left the first method measured cold


@dataclass(frozen=True)
class Corpus:
    """The benchmark's documents, shuffled, and how many came from each source."""

    texts: list[str]
    scifact: int
    peps: int


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: texts, and their token counts after truncation."""

    texts: list[str]
    lengths: list[int]

    @property
    def real_tokens(self) -> int:
        return sum(self.lengths)


@dataclass(frozen=True)
class Bucket:
    """Documents whose truncated length lies in ``[low, high]``, as tasks."""

    low: int
    high: int
    tasks: list[Task]
    truncated: bool = False  # every member reaches max_length

    @property
    def label(self) -> str:
        return f"{self.high} (truncated)" if self.truncated else f"{self.low}–{self.high}"


@dataclass(frozen=True)
class Workload:
    tasks: list[Task]
    warmup: list[str]
    buckets: list[Bucket]

    @property
    def documents(self) -> int:
        return sum(len(task.texts) for task in self.tasks)


def read_documents(data: Path, name: str) -> list[str]:
    """``title + " " + text`` of every record of a corpus, in file order."""
    path = data / name / "corpus.jsonl"
    with path.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return [record["title"] + " " + record["text"] for record in records]


def corpus_counts(total: int | None, profile: Profile) -> tuple[int, int]:
    """SciFact and PEP document counts: the profile's, or ``total`` split about 7:1."""
    if total is None:
        return profile.scifact, profile.peps
    peps = max(1, round(total / (SCIFACT_PER_PEP + 1))) if total > 1 else 0
    return total - peps, peps


def mixed_corpus(scifact: int, peps: int, data: Path = DATA) -> Corpus:
    """A fixed sample of both corpora, shuffled so that every task mixes short and long.

    Counts beyond a corpus's size are cut to it (there are 325 PEPs).
    """
    rng = random.Random(SEED)
    science, proposals = read_documents(data, "scifact"), read_documents(data, "peps")
    chosen = rng.sample(science, min(scifact, len(science)))
    chosen += rng.sample(proposals, min(peps, len(proposals)))
    rng.shuffle(chosen)
    return Corpus(chosen, min(scifact, len(science)), min(peps, len(proposals)))


def count_tokens(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[int]:
    """Tokens each text becomes as every method feeds it: truncated, special tokens included."""
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return [len(ids) for ids in encoded["input_ids"]]


def as_tasks(texts: Sequence[str], lengths: Sequence[int]) -> list[Task]:
    return [
        Task(list(texts[start : start + TASK_SIZE]), list(lengths[start : start + TASK_SIZE]))
        for start in range(0, len(texts), TASK_SIZE)
    ]


def warmup_texts(texts: Sequence[str], lengths: Sequence[int]) -> list[str]:
    """A few documents spread over the length range, so long shapes are warm too."""
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    picks = np.linspace(0, len(order) - 1, min(WARMUP_DOCS, len(order))).round().astype(int)
    return [texts[order[pick]] for pick in dict.fromkeys(picks.tolist())]


def length_buckets(
    texts: Sequence[str], lengths: Sequence[int], max_length: int, cap: int
) -> list[Bucket]:
    """Untruncated documents in length terciles, and the truncated ones on their own.

    Documents cut at ``max_length`` are often the largest group (most of the CPU
    corpus reaches 256 tokens), so quantiles over all lengths would collapse; they get
    a bucket of their own. Each bucket keeps its first ``cap`` members: the corpus is shuffled,
    so that is a fair sample.
    """
    shorter = sorted((i for i, n in enumerate(lengths) if n < max_length), key=lengths.__getitem__)
    groups = [(sorted(part.tolist()), False) for part in np.array_split(shorter, 3)]
    groups.append(([i for i, n in enumerate(lengths) if n >= max_length], True))
    buckets = []
    for group, truncated in groups:
        members = group[:cap]
        if members:
            chosen = [lengths[i] for i in members]
            tasks = as_tasks([texts[i] for i in members], chosen)
            buckets.append(Bucket(min(chosen), max(chosen), tasks, truncated))
    return buckets


def build_workload(
    texts: list[str], lengths: list[int], max_length: int, bucket_docs: int
) -> Workload:
    buckets = length_buckets(texts, lengths, max_length, bucket_docs) if bucket_docs > 0 else []
    return Workload(as_tasks(texts, lengths), warmup_texts(texts, lengths), buckets)
