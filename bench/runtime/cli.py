"""The command line: flags, logging, and one run from the corpus to the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.runtime.config import DATA, LOGGER, MINILM, PROFILES, SYNTHETIC_M3, SYNTHETIC_M3_SMALL
from bench.runtime.corpus import build_workload, corpus_counts, count_tokens, mixed_corpus
from bench.runtime.models import make_setup, model_folder, resolve_device
from bench.runtime.report import report
from bench.runtime.suite import measure_all

logger = logging.getLogger(LOGGER)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    device = resolve_device(args.device)
    profile = PROFILES["cuda" if device.startswith("cuda") else "cpu"]
    corpus = mixed_corpus(*corpus_counts(args.docs, profile), data=Path(args.data))
    model = args.model or profile.model
    with model_folder(model, corpus.texts) as (folder, label):
        setup = make_setup(args, profile, device, model, folder, label)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        lengths = count_tokens(tokenizer, corpus.texts, setup.max_length)
        cap = 0 if args.no_plot else (args.bucket_docs or profile.bucket_docs)
        workload = build_workload(corpus.texts, lengths, setup.max_length, cap)
        logger.info(
            "%d documents (%d SciFact, %d PEP), %d real tokens in %d tasks, on %s",
            workload.documents,
            corpus.scifact,
            corpus.peps,
            sum(lengths),
            len(workload.tasks),
            device,
        )
        results = measure_all(setup, workload)
    return report(args, setup, workload, results, corpus)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.runtime",
        description="Throughput of embedq against FlagEmbedding and sentence-transformers.",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--model",
        help=f"model folder or hub id, {MINILM!r} (CPU default), {SYNTHETIC_M3!r} (GPU default) "
        f"or {SYNTHETIC_M3_SMALL!r} (a toy model in BGE-M3's layout, for smoke runs)",
    )
    parser.add_argument("--max-length", type=int, help="tokens per document, for every method")
    parser.add_argument("--budget", help="memory budget, e.g. 4GiB (CPU) or 8GiB (GPU default)")
    parser.add_argument("--docs", type=int, help="total documents, split about 7:1 SciFact:PEP")
    parser.add_argument("--outputs", help="embedq/BGE-M3 outputs, e.g. dense or dense,sparse")
    parser.add_argument("--out", help="JSON path (the plot goes next to it as .png)")
    parser.add_argument(
        "--data",
        default=str(DATA),
        help="folder holding scifact/ and peps/ (default: ../shared/data beside the repo)",
    )
    parser.add_argument(
        "--bucket-docs", type=int, help="documents per length bucket for the plot (CPU: 256)"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the length-bucket pass")
    args = parser.parse_args(argv)
    if args.docs is not None and args.docs < 1:
        parser.error("--docs must be at least 1")
    return args


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    for name in ("bench", "embedq"):
        logging.getLogger(name).setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    return print_json_of(run, parse_args(argv))


def print_json_of(benchmark: Callable[[argparse.Namespace], dict], args: argparse.Namespace) -> int:
    """Run a benchmark with its logs on stderr, so stdout carries its JSON and nothing else."""
    configure_logging()
    # quiets transformers' and sentence-transformers' progress bars (read when tqdm is first
    # imported); FlagEmbedding passes ``disable`` itself, so its bars still reach stderr
    os.environ.setdefault("TQDM_DISABLE", "1")
    # libraries print load reports to stdout
    with contextlib.redirect_stdout(sys.stderr):
        document = benchmark(args)
    print(json.dumps(document, indent=2))
    return 0
