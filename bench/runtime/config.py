"""Paths, constants and per-device defaults shared by every module of the benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# every module logs under the name the benchmark had as a single module
LOGGER = "bench.runtime"

# the package sits one level below bench/, so the repository is parents[2]
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "results"

TASK_SIZE = 512
SEED = 1234
RSS_SAMPLE_S = 0.02

MINILM = "all-minilm-l6-v2"
SYNTHETIC_M3 = "synthetic-bge-m3"
# BGE-M3's layout (XLM-R tokenizer, 8,194 positions, sparse and ColBERT heads) at a toy size:
# every code path of the GPU run, in seconds on a CPU (make gpu-check --smoke)
SYNTHETIC_M3_SMALL = "synthetic-bge-m3-small"


@dataclass(frozen=True)
class Profile:
    """Defaults for one kind of device."""

    model: str
    scifact: int
    peps: int
    max_length: int
    budget: str
    bucket_docs: int


PROFILES = {
    "cpu": Profile(MINILM, 896, 128, 256, "4GiB", 256),
    "cuda": Profile(SYNTHETIC_M3, 2048, 325, 8192, "8GiB", 1024),
}
