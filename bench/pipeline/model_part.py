"""Part 1: the pipeline around all-MiniLM-L6-v2 against the runtime's ``embed`` alone.

Both use one loaded ``Embedder`` (loaded as a worker loads it, from the job's options)
over the same batches: the ones the producer cuts the corpus into. On a shared machine
the speed of the cores drifts, so the batches are dealt into rounds and each method
runs on each round in turn, the order rotating from round to round; each round is one
pipeline job. With ``--celery``, a real worker process takes its turn in every round too.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.pipeline.baselines import AlonePass, runtime_alone
from bench.pipeline.breakdown import (
    celery_breakdown,
    compared,
    in_process_breakdown,
    pipeline_entry,
    rate,
)
from bench.pipeline.celery_run import CeleryPipeline, CeleryRunError, celery_pipeline
from bench.pipeline.config import (
    LOGGER,
    LONG_TEXT,
    MAX_LENGTH,
    MODEL_OUTPUTS,
    MODEL_ROUNDS,
    MODEL_TARGET,
    WARMUP_DOCS,
)
from bench.pipeline.corpus import (
    batch_texts,
    model_texts,
    producer_batches,
    split_evenly,
    write_documents,
    write_jsonl,
)
from bench.pipeline.inprocess import run_in_process
from bench.pipeline.instruments import cpu_jiffies
from bench.pipeline.session import BenchSession
from bench.runtime.config import MINILM
from bench.runtime.corpus import warmup_texts
from bench.runtime.models import model_folder
from embedq.api.ingest.producer import IngestRequest
from embedq.models import BatchEmbedder, EmbedderSpec, ModelRegistry

logger = logging.getLogger(LOGGER)

# the job's embedding settings, as a worker asks its model registry for them
MODEL_SPEC = EmbedderSpec(MAX_LENGTH, LONG_TEXT, frozenset(MODEL_OUTPUTS.split(",")))
RUNTIME, IN_PROCESS, CELERY = "runtime_alone", "pipeline_in_process", "pipeline_celery"


@dataclass(frozen=True)
class Round:
    """Some consecutive batches of the producer's: a JSON Lines file of their own, one job."""

    path: Path
    batches: list[list[str]]
    same_batches: bool  # the producer cuts the round's file into exactly these batches

    @property
    def documents(self) -> int:
        return sum(map(len, self.batches))


