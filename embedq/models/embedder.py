"""The embedder: texts in, dense / sparse / ColBERT vectors out, within a memory budget.

Three stages, as in every model adapter worth copying: ``prepare`` validates
and tokenises (once) into windows, the runtime runs the model over them in
budget-sized micro-batches, and ``assemble`` gathers each text's chunks back in
input order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from embedq.errors import InvalidSettingError
from embedq.models import flag, heads, tokens
from embedq.models.calibration import calibrate
from embedq.models.describe import ModelDescription
from embedq.models.device import Placement, place
from embedq.models.loading import (
    SentenceTransformerHints,
    has_m3_heads,
    resolve_model_dir,
    usable_max_length,
)
from embedq.models.outputs import OUTPUTS, Chunk, EmbeddingResult
from embedq.models.runtime import (
    EncoderRuntime,
    PaddedBatch,
    ProgressCallback,
    RuntimeStats,
    TokenSequence,
    build_runtime,
    cost_prior,
)
from embedq.models.splitting import NoFit
from embedq.models.tokens import LongText, SpecialTokens, TokenizedText, Window

logger = logging.getLogger(__name__)

# BGE-M3's own choices, which FlagEmbedding applies to it
M3_POOLING = "cls"
# FlagEmbedding's defaults for an encoder that says nothing about itself
DEFAULT_POOLING = "cls"
DEFAULT_NORMALIZE = True


@dataclass(frozen=True)
class EmbedderSettings:
    """How texts become model inputs and vectors; fixed when the model loads."""

    name: str
    max_length: int
    pooling: str
    normalize: bool
    offers: frozenset[str]
    outputs: frozenset[str]
    long_text: LongText
    chunk_overlap: int


class _Vectors(NamedTuple):
    dense: npt.NDArray[np.float32] | None
    sparse: dict[int, float] | None
    colbert: npt.NDArray[np.float32] | None


@dataclass(frozen=True)
class EmbeddingModel:
    """One embedding model's modules and what its folder says; every view of it shares them."""

    name: str
    folder: Path
    is_m3: bool
    modules: flag.EncoderModules

    @classmethod
    def read(cls, model: str | Path, *, trust_remote_code: bool = False) -> EmbeddingModel:
        """Load the modules on the CPU in fp32; the caller moves them to their device."""
        folder = resolve_model_dir(model)
        is_m3 = has_m3_heads(folder, str(model))
        loader = flag.load_m3 if is_m3 else flag.load_dense
        modules = loader(folder, trust_remote_code=trust_remote_code)
        return cls(name=str(model), folder=folder, is_m3=is_m3, modules=modules)

    def settings(
        self,
        *,
        max_length: int | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        outputs: Sequence[str] | str | None = None,
        long_text: LongText = "chunk",
        chunk_overlap: int | None = None,
    ) -> EmbedderSettings:
        """The settings of a view, checked against the model; unset ones from its files."""
        return _settings(
            self.name,
            self.folder,
            self.modules,
            is_m3=self.is_m3,
            max_length=max_length,
            pooling=pooling,
            normalize=normalize,
            outputs=outputs,
            long_text=long_text,
            chunk_overlap=chunk_overlap,
        )


def one_sequence_peak(
    modules: flag.EncoderModules, settings: EmbedderSettings, dtype: torch.dtype
) -> float:
    """Predicted activation bytes of one sequence at the view's maximum length: its least need."""
    extra = _output_bytes_per_token(modules.config, settings.outputs)
    return cost_prior(modules.config, dtype, extra_per_token=extra).predict(1, settings.max_length)


