"""The benchmark's JSON: each trial, and the spread of each delay over the trials."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from bench.cancel.trial import Trial
from bench.runtime.report import device_name, versions

# the goal: the batch stops under 5 s after the first renewal that follows the cancel
TARGET_RENEWAL_TO_STOP_S = 5.0
DELAYS = ("cancel_to_stop_s", "cancel_to_renewal_s", "renewal_to_stop_s", "command_to_stop_s")


def report(
    args: argparse.Namespace, model: str, trials: Sequence[Trial], next_job: str
) -> dict[str, Any]:
    worst = max(trial.renewal_to_stop_s for trial in trials)
    return {
        "benchmark": "cancel",
        "command": "python -m bench.cancel",
        "device": device_name("cpu"),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "model": model,
        "documents_per_batch": args.documents,
        "max_length": args.max_length,
        "lease_seconds": args.lease_seconds,
        "renewal_every_s": round(args.lease_seconds / 3, 3),
        "slow_seconds_per_micro_batch": args.slow_seconds,
        "repetitions": len(trials),
        **{delay: spread([getattr(trial, delay) for trial in trials]) for delay in DELAYS},
        "points_written_by_cancelled_batches": sum(trial.points_written for trial in trials),
        "next_job": next_job,
        "target_renewal_to_stop_s": TARGET_RENEWAL_TO_STOP_S,
        "target_met": worst < TARGET_RENEWAL_TO_STOP_S,
        "trials": [dataclasses.asdict(trial) for trial in trials],
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }
