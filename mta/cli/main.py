"""The ``mta`` command: one entry point, one subcommand per operator task."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from mta.errors import ConfigError


def _commands() -> list[ModuleType]:
    # Each module has register(subparsers): the subcommand, its options and
    # its handler (args.func). Add a module here to add a subcommand.
    from mta.cli import cert, config_cmd, control, queue_cmd, sasl_cmd, sendmail, start, tls_check

    return [start, control, config_cmd, queue_cmd, sendmail, cert, tls_check, sasl_cmd]


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes, before or after its name."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="main.cf, or the directory that holds it (default: $MTA_CONFIG, "
                             "./main.cf, else ./main.cf.example)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mta", description="Postern, a Postfix-style MTA for transport security.",
        parents=[common_options()])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _commands():
        module.register(subparsers, common_options())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    try:
        return int(args.func(args) or 0)
    except ConfigError as error:
        print(f"mta: fatal: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
