"""The command line: flags, logging, and one run of both parts from the corpus to the report."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

from bench.pipeline.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DOCS,
    DEFAULT_NULL_DOCS,
    LOGGER,
    Services,
)
from bench.pipeline.model_part import measure_model
from bench.pipeline.null_part import measure_null
from bench.pipeline.report import RunFacts, report
from bench.pipeline.session import bench_session
from bench.runtime.cli import print_json_of
from bench.runtime.config import PROFILES
from bench.runtime.models import resolve_device

logger = logging.getLogger(LOGGER)


def run(args: argparse.Namespace) -> dict[str, Any]:
    services = Services.from_environment()
    device = resolve_device(None)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    docs = args.docs or DEFAULT_DOCS[kind]
    budget = PROFILES[kind].budget
    load_before = os.getloadavg()
    with bench_session(services, device=device, budget=budget, batch_size=args.batch_size) as s:
        model = measure_model(s, docs, args.celery)
        null = measure_null(s, args.null_docs)
    facts = RunFacts(
        device,
        budget,
        args.batch_size,
        docs,
        args.null_docs,
        args.celery,
        load_before,
        os.getloadavg(),
    )
    return report(args.out, services, facts, model, null)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description="Documents/s of embedq's whole pipeline against its parts measured alone.",
    )
    parser.add_argument(
        "--docs", type=int, help="SciFact documents for the model part (CPU 2048, GPU 5183)"
    )
    parser.add_argument(
        "--null-docs",
        type=int,
        default=DEFAULT_NULL_DOCS,
        help=f"documents for the null-model part (default {DEFAULT_NULL_DOCS})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"documents per batch, pipeline and baselines (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--celery", action="store_true", help="also time a real `embedq worker` process"
    )
    parser.add_argument("--out", help="JSON path (default bench/results/pipeline-<device>.json)")
    args = parser.parse_args(argv)
    for flag in ("docs", "null_docs", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return print_json_of(run, parse_args(argv))
