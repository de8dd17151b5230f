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
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from embedq import jobs
from embedq.api.client import Client
from embedq.api.progress import ProgressBar
from embedq.api.remote import RemoteClient
from embedq.errors import EmbedqError
from embedq.settings import get_settings

logger = logging.getLogger("embedq")

SECRET_SHOWN_ONCE = "Store this secret now: it cannot be shown again."


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        return int(args.command(args))
    except (EmbedqError, KeyError) as error:
        print(f"embedq: {error}", file=sys.stderr)
        return 2


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
    _keys_parser(commands)
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
    ingest.add_argument("--wait", action="store_true", help="show progress until the job ends")
    ingest.add_argument("--json", action="store_true", help="print the job as JSON")
    ingest.set_defaults(command=run_ingest)


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
    show = args.wait and not args.json
    bar = ProgressBar(enabled=show)
    job_id = client.ingest(
        args.files,
        collection=args.collection,
        model=args.model,
        outputs=args.outputs,
        max_length=args.max_length,
        long_text=args.long_text,
        batch_size=args.batch_size,
        on_batch=(lambda job: bar.update(client.status(job))) if show else None,
    )
    if not args.wait:
        _print_job(client.status(job_id), as_json=args.json, brief=True)
        return 0
    view = client.wait(job_id, on_progress=bar.update)
    bar.close()
    _print_job(view, as_json=args.json)
    return 0 if view.status == jobs.JobStatus.succeeded else 1


def run_status(args: argparse.Namespace) -> int:
    client = job_client(args)
    if args.watch:
        bar = ProgressBar(enabled=not args.json)
        view = client.wait(args.job, on_progress=bar.update)
        bar.close()
    else:
        view = client.status(args.job)
    _print_job(view, as_json=args.json)
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
            f"--queues={settings.queue}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def _print_job(view: jobs.JobView, *, as_json: bool, brief: bool = False) -> None:
    if as_json:
        print(json.dumps(_as_dict(view), indent=2))
    elif brief:
        print(view.id)
    else:
        print(
            f"job {view.id}: {view.status}\n"
            f"  documents {view.documents_done} done, {view.documents_failed} failed, "
            f"of {view.documents_total}; chunks {view.chunks_done}, tokens {view.tokens_done}\n"
            f"  batches {view.batches_done} done, {view.batches_failed} failed, "
            f"{view.splits} split"
        )


def _as_dict(view: Any) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return {key: plain(value) for key, value in dataclasses.asdict(view).items()}


if __name__ == "__main__":
    sys.exit(main())
