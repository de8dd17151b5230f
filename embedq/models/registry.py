"""One model registry per process: one device, one memory budget, every model's weights once.

A worker may hold several models at once (a document embedder, a query
embedder of the same model with other settings, a reranker). Loaded one by one,
each would hold its own copy of the weights and plan its activations as if it
were alone in the budget. The registry instead:

* loads each model's weights once and builds cheap views over them, one per
  embedder spec (each view has its own settings, runtime, cost model and
  calibration);
* gives every view what all resident weights leave of the budget: activations
  of different models never coexist (a worker runs one batch at a time), so each
  may plan for all of it;
* evicts least recently used models when a new one does not fit, sizing the new
  weights before they reach the device, so eviction happens first.

A lock makes asking it from several threads safe (the API runs calls on a thread
pool; a worker asks from one thread). Views stay valid while resident; callers ask
the registry again for each batch rather than keeping views, so an evicted
model's memory is really given back.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch

from embedq.errors import InvalidSettingError
from embedq.models.device import Placement, free_memory, place
from embedq.models.embedder import Embedder, EmbeddingModel, one_sequence_peak
from embedq.models.flag import EncoderModules
from embedq.models.memory import format_bytes
from embedq.models.reranker import Reranker, one_pair_peak, pair_max_length, read_cross_encoder
from embedq.models.runtime import EncoderRuntime, activation_budget
from embedq.models.spec import EmbedderSpec

logger = logging.getLogger(__name__)

ModelKind = Literal["embedder", "reranker"]
_Key = tuple[ModelKind, str]


class ResidentModel(NamedTuple):
    """A model whose weights the registry holds on its device."""

    model: str
    kind: ModelKind
    weight_bytes: int


@dataclass
class _Resident:
    """One model's weights on the device, the views built over them, and their least needs."""

    model: str
    kind: ModelKind
    modules: EncoderModules
    weight_bytes: int
    source: EmbeddingModel | None = None  # an embedder's folder facts, to build more views
    embedders: dict[EmbedderSpec, Embedder] = field(default_factory=dict)
    reranker: Reranker | None = None
    # activation bytes of one sequence at each view's max length (None: the reranker's view)
    needs: dict[EmbedderSpec | None, float] = field(default_factory=dict)

    @property
    def runtimes(self) -> list[EncoderRuntime]:
        runtimes = [view.runtime for view in self.embedders.values()]
        return runtimes + ([self.reranker.runtime] if self.reranker is not None else [])

    @property
    def need(self) -> float:
        return max(self.needs.values(), default=0.0)


