"""One registry per process: shared weights, one budget for all models, LRU eviction."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from embedq.errors import InvalidSettingError
from embedq.models import (
    OUTPUTS,
    Embedder,
    EmbedderSpec,
    ModelRegistry,
    ModelSource,
    ResidentModel,
)
from embedq.models.embedder import EmbeddingModel
from embedq.models.memory import CostModel
from embedq.models.packing import pack
from embedq.models.runtime import EncoderRuntime
from embedq.models.synthetic import EncoderShape

# A vocabulary far larger than the tokenizer's makes the weights (~25 MiB a model) weigh
# as much as the activations, as BGE-M3's 250k-token embedding table does.
HEAVY = EncoderShape(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    vocab_size=100_000,
)
DOC_SPEC = EmbedderSpec(outputs=frozenset(OUTPUTS))
QUERY_SPEC = EmbedderSpec(long_text="truncate", outputs=frozenset({"dense"}))
SHORT_SPEC = EmbedderSpec(max_length=128, outputs=frozenset({"dense"}))


@pytest.fixture(scope="module")
def m3_model(build_model) -> str:
    return str(build_model(style="xlm-roberta", shape=HEAVY))


@pytest.fixture(scope="module")
def bert_model(build_model) -> str:
    return str(build_model(style="bert", shape=HEAVY, m3_heads=False))


@pytest.fixture(scope="module")
def reranker_model(build_model) -> str:
    return str(build_model(style="xlm-roberta", shape=HEAVY, reranker=True))


@pytest.fixture(scope="module")
def sizes(m3_model, bert_model, reranker_model) -> dict[str, tuple[int, float]]:
    """Each model's weights and least activation need (``SHORT_SPEC`` for embedders)."""
    registry = ModelRegistry("cpu", "1GiB")
    needs = {
        model: registry.embedder(model, SHORT_SPEC).runtime.cost.predict(1, 128)
        for model in (m3_model, bert_model)
    }
    reranker = registry.reranker(reranker_model)
    needs[reranker_model] = reranker.runtime.cost.predict(1, reranker.max_length)
    return {entry.model: (entry.weight_bytes, needs[entry.model]) for entry in registry.resident()}


def long_texts(pep_texts: list[str]) -> list[str]:
    """Two documents of a couple of thousand tokens each (several windows when chunked)."""
    return [" ".join(text.split()[:1500]) for text in pep_texts[:2]]


class AllocationLimit:
    """A device of ``budget`` bytes: a forward pass whose predicted peak, on top of the
    registry's resident weights, exceeds it raises ``torch.OutOfMemoryError``.

    The peak is predicted by a frozen copy of the running view's prior cost model, so
    the limit stays put while the runtime learns from OOMs. Views sharing a backbone
    cannot be told apart by a hook, so the test says which one runs.
    """

    def __init__(self, registry: ModelRegistry, budget: int) -> None:
        self.registry = registry
        self.budget = budget
        self.peaks: dict[str, list[float]] = {}
        self._running: tuple[str, CostModel] | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def install(self, module: torch.nn.Module) -> None:
        self._handles.append(module.register_forward_pre_hook(self._check, with_kwargs=True))

    @contextmanager
    def running(self, name: str, runtime: EncoderRuntime) -> Iterator[None]:
        self._running = (name, dataclasses.replace(runtime.cost))
        try:
            yield
        finally:
            self._running = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def _check(
        self, _module: torch.nn.Module, _args: tuple[object, ...], kwargs: dict[str, torch.Tensor]
    ) -> None:
        assert self._running is not None, "a forward pass outside running()"
        name, cost = self._running
        batch, length = kwargs["input_ids"].shape
        peak = self.registry.resident_bytes + cost.predict(batch, length)
        self.peaks.setdefault(name, []).append(peak)
        if peak > self.budget:
            raise torch.OutOfMemoryError(f"injected: {batch}x{length} needs {peak:.0f} bytes")


def test_specs_of_one_model_share_its_weights(m3_model, scifact_texts, pep_texts):
    registry = ModelRegistry("cpu", "1GiB")
    doc = registry.embedder(m3_model, DOC_SPEC)
    query = registry.embedder(m3_model, QUERY_SPEC)

    assert doc is not query and doc.runtime is not query.runtime
    assert doc.runtime.cost is not query.runtime.cost
    assert doc.modules is query.modules
    pointers = [p.data_ptr() for p in doc.modules.backbone.parameters()]
    assert pointers == [p.data_ptr() for p in query.modules.backbone.parameters()]
    assert registry.resident_bytes == doc.modules.weight_bytes()
    assert registry.resident() == [ResidentModel(m3_model, "embedder", doc.modules.weight_bytes())]
    assert registry.embedder(m3_model, DOC_SPEC) is doc  # a spec seen before: the same view
    # each view keeps its own settings over the shared weights
    text = long_texts(pep_texts)[0]
    [as_doc] = doc.embed([text])
    [as_query] = query.embed([text])
    assert len(as_doc.chunks) > 1 and all(c.colbert is not None for c in as_doc.chunks)
    assert len(as_query.chunks) == 1 and as_query.chunks[0].sparse is None