class Embedder:
    """Embeds texts with one model on one device, never exceeding its memory budget."""

    def __init__(
        self,
        *,
        modules: flag.EncoderModules,
        settings: EmbedderSettings,
        runtime: EncoderRuntime,
    ) -> None:
        self.modules = modules
        self.settings = settings
        self.runtime = runtime
        self._special = SpecialTokens.learn(modules.tokenizer)
        self._unused_ids = heads.unused_token_ids(modules.tokenizer)

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        device: str | torch.device | None = None,
        memory_budget: int | float | str | None = None,
        max_length: int | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        outputs: Sequence[str] | str | None = None,
        long_text: LongText = "chunk",
        chunk_overlap: int | None = None,
        dtype: str | torch.dtype | None = None,
        max_batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        trust_remote_code: bool = False,
    ) -> Embedder:
        """Load a model from a hub id or a local folder, through FlagEmbedding, alone in its budget.

        BGE-M3-style folders (with ``colbert_linear.pt`` and ``sparse_linear.pt``)
        offer dense, sparse and ColBERT; any other encoder offers dense. Pooling,
        normalisation and maximum length come from the model's own files unless
        given here. ``outputs`` defaults to dense + sparse for BGE-M3, dense else.
        Several models in one process share a budget through a ``ModelRegistry``.
        """
        placement = place(device, memory_budget, dtype)
        loaded = EmbeddingModel.read(model, trust_remote_code=trust_remote_code)
        loaded.modules.to(placement.device, placement.dtype)
        settings = loaded.settings(
            max_length=max_length,
            pooling=pooling,
            normalize=normalize,
            outputs=outputs,
            long_text=long_text,
            chunk_overlap=chunk_overlap,
        )
        return cls.over(
            loaded.modules,
            settings,
            placement,
            max_batch_size=max_batch_size,
            max_batch_tokens=max_batch_tokens,
        )

    @classmethod
    def over(
        cls,
        modules: flag.EncoderModules,
        settings: EmbedderSettings,
        placement: Placement,
        *,
        resident_bytes: int | None = None,
        max_batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> Embedder:
        """A view with its own settings and runtime over modules already on ``placement``.

        Views share the modules (the weights), never their runtime, cost model or
        calibration. ``resident_bytes`` counts every model's weights in the budget
        (None: only these modules'), as ``build_runtime`` explains.
        """
        runtime = build_runtime(
            placement=placement,
            modules=modules,
            extra_per_token=_output_bytes_per_token(modules.config, settings.outputs),
            max_batch_size=max_batch_size,
            max_batch_tokens=max_batch_tokens,
            resident_bytes=resident_bytes,
        )
        embedder = cls(modules=modules, settings=settings, runtime=runtime)
        calibrate(
            runtime,
            embedder._compute,
            max_length=settings.max_length,
            vocab_size=int(modules.config.vocab_size),
        )
        logger.info("loaded %s: %s", settings.name, settings)
        return embedder

    @property
    def dense_dim(self) -> int:
        return int(self.modules.config.hidden_size)

    @property
    def colbert_dim(self) -> int | None:
        linear = self.modules.colbert_linear
        return int(linear.out_features) if isinstance(linear, torch.nn.Linear) else None

    @property
    def stats(self) -> RuntimeStats:
        return self.runtime.stats

    def embed(
        self, texts: Sequence[object], *, on_progress: ProgressCallback | None = None
    ) -> list[EmbeddingResult]:
        """One result per input, in input order; bad inputs get a reason, never an exception.

        ``on_progress(done, total)`` is called after every micro-batch, counting windows.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; wrap a single text in a list")
        windows, errors = self.prepare(texts)
        sequences = [TokenSequence(window.input_ids) for window in windows]
        outcomes = self.runtime.map(sequences, self._compute, on_progress=on_progress)
        return assemble(len(texts), windows, outcomes, errors)

    def prepare(self, texts: Sequence[object]) -> tuple[list[Window], dict[int, str]]:
        """Validate and tokenise every text once; cut into windows. Returns windows and errors."""
        errors: dict[int, str] = {}
        valid: list[tuple[int, str]] = []
        for index, text in enumerate(texts):
            problem = text_problem(text)
            if problem is None:
                valid.append((index, str(text)))
            else:
                errors[index] = problem
        windows: list[Window] = []
        for index, tokenized in self._tokenize(valid, errors):
            if not tokenized.ids:
                errors[index] = "text has no tokens (only characters the tokenizer drops)"
                continue
            windows.extend(
                tokens.make_windows(
                    index,
                    tokenized,
                    special=self._special,
                    width=self._content_width,
                    overlap=self.settings.chunk_overlap,
                )
            )
        return windows, errors

    def _tokenize(
        self, valid: list[tuple[int, str]], errors: dict[int, str]
    ) -> list[tuple[int, TokenizedText]]:
        """Tokenise in one call; if that fails, text by text so one bad text fails alone."""
        if not valid:
            return []
        truncate_to = self._content_width if self.settings.long_text == "truncate" else None
        tokenizer = self.modules.tokenizer
        try:
            texts = [text for _, text in valid]
            tokenized = tokens.tokenize(tokenizer, texts, truncate_to=truncate_to)
            return list(zip([index for index, _ in valid], tokenized, strict=True))
        except Exception:
            logger.warning("batched tokenisation failed; retrying text by text", exc_info=True)
        pairs = []
        for index, text in valid:
            try:
                pairs.append(
                    (index, tokens.tokenize(tokenizer, [text], truncate_to=truncate_to)[0])
                )
            except Exception as error:
                errors[index] = f"text cannot be tokenised: {error}"
        return pairs

    @property
    def _content_width(self) -> int:
        return self.settings.max_length - self._special.single_count

    def _compute(self, batch: PaddedBatch) -> list[_Vectors]:
        modules, settings = self.modules, self.settings
        hidden = modules.backbone(**batch.inputs, return_dict=True).last_hidden_state
        mask = batch.inputs["attention_mask"]
        rows = range(len(batch.lengths))
        dense: Any = [None] * len(rows)
        sparse: list[dict[int, float] | None] = [None] * len(rows)
        colbert: list[npt.NDArray[np.float32] | None] = [None] * len(rows)
        if "dense" in settings.outputs:
            dense = heads.dense_vectors(
                hidden, mask, pooling=settings.pooling, normalize=settings.normalize
            )
        if "sparse" in settings.outputs:
            assert modules.sparse_linear is not None
            weights = heads.token_weights(hidden, modules.sparse_linear)
            ids = batch.inputs["input_ids"].cpu().numpy()
            sparse = [heads.lexical_weights(weights[r], ids[r], self._unused_ids) for r in rows]
        if "colbert" in settings.outputs:
            assert modules.colbert_linear is not None
            colbert = list(
                heads.colbert_vectors(
                    hidden, modules.colbert_linear, batch.lengths, normalize=settings.normalize
                )
            )
        return [_Vectors(dense[r], sparse[r], colbert[r]) for r in rows]


def text_problem(text: object) -> str | None:
    """Why a text cannot be embedded, or None if it can."""
    if not isinstance(text, str):
        return f"text must be a string, not {type(text).__name__}"
    if not text.strip():
        return "text is empty" if not text else "text is only whitespace"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"text is not valid Unicode (unpaired surrogate at character {error.start})"
    return None


def assemble(
    count: int,
    windows: Sequence[Window],
    outcomes: Sequence[_Vectors | NoFit],
    errors: dict[int, str],
) -> list[EmbeddingResult]:
    """Gather windows back into one result per text; one failed window fails its text."""
    chunks: list[list[Chunk]] = [[] for _ in range(count)]
    failures: dict[int, str] = dict(errors)
    for window, outcome in zip(windows, outcomes, strict=True):
        if isinstance(outcome, NoFit):
            failures.setdefault(window.text_index, _chunk_failure(window, outcome))
            continue
        chunks[window.text_index].append(
            Chunk(
                dense=outcome.dense,
                sparse=outcome.sparse,
                colbert=outcome.colbert,
                start=window.start,
                end=window.end,
                num_tokens=window.length,
            )
        )
    return [
        EmbeddingResult(error=failures[i]) if i in failures else EmbeddingResult(chunks=chunks[i])
        for i in range(count)
    ]


def _chunk_failure(window: Window, failure: NoFit) -> str:
    if window.chunk_index == 0 and window.start in (None, 0):
        return failure.reason
    return f"chunk {window.chunk_index}: {failure.reason}"


def _settings(
    name: str,
    folder: Path,
    modules: flag.EncoderModules,
    *,
    is_m3: bool,
    max_length: int | None,
    pooling: str | None,
    normalize: bool | None,
    outputs: Sequence[str] | str | None,
    long_text: LongText,
    chunk_overlap: int | None,
) -> EmbedderSettings:
    hints = SentenceTransformerHints.read(folder)
    limit = usable_max_length(modules.tokenizer, modules.config)
    length = max_length or min(hints.max_length or limit, limit)
    if not 4 <= length <= limit:
        raise InvalidSettingError(f"max_length must be between 4 and {limit}, got {length}")
    offers = frozenset(OUTPUTS if is_m3 else ("dense",))
    dense_dim = int(modules.config.hidden_size)
    chosen = ModelDescription(name=name, dense_dim=dense_dim, offers=offers).choose(outputs)
    if long_text not in ("chunk", "truncate"):
        raise InvalidSettingError(f"long_text must be 'chunk' or 'truncate', got {long_text!r}")
    if pooling is not None and pooling not in heads.POOLINGS:
        raise InvalidSettingError(f"pooling must be one of {heads.POOLINGS}, got {pooling!r}")
    width = length - SpecialTokens.learn(modules.tokenizer).single_count
    overlap = width // 8 if chunk_overlap is None else chunk_overlap
    if not 0 <= overlap < width:
        raise InvalidSettingError(f"chunk_overlap must be in [0, {width}), got {overlap}")
    return EmbedderSettings(
        name=name,
        max_length=length,
        pooling=pooling or (M3_POOLING if is_m3 else hints.pooling or DEFAULT_POOLING),
        normalize=_first_known(normalize, None if is_m3 else hints.normalize, DEFAULT_NORMALIZE),
        offers=offers,
        outputs=chosen,
        long_text=long_text,
        chunk_overlap=overlap,
    )


def _first_known(*values: bool | None) -> bool:
    return next(value for value in values if value is not None)


def _output_bytes_per_token(config: Any, outputs: frozenset[str]) -> int:
    """Device memory per token for head outputs, beyond the backbone's own activations."""
    hidden = int(config.hidden_size)
    per_token = 4 * hidden  # fp32 widening of the hidden state for mean pooling
    if "colbert" in outputs:
        per_token += 8 * hidden  # projection and its normalised copy
    if "sparse" in outputs:
        per_token += 8
    return per_token
