"""``mta start``: run the daemon in the foreground (Postfix's ``postfix start-fg``)."""

from __future__ import annotations

import argparse
from typing import Any

from mta import config as configuration


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "start", parents=[common], help="run the MTA in the foreground",
        description="Run Postern in the foreground. SIGTERM stops accepting, lets open "
                    "sessions finish and exits 0; SIGHUP reloads main.cf and reopens the "
                    "maillog.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mta import master

    path = configuration.find_config(args.config)
    return master.main(path)
