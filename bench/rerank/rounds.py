"""The measurement: warm-up, the best fixed batch size, then every method on every set in turn."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.rerank.config import LOGGER
from bench.rerank.methods import EmbedqMethod, FlagMethod, Options, Scores, flag_default_batch
from bench.rerank.workload import Pair, QuerySet
from bench.runtime.measure import PeakMemory, now, rounded
from bench.runtime.models import release_memory

logger = logging.getLogger(LOGGER)

EMBEDQ, FLAG_DEFAULT, FLAG_BEST = "embedq", "flagreranker_default", "flagreranker_best_fixed"

Score = Callable[[Sequence[Pair]], Scores]


@dataclass
class Timed:
    """One method's seconds, scores and peak memory on each set."""

    seconds: list[float] = field(default_factory=list)
    scores: list[Scores] = field(default_factory=list)
    peak_memory_bytes: int = 0


@dataclass
class Measurements:
    timed: dict[str, Timed]
    orders: list[list[str]]
    batch_sizes: dict[str, int | None]
    best_fixed: dict[str, Any]
    embedq_facts: dict[str, Any]
    embedq_counters: dict[str, Any]
    gpu_cap_bytes: int | None


def at_batch(flag: FlagMethod, size: int | None) -> Score:
    def score(pairs: Sequence[Pair]) -> Scores:
        flag.batch_size = size
        return flag.score(pairs)

    return score


def timed_call(score: Score, pairs: Sequence[Pair], device: str) -> tuple[float, Scores, int]:
    with PeakMemory(device) as peak:
        started = now(device)
        scores = score(pairs)
        seconds = now(device) - started
    return seconds, scores, peak.bytes


def cap_both(options: Options, flag: FlagMethod) -> int | None:
    """On a GPU, the budget for whichever model runs, plus the weights of the one that waits.

    Both models stay loaded so they can take turns; embedq capped the process at the budget
    when it loaded, which would leave FlagReranker's weights eating into embedq's share.
    """
    if not options.on_gpu:
        return None
    import torch

    from embedq.models import parse_bytes

    cap = parse_bytes(options.budget) + flag.weight_bytes()
    total = torch.cuda.get_device_properties(options.device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), options.device)
    return cap


def choose_best_fixed(
    flag: FlagMethod, options: Options, sizes: Sequence[int], fit_limit: int, trial: list[Pair]
) -> dict[str, Any]:
    """The fastest size on the trial pairs among those that fit the budget.

    A GPU is asked directly, under the cap; the CPU enforces no limit, so there embedq's
    cost model answers (as in the runtime benchmark).
    """
    fits = {s: flag.forward_fits(s) if options.on_gpu else s <= fit_limit for s in sizes}
    trials: dict[int, float] = {}
    for size in (s for s, ok in fits.items() if ok):
        trials[size] = timed_call(at_batch(flag, size), trial, options.device)[0]
        logger.info(
            "FlagReranker at batch %d: %.2fs on %d trial pairs", size, trials[size], len(trial)
        )
    rule = (
        f"one forward of b x {options.max_length} random tokens under the GPU cap"
        if options.on_gpu
        else f"embedq's cost model: b x {options.max_length} tokens fit for b <= {fit_limit}"
    )
    return {
        "batch_size": min(trials, key=trials.__getitem__) if trials else None,
        "fit_check": rule,
        "trial_pairs": len(trial),
        "candidates": {
            str(s): {"fits": ok, "trial_seconds": rounded(trials.get(s), 3)}
            for s, ok in fits.items()
        },
    }


def run_rounds(
    methods: dict[str, Score], sets: Sequence[QuerySet], device: str
) -> tuple[dict[str, Timed], list[list[str]]]:
    """Every method on every set, the order rotating from set to set."""
    timed = {name: Timed() for name in methods}
    names, orders = list(methods), []
    for index, one in enumerate(sets):
        order = names[index % len(names) :] + names[: index % len(names)]
        orders.append(order)
        for name in order:
            seconds, scores, peak = timed_call(methods[name], one.pairs, device)
            entry = timed[name]
            entry.seconds.append(seconds)
            entry.scores.append(scores)
            entry.peak_memory_bytes = max(entry.peak_memory_bytes, peak)
            logger.info(
                "set %d/%d %s: %.1f pairs/s", index + 1, len(sets), name, len(one.pairs) / seconds
            )
    return timed, orders


def measure(
    folder: Path,
    options: Options,
    sets: Sequence[QuerySet],
    warmup: list[Pair],
    trial: list[Pair],
    fixed_sizes: Sequence[int],
) -> Measurements:
    logger.info("loading embedq and FlagReranker; warming both up on %d pairs", len(warmup))
    embedq = EmbedqMethod(folder, options)
    flag = FlagMethod(folder, options)
    try:
        embedq.score(warmup)
        flag.score(warmup)  # also moves its model to the device, in fp16 on a GPU
        cap = cap_both(options, flag)
        facts = embedq.facts()
        best = choose_best_fixed(flag, options, fixed_sizes, facts["max_length_batch_fit"], trial)
        methods = {EMBEDQ: embedq.score, FLAG_DEFAULT: at_batch(flag, None)}
        if best["batch_size"] is not None:
            methods[FLAG_BEST] = at_batch(flag, best["batch_size"])
        embedq.reset()
        timed, orders = run_rounds(methods, sets, options.device)
        counters = embedq.counters(sum(timed[EMBEDQ].seconds))
    finally:
        embedq.close()
        flag.close()
        release_memory(options.device)
    sizes = {EMBEDQ: None, FLAG_DEFAULT: flag_default_batch(), FLAG_BEST: best["batch_size"]}
    return Measurements(timed, orders, sizes, best, facts, counters, cap)
