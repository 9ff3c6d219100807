"""``mta queue``: postqueue, postsuper and postcat in one command.

    mta queue list [--json]     postqueue -p / -j
    mta queue show QID          postcat -q QID
    mta queue delete QID|ALL    postsuper -d
    mta queue hold QID|ALL      postsuper -h
    mta queue release QID|ALL   postsuper -H
    mta queue flush             postqueue -f
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from mta import config as configuration
from mta import log as maillog
from mta import queueid
from mta.config import Config
from mta.errors import CorruptQueueFile
from mta.showq import format_json, format_listing, format_postcat, walk
from mta.spool import Spool


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("queue", parents=[common], help="list and manage the queue",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="list queued mail (postqueue -p)")
    listing.add_argument("--json", action="store_true", help="JSON lines, like postqueue -j")
    listing.set_defaults(func=list_queue)
    show = actions.add_parser("show", parents=[common], help="print a queued message (postcat)")
    show.add_argument("qid")
    show.add_argument("-e", dest="envelope", action="store_true", help="envelope only")
    show.add_argument("-H", dest="headers", action="store_true", help="headers only")
    show.add_argument("-b", dest="body", action="store_true", help="body only")
    show.set_defaults(func=show_message)
    for name, helptext, func in (
            ("delete", "delete mail (postsuper -d)", delete),
            ("hold", "put mail on hold (postsuper -h)", hold),
            ("release", "release mail from hold (postsuper -H)", release)):
        sub = actions.add_parser(name, parents=[common], help=helptext)
        sub.add_argument("qids", nargs="+", metavar="QID|ALL")
        sub.set_defaults(func=func)
    flush = actions.add_parser("flush", parents=[common],
                               help="retry deferred mail now (postqueue -f)")
    flush.set_defaults(func=flush_queue)


def _open(args: argparse.Namespace) -> tuple[Config, Spool]:
    config = configuration.load(configuration.find_config(args.config))
    maillog.setup(syslog_name=config.syslog_name, hostname=config.myhostname,
                  maillog_file=str(config.path_of(config.maillog_file))
                  if config.maillog_file else None, stderr=False)
    return config, Spool(config.path_of(config.queue_directory))


def list_queue(args: argparse.Namespace) -> int:
    _, spool = _open(args)
    errors: list[str] = []
    items = list(walk(spool, errors))
    sys.stdout.write(format_json(items) if args.json else format_listing(items))
    for error in errors:
        print(f"mta queue: warning: {error}", file=sys.stderr)
    return 0


def show_message(args: argparse.Namespace) -> int:
    _, spool = _open(args)
    queue = spool.find(args.qid) if queueid.is_valid(args.qid) else None
    if queue is None:
        print(f"mta queue: fatal: no message {args.qid} in the queue", file=sys.stderr)
        return 1
    try:
        queue_file = spool.read(queue, args.qid)
        content = spool.read_content(queue, args.qid, queue_file)
    except (FileNotFoundError, CorruptQueueFile) as error:
        print(f"mta queue: fatal: {args.qid}: {error}", file=sys.stderr)
        return 1
    only = args.envelope or args.headers or args.body
    sys.stdout.write(format_postcat(queue, queue_file, content,
                                    envelope=args.envelope or not only,
                                    headers=args.headers or not only,
                                    body=args.body or not only))
    return 0


def _targets(spool: Spool, qids: list[str], queues: tuple[str, ...]) -> list[tuple[str, str]]:
    """(qid, queue) pairs named on the command line; ALL means every message."""
    if any(q.upper() == "ALL" for q in qids):
        return [(entry.qid, queue) for queue in queues for entry in spool.scan(queue)]
    found = []
    for qid in qids:
        queue = spool.find(qid) if queueid.is_valid(qid) else None
        if queue is None or queue not in queues:
            print(f"mta queue: {qid}: no such message in "
                  f"{'/'.join(queues)}", file=sys.stderr)
            continue
        found.append((qid, queue))
    return found


def _chase(spool: Spool, qid: str, queue: str, queues: tuple[str, ...],
           act: Callable[[str, str], bool]) -> bool:
    """act(queue, qid) on a message the running queue manager may be moving
    meanwhile (deferred/ to active/ for a retry, back after it): when the
    file is gone from where it was found, look again, a few times, as long
    as it is in one of queues. False when it is gone for good."""
    for _ in range(5):
        try:
            if act(queue, qid):
                return True
        except FileNotFoundError:
            pass
        found = spool.find(qid)
        if found is None or found not in queues:
            return False
        queue = found
    return False


def _plural(count: int) -> str:
    return f"{count} message{'s' if count != 1 else ''}"


def delete(args: argparse.Namespace) -> int:
    _, spool = _open(args)
    count = 0
    queues = ("incoming", "active", "deferred", "hold", "corrupt")
    for qid, queue in _targets(spool, args.qids, queues):
        if _chase(spool, qid, queue, queues, spool.remove):
            count += 1
            maillog.removed(qid, program="postsuper")
            print(f"postsuper: {qid}: removed", file=sys.stderr)
    print(f"postsuper: Deleted: {_plural(count)}", file=sys.stderr)
    return 0


def hold(args: argparse.Namespace) -> int:
    _, spool = _open(args)
    count = 0
    queues = ("incoming", "active", "deferred")

    def to_hold(queue: str, qid: str) -> bool:
        spool.move(qid, queue, "hold")
        return True

    for qid, queue in _targets(spool, args.qids, queues):
        if _chase(spool, qid, queue, queues, to_hold):
            count += 1
            maillog.held(qid)
            print(f"postsuper: {qid}: placed on hold", file=sys.stderr)
    print(f"postsuper: Placed on hold: {_plural(count)}", file=sys.stderr)
    return 0


def release(args: argparse.Namespace) -> int:
    _, spool = _open(args)
    count = 0
    now = time.time()
    for qid, _queue in _targets(spool, args.qids, ("hold",)):
        with contextlib.suppress(FileNotFoundError):
            spool.move(qid, "hold", "deferred", mtime=now)
            count += 1
            maillog.released(qid)
            print(f"postsuper: {qid}: released from hold", file=sys.stderr)
    print(f"postsuper: Released from hold: {_plural(count)}", file=sys.stderr)
    if count:
        spool.wake(b"W")
    return 0


def flush_queue(args: argparse.Namespace) -> int:
    """Make every deferred message due now and tell the daemon (postqueue -f)."""
    _, spool = _open(args)
    now = time.time()
    for entry in spool.scan("deferred"):
        with contextlib.suppress(FileNotFoundError):
            os.utime(spool.path("deferred", entry.qid), (now, now))
    spool.wake(b"F")
    return 0
