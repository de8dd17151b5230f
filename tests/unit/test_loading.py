import json

import pytest

from embedq.errors import ModelLoadError
from embedq.models.loading import SentenceTransformerHints, has_m3_heads, resolve_model_dir


def test_m3_heads_detected_and_half_a_set_refused(tmp_path):
    assert has_m3_heads(tmp_path, "some/encoder") is False
    (tmp_path / "colbert_linear.pt").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"sparse_linear\.pt"):
        has_m3_heads(tmp_path, "some/encoder")
    (tmp_path / "sparse_linear.pt").write_bytes(b"")
    assert has_m3_heads(tmp_path, "some/encoder") is True


def test_a_bge_m3_copy_without_heads_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"colbert_linear\.pt, sparse_linear\.pt"):
        has_m3_heads(tmp_path, "BAAI/bge-m3")


def test_sentence_transformer_hints(minilm_path):
    hints = SentenceTransformerHints.read(minilm_path)
    assert hints == SentenceTransformerHints(pooling="mean", normalize=True, max_length=256)


def test_new_style_pooling_config(tmp_path):
    (tmp_path / "modules.json").write_text(
        json.dumps([{"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}])
    )
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "lasttoken"}))
    hints = SentenceTransformerHints.read(tmp_path)
    assert (hints.pooling, hints.normalize, hints.max_length) == ("last_token", False, None)


def test_unknown_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="neither a local folder nor a hub id"):
        resolve_model_dir("no-such-org/no-such-model")


def test_a_file_is_not_a_model_folder(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a file"):
        resolve_model_dir(path)


def test_a_tilde_name_of_no_user_is_a_clear_model_error_not_a_crash():
    from embedq.models.describe import check_reranker, describe_model

    for check in (describe_model, check_reranker):
        with pytest.raises(ModelLoadError, match="~nosuchuser0"):
            check("~nosuchuser0")
