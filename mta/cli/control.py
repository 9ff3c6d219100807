"""``mta status``, ``mta stop`` and ``mta reload``: Postfix's postfix status,
stop and reload, through the master's locked pid file (mta/pidfile.py).

A pid is signalled only while the spool's lock is held, so a stale pid file
left by a crash never makes us signal an unrelated process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mta import config as configuration
from mta import pidfile

NOT_RUNNING = "the Postern mail system is not running"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    status = subparsers.add_parser(
        "status", parents=[common], help="is the MTA running? (postfix status)",
        description="Say whether a master runs on this configuration's spool, and its PID. "
                    "Exit status 0 when it runs, 1 when it does not.")
    status.set_defaults(func=run_status)
    stop = subparsers.add_parser(
        "stop", parents=[common], help="stop the running MTA (postfix stop)",
        description="Send the master SIGTERM: it stops accepting, lets open sessions and "
                    "deliveries finish, and exits.")
    stop.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                      help="wait up to SECONDS for the master to exit (exit status 1 if it "
                           "is still running then); default: do not wait")
    stop.set_defaults(func=run_stop)
    reload = subparsers.add_parser(
        "reload", parents=[common], help="re-read main.cf (postfix reload)",
        description="Send the master SIGHUP: it re-reads main.cf, its maps and certificates "
                    "and reopens the maillog; a configuration with errors is refused and "
                    "the running one kept (see the maillog).")
    reload.set_defaults(func=run_reload)


def _queue_directory(args: argparse.Namespace) -> Path:
    config = configuration.load(configuration.find_config(args.config))
    return config.path_of(config.queue_directory)


def _running(args: argparse.Namespace) -> int | None:
    return pidfile.running_pid(_queue_directory(args))


def run_status(args: argparse.Namespace) -> int:
    pid = _running(args)
    if pid is None:
        print(f"mta: {NOT_RUNNING}", file=sys.stderr)
        return 1
    print(f"mta: the Postern mail system is running: PID: {pid}", file=sys.stderr)
    return 0


def _signal(args: argparse.Namespace, number: signal.Signals, doing: str) -> int:
    pid = _running(args)
    if pid is None:
        print(f"mta: fatal: {NOT_RUNNING}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        print(f"mta: fatal: {NOT_RUNNING}", file=sys.stderr)
        return 1
    print(f"mta: {doing} the Postern mail system", file=sys.stderr)
    return 0


def run_reload(args: argparse.Namespace) -> int:
    return _signal(args, signal.SIGHUP, "refreshing")


def run_stop(args: argparse.Namespace) -> int:
    status = _signal(args, signal.SIGTERM, "stopping")
    if status or args.wait <= 0:
        return status
    queue_directory = _queue_directory(args)
    deadline = time.monotonic() + args.wait
    while pidfile.running_pid(queue_directory) is not None:
        if time.monotonic() >= deadline:
            print(f"mta: the Postern mail system is still running after {args.wait:g}s",
                  file=sys.stderr)
            return 1
        time.sleep(0.1)  # a separate process: nothing to await but its exit
    return 0
