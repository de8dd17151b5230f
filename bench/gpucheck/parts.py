"""The check's parts: what each runs, how long it may take, and running one under its limit.

Each part is a child process in its own session, so a part cut at its limit is ended with
everything it started, and the next part still gets its turn. The parent imports no torch
and never touches the GPU: every byte of it is left to the parts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# seconds each part may run on a GPU; 7 minutes in all with the preflight
LIMITS = {"preflight": 45, "tests": 95, "runtime": 180, "rerank": 100}
TOTAL_LIMIT_S = 420
GRACE_S = 5  # between SIGTERM and SIGKILL for a part past its limit
# the runtime benchmark's documents on a GPU (about 7:1 SciFact:PEP); its default 2,373
# would not fit the runtime part's limit with every method and the best-batch search
GPU_RUNTIME_DOCS = 1200


@dataclass(frozen=True)
class Options:
    out: Path
    data: Path
    device: str  # "cuda", "cuda:N" or "cpu"
    smoke: bool


@dataclass(frozen=True)
class Part:
    name: str
    command: list[str]
    limit_s: float
    result: Path | None = None  # the JSON the part writes, if it writes one


@dataclass
class Outcome:
    """How a part went: passed, failed, cut (at its limit) or skipped (no time left)."""

    name: str
    status: str
    seconds: float
    limit_s: float
    returncode: int | None = None
    log: str | None = None
    result: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def preflight(options: Options) -> Part:
    return Part(
        "preflight",
        python(
            "-m",
            "bench.gpucheck.preflight",
            "--device",
            options.device,
            "--out",
            str(options.out / "environment.json"),
        ),
        LIMITS["preflight"],
        options.out / "environment.json",
    )


def plan(options: Options, device_slug: str) -> list[Part]:
    """The parts after the preflight, in order: correctness first, then the two benchmarks."""
    out, data, device = options.out, str(options.data), options.device
    runtime_json = out / f"runtime-{device_slug}.json"
    rerank_json = out / f"rerank-{device_slug}.json"
    runtime = ["--device", device, "--data", data, "--no-plot", "--out", str(runtime_json)]
    rerank = ["--device", device, "--data", data, "--out", str(rerank_json)]
    if options.smoke:  # toy models and a few documents: every code path, in seconds
        runtime += ["--model", "synthetic-bge-m3-small", "--docs", "48"]
        rerank += ["--model", "synthetic-small", "--quick", "--candidates", "24"]
    else:
        runtime += ["--docs", str(GPU_RUNTIME_DOCS)]
    tests = ["-m", "pytest", "tests/gpu", "-p", "no:cacheprovider", "-q", "-rA"]
    return [
        Part("tests", python(*tests), LIMITS["tests"]),
        Part("runtime", python("-m", "bench.runtime", *runtime), LIMITS["runtime"], runtime_json),
        Part("rerank", python("-m", "bench.rerank", *rerank), LIMITS["rerank"], rerank_json),
    ]


def run_part(part: Part, options: Options, seconds_left: float) -> Outcome:
    """Run ``part`` for at most its limit (or what the whole check has left)."""
    limit = min(part.limit_s, seconds_left)
    if limit < 1:
        return Outcome(part.name, "skipped", 0.0, part.limit_s)
    log = options.out / f"{part.name}.log"
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            part.command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=part_environment(options),
            start_new_session=True,
        )
        try:
            returncode: int | None = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            end_session(process)
            returncode = None
    seconds = time.monotonic() - started
    status = "cut" if returncode is None else ("passed" if returncode == 0 else "failed")
    result = part.result if part.result is not None and part.result.is_file() else None
    return Outcome(
        part.name,
        status,
        round(seconds, 1),
        limit,
        returncode,
        log.name,
        result.name if result else None,
        read_json(result) if result else {},
    )


def part_environment(options: Options) -> dict[str, str]:
    """Nothing is fetched on a GPU host: the hub is off, tests read the given data folder."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TQDM_DISABLE": "1",
            "EMBEDQ_TEST_DATA": str(options.data),
        }
    )
    return env


def end_session(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the part's whole session, then SIGKILL to whatever is left."""
    for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, GRACE_S)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}
