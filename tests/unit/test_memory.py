import pytest

from embedq.errors import InvalidSettingError
from embedq.models.memory import ArchitectureShape, CostModel, format_bytes, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GiB", 8 * 2**30),
        ("8 gib", 8 * 2**30),
        ("512MiB", 512 * 2**20),
        ("1.5GB", 1_500_000_000),
        ("100", 100),
        (4096, 4096),
        (2.5e9, 2_500_000_000),
    ],
)
def test_parse_bytes_reads_sizes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["8 gallons", "", "-1GiB", "GiB", 0, -5, True, "nan"])
def test_parse_bytes_refuses_nonsense(bad):
    with pytest.raises(InvalidSettingError):
        parse_bytes(bad)


def test_format_bytes_is_binary():
    assert format_bytes(8 * 2**30) == "8.00 GiB"
    assert format_bytes(3 * 2**20 // 2) == "1.50 MiB"
    assert format_bytes(12) == "12 B"


def bert_base_cost() -> CostModel:
    shape = ArchitectureShape(768, 3072, 12, dtype_bytes=2)
    return CostModel.from_architecture(shape)


def test_prediction_grows_linearly_in_batch_and_faster_in_length():
    cost = bert_base_cost()
    assert cost.predict(2, 128) == pytest.approx(2 * cost.predict(1, 128))
    assert cost.predict(1, 1024) > 8 * cost.predict(1, 128)


def test_max_batch_fits_budget_and_one_more_does_not():
    cost = bert_base_cost()
    budget = 2 * 2**30
    batch = cost.max_batch(512, budget)
    assert batch >= 1
    assert cost.predict(batch, 512) <= budget < cost.predict(batch + 1, 512)


def test_oom_moves_failed_shape_above_the_budget():
    cost = bert_base_cost()
    budget = 2**30
    batch = cost.max_batch(256, budget)
    cost.learn_from_oom(batch, 256, budget)
    assert cost.oom_events == 1
    assert cost.scale > 1.0
    assert cost.predict(batch, 256) > budget
    assert cost.max_batch(256, budget) < batch


def test_oom_on_a_shape_already_predicted_too_big_changes_nothing():
    cost = bert_base_cost()
    budget = 2**20
    cost.learn_from_oom(1000, 512, budget)
    assert cost.scale == 1.0
    assert cost.oom_events == 1


def test_fit_recovers_linear_and_quadratic_terms():
    cost = bert_base_cost()
    per_token, per_pair = 30_000.0, 40.0
    samples = [
        (b, n, b * n * (per_token + per_pair * n)) for b, n in [(64, 64), (16, 256), (2, 2048)]
    ]
    cost.fit(samples, safety=1.0)
    assert cost.per_token == pytest.approx(per_token, rel=1e-6)
    assert cost.per_token_pair == pytest.approx(per_pair, rel=1e-6)
    cost.fit(samples, safety=1.1)
    assert cost.predict(16, 256) == pytest.approx(1.1 * samples[1][2], rel=1e-6)


def test_fit_never_yields_negative_coefficients():
    cost = bert_base_cost()
    # peaks per token that shrink with length (a fused kernel's allocator rounding)
    cost.fit([(8, 64, 8 * 64 * 900.0), (8, 512, 8 * 512 * 500.0)], safety=1.0)
    assert cost.per_token > 0
    assert cost.per_token_pair == 0
    assert cost.predict(8, 64) >= 8 * 64 * 900.0


def test_free_memory_collects_what_a_failed_pass_just_left_in_a_cycle():
    import contextlib
    import weakref

    import torch

    from embedq.models.device import free_memory

    held: list[weakref.ref] = []

    def failing_pass() -> None:
        activations = {"tensor": torch.ones(1024)}
        activations["itself"] = activations  # a cycle: reference counting alone never frees it
        held.append(weakref.ref(activations["tensor"]))
        raise torch.OutOfMemoryError("injected")

    with contextlib.suppress(torch.OutOfMemoryError):
        failing_pass()
    assert held[0]() is not None  # still alive, in its cycle
    free_memory(torch.device("cpu"))
    assert held[0]() is None
