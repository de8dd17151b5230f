"""``python -m bench.gpucheck --out DIR``: preflight, GPU tests, runtime and rerank benchmarks.

Each part runs under its own time limit, and the whole check under seven minutes; what did
not finish is named in the summary. Nothing is downloaded: the data comes from ``--data``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.gpucheck import summary
from bench.gpucheck.parts import TOTAL_LIMIT_S, Options, Outcome, plan, preflight, run_part
from bench.runtime.config import DATA


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    first = run_part(preflight(options), options, TOTAL_LIMIT_S)
    outcomes: list[Outcome] = [first]
    environment = first.facts
    if first.status == "passed":
        for part in plan(options, environment["device_slug"]):
            left = TOTAL_LIMIT_S - (time.monotonic() - started)
            outcomes.append(run_part(part, options, left))
    text = summary.write(options.out, environment, outcomes, time.monotonic() - started)
    print(text)
    if first.status != "passed":
        log = options.out / (first.log or "preflight.log")
        print(log.read_text(encoding="utf-8", errors="replace")[-2000:], file=sys.stderr)
    return 0 if all(o.status == "passed" for o in outcomes) else 1


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpucheck", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for results, logs, summary")
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="folder holding scifact/ and peps/ (default: ../shared/data beside the repo)",
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --smoke)")
    parser.add_argument(
        "--smoke", action="store_true", help="toy models and a few documents: every code path"
    )
    args = parser.parse_args(argv)
    for folder in ("scifact", "peps"):
        if not (args.data / folder / "corpus.jsonl").is_file():
            parser.error(f"--data {args.data}: no {folder}/corpus.jsonl there")
    return Options(args.out, args.data.resolve(), args.device, args.smoke)