def test_weights_are_sized_at_the_placement_precision_before_they_move(m3_model):
    modules = EmbeddingModel.read(m3_model).modules
    tensors = [t for part in modules.parts for t in (*part.parameters(), *part.buffers())]
    floats = sum(t.numel() for t in tensors if t.is_floating_point())
    others = sum(t.numel() * t.element_size() for t in tensors if not t.is_floating_point())
    assert others > 0  # position ids: kept as integers by Module.to(dtype)
    assert modules.weight_bytes(torch.float16) == 2 * floats + others
    modules.to(torch.device("cpu"), torch.float16)
    assert modules.weight_bytes() == 2 * floats + others


def test_three_models_share_one_budget_without_exceeding_it(
    m3_model, reranker_model, scifact_texts, pep_texts
):
    roomy = ModelRegistry("cpu", "1GiB")
    views = (roomy.embedder(m3_model, DOC_SPEC), roomy.embedder(m3_model, QUERY_SPEC))
    needs = [view.runtime.cost.predict(1, view.settings.max_length) for view in views]
    scorer = roomy.reranker(reranker_model)
    needs.append(scorer.runtime.cost.predict(1, scorer.max_length))
    weights_all = roomy.resident_bytes
    del roomy, views, scorer
    # what the weights leave holds 1.5 of the longest sequence; alone, a model sees far more
    budget = int(weights_all + 1.5 * max(needs))
    registry = ModelRegistry("cpu", budget)
    doc = registry.embedder(m3_model, DOC_SPEC)
    query = registry.embedder(m3_model, QUERY_SPEC)
    reranker = registry.reranker(reranker_model)
    assert registry.resident_bytes == weights_all
    for view in (doc, query, reranker):
        assert view.runtime.limits.activation_budget == budget - weights_all
    limit = AllocationLimit(registry, budget)
    limit.install(doc.modules.backbone)  # the query view's backbone too: the same module
    limit.install(reranker.modules.backbone)

    documents = scifact_texts[:20] + long_texts(pep_texts)
    queries = [text.split(". ")[0] for text in scifact_texts[20:40]] + long_texts(pep_texts)[:1]
    pairs = [(queries[i % 5], text) for i, text in enumerate(documents)]
    with limit.running("doc", doc.runtime):
        embedded = doc.embed(documents)
    with limit.running("query", query.runtime):
        asked = query.embed(queries)
    with limit.running("reranker", reranker.runtime):
        scores = reranker.score(pairs)

    assert all(result.ok for result in embedded + asked)
    assert len(embedded[-1].chunks) > 1 and len(asked[-1].chunks) == 1
    assert len(scores) == len(pairs) and all(np.isfinite(scores))
    assert set(limit.peaks) == {"doc", "query", "reranker"}  # every view really ran
    for view in (doc, query, reranker):
        assert view.stats.oom_events == 0
    assert max(max(peaks) for peaks in limit.peaks.values()) <= budget

    # loaded alone, a model plans for the budget less only its own weights: beside the
    # others' weights (the registry's, counted by the limit) that goes over the budget
    alone = Embedder.load(m3_model, memory_budget=budget, outputs=sorted(OUTPUTS))
    assert alone.runtime.limits.activation_budget > doc.runtime.limits.activation_budget
    lengths = [w.length for w in doc.prepare(documents)[0]]
    biggest = {
        name: max(len(b) for b in pack(lengths, view.runtime.cost, view.runtime.limits))
        for name, view in (("registry", doc), ("alone", alone))
    }
    assert biggest["alone"] > biggest["registry"]
    limit.install(alone.modules.backbone)
    with limit.running("alone", alone.runtime):
        alone.embed(documents)
    assert alone.stats.oom_events > 0
    limit.remove()


def test_the_least_recently_used_model_is_evicted_and_reloaded(
    m3_model, bert_model, reranker_model, sizes, scifact_texts
):
    weights = {model: weight for model, (weight, _) in sizes.items()}
    needs = [need for _, need in sizes.values()]
    two_largest = sum(sorted(weights.values())[-2:])
    budget = int(two_largest + max(needs) + min(weights.values()) / 2)
    assert sum(weights.values()) + min(needs) > budget, "the budget must not hold all three"
    registry = ModelRegistry("cpu", budget)

    m3 = registry.embedder(m3_model, SHORT_SPEC)
    bert = registry.embedder(bert_model, SHORT_SPEC)
    assert m3.runtime.limits.activation_budget == budget - weights[m3_model] - weights[bert_model]
    registry.embedder(m3_model, SHORT_SPEC)  # m3 used last: bert is now the least recent
    bert_weights = weakref.ref(bert.modules.backbone)
    del bert
    reranker = registry.reranker(reranker_model)

    assert [r.model for r in registry.resident()] == [m3_model, reranker_model]
    assert registry.resident_bytes == weights[m3_model] + weights[reranker_model]
    gc.collect()
    assert bert_weights() is None, "the evicted model's weights are still referenced"
    assert m3.runtime.limits.activation_budget == registry.activation_budget
    assert reranker.runtime.limits.activation_budget == registry.activation_budget

    bert = registry.embedder(bert_model, SHORT_SPEC)  # reloaded; m3 is now the least recent
    assert [r.model for r in registry.resident()] == [reranker_model, bert_model]
    assert registry.resident_bytes == weights[reranker_model] + weights[bert_model]
    assert all(result.ok for result in bert.embed(scifact_texts[:5]))


