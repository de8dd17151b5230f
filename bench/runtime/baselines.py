"""The FlagEmbedding and sentence-transformers methods: their runners and measurements."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np

from bench.runtime.config import LOGGER
from bench.runtime.corpus import Workload
from bench.runtime.embedq_runner import EmbedqFacts
from bench.runtime.measure import bucket_throughput, finite_rows, method_entry, rounded, timed_pass
from bench.runtime.models import Setup, cap_gpu_memory, release_memory
from bench.runtime.passes import ObservedRunner

logger = logging.getLogger(LOGGER)

FIXED_BATCH_CANDIDATES = (8, 16, 32, 64, 128, 256)
FLAG_DEFAULT_BATCH = 256  # FlagEmbedding's own default
# ids below this are special tokens in both BERT's and XLM-R's layouts
FIRST_ORDINARY_ID = 5


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
        str(size): {"fits": ok, "first_task_seconds": rounded(trials.get(size), 3)}
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
