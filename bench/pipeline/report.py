"""The JSON report: settings, versions, device, every measurement and the targets."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.pipeline.breakdown import STAGE_LEGEND
from bench.pipeline.config import (
    LOGGER,
    LONG_TEXT,
    MAX_LENGTH,
    MODEL_OUTPUTS,
    MODEL_ROUNDS,
    MODEL_TARGET,
    NULL_DENSE_DIM,
    NULL_OUTPUTS,
    NULL_SEED,
    NULL_SPARSE_TOKENS,
    NULL_TARGET,
    Services,
)
from bench.pipeline.services import server_versions
from bench.runtime.config import RESULTS
from bench.runtime.report import _target as target
from bench.runtime.report import device_name, slug
from bench.runtime.report import versions as runtime_versions

logger = logging.getLogger(LOGGER)

PIPELINE_PACKAGES = (
    "qdrant-client",
    "SQLAlchemy",
    "psycopg",
    "alembic",
    "celery",
    "redis",
    "numpy",
)


@dataclass(frozen=True)
class RunFacts:
    """What the command line decided, and the machine's load around the run."""

    device: str
    budget: str
    batch_size: int
    docs: int
    null_docs: int
    celery: bool
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def versions(services: Services) -> dict[str, str | None]:
    found = runtime_versions()
    for package in PIPELINE_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return {**found, **server_versions(services)}


def settings(facts: RunFacts) -> dict[str, Any]:
    import torch

    return {
        "device": facts.device,
        "memory_budget": facts.budget,
        "batch_size": facts.batch_size,
        "model": {"max_length": MAX_LENGTH, "long_text": LONG_TEXT, "outputs": MODEL_OUTPUTS},
        "docs": facts.docs,
        "model_rounds": f"up to {MODEL_ROUNDS}; each method runs each round in turn, rotating",
        "null_docs": facts.null_docs,
        "null_model": {
            "dense": f"{NULL_DENSE_DIM}-d float32, unit length, numpy random per text",
            "sparse": f"{NULL_SPARSE_TOKENS} random token ids a text (repeats collapse)",
            "outputs": NULL_OUTPUTS,
            "seed": NULL_SEED,
        },
        "celery": facts.celery,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": {"before": facts.load_before, "after": facts.load_after},
        "services": "Postgres (a fresh schema), Redis (its own queue), Qdrant server over REST",
        "in_process": "InProcessQueue running process_batch, as a Celery worker's task does",
        "stage_legend": STAGE_LEGEND,
    }


def targets(model: dict[str, Any], null: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "pipeline_vs_runtime_alone": target(
            model["pipeline_in_process"]["ratio"], ">=", MODEL_TARGET
        ),
        "null_pipeline_vs_qdrant_upsert_alone": target(
            null["pipeline_in_process"]["ratio"], ">=", NULL_TARGET
        ),
    }


def report(
    out: str | None,
    services: Services,
    facts: RunFacts,
    model: dict[str, Any],
    null: dict[str, Any],
) -> dict[str, Any]:
    """The report as a dict, written to ``out`` or ``bench/results/pipeline-<device>.json``."""
    name = device_name(facts.device)
    document = {
        "benchmark": "embedq pipeline throughput",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "versions": versions(services),
        "settings": settings(facts),
        "model_pipeline": model,
        "null_model_pipeline": null,
        "targets": targets(model, null),
    }
    path = Path(out) if out else RESULTS / f"pipeline-{slug(name)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", path)
    return document
