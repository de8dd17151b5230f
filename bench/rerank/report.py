"""The JSON report: settings, versions, device and load, every method, parity and the targets."""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.rerank.config import LOGGER, PARITY_TOLERANCE, SEED, TARGET_RATIO
from bench.rerank.methods import Options, Scores
from bench.rerank.rounds import EMBEDQ, FLAG_BEST, FLAG_DEFAULT, Measurements, Timed
from bench.rerank.workload import QuerySet
from bench.runtime.config import RESULTS
from bench.runtime.report import _target as target
from bench.runtime.report import device_name, slug, versions

logger = logging.getLogger(LOGGER)


@dataclass(frozen=True)
class RunFacts:
    """What the command line decided, the model, and the machine's load around the run."""

    options: Options
    model: dict[str, Any]
    sets: Sequence[QuerySet]
    lengths: dict[str, Any]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    compute_bound: dict[str, Any] | None = None  # CPU runs: see bench.rerank.ceiling


def failures(scores: Sequence[Scores]) -> int:
    return sum(score is None for one in scores for score in one)


def method_entry(timed: Timed, sets: Sequence[QuerySet], batch_size: int | None) -> dict[str, Any]:
    pairs = [len(one.pairs) for one in sets]
    rates = [n / s for n, s in zip(pairs, timed.seconds, strict=True)]
    return {
        "batch_size": batch_size if batch_size is not None else "memory-budgeted, length-packed",
        "pairs": sum(pairs),
        "seconds": round(sum(timed.seconds), 3),
        "pairs_per_s": round(sum(pairs) / sum(timed.seconds), 2),
        "pairs_per_s_median": round(statistics.median(rates), 2),
        "pairs_per_s_by_set": [round(rate, 2) for rate in rates],
        "failures": failures(timed.scores),
        "peak_memory_bytes": timed.peak_memory_bytes,
    }


def max_difference(ours: Sequence[Scores], theirs: Sequence[Scores]) -> float | None:
    gaps = [
        abs(a - b)
        for mine, other in zip(ours, theirs, strict=True)
        for a, b in zip(mine, other, strict=True)
        if a is not None and b is not None
    ]
    return max(gaps) if gaps else None


def parity(results: Measurements, on_gpu: bool) -> dict[str, Any]:
    embedq = results.timed[EMBEDQ].scores
    found = {
        f"max_abs_diff_vs_{name}": max_difference(embedq, results.timed[name].scores)
        for name in (FLAG_DEFAULT, FLAG_BEST)
        if name in results.timed
    }
    note = (
        "half precision on the GPU (embedq's dtype against FlagReranker's fp16): shown, not held "
        f"to the fp32 tolerance {PARITY_TOLERANCE}"
        if on_gpu
        else f"fp32 on both sides; tolerance {PARITY_TOLERANCE}"
    )
    return {**found, "precision": note}


def methods_report(results: Measurements, sets: Sequence[QuerySet]) -> dict[str, dict[str, Any]]:
    methods = {
        name: method_entry(timed, sets, results.batch_sizes[name])
        for name, timed in results.timed.items()
    }
    methods[EMBEDQ].update(results.embedq_facts, **results.embedq_counters)
    if FLAG_BEST in methods:
        methods[FLAG_BEST]["selection"] = {
            k: v for k, v in results.best_fixed.items() if k != "batch_size"
        }
    else:
        methods[FLAG_BEST] = {
            "skipped": "no candidate batch size fits the budget",
            **results.best_fixed,
        }
    reference = methods[EMBEDQ]
    for entry in methods.values():
        if entry.get("pairs_per_s"):
            entry["ratio"] = round(reference["pairs_per_s_median"] / entry["pairs_per_s_median"], 3)
            entry["ratio_total"] = round(reference["pairs_per_s"] / entry["pairs_per_s"], 3)
    return methods


def targets(
    methods: dict[str, dict[str, Any]], checks: dict[str, Any], on_gpu: bool
) -> dict[str, Any]:
    found = {
        f"embedq_vs_{name}": target(methods[name].get("ratio"), ">=", TARGET_RATIO)
        for name in (FLAG_DEFAULT, FLAG_BEST)
    }
    found["embedq_failures"] = target(methods[EMBEDQ]["failures"], "<=", 0)
    if not on_gpu:
        found["parity_max_abs_diff"] = target(
            checks.get(f"max_abs_diff_vs_{FLAG_DEFAULT}"), "<=", PARITY_TOLERANCE
        )
    return found


def settings(facts: RunFacts, results: Measurements) -> dict[str, Any]:
    import torch

    options = facts.options
    budget_note = (
        f"enforced on both: the process is capped at the budget plus the waiting model's "
        f"weights ({results.gpu_cap_bytes} bytes)"
        if options.on_gpu
        else "sizes embedq's batches only: the CPU enforces no limit on FlagReranker"
    )
    return {
        **facts.model,
        "device": options.device,
        "max_length": options.max_length,
        "truncation": "query to 3/4 of max_length, the pair to max_length, for both methods",
        "memory_budget": options.budget,
        "memory_budget_applies": budget_note,
        "sets": len(facts.sets),
        "candidates_per_set": [len(one.pairs) for one in facts.sets],
        "candidates_from": {
            "scifact": sum(one.scifact for one in facts.sets),
            "peps": sum(one.peps for one in facts.sets),
        },
        "pair_tokens": facts.lengths,
        "seed": SEED,
        "rounds": "one set a round, every method in turn, the order rotating; warm-up excluded",
        "orders": results.orders,
        "ratio": "embedq median pairs/s over the method's; ratio_total: over all pairs",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(x, 2) for x in facts.load_before],
        "load_average_after": [round(x, 2) for x in facts.load_after],
        "peak_memory": "cuda max_memory_allocated of the process, both models' weights included"
        if options.on_gpu
        else "rise of process RSS while the method scored a set, sampled",
    }


def report(out: str | None, facts: RunFacts, results: Measurements) -> dict[str, Any]:
    name = device_name(facts.options.device)
    path = Path(out) if out else RESULTS / f"rerank-{slug(name)}.json"
    methods = methods_report(results, facts.sets)
    checks = parity(results, facts.options.on_gpu)
    document = {
        "benchmark": "embedq rerank throughput",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "versions": versions(),
        "settings": settings(facts, results),
        "methods": methods,
        "parity": checks,
        "targets": targets(methods, checks, facts.options.on_gpu),
    }
    if facts.compute_bound is not None:
        document["compute_bound"] = facts.compute_bound
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", path)
    return document
