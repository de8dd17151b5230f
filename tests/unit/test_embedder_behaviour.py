"""What the embedder does with out-of-memory errors, bad input and impossible requests."""

from __future__ import annotations

import shutil

import pytest
import torch

from embedq.errors import InvalidSettingError, ModelLoadError, UnsupportedOutputError
from embedq.models import Embedder


@pytest.fixture(scope="module")
def m3_folder(build_model):
    return build_model(style="xlm-roberta")


def test_oom_loses_no_document_isolates_the_oversize_and_tightens_the_cost_model(
    m3_folder, scifact_texts, oom_above
):
    embedder = Embedder.load(m3_folder, max_length=128, long_text="truncate")
    texts = scifact_texts[:60] + ["tiny"] * 20
    # any sequence longer than 100 tokens cannot run even alone under this fault
    oom_above(embedder.modules.backbone, max_tokens=100)
    results = embedder.embed(texts)
    lengths = [w.length for w in embedder.prepare(texts)[0]]
    too_long = [i for i, n in enumerate(lengths) if n > 100]
    assert too_long, "the fixture needs texts over the fault's limit"
    for i, result in enumerate(results):
        if i in too_long:
            assert not result.ok
            assert f"{lengths[i]} tokens" in result.error
            assert "memory budget" in result.error
        else:
            assert result.ok and result.chunks[0].dense is not None
    stats = embedder.stats
    assert stats.oom_events > 0
    assert stats.failed_sequences == len(too_long)
    assert embedder.runtime.cost.scale > 1.0


def test_the_cost_model_learns_so_the_same_work_splits_less_often(
    m3_folder, scifact_texts, oom_above
):
    embedder = Embedder.load(m3_folder, max_length=128, long_text="truncate", max_batch_tokens=8192)
    oom_above(embedder.modules.backbone, max_tokens=2000)
    texts = scifact_texts[:120]
    first = embedder.embed(texts)
    first_ooms = embedder.stats.oom_events
    second = embedder.embed(texts)
    second_ooms = embedder.stats.oom_events - first_ooms
    assert first_ooms > 0
    assert second_ooms < first_ooms
    assert all(r.ok for r in first + second)


def test_other_errors_propagate_unchanged(m3_folder):
    embedder = Embedder.load(m3_folder, max_length=64)

    def broken(_module, _args, _kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    handle = embedder.modules.backbone.register_forward_pre_hook(broken, with_kwargs=True)
    try:
        with pytest.raises(RuntimeError, match="illegal memory access"):
            embedder.embed(["some text"])
    finally:
        handle.remove()
    assert embedder.stats.oom_events == 0


BAD_INPUTS = {
    "empty": ("", "text is empty"),
    "whitespace": ("  \n\t ", "only whitespace"),
    "integer": (42, "must be a string, not int"),
    "none": (None, "must be a string, not NoneType"),
    "bytes": (b"abc", "must be a string, not bytes"),
    "lone surrogate": ("broken \ud800 text", "not valid Unicode"),
    "zero width only": ("\u200b\u200b", None),
}
ODD_BUT_FINE = [
    "emoji 😀🚀 and CJK 细胞凋亡 and Hebrew עברית",
    "combining e\u0301\u0301\u0301 marks " * 50,
    "control \x00\x01\x07 characters",
    "x" * 5000,
    "\u202eright-to-left override",
]


@pytest.mark.parametrize("long_text", ["chunk", "truncate"])
def test_bad_input_gets_a_reason_and_good_input_a_vector(m3_folder, scifact_texts, long_text):
    embedder = Embedder.load(m3_folder, max_length=128, long_text=long_text)
    megabyte = (" ".join(scifact_texts) * 3)[: 2**20]
    texts = [value for value, _ in BAD_INPUTS.values()] + ODD_BUT_FINE + [megabyte]
    results = embedder.embed(texts)
    assert len(results) == len(texts)
    for (value, reason), result in zip(BAD_INPUTS.values(), results, strict=False):
        if reason is None:  # may embed or fail, but must say which
            assert result.ok or result.error
        else:
            assert not result.ok and reason in result.error, (value, result.error)
            assert result.chunks == []
    for result in results[len(BAD_INPUTS) :]:
        assert result.ok, result.error
        assert all(c.dense.shape == (embedder.dense_dim,) for c in result.chunks)
    megabyte_chunks = results[-1].chunks
    if long_text == "truncate":
        assert len(megabyte_chunks) == 1
    else:
        assert len(megabyte_chunks) > 1000
        assert megabyte_chunks[-1].end >= len(megabyte.rstrip()) - 1


def test_empty_input_list_and_a_bare_string(m3_folder):
    embedder = Embedder.load(m3_folder, max_length=64)
    assert embedder.embed([]) == []
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        embedder.embed("one text, not a list")


def test_progress_is_reported_per_micro_batch(m3_folder, scifact_texts):
    embedder = Embedder.load(m3_folder, max_length=128, max_batch_size=8)
    seen = []
    embedder.embed(scifact_texts[:50], on_progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 1
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1][0] == seen[-1][1] >= 50


def test_outputs_default_to_what_the_model_offers(m3_folder, minilm_path):
    m3 = Embedder.load(m3_folder, max_length=64)
    assert m3.settings.offers == {"dense", "sparse", "colbert"}
    assert m3.settings.outputs == {"dense", "sparse"}
    [result] = m3.embed(["gene expression"])
    chunk = result.chunks[0]
    assert chunk.dense is not None and chunk.sparse and chunk.colbert is None
    minilm = Embedder.load(minilm_path)
    assert minilm.settings.outputs == {"dense"}
    [result] = minilm.embed(["gene expression"])
    assert result.chunks[0].sparse is None and result.chunks[0].colbert is None


def test_asking_for_an_output_the_model_lacks_is_a_clear_error(minilm_path):
    with pytest.raises(UnsupportedOutputError, match="sparse"):
        Embedder.load(minilm_path, outputs=["dense", "sparse"])
    with pytest.raises(InvalidSettingError, match="outputs must be among"):
        Embedder.load(minilm_path, outputs="dense,vectors")


def test_an_m3_folder_missing_a_head_file_is_refused(m3_folder, tmp_path):
    copy = shutil.copytree(m3_folder, tmp_path / "m3-copy")
    (copy / "sparse_linear.pt").unlink()
    with pytest.raises(ModelLoadError, match="sparse_linear"):
        Embedder.load(copy)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_length": 100_000}, "max_length must be between"),
        ({"long_text": "summarise"}, "long_text must be"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"memory_budget": "lots"}, "cannot read memory size"),
        ({"memory_budget": "1KiB"}, "does not even hold the model's weights"),
        ({"chunk_overlap": 500, "max_length": 64}, "chunk_overlap must be in"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(m3_folder, options, message):
    with pytest.raises(InvalidSettingError, match=message):
        Embedder.load(m3_folder, **options)


def test_cpu_runs_in_float32(m3_folder):
    embedder = Embedder.load(m3_folder, max_length=64)
    assert embedder.runtime.placement.dtype == torch.float32
    assert next(embedder.modules.backbone.parameters()).dtype == torch.float32
