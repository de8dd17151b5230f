"""The ``embedq reindex``, ``rollback``, ``gc`` commands (see ``embedq.api.reindex.versions``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from embedq.api.client import Client
from embedq.settings import get_settings


def add_parsers(commands: Any) -> None:
    reindex = commands.add_parser(
        "reindex", help="re-embed a live collection into a new version, then swap to it"
    )
    reindex.add_argument("collection")
    reindex.add_argument("--model", help="hub id or folder (default: the one it was built with)")
    reindex.add_argument("--outputs", help="comma-separated: dense,sparse,colbert")
    reindex.add_argument("--max-length", type=int)
    reindex.add_argument("--long-text", choices=["chunk", "truncate"])
    reindex.add_argument(
        "--drop-old", action="store_true", help="drop the old version once swapped"
    )
    reindex.add_argument("--wait", action="store_true", help="show progress until it ends")
    reindex.add_argument("--json", action="store_true", help="print the job as JSON")
    reindex.set_defaults(command=run_reindex)
    back = commands.add_parser(
        "rollback", help="point a collection back at the version its last re-index replaced"
    )
    back.add_argument("collection")
    back.set_defaults(command=run_rollback)
    gc = commands.add_parser("gc", help="drop the versions of a collection nothing uses")
    gc.add_argument("collection")
    gc.set_defaults(command=run_gc)


def run_reindex(args: argparse.Namespace) -> int:
    from embedq.api.cli import submit_and_follow

    client = Client(get_settings())
    return submit_and_follow(
        args,
        client,
        lambda on_batch: client.reindex(
            args.collection,
            model=args.model,
            outputs=args.outputs,
            max_length=args.max_length,
            long_text=args.long_text,
            drop_old=args.drop_old,
            on_batch=on_batch,
        ),
    )


def run_rollback(args: argparse.Namespace) -> int:
    version = Client(get_settings()).rollback(args.collection)
    print(f"{args.collection} points at {version} again")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    dropped = Client(get_settings()).collect_garbage(args.collection)
    print(json.dumps(dropped) if dropped else f"{args.collection}: nothing to drop")
    return 0
