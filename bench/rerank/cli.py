"""The command line: flags, and one run from the query sets to the report."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.rerank.ceiling import EncoderSize, compute_bound
from bench.rerank.config import (
    CANDIDATES,
    LOGGER,
    MAX_LENGTH,
    PROFILES,
    QUICK_CANDIDATES,
    QUICK_SETS,
    SYNTHETIC_SMALL,
)
from bench.rerank.methods import Options
from bench.rerank.model import model_folder
from bench.rerank.report import RunFacts, report
from bench.rerank.rounds import Measurements, measure
from bench.rerank.workload import (
    length_summary,
    pair_lengths,
    query_sets,
    trial_pairs,
    warmup_pairs,
)
from bench.runtime.cli import print_json_of
from bench.runtime.config import DATA
from bench.runtime.models import resolve_device

logger = logging.getLogger(LOGGER)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    load_before = os.getloadavg()
    device = resolve_device(args.device)
    profile = PROFILES["cuda" if device.startswith("cuda") else "cpu"]
    sets = query_sets(Path(args.data), *set_counts(args, profile.sets))
    options = Options(device, args.budget or profile.budget, MAX_LENGTH)
    texts = [candidate for one in sets for _, candidate in one.pairs]
    with model_folder(args.model, profile, texts) as (folder, model):
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        lengths = [pair_lengths(tokenizer, one.pairs, MAX_LENGTH) for one in sets]
        summary = length_summary([n for part in lengths for n in part], MAX_LENGTH)
        logger.info("%d sets on %s, pair tokens: %s", len(sets), device, summary)
        fixed = profile.fixed_batches
        results = measure(
            folder, options, sets, warmup_pairs(sets[0], lengths[0]), trial_pairs(sets[0]), fixed
        )
        bound = None if options.on_gpu else cpu_bound(folder, lengths, results)
    facts = RunFacts(options, model, sets, summary, load_before, os.getloadavg(), bound)
    return report(args.out, facts, results)


def cpu_bound(
    folder: Path, lengths: Sequence[Sequence[int]], results: Measurements
) -> dict[str, Any]:
    """Measured after the rounds, on the same warm machine."""
    seconds = {name: sum(timed.seconds) for name, timed in results.timed.items() if timed.seconds}
    every = [n for part in lengths for n in part]
    return compute_bound(EncoderSize.of(folder), every, seconds, len(every))


def set_counts(args: argparse.Namespace, default_sets: int) -> tuple[int, int]:
    if args.quick:
        return args.sets or QUICK_SETS, args.candidates or QUICK_CANDIDATES
    return args.sets or default_sets, args.candidates or CANDIDATES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rerank",
        description="Rerank pairs/s of embedq against FlagReranker on 1,000-candidate sets.",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--model",
        help=f"a cross-encoder folder or hub id (default: random, of a real one's shape); "
        f"{SYNTHETIC_SMALL!r}: a toy random one, for smoke runs",
    )
    parser.add_argument("--sets", type=int, help="query sets (CPU 2, GPU 4)")
    parser.add_argument("--candidates", type=int, help=f"candidates a set ({CANDIDATES})")
    parser.add_argument("--budget", help="memory budget, e.g. 4GiB (CPU) or 8GiB (GPU default)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SETS} set of {QUICK_CANDIDATES} candidates: a check of every code path",
    )
    parser.add_argument("--out", help="JSON path (default bench/results/rerank-<device>.json)")
    parser.add_argument(
        "--data", default=str(DATA), help="folder holding scifact/ and peps/ (../shared/data)"
    )
    args = parser.parse_args(argv)
    for flag in ("sets", "candidates"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return print_json_of(run, parse_args(argv))