class ModelRegistry:
    """Holds a process's models on one device under one memory budget, evicting the least used."""

    def __init__(
        self,
        device: str | torch.device | None = None,
        memory_budget: int | float | str | None = None,
        *,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        self._placement = place(device, memory_budget, dtype)
        # least recently used first
        self._resident: OrderedDict[_Key, _Resident] = OrderedDict()
        # loads, evictions and the LRU order change together: one caller at a time
        self._lock = threading.RLock()

    @property
    def placement(self) -> Placement:
        return self._placement

    @property
    def resident_bytes(self) -> int:
        """Bytes of weights of every model held, each model counted once."""
        return sum(entry.weight_bytes for entry in self._resident.values())

    @property
    def activation_budget(self) -> float:
        """What every view may plan its activations for: what the weights leave of the budget."""
        return activation_budget(self._placement, self.resident_bytes)

    def resident(self) -> list[ResidentModel]:
        """The models held, least recently used first."""
        return [
            ResidentModel(entry.model, entry.kind, entry.weight_bytes)
            for entry in self._resident.values()
        ]

    def embedder(self, model: str, spec: EmbedderSpec) -> Embedder:
        """The embedder view of ``model`` for ``spec``, loading the model on first use."""
        key: _Key = ("embedder", model)
        with self._lock:
            entry = self._resident.get(key)
            if entry is None:
                return self._load_embedder(model, spec)
            self._resident.move_to_end(key)
            return entry.embedders.get(spec) or self._add_embedder_view(key, entry, spec)

    def reranker(self, model: str) -> Reranker:
        """The reranker for ``model``, loading it on first use."""
        key: _Key = ("reranker", model)
        with self._lock:
            entry = self._resident.get(key)
            if entry is None:
                return self._load_reranker(model)
            self._resident.move_to_end(key)
            assert entry.reranker is not None, "a reranker entry holds its view"
            return entry.reranker

    def _load_embedder(self, model: str, spec: EmbedderSpec) -> Embedder:
        source = EmbeddingModel.read(model)
        entry = _Resident(
            model=model,
            kind="embedder",
            modules=source.modules,
            # sized at the placement's precision while still on the CPU, before eviction
            weight_bytes=source.modules.weight_bytes(self._placement.dtype),
            source=source,
        )
        return self._add_embedder_view(("embedder", model), entry, spec)

    def _add_embedder_view(self, key: _Key, entry: _Resident, spec: EmbedderSpec) -> Embedder:
        assert entry.source is not None, "an embedder entry keeps its source"
        outputs = sorted(spec.outputs) if spec.outputs is not None else None
        settings = entry.source.settings(
            max_length=spec.max_length, long_text=spec.long_text, outputs=outputs
        )
        need = one_sequence_peak(entry.modules, settings, self._placement.dtype)
        what = f"embedder {entry.model!r} (max_length {settings.max_length})"
        with self._admitting(key, entry, need, what):
            view = Embedder.over(
                entry.modules, settings, self._placement, resident_bytes=self.resident_bytes
            )
        entry.embedders[spec] = view
        entry.needs[spec] = need
        return view

    def _load_reranker(self, model: str) -> Reranker:
        key: _Key = ("reranker", model)
        modules = read_cross_encoder(model)
        max_length = pair_max_length(modules, None)
        dtype = self._placement.dtype
        entry = _Resident(
            model=model, kind="reranker", modules=modules, weight_bytes=modules.weight_bytes(dtype)
        )
        need = one_pair_peak(modules, max_length, dtype)
        what = f"reranker {model!r} (max_length {max_length})"
        with self._admitting(key, entry, need, what):
            view = Reranker.over(
                modules, self._placement, max_length=max_length, resident_bytes=self.resident_bytes
            )
        entry.reranker = view
        entry.needs[None] = need
        return view

    @contextmanager
    def _admitting(self, key: _Key, entry: _Resident, need: float, what: str) -> Iterator[None]:
        """Make room for ``entry`` (new or resident) and a view needing ``need``, then place it.

        A newly loaded model whose first view then fails to build is dropped again.
        """
        fresh = key not in self._resident
        self._make_room(key, entry.weight_bytes if fresh else 0, max(need, entry.need), what)
        if fresh:
            self._settle(key, entry)
        try:
            yield
        except BaseException:
            if fresh:
                self._forget_failed(key)
            raise

    def _make_room(self, key: _Key, new_weights: int, need: float, what: str) -> None:
        """Evict least recently used models (never ``key``) until the new weights and need fit.

        Refuses, evicting nothing, what would not fit even alone.
        """
        kept = self._resident.get(key)
        alone = new_weights + (kept.weight_bytes if kept is not None else 0)
        if not self._fits(alone, need):
            raise InvalidSettingError(self._too_big_message(what, alone, need))
        evicted = False
        while not self._fits(self.resident_bytes + new_weights, max(need, self._largest_need())):
            self._evict(next(k for k in self._resident if k != key), reason=what)
            evicted = True
        if evicted:
            # a full collection: what FlagEmbedding left in reference cycles may still
            # hold the evicted weights, and the new ones are about to arrive
            gc.collect()
            free_memory(self._placement.device)
            self._rebudget()

    def _fits(self, weights: int, need: float) -> bool:
        return activation_budget(self._placement, weights) >= need

    def _largest_need(self) -> float:
        return max((entry.need for entry in self._resident.values()), default=0.0)

    def _settle(self, key: _Key, entry: _Resident) -> None:
        """Move a new model's weights onto the device and hold it as the most recently used."""
        entry.modules.to(self._placement.device, self._placement.dtype)
        self._resident[key] = entry
        self._rebudget()
        logger.info(
            "loaded %s %s: weights %s; %s of %s resident on %s, activation budget %s",
            entry.kind,
            entry.model,
            format_bytes(entry.weight_bytes),
            format_bytes(self.resident_bytes),
            format_bytes(self._placement.budget),
            self._placement.device,
            format_bytes(self.activation_budget),
        )

    def _evict(self, key: _Key, *, reason: str) -> None:
        """Forget a model and every view of it (the caller frees the memory after)."""
        entry = self._resident.pop(key)
        logger.info(
            "evicted %s %s (weights %s) to make room for %s; %s now resident",
            entry.kind,
            entry.model,
            format_bytes(entry.weight_bytes),
            reason,
            format_bytes(self.resident_bytes),
        )

    def _forget_failed(self, key: _Key) -> None:
        """Drop a model whose first view could not be built, so it holds no memory unused."""
        self._resident.pop(key, None)
        free_memory(self._placement.device)
        self._rebudget()

    def _rebudget(self) -> None:
        """Give every resident view what the weights now leave of the budget."""
        budget = self.activation_budget
        for entry in self._resident.values():
            for runtime in entry.runtimes:
                runtime.set_activation_budget(budget)

    def _too_big_message(self, what: str, weights: int, need: float) -> str:
        placement = self._placement
        return (
            f"{what} does not fit the memory budget of {format_bytes(placement.budget)} on "
            f"{placement.device} even alone: its weights ({format_bytes(weights)}) leave "
            f"{format_bytes(max(activation_budget(placement, weights), 0.0))} for activations, "
            f"and one sequence at its maximum length needs {format_bytes(need)}"
        )
