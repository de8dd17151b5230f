"""Every method in turn on one workload, gathered with their ratios and the GPU efficiency."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from bench.runtime.baselines import measure_flagembedding, measure_sentence_transformers
from bench.runtime.config import LOGGER
from bench.runtime.corpus import Workload
from bench.runtime.embedq_runner import measure_embedq
from bench.runtime.gpu import gpu_efficiency, matmul_peak_tflops
from bench.runtime.models import Setup

logger = logging.getLogger(LOGGER)


@dataclass
class Measurements:
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    bucket_rates: dict[str, list[float]] = field(default_factory=dict)
    efficiency: dict[str, Any] | None = None


def measure_all(setup: Setup, workload: Workload) -> Measurements:
    """Every method in turn, each loaded alone so none shares memory with another."""
    results = Measurements()
    # the ceiling is measured before any method caps this process's GPU memory
    peak = matmul_peak_tflops(setup.device) if setup.on_gpu else None
    logger.info("embedq ...")
    embedq, rates, facts = measure_embedq(setup, workload)
    results.methods["embedq"] = embedq
    results.bucket_rates["embedq"] = rates
    logger.info("FlagEmbedding ...")
    default, best, rates = measure_flagembedding(setup, workload, facts)
    results.methods["flagembedding_default"] = default
    results.methods["flagembedding_best_fixed"] = best
    results.bucket_rates["flagembedding_default"] = rates
    logger.info("sentence-transformers ...")
    st_entry, st_rates = measure_sentence_transformers(setup, workload)
    results.methods["sentence_transformers"] = st_entry
    if st_rates is not None:
        results.bucket_rates["sentence_transformers"] = st_rates
    for name, entry in results.methods.items():
        # in the log as soon as known: a run cut at a time limit still leaves its figures
        logger.info("result %s: %s", name, json.dumps(entry))
    add_ratios(results.methods)
    if peak is not None:
        results.efficiency = gpu_efficiency(workload.tasks, facts, embedq, peak)
    results.methods["embedq"]["dtype"] = facts.dtype
    return results


def add_ratios(methods: dict[str, dict[str, Any]]) -> None:
    """ratio = embedq tokens/s ÷ the method's tokens/s (above 1: embedq is faster)."""
    reference = methods["embedq"]["tokens_per_s"]
    for entry in methods.values():
        if entry.get("tokens_per_s"):
            entry["ratio"] = round(reference / entry["tokens_per_s"], 3)
