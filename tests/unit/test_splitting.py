import pytest
import torch

from embedq.models.splitting import NoFit, SplitRunner


def runner_failing_above(limit: int, calls: list):
    def forward(part):
        calls.append(list(part))
        if sum(part) > limit:
            raise torch.OutOfMemoryError("too big")
        return [item * 10 for item in part]

    ooms: list = []
    runner = SplitRunner(
        forward=forward, on_oom=lambda part: ooms.append(list(part)), too_big=lambda i: f"{i} big"
    )
    return runner, ooms


def test_halves_until_parts_fit_and_keeps_order():
    calls: list = []
    runner, ooms = runner_failing_above(10, calls)
    items = [3, 3, 3, 3, 3, 3, 3, 3]
    assert runner.run(items) == [30] * 8
    assert ooms[0] == items
    # depth first, first half first: each failed part is retried as two halves
    assert [len(part) for part in calls] == [8, 4, 2, 2, 4, 2, 2]


def test_item_that_fits_nowhere_fails_alone():
    runner, ooms = runner_failing_above(10, [])
    outcome = runner.run([1, 2, 50, 3])
    assert outcome[:2] == [10, 20]
    assert outcome[2] == NoFit("50 big")
    assert outcome[3] == 30
    assert [50] in ooms


def test_other_errors_propagate_unchanged():
    def forward(part):
        raise ValueError("bad weights")

    runner = SplitRunner(forward=forward, on_oom=lambda p: None, too_big=str)
    with pytest.raises(ValueError, match="bad weights"):
        runner.run([1, 2])
