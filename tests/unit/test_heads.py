import numpy as np
import torch

from embedq.models.heads import colbert_vectors, lexical_weights, pool


def naive_lexical(weights, ids, unused):
    best: dict[int, float] = {}
    for w, i in zip(weights, ids, strict=False):
        if i not in unused and w > 0 and w > best.get(i, 0):
            best[i] = float(w)
    return best


def test_lexical_weights_keep_each_tokens_largest_weight():
    rng = np.random.default_rng(0)
    for _ in range(50):
        ids = rng.integers(0, 30, size=40).tolist()
        weights = np.maximum(rng.normal(size=48), 0).astype(np.float32)  # padded past len(ids)
        assert lexical_weights(weights, ids, {0, 2}) == naive_lexical(weights, ids, {0, 2})


def test_lexical_weights_of_only_special_tokens_are_empty():
    assert lexical_weights(np.ones(3, dtype=np.float32), [0, 2, 0], {0, 2}) == {}


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 1.0]]
    assert pool(hidden, mask, "last_token").tolist() == [[3.0, 3.0]]


def test_colbert_drops_cls_and_padding():
    hidden = torch.randn(2, 6, 4)
    linear = torch.nn.Linear(4, 4)
    vectors = colbert_vectors(hidden, linear, [6, 3], normalize=True)
    assert [v.shape for v in vectors] == [(5, 4), (2, 4)]
    assert np.allclose(np.linalg.norm(vectors[0], axis=1), 1.0, atol=1e-5)
