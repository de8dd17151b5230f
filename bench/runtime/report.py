"""The JSON report and its plot: targets, device name, versions and throughput by length bucket."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtime.config import LOGGER, RESULTS, RSS_SAMPLE_S, SEED, TASK_SIZE
from bench.runtime.corpus import Bucket, Corpus, Workload
from bench.runtime.models import Setup
from bench.runtime.suite import Measurements

logger = logging.getLogger(LOGGER)


def targets(
    methods: dict[str, dict[str, Any]], efficiency: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The goals this runtime is held to, each with its measured value."""
    embedq = methods["embedq"]
    if efficiency is None:
        return {
            "embedq_vs_flagembedding_default": _target(
                methods["flagembedding_default"].get("ratio"), ">=", 1.5
            ),
            "embedq_vs_sentence_transformers": _target(
                methods["sentence_transformers"].get("ratio"), ">=", 1.0
            ),
        }
    return {
        "embedq_vs_flagembedding_best_fixed": _target(
            methods["flagembedding_best_fixed"].get("ratio"), ">=", 2.0
        ),
        "embedq_fraction_of_matmul_peak": _target(efficiency["embedq_fraction_of_peak"], ">=", 0.5),
        "embedq_padding_fraction": _target(embedq["padding_fraction"], "<=", 0.05),
        "embedq_documents_lost": _target(embedq["documents_lost"], "<=", 0),
    }


def _target(value: float | None, relation: str, goal: float) -> dict[str, Any]:
    met = value is not None and (value >= goal if relation == ">=" else value <= goal)
    return {"value": value, "target": f"{relation} {goal}", "met": met}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def slug(name: str) -> str:
    """``Intel(R) Xeon(R) Processor, 2 cores`` -> ``intel-xeon-processor-2-cores``."""
    plain = re.sub(r"\((r|tm)\)", "", name.lower())
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")


def record(result: dict[str, Any], name: str, out: str | Path | None = None) -> Path:
    """Print a benchmark's JSON result and write it to ``out``, by default to
    ``bench/results/<name>-<device>.json``; returns where it went."""
    text = json.dumps(result, indent=2)
    print(text)
    default = (
        Path(__file__).resolve().parents[1] / "results" / f"{name}-{slug(result['device'])}.json"
    )
    path = Path(out or default)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in ("torch", "transformers", "FlagEmbedding", "sentence-transformers", "embedq"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def plot_buckets(
    path: Path, buckets: Sequence[Bucket], rates: dict[str, list[float]], title: str
) -> None:
    """Grouped bars: tokens/s per length bucket, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5))
    width = 0.8 / len(rates)
    positions = np.arange(len(buckets))
    for offset, (method, values) in enumerate(rates.items()):
        bars = axes.bar(positions + (offset - (len(rates) - 1) / 2) * width, values, width)
        bars.set_label(method)
        axes.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    documents = [sum(len(t.texts) for t in bucket.tasks) for bucket in buckets]
    axes.set_xticks(
        positions, [f"{b.label}\n({n} docs)" for b, n in zip(buckets, documents, strict=True)]
    )
    axes.set_xlabel("document length after truncation (tokens)")
    axes.set_ylabel("throughput (real tokens/s)")
    axes.set_title(title, fontsize=10)
    # headroom above the tallest bar for a one-row legend that hides no label
    axes.set_ylim(top=max(max(values) for values in rates.values()) * 1.2)
    axes.legend(loc="upper left", ncols=len(rates), frameon=False)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def bucket_report(buckets: Sequence[Bucket], rates: dict[str, list[float]]) -> list[dict]:
    return [
        {
            "tokens": [bucket.low, bucket.high],
            "documents": sum(len(task.texts) for task in bucket.tasks),
            "tokens_per_s": {method: round(values[i], 1) for method, values in rates.items()},
        }
        for i, bucket in enumerate(buckets)
    ]


def report(
    args: argparse.Namespace,
    setup: Setup,
    workload: Workload,
    results: Measurements,
    corpus: Corpus,
) -> dict[str, Any]:
    name = device_name(setup.device)
    out = Path(args.out) if args.out else RESULTS / f"runtime-{slug(name)}.json"
    document = {
        "benchmark": "embedq runtime throughput",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "versions": versions(),
        "settings": {
            "model": setup.model_label,
            "device": setup.device,
            "max_length": setup.max_length,
            "truncation": "every method truncates to max_length, special tokens included",
            "budget": setup.budget,
            "outputs": list(setup.outputs),
            "docs": {"total": workload.documents, "scifact": corpus.scifact, "peps": corpus.peps},
            "tasks": len(workload.tasks),
            "task_size": TASK_SIZE,
            "seed": SEED,
            "peak_memory": "cuda max_memory_allocated, weights included"
            if setup.on_gpu
            else f"rise of process RSS during the timed pass, sampled every {RSS_SAMPLE_S}s",
        },
        "methods": results.methods,
        "gpu_efficiency": results.efficiency,
        "buckets": bucket_report(workload.buckets, results.bucket_rates),
        "targets": targets(results.methods, results.efficiency),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", out)
    if workload.buckets:
        title = f"Throughput by document length: {setup.model_label}, L={setup.max_length}\n{name}"
        plot_buckets(out.with_suffix(".png"), workload.buckets, results.bucket_rates, title)
        logger.info("wrote %s", out.with_suffix(".png"))
    return document
