import random

from embedq.models.memory import CostModel
from embedq.models.packing import PackingLimits, PaddingTally, pack


def lengths_of(seed: int, count: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice([rng.randint(3, 40), rng.randint(100, 512)]) for _ in range(count)]


COST = CostModel(per_token=1000.0, per_token_pair=10.0)


def test_every_sequence_is_packed_exactly_once():
    lengths = lengths_of(1, 500)
    batches = pack(lengths, COST, PackingLimits(activation_budget=5e7, max_batch_size=64))
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))


def test_batches_fit_the_budget_and_run_longest_first():
    lengths = lengths_of(2, 500)
    limits = PackingLimits(activation_budget=2e7, max_batch_size=1000)
    batches = pack(lengths, COST, limits)
    for batch in batches:
        padded = max(lengths[i] for i in batch)
        assert len(batch) == 1 or COST.predict(len(batch), padded) <= limits.activation_budget
    firsts = [lengths[batch[0]] for batch in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_short_sequences_travel_in_bigger_batches():
    lengths = [500] * 50 + [20] * 500
    batches = pack(lengths, COST, PackingLimits(activation_budget=2e7, max_batch_size=10_000))
    long_sizes = {len(b) for b in batches if lengths[b[0]] == 500}
    short_sizes = {len(b) for b in batches if lengths[b[0]] == 20}
    assert max(short_sizes) > 10 * max(long_sizes)


def test_token_and_size_caps_hold():
    lengths = [10] * 1000
    batches = pack(lengths, COST, PackingLimits(1e12, max_batch_size=64, max_batch_tokens=300))
    assert max(len(b) for b in batches) == 30
    batches = pack(lengths, COST, PackingLimits(1e12, max_batch_size=7))
    assert max(len(b) for b in batches) == 7


def test_a_sequence_too_big_for_the_budget_still_gets_a_batch_alone():
    lengths = [4000, 10, 10]
    batches = pack(lengths, COST, PackingLimits(activation_budget=1e6, max_batch_size=64))
    assert batches[0] == [0]
    assert sorted(batches[1]) == [1, 2]


def test_sorted_packing_keeps_padding_low_on_mixed_lengths():
    lengths = lengths_of(3, 2000)
    tally = PaddingTally()
    for batch in pack(lengths, COST, PackingLimits(activation_budget=5e7, max_batch_size=64)):
        tally.add([lengths[i] for i in batch])
    assert tally.real_tokens == sum(lengths)
    assert tally.padding_fraction < 0.05


def test_padding_tally_counts_padding():
    tally = PaddingTally()
    tally.add([10, 5])
    assert (tally.real_tokens, tally.padded_tokens) == (15, 20)
    assert tally.padding_fraction == 0.25
    assert PaddingTally().padding_fraction == 0.0