def test_a_model_that_cannot_fit_even_alone_is_refused_and_nothing_is_evicted(
    m3_model, reranker_model, sizes, scifact_texts
):
    m3_weights, m3_need = sizes[m3_model]
    reranker_weights, reranker_need = sizes[reranker_model]
    budget = int(m3_weights + 2 * m3_need)
    assert reranker_weights + reranker_need > budget, "the reranker must not fit alone"
    registry = ModelRegistry("cpu", budget)
    m3 = registry.embedder(m3_model, SHORT_SPEC)
    held, activations = registry.resident(), m3.runtime.limits.activation_budget

    with pytest.raises(InvalidSettingError, match="even alone"):
        registry.reranker(reranker_model)
    # a view of a resident model too long for the budget is refused the same way
    with pytest.raises(InvalidSettingError, match="even alone"):
        registry.embedder(m3_model, EmbedderSpec(max_length=512, outputs=frozenset({"dense"})))
    # a spec the model cannot serve is refused before anything is loaded
    with pytest.raises(InvalidSettingError, match="max_length must be between"):
        registry.embedder(m3_model, EmbedderSpec(max_length=100_000))

    assert registry.resident() == held
    assert m3.runtime.limits.activation_budget == activations
    assert all(result.ok for result in m3.embed(scifact_texts[:5]))


class Cancelled(Exception):
    """What a job raises from its progress callback when it is cancelled."""


def test_an_exception_from_on_progress_stops_the_work_and_leaves_the_runtime_usable(
    m3_model, reranker_model, scifact_texts
):
    registry = ModelRegistry("cpu", "1GiB")
    embedder = registry.embedder(m3_model, EmbedderSpec(max_length=128, outputs=frozenset(OUTPUTS)))
    reranker = registry.reranker(reranker_model)
    texts = scifact_texts[:30]
    pairs = [("what causes cell death", text) for text in texts]
    expected, expected_scores = embedder.embed(texts), reranker.score(pairs)
    cancel = Cancelled("job cancelled")
    calls: list[tuple[int, int]] = []

    def stop(done: int, total: int) -> None:
        calls.append((done, total))
        raise cancel

    passes = embedder.stats.forward_passes
    with pytest.raises(Cancelled) as raised:
        embedder.embed(texts, on_progress=stop)
    assert raised.value is cancel
    assert len(calls) == 1 and calls[0][0] < calls[0][1]  # stopped after one micro-batch
    assert embedder.stats.forward_passes == passes + 1
    with pytest.raises(Cancelled):
        reranker.score_each(pairs, on_progress=stop)

    again = embedder.embed(texts)
    for before, after in zip(expected, again, strict=True):
        assert after.ok
        np.testing.assert_array_equal(before.chunks[0].dense, after.chunks[0].dense)
        assert before.chunks[0].sparse == after.chunks[0].sparse
    assert reranker.score(pairs) == expected_scores


def test_the_registry_is_a_model_source(m3_model):
    source: ModelSource = ModelRegistry("cpu", "1GiB")
    [result] = source.embedder(m3_model, QUERY_SPEC).embed(["cell death"])
    assert result.ok and result.chunks[0].dense is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_length": 0}, "max_length must be a whole number >= 1"),
        ({"max_length": True}, "max_length must be a whole number >= 1"),
        ({"long_text": "summarise"}, "long_text must be one of"),
        ({"outputs": frozenset({"dense", "vectors"})}, "outputs must be among"),
        ({"outputs": frozenset()}, "outputs must be among"),
    ],
)
def test_a_bad_spec_is_refused_with_a_reason(options, message):
    with pytest.raises(InvalidSettingError, match=message):
        EmbedderSpec(**options)


def test_a_spec_is_hashable_whatever_the_outputs_look_like():
    from_list = EmbedderSpec(outputs=["sparse", "dense"], max_length=256)  # type: ignore[arg-type]
    from_text = EmbedderSpec(outputs="dense, sparse")  # type: ignore[arg-type]
    assert from_list == EmbedderSpec(max_length=256, outputs=frozenset({"dense", "sparse"}))
    assert from_text == EmbedderSpec(outputs=frozenset({"dense", "sparse"}))
    assert (
        len({from_list, EmbedderSpec(max_length=256, outputs=frozenset({"sparse", "dense"}))}) == 1
    )
