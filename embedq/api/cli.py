"""The ``embedq`` command line: ingest, status, jobs, failures, cancel, keys, worker, migrate.

Flags have the names of the ``EMBEDQ_*`` settings they override; with none set,
everything runs on embedded defaults on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from embedq import jobs
from embedq.api.client import Client
from embedq.api.ingest.planning import IngestPlan
from embedq.api.progress import ProgressBar
from embedq.api.reindex import commands as reindex_commands
from embedq.api.remote import RemoteClient
from embedq.api.stopping import Stopped, stopped_by_sigterm
from embedq.errors import EmbedqError
from embedq.jobs.contracts import OPTIONS_BY_KIND
from embedq.search import MODES, Hit
from embedq.settings import get_settings

logger = logging.getLogger("embedq")

JOB_OPTIONS = tuple(OPTIONS_BY_KIND.values())

RESULTS_PAGE = 5000  # rerank results read from the ledger at a time
SECRET_SHOWN_ONCE = "Store this secret now: it cannot be shown again."


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        # SIGTERM, like Ctrl-C, raises where the command is: a producer then ends its job
        with stopped_by_sigterm():
            return int(args.command(args))
    except EmbedqError as error:
        print(f"embedq: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("embedq: stopped by Ctrl-C", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"embedq: {stop}", file=sys.stderr)
        return stop.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedq", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument(
        "--api",
        metavar="URL",
        help="send job commands to an embedq API (EMBEDQ_API_URL; key in EMBEDQ_API_KEY)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _ingest_parser(commands)
    status = commands.add_parser("status", help="show a job's status and progress")
    status.add_argument("job")
    status.add_argument("--watch", action="store_true", help="follow the job until it ends")
    status.add_argument("--json", action="store_true")
    status.set_defaults(command=run_status)
    listing = commands.add_parser("jobs", help="list recent jobs")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(command=run_jobs)
    failures = commands.add_parser("failures", help="list a job's per-document failures")
    failures.add_argument("job")
    failures.add_argument("--limit", type=int, default=50)
    failures.add_argument("--json", action="store_true")
    failures.set_defaults(command=run_failures)
    cancel = commands.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job")
    cancel.set_defaults(command=run_cancel)
    _delete_parser(commands)
    _search_parser(commands)
    _rerank_parsers(commands)
    _keys_parser(commands)
    reindex_commands.add_parsers(commands)
    worker = commands.add_parser("worker", help="run a Celery worker (needs EMBEDQ_BROKER_URL)")
    worker.add_argument("--concurrency", type=int, default=1, help="processes (one per GPU)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(command=run_worker)
    migrate = commands.add_parser("migrate", help="create or upgrade the ledger's tables")
    migrate.set_defaults(command=run_migrate)
    api = commands.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1", help="address to listen on")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument(
        "--dev", action="store_true", help="no API keys (EMBEDQ_API_DEV_MODE): for one machine"
    )
    api.set_defaults(command=run_api)
    return parser


def _ingest_parser(commands: Any) -> None:
    ingest = commands.add_parser("ingest", help="embed JSON Lines files into a collection")
    ingest.add_argument("files", nargs="+", metavar="FILE", help="JSON Lines, plain or .gz")
    ingest.add_argument("--collection", required=True)
    ingest.add_argument("--model", help="hub id or local folder (default EMBEDQ_MODEL)")
    ingest.add_argument("--max-length", type=int)
    ingest.add_argument("--long-text", choices=["chunk", "truncate"])
    ingest.add_argument("--outputs", help="comma-separated: dense,sparse,colbert")
    ingest.add_argument("--batch-size", type=int, help="documents per batch")
    ingest.add_argument(
        "--skip-unchanged",
        action="store_true",
        help="skip documents the collection holds exactly as they would be written",
    )
    ingest.add_argument(
        "--sync",
        action="store_true",
        help="--skip-unchanged, then delete the collection's documents the input no longer "
        "holds (once every document has landed)",
    )
    ingest.add_argument(
        "--force",
        action="store_true",
        help="let --sync delete more than EMBEDQ_SYNC_MAX_DELETE_SHARE of the collection",
    )
    ingest.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be embedded, skipped and deleted; change nothing",
    )
    ingest.add_argument("--wait", action="store_true", help="show progress until the job ends")
    ingest.add_argument("--json", action="store_true", help="print the job as JSON")
    ingest.set_defaults(command=run_ingest)


def _delete_parser(commands: Any) -> None:
    delete = commands.add_parser("delete", help="delete documents (all their chunks) by id")
    delete.add_argument("collection", metavar="COLLECTION")
    delete.add_argument(
        "--ids",
        required=True,
        action="append",
        metavar="FILE",
        help="one id a line, or JSON Lines with id/_id (plain or .gz); may be repeated",
    )
    delete.add_argument("--wait", action="store_true", help="show progress until the job ends")
    delete.add_argument("--json", action="store_true", help="print the job as JSON")
    delete.set_defaults(command=run_delete)


def _search_parser(commands: Any) -> None:
    search = commands.add_parser(
        "search", help="search a collection with the model it was built with"
    )
    search.add_argument("collection", metavar="COLLECTION")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--top-k", type=int, default=10, help="how many hits (default 10)")
    search.add_argument("--mode", choices=MODES, default="hybrid", help="default hybrid")
    search.add_argument("--rerank", metavar="MODEL", help="rescore the hits with a cross-encoder")
    search.add_argument("--json", action="store_true", help="the hits with full payloads")
    search.set_defaults(command=run_search)


def _rerank_parsers(commands: Any) -> None:
    rerank = commands.add_parser("rerank", help="score each query's candidates with a reranker")
    rerank.add_argument(
        "file", metavar="FILE", help='JSON Lines of {"query_id", "query", "candidates"}'
    )
    rerank.add_argument("--model", required=True, help="a cross-encoder: hub id or local folder")
    rerank.add_argument("--top-k", type=int, help="keep only each query's k best candidates")
    rerank.add_argument(
        "--from-collection",
        metavar="COLLECTION",
        help='lines are {"query_id", "query"}: candidates from a hybrid search of COLLECTION',
    )
    rerank.add_argument(
        "--candidates", type=int, default=100, help="with --from-collection: how many (100)"
    )
    rerank.add_argument("--wait", action="store_true", help="show progress until the job ends")
    rerank.add_argument("--json", action="store_true", help="print the job as JSON")
    rerank.set_defaults(command=run_rerank)
    results = commands.add_parser("results", help="write a rerank job's scores as JSON Lines")
    results.add_argument("job")
    results.add_argument("--out", metavar="FILE", help="write here instead of to stdout")
    results.set_defaults(command=run_results)


def _keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, revoke and list API keys")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print its secret, once")
    create.add_argument("--tenant", required=True, help="whose jobs the key may see and make")
    create.add_argument("--name", help="what the key is for")
    create.add_argument("--json", action="store_true")
    create.set_defaults(command=run_keys_create)
    revoke = actions.add_parser("revoke", help="stop a key from authenticating")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(command=run_keys_revoke)
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(command=run_keys_list)


def job_client(args: argparse.Namespace) -> Client | RemoteClient:
    """The ledger directly, or an embedq API with ``--api``: the same answers either way."""
    settings = get_settings(api_url=args.api)
    if settings.api_url:
        return RemoteClient(settings.api_url, settings.api_key)
    return Client(settings)


def run_ingest(args: argparse.Namespace) -> int:
    client = job_client(args)
    embedding = {
        "collection": args.collection,
        "model": args.model,
        "outputs": args.outputs,
        "max_length": args.max_length,
        "long_text": args.long_text,
        "skip_unchanged": args.skip_unchanged,
        "sync": args.sync,
        "force": args.force,
    }
    if args.dry_run:
        if not isinstance(client, Client):
            print(
                "embedq: --dry-run reads the collection directly: not with --api", file=sys.stderr
            )
            return 2
        print_plan(client.plan_ingest(args.files, **embedding), as_json=args.json)
        return 0
    return submit_and_follow(
        args,
        client,
        lambda on_batch: client.ingest(
            args.files, batch_size=args.batch_size, on_batch=on_batch, **embedding
        ),
    )


def run_delete(args: argparse.Namespace) -> int:
    client = job_client(args)
    return submit_and_follow(
        args,
        client,
        lambda on_batch: client.delete(args.collection, files=args.ids, on_batch=on_batch),
    )


PLAN_SHOWN = 20  # ids listed per kind of change; --json lists them all


def print_plan(plan: IngestPlan, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(dataclasses.asdict(plan), indent=2))
        return
    print(f"dry run into {plan.collection}: nothing was written")
    for label, ids in (("embed", plan.embed), ("skip", plan.skip), ("delete", plan.delete)):
        print(f"  {label:<6} {len(ids):>9,}")
        for doc_id in ids[:PLAN_SHOWN]:
            print(f"    {doc_id}")
        if len(ids) > PLAN_SHOWN:
            print(f"    ... {len(ids) - PLAN_SHOWN:,} more (--json lists them all)")
    if plan.rejected:
        print(f"  {plan.rejected:,} line(s) would fail: see them with a real run's failures")
    if plan.refusal:
        print(f"  {plan.refusal}")


def submit_and_follow(
    args: argparse.Namespace,
    client: Client | RemoteClient,
    submit: Callable[[Callable[[str], None] | None], str],
) -> int:
    """Submit a job; print it, or with ``--wait`` follow it with a bar and print how it ended.

    Exits 0 once submitted, or with ``--wait`` only if the job succeeded.
    """
    show = args.wait and not args.json
    bar = ProgressBar(enabled=show)
    job_id = submit((lambda job: bar.update(client.status(job))) if show else None)
    if not args.wait:
        print_job(client.status(job_id), as_json=args.json, brief=True)
        return 0
    view = client.wait(job_id, on_progress=bar.update)
    bar.close()
    print_job(view, as_json=args.json)
    return 0 if view.status == jobs.JobStatus.succeeded else 1


def run_status(args: argparse.Namespace) -> int:
    client = job_client(args)
    if args.watch:
        bar = ProgressBar(enabled=not args.json)
        view = client.wait(args.job, on_progress=bar.update)
        bar.close()
    else:
        view = client.status(args.job)
    print_job(view, as_json=args.json)
    return 0


def run_jobs(args: argparse.Namespace) -> int:
    views = job_client(args).jobs(limit=args.limit)
    if args.json:
        print(json.dumps([_as_dict(view) for view in views], indent=2))
        return 0
    for view in views:
        print(
            f"{view.id}  {view.status:<9}  {view.collection:<24}  "
            f"{view.documents_done}/{view.documents_total} done  {view.documents_failed} failed"
            f"{_listed_changes(view)}"
        )
    return 0


def run_failures(args: argparse.Namespace) -> int:
    failures = job_client(args).failures(args.job, limit=args.limit)
    if args.json:
        print(json.dumps([_as_dict(failure) for failure in failures], indent=2))
        return 0
    for failure in failures:
        where = f"line {failure.line}" if failure.line else f"document {failure.doc_id}"
        print(f"{where}: {failure.reason}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    cancelled = job_client(args).cancel(args.job)
    print("cancelled" if cancelled else "not cancelled: the job had already ended")
    return 0 if cancelled else 1


def run_search(args: argparse.Namespace) -> int:
    # Always the ledger and Qdrant directly: the model runs here, not behind the API.
    hits = Client(get_settings()).search(
        args.collection, args.query, top_k=args.top_k, mode=args.mode, rerank_model=args.rerank
    )
    if args.json:
        print(json.dumps([_hit_dict(hit) for hit in hits], indent=2, default=str))
        return 0
    width = max([len("doc_id"), *(len(hit.doc_id) for hit in hits)])
    print(f"{'rank':>4}  {'score':>8}  {'doc_id':<{width}}  {'chunk':>5}  text")
    for hit in hits:
        print(
            f"{hit.rank:>4}  {hit.score:>8.4f}  {hit.doc_id:<{width}}  {hit.chunk:>5}  "
            f"{_excerpt(hit.text)}"
        )
    return 0


def _hit_dict(hit: Hit) -> dict[str, Any]:
    keys = ("rank", "score", "doc_id", "chunk", "point_id", "payload")
    return {key: getattr(hit, key) for key in keys}


def _excerpt(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def run_rerank(args: argparse.Namespace) -> int:
    client = job_client(args)
    return submit_and_follow(
        args,
        client,
        lambda on_batch: client.rerank(
            [args.file],
            model=args.model,
            top_k=args.top_k,
            from_collection=args.from_collection,
            candidates=args.candidates,
            on_batch=on_batch,
        ),
    )


def run_results(args: argparse.Namespace) -> int:
    client = job_client(args)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        offset = 0
        while page := client.results(args.job, limit=RESULTS_PAGE, offset=offset):
            out.writelines(json.dumps(dataclasses.asdict(result)) + "\n" for result in page)
            offset += len(page)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def run_keys_create(args: argparse.Namespace) -> int:
    key = Client(get_settings()).create_api_key(tenant=args.tenant, name=args.name)
    if args.json:
        print(json.dumps(_as_dict(key), indent=2))
    else:
        print(f"key {key.id} for tenant {key.tenant}\nsecret: {key.secret}")
    print(SECRET_SHOWN_ONCE, file=sys.stderr if args.json else sys.stdout)
    return 0


def run_keys_revoke(args: argparse.Namespace) -> int:
    revoked = Client(get_settings()).revoke_api_key(args.key_id)
    print("revoked" if revoked else "not revoked: no such key, or it was revoked already")
    return 0 if revoked else 1


def run_keys_list(args: argparse.Namespace) -> int:
    keys = Client(get_settings()).api_keys(tenant=args.tenant)
    if args.json:
        print(json.dumps([_as_dict(key) for key in keys], indent=2))
        return 0
    for key in keys:
        state = "revoked" if key.revoked else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        name = f"  {key.name}" if key.name else ""
        print(
            f"{key.id}  {key.tenant:<16}  {state:<7}  "
            f"created {key.created_at:%Y-%m-%d %H:%M}  last used {used}{name}"
        )
    return 0


def run_migrate(_: argparse.Namespace) -> int:
    Client(get_settings()).migrate()
    print("ledger is up to date")
    return 0


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from embedq.api.http.app import create_app

    settings = get_settings(api_dev_mode=True if args.dev else None)
    app = create_app(settings)  # refuses, with one clear line, when there are no keys
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.broker_url:
        print("embedq: a worker needs EMBEDQ_BROKER_URL (Redis)", file=sys.stderr)
        return 2
    from embedq.workers.celery_app import make_celery

    app = make_celery(settings)
    app.worker_main(
        [
            "worker",
            f"--concurrency={args.concurrency}",
            f"--loglevel={args.loglevel}",
            f"--queues={settings.queue},{settings.reindex_queue}",  # in order of priority
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def print_job(view: jobs.JobView, *, as_json: bool, brief: bool = False) -> None:
    if as_json:
        print(json.dumps(_as_dict(view), indent=2))
    elif brief:
        print(view.id)
    else:
        print(
            f"job {view.id}: {view.status}\n"
            f"  documents {view.documents_done} done, {view.documents_failed} failed, "
            f"{_changes(view)}"
            f"of {view.documents_total}; chunks {view.chunks_done}, tokens {view.tokens_done}\n"
            f"  batches {view.batches_done} done, {view.batches_failed} failed, "
            f"{view.splits} split"
        )
        if view.error:  # why it stopped short of its input (or failed, or was cancelled)
            ended_badly = view.status in (jobs.JobStatus.failed, jobs.JobStatus.cancelled)
            print(f"  {'error' if ended_badly else 'stopped'}: {view.error}")


def _changes(view: jobs.JobView) -> str:
    """The unchanged and deleted counts, where a job has any."""
    counts = (("unchanged", view.documents_unchanged), ("deleted", view.documents_deleted))
    return "".join(f"{count} {label}, " for label, count in counts if count)


def _listed_changes(view: jobs.JobView) -> str:
    changes = _changes(view).removesuffix(", ")
    return f"  {changes}" if changes else ""


def _as_dict(view: Any) -> dict[str, Any]:
    """A ledger view as JSON: times in ISO 8601, a job's options as the ledger stores them."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        return value.to_json() if isinstance(value, JOB_OPTIONS) else value

    fields = dataclasses.fields(view)
    return {field.name: plain(getattr(view, field.name)) for field in fields}


if __name__ == "__main__":
    sys.exit(main())
