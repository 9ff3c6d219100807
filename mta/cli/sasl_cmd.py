"""``mta sasl``: the users AUTH accepts (smtpd_sasl_password_file).

    mta sasl add USER       set USER's password (asked twice on a terminal,
                            else one line from standard input)
    mta sasl delete USER    remove USER
    mta sasl list           the users, one per line
    mta sasl check USER     exit 0 if the password (read as for add) is right

Changes apply to new AUTH attempts at once; no reload is needed.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from mta import config as configuration
from mta import sasl
from mta.errors import ConfigError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "sasl", parents=[common], help="add, remove and list AUTH users",
        description="Maintain the AUTH users in smtpd_sasl_password_file (salted scrypt "
                    "hashes). Changes apply to new AUTH attempts without a reload.")
    _file_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    # -c and -f are accepted before and after the action, like every mta option.
    for name, text in (("add", "set a user's password (adds the user)"),
                       ("delete", "remove a user"), ("check", "test a user's password")):
        sub = actions.add_parser(name, help=text, parents=[common])
        _file_option(sub)
        sub.add_argument("user", metavar="USER")
    _file_option(actions.add_parser("list", help="list the users", parents=[common]))
    parser.set_defaults(func=run)


def _file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", default=argparse.SUPPRESS, metavar="PATH",
                        help="the password file (default: smtpd_sasl_password_file)")


def _password_file(args: argparse.Namespace) -> Path:
    if getattr(args, "file", None):
        return Path(args.file)
    config = configuration.load(configuration.find_config(args.config))
    if not config.smtpd_sasl_password_file:
        raise ConfigError("smtpd_sasl_password_file is not set in "
                          f"{config.path}; give the file with -f PATH")
    return config.path_of(config.smtpd_sasl_password_file)


def _read_password(confirm: bool) -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Again: ") != password:
            raise SystemExit("mta sasl: the passwords differ; nothing changed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise SystemExit("mta sasl: empty password; nothing changed")
    return password


def run(args: argparse.Namespace) -> int:
    path = _password_file(args)
    if args.action == "list":
        for user in sasl.list_users(path):
            print(user)
        return 0
    if args.action == "delete":
        if not sasl.update_password_file(path, args.user, None):
            print(f"mta sasl: {args.user}: no such user in {path}", file=sys.stderr)
            return 1
        return 0
    if args.action == "check":
        encoded = sasl.PasswordFile(path).lookup(args.user)
        ok = encoded is not None and sasl.verify_password(_read_password(False), encoded)
        print("ok" if ok else "authentication failure")
        return 0 if ok else 1
    try:
        sasl.update_password_file(path, args.user,
                                  sasl.hash_password(_read_password(True)))
    except ValueError as error:
        print(f"mta sasl: {error}", file=sys.stderr)
        return 1
    return 0