@dataclass
class Results:
    """Each method's result on each round, the order they ran in, and methods that failed."""

    by_method: dict[str, list[Any]] = field(default_factory=dict)
    orders: list[list[str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    # (steal, total) CPU jiffies of the machine while each method ran, summed over rounds
    cpu: dict[str, list[int]] = field(default_factory=dict)

    def run(self, name: str, method: Method, one: Round) -> None:
        steal, total = cpu_jiffies()
        try:
            self.by_method[name].append(method(one))
        except CeleryRunError as error:
            logger.error("%s failed: %s", name, error)
            self.errors[name] = str(error)
        after = cpu_jiffies()
        counts = self.cpu.setdefault(name, [0, 0])
        counts[0] += after[0] - steal
        counts[1] += after[1] - total

    def steal_shares(self) -> dict[str, float | None]:
        return {
            name: round(steal / total, 4) if total else None
            for name, (steal, total) in self.cpu.items()
        }


Method = Callable[[Round], Any]


def request_for(path: Path, collection: str, model: str, batch_size: int) -> IngestRequest:
    return IngestRequest(
        files=[path],
        collection=collection,
        model=model,
        outputs=MODEL_OUTPUTS,
        max_length=MAX_LENGTH,
        long_text=LONG_TEXT,
        batch_size=batch_size,
    )


def make_rounds(session: BenchSession, texts: list[str]) -> list[Round]:
    """The producer's batches of the corpus, dealt into up to ``MODEL_ROUNDS`` rounds."""
    path = write_jsonl(session.scratch / "scifact.jsonl", texts, "scifact")
    batches = producer_batches(path, session.batch_size)
    rounds = []
    for index, part in enumerate(split_evenly(batches, min(MODEL_ROUNDS, len(batches)))):
        round_path = write_documents(session.scratch / f"round-{index}.jsonl", part)
        recut = producer_batches(round_path, session.batch_size)
        rounds.append(Round(round_path, batch_texts(part), batch_texts(recut) == batch_texts(part)))
    return rounds


def warm_embedder(session: BenchSession, folder: Path, texts: list[str]) -> BatchEmbedder:
    """The model as a worker loads it for these job options, run once on a spread of lengths."""
    settings = session.settings()
    models = ModelRegistry(settings.device, settings.memory_budget)
    embedder = models.embedder(str(folder), MODEL_SPEC)
    embedder.embed(warmup_texts(texts, [len(text) for text in texts]))
    return embedder


def methods_for(
    session: BenchSession, model: str, embedder: BatchEmbedder, celery: CeleryPipeline | None
) -> dict[str, Method]:
    """Each method as a function of a round; the pipelines write to one collection each."""
    in_process = session.collections.new("minilm_in_process")
    methods: dict[str, Method] = {
        RUNTIME: lambda r: runtime_alone(embedder, r.batches, session.device),
        IN_PROCESS: lambda r: run_in_process(
            session, request_for(r.path, in_process, model, session.batch_size), embedder
        ),
    }
    if celery is not None:
        name = session.collections.new("minilm_celery")
        methods[CELERY] = lambda r: celery.run(
            request_for(r.path, name, model, session.batch_size), r.documents
        )
    return methods


def run_rounds(rounds: list[Round], methods: dict[str, Method]) -> Results:
    """Every method on every round, the order rotating; a failed Celery run drops out."""
    results = Results(by_method={name: [] for name in methods})
    for index, one in enumerate(rounds):
        names = [name for name in methods if name not in results.errors]
        order = names[index % len(names) :] + names[: index % len(names)]
        logger.info(
            "round %d of %d (%d documents): %s", index + 1, len(rounds), one.documents, order
        )
        results.orders.append(order)
        for name in order:
            results.run(name, methods[name], one)
    return results


@contextlib.contextmanager
def maybe_celery(
    session: BenchSession, wanted: bool, model: str, texts: list[str], errors: dict[str, str]
) -> Iterator[CeleryPipeline | None]:
    """A warmed-up worker process if ``wanted`` and it starts; else None (and why, in errors)."""
    if not wanted:
        yield None
        return
    path = write_jsonl(session.scratch / "warmup.jsonl", texts[:WARMUP_DOCS], "warmup")
    warmup = request_for(path, session.collections.new("celery_warmup"), model, WARMUP_DOCS)
    with contextlib.ExitStack() as stack:
        try:
            pipeline = stack.enter_context(celery_pipeline(session, warmup))
        except CeleryRunError as error:
            logger.error("the worker process did not start: %s", error)
            errors[CELERY] = str(error)
            pipeline = None
        yield pipeline


def measure_model(session: BenchSession, docs: int, celery: bool) -> dict[str, Any]:
    texts = model_texts(docs)
    rounds = make_rounds(session, texts)
    logger.info("model part: %d SciFact documents in %d rounds", len(texts), len(rounds))
    start_errors: dict[str, str] = {}
    with model_folder(MINILM, texts) as (folder, label):
        embedder = warm_embedder(session, folder, texts)
        with maybe_celery(session, celery, str(folder), texts, start_errors) as worker:
            results = run_rounds(rounds, methods_for(session, str(folder), embedder, worker))
    results.errors.update(start_errors)
    return model_report(session, label, rounds, results, celery)


def model_report(
    session: BenchSession, label: str, rounds: list[Round], results: Results, celery: bool
) -> dict[str, Any]:
    runtime = runtime_entry(results.by_method[RUNTIME])
    report = {
        "model": label,
        "documents": sum(one.documents for one in rounds),
        "batches": sum(len(one.batches) for one in rounds),
        "rounds": round_table(rounds, results),
        "same_batches": all(one.same_batches for one in rounds),
        "cpu_steal_share": results.steal_shares(),
        RUNTIME: runtime,
        IN_PROCESS: pipeline_report(session, results, IN_PROCESS, runtime),
    }
    report[CELERY] = (
        pipeline_report(session, results, CELERY, runtime)
        if celery
        else {"skipped": "run with --celery for a real worker process"}
    )
    return report


def runtime_entry(passes: list[AlonePass]) -> dict[str, Any]:
    return {
        **rate(sum(p.seconds for p in passes), sum(p.documents for p in passes)),
        "batch_seconds": [round(s, 3) for p in passes for s in p.batch_seconds],
    }


def pipeline_report(
    session: BenchSession, results: Results, method: str, runtime: dict[str, Any]
) -> dict[str, Any]:
    """The method's documents/s against the runtime's; for in-process, the embed stage's too."""
    if method in results.errors:
        return {"error": results.errors[method]}
    runs = results.by_method[method]
    breakdown = celery_breakdown if method == CELERY else in_process_breakdown
    entry = {
        **pipeline_entry(runs),
        "points_stored": session.store.count(runs[0].job.options.physical_collection),
        "where_time_goes": breakdown(runs),
    }
    entry["per_round_ratio"] = round_ratios(results, method)
    if method == IN_PROCESS:
        embed = entry["where_time_goes"]["stages"]["worker_embed"]["seconds"]
        entry["embed_stage_over_runtime_alone"] = round(embed / runtime["seconds"], 3)
    return compared(entry, runtime["docs_per_s"], MODEL_TARGET)


def round_ratios(results: Results, method: str) -> dict[str, float]:
    """The method's documents/s over the runtime's, round by round: how much noise there is."""
    pairs = zip(results.by_method[method], results.by_method[RUNTIME], strict=False)
    ratios = sorted(runtime.seconds / run.seconds for run, runtime in pairs)
    return {
        "median": round(statistics.median(ratios), 3),
        "min": round(ratios[0], 3),
        "max": round(ratios[-1], 3),
    }


def round_table(rounds: list[Round], results: Results) -> list[dict[str, Any]]:
    """Documents/s of each method in each round, and the order they ran in."""
    table = []
    for index, one in enumerate(rounds):
        rates = {
            name: round(one.documents / runs[index].seconds, 2)
            for name, runs in results.by_method.items()
            if index < len(runs)
        }
        table.append({"documents": one.documents, "order": results.orders[index], **rates})
    return table
