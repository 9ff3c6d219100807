"""``mta queue``: postqueue, postsuper and postcat in one command.

    mta queue list [--json]                  postqueue -p / -j
    mta queue show QID                       postcat -q QID
    mta queue delete QID...|-|ALL [QUEUE...] postsuper -d
    mta queue hold QID...|-|ALL [QUEUE...]   postsuper -h
    mta queue release QID...|-|ALL [hold]    postsuper -H
    mta queue flush                          postqueue -f
    mta queue flush QID...|-                 postqueue -i QID
    mta queue flush --site DOMAIN            postqueue -s DOMAIN

A queue id of - reads queue ids from standard input, one a line (postsuper
-d -); ALL followed by queue names acts on those queues only (postsuper -d ALL
deferred). flush with queue ids or --site makes those deferred messages due
and delivers them past defer_transports and their destinations' suspension,
as postqueue -i and -s do; --site also tries every suspended destination
again, as a plain flush does. README.md, "mta queue in scripts", has the
details.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from mta import address as addr
from mta import config as configuration
from mta import log as maillog
from mta import queueid
from mta.config import Config
from mta.errors import CorruptQueueFile
from mta.showq import format_json, format_listing, format_postcat, walk
from mta.spool import Spool

# The queues each action looks a queue id up in, and may name after ALL
# (postsuper's defaults; corrupt/ is Postern's own).
DELETE_QUEUES = ("incoming", "active", "deferred", "hold", "corrupt")
HOLD_QUEUES = ("incoming", "active", "deferred")
RELEASE_QUEUES = ("hold",)
# Where the running queue manager moves mail from incoming/, active/ and
# deferred/ while a command acts on it: to active/, on to deferred/ when
# delivery is deferred, back to active/ for a retry.
_QMGR_MOVES_FROM = ("incoming", "active", "deferred")
_QMGR_MOVES_TO = ("active", "deferred")


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
    for name, helptext, func, queues in (
            ("delete", "delete mail (postsuper -d)", delete, DELETE_QUEUES),
            ("hold", "put mail on hold (postsuper -h)", hold, HOLD_QUEUES),
            ("release", "release mail from hold (postsuper -H)", release, RELEASE_QUEUES)):
        sub = actions.add_parser(
            name, parents=[common], help=helptext,
            usage=f"mta queue {name} [-c PATH] QID...|-|ALL [QUEUE...]",
            description=f"{helptext[0].upper()}{helptext[1:]}: the messages with these "
                        "queue ids (- reads queue ids from standard input, one a line), "
                        "or ALL messages, in the queues named after ALL only (default "
                        f"and choice: {', '.join(queues)}).")
        sub.add_argument("qids", nargs="+", metavar="QID|-|ALL [QUEUE]", help=argparse.SUPPRESS)
        sub.set_defaults(func=func)
    flush = actions.add_parser(
        "flush", parents=[common], help="retry deferred mail now (postqueue -f, -i, -s)",
        usage="mta queue flush [-c PATH] [QID...|-] [--site DOMAIN]",
        description="Without arguments, make all deferred mail due now and end every "
                    "suspension of a dead destination (postqueue -f). With queue ids (- "
                    "reads them from standard input) or --site, make only those deferred "
                    "messages due now (postqueue -i, -s).")
    flush.add_argument("qids", nargs="*", metavar="QID", help=argparse.SUPPRESS)
    flush.add_argument("--site", dest="sites", action="append", default=[], metavar="DOMAIN",
                       help="deferred mail with a recipient still to deliver in DOMAIN "
                            "(case-insensitive; may be given more than once)")
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


def _read_ids(words: list[str]) -> list[str]:
    """The queue ids in words, each once, with - replaced by those on standard
    input, one a line (postsuper's -d -); blank lines are skipped."""
    ids: dict[str, None] = {}
    for word in words:
        if word != "-":
            ids.setdefault(word)
            continue
        for line in sys.stdin.buffer:
            # Queue ids are ASCII: anything else is reported as no such message.
            text = line.decode("ascii", "replace").strip()
            if text:
                ids.setdefault(text)
    return list(ids)


# What the command line asks for: queue ids, or (ALL) every message in some queues.
_Request = tuple[list[str], tuple[str, ...]]


def _request(action: str, words: list[str], queues: tuple[str, ...]) -> _Request | None:
    """(queue ids, ()) or, for ALL [QUEUE...], ([], the queues to act on).

    As for postsuper, ALL overrides queue ids before it (with a warning) and
    what follows it are queue names. None, with a fatal error printed, for a
    name that is not one of queues: postsuper's "invalid directory name".
    """
    at = next((i for i, word in enumerate(words) if word.upper() == "ALL"), None)
    if at is None:
        return _read_ids(words), ()
    if at:
        print(f'mta queue: warning: "{action} ALL" will ignore other command line queue IDs',
              file=sys.stderr)
    named = tuple(dict.fromkeys(words[at + 1:]))
    for name in named:
        if name not in queues:
            print(f"mta queue: fatal: invalid directory name: {name} "
                  f"({action} ALL takes {', '.join(queues)})", file=sys.stderr)
            return None
    return [], named or queues


def _targets(spool: Spool, qids: list[str], queues: tuple[str, ...]) -> list[tuple[str, str]]:
    """(qid, queue) pairs for the queue ids named; a warning for each not in queues."""
    found = []
    for qid in qids:
        queue = spool.find(qid) if queueid.is_valid(qid) else None
        if queue is None or queue not in queues:
            print(f"mta queue: {qid}: no such message in "
                  f"{'/'.join(queues)}", file=sys.stderr)
            continue
        found.append((qid, queue))
    return found


def _followed(named: tuple[str, ...], queues: tuple[str, ...]) -> tuple[str, ...]:
    """Where _chase follows a message found by ALL in one of the named queues:
    those, and where the queue manager moves mail from them; never into
    hold/ or corrupt/ (another operator's doing) unless they are named."""
    moved = any(queue in _QMGR_MOVES_FROM for queue in named)
    return tuple(q for q in queues if q in named or (moved and q in _QMGR_MOVES_TO))


def _selected(spool: Spool, request: _Request, queues: tuple[str, ...]
              ) -> list[tuple[str, str, tuple[str, ...]]]:
    """(qid, the queue it is in, the queues to follow it in) for a request."""
    qids, every = request
    if every:
        follow = _followed(every, queues)
        return [(entry.qid, queue, follow) for queue in every for entry in spool.scan(queue)]
    return [(qid, queue, queues) for qid, queue in _targets(spool, qids, queues)]


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
    request = _request("delete", args.qids, DELETE_QUEUES)
    if request is None:
        return 1
    _, spool = _open(args)
    count = 0
    for qid, queue, follow in _selected(spool, request, DELETE_QUEUES):
        if _chase(spool, qid, queue, follow, spool.remove):
            count += 1
            maillog.removed(qid, program="postsuper")
            print(f"postsuper: {qid}: removed", file=sys.stderr)
    print(f"postsuper: Deleted: {_plural(count)}", file=sys.stderr)
    return 0


def hold(args: argparse.Namespace) -> int:
    request = _request("hold", args.qids, HOLD_QUEUES)
    if request is None:
        return 1
    _, spool = _open(args)
    count = 0

    def to_hold(queue: str, qid: str) -> bool:
        spool.move(qid, queue, "hold")
        return True

    for qid, queue, follow in _selected(spool, request, HOLD_QUEUES):
        if _chase(spool, qid, queue, follow, to_hold):
            count += 1
            maillog.held(qid)
            print(f"postsuper: {qid}: placed on hold", file=sys.stderr)
    print(f"postsuper: Placed on hold: {_plural(count)}", file=sys.stderr)
    return 0


def release(args: argparse.Namespace) -> int:
    request = _request("release", args.qids, RELEASE_QUEUES)
    if request is None:
        return 1
    _, spool = _open(args)
    count = 0
    now = time.time()
    # Nothing but mta queue moves mail out of hold/: no chase.
    for qid, _queue, _follow in _selected(spool, request, RELEASE_QUEUES):
        with contextlib.suppress(FileNotFoundError):
            spool.move(qid, "hold", "deferred", mtime=now)
            count += 1
            maillog.released(qid)
            print(f"postsuper: {qid}: released from hold", file=sys.stderr)
    print(f"postsuper: Released from hold: {_plural(count)}", file=sys.stderr)
    if count:
        spool.wake(b"W")
    return 0


def _for_sites(spool: Spool, sites: set[str]) -> list[str]:
    """Deferred messages with a recipient still to deliver in one of the
    domains. Postfix's postqueue -s asks the flush service, which knows only
    the sites in fast_flush_domains; this reads every deferred envelope."""
    found = []
    for entry in spool.scan("deferred"):
        try:
            queue_file = spool.read("deferred", entry.qid, verify=False)
        except FileNotFoundError:
            continue  # taken for a retry meanwhile: under way already
        except CorruptQueueFile as error:
            print(f"mta queue: warning: {error}", file=sys.stderr)
            continue
        recipients = queue_file.envelope.recipients
        if any(addr.domain_of(recipients[index]) in sites for index in queue_file.pending()):
            found.append(entry.qid)
    return found


def flush_queue(args: argparse.Namespace) -> int:
    """postqueue -f, or -i and -s with queue ids or --site."""
    if not args.qids and not args.sites:
        return _flush_all(args)
    sites = set()
    for site in args.sites:
        if not site or "@" in site or any(c.isspace() for c in site):
            print(f'mta queue: fatal: Cannot flush mail queue - invalid destination: "{site}"',
                  file=sys.stderr)
            return 1
        sites.add(site.lower())
    _, spool = _open(args)
    chosen = dict.fromkeys(qid for qid, _ in _targets(spool, _read_ids(args.qids),
                                                      ("deferred",)))
    if sites:
        chosen.update(dict.fromkeys(_for_sites(spool, sites)))
    now = time.time()

    def make_due(queue: str, qid: str) -> bool:
        spool.mark_flush(queue, qid, now)
        return True

    # Due now and marked (Spool.mark_flush): whichever scan of the queue
    # manager's takes it, now or after a restart, delivers it as a flush
    # does, past defer_transports and its destination's suspension, as
    # Postfix's flush service marks the files it flushes. Not F, which would
    # take every deferred message; --site also asks the queue manager to try
    # every suspended destination again (S), as postqueue -s does, -i not. A
    # message the queue manager took for a retry meanwhile (to active/) is
    # under way already and left alone.
    touched = sum(_chase(spool, qid, "deferred", ("deferred",), make_due) for qid in chosen)
    if touched:
        spool.wake(b"S" if sites else b"W")
    return 0


def _flush_all(args: argparse.Namespace) -> int:
    """Make every deferred message due now and tell the daemon (postqueue -f)."""
    _, spool = _open(args)
    now = time.time()
    for entry in spool.scan("deferred"):
        with contextlib.suppress(FileNotFoundError):
            os.utime(spool.path("deferred", entry.qid), (now, now))
    spool.wake(b"F")
    return 0
