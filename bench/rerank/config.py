"""Constants and per-device defaults of the rerank benchmark."""

from __future__ import annotations

from dataclasses import dataclass

from embedq.models.synthetic import EncoderShape, TokenizerStyle

LOGGER = "bench.rerank"

MAX_LENGTH = 512  # for every method: FlagReranker's default
SEED = 1234
CANDIDATES = 1000
QUICK_SETS, QUICK_CANDIDATES = 1, 100
SCIFACT_PER_PEP = 7  # as the runtime benchmark mixes them: most short, some cut at max_length
WARMUP_PAIRS = 32  # spread over the length range, so long shapes are warm too
TRIAL_PAIRS = 128  # pairs of the first set each candidate fixed batch size is timed on

TARGET_RATIO = 2.0  # embedq pairs/s over FlagReranker's: the goal
PARITY_TOLERANCE = 1e-4  # max |score difference| in fp32

# shapes of real cross-encoders (cross-encoder/ms-marco-MiniLM-L-6-v2, BAAI/bge-reranker-base)
MINILM_L6 = EncoderShape(384, 6, 12, 1536, 512, 30522)
BGE_RERANKER_BASE = EncoderShape(768, 12, 12, 3072, 514, 250002)
# --model synthetic-small: bge-reranker-base's layout at a toy size, every code path of the
# GPU run in seconds on a CPU (make gpu-check --smoke)
SYNTHETIC_SMALL = "synthetic-small"
SMALL_SHAPE = EncoderShape(64, 2, 4, 128, 514, None)


@dataclass(frozen=True)
class Profile:
    """Defaults for one kind of device."""

    label: str
    shape: EncoderShape
    style: TokenizerStyle  # the tokenizer family of the real model
    sets: int
    budget: str
    fixed_batches: tuple[int, ...]


PROFILES = {
    # 2 sets, not 4: a 2-core CPU scores 10 to 20 pairs/s a method, so a 1,000-candidate set
    # for all three takes about 3 minutes; --sets 4 runs the full workload in about 15
    "cpu": Profile("MiniLM-L6", MINILM_L6, "bert", 2, "4GiB", (8, 16, 32, 64, 128)),
    "cuda": Profile(
        "bge-reranker-base", BGE_RERANKER_BASE, "xlm-roberta", 4, "8GiB", (16, 32, 64, 128, 256)
    ),
}
