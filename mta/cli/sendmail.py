"""``mta sendmail``: the sendmail(1) interface for local programs.

    mta sendmail [-t] [-i|-oi] [-f sender] [-F full_name] [recipient ...]

Like Postfix's sendmail it reads the message from standard input (a line
with a single ``.`` ends it unless -i is given), queues it and returns.
Exit codes are sysexits(3): 64 usage, 65 bad input, 75 temporary failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import sys
from typing import Any

from mta import config as configuration
from mta import log as maillog
from mta.errors import ConfigError
from mta.pickup import submit
from mta.spool import Spool

EX_USAGE, EX_DATAERR, EX_TEMPFAIL = 64, 65, 75


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("sendmail", parents=[common],
                                   help="submit mail from standard input (sendmail -t/-f/-i)",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-t", dest="extract", action="store_true",
                        help="take recipients from To, Cc and Bcc (Bcc is removed)")
    parser.add_argument("-i", dest="ignore_dots", action="store_true",
                        help="a line with a single dot does not end the message")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT",
                        help="sendmail options; -oi is the same as -i, others are ignored")
    parser.add_argument("-f", "-r", dest="sender",
                        help="the envelope sender, an RFC 822 address ('<>': the null sender)")
    parser.add_argument("-F", dest="full_name", help="the sender's full name")
    parser.add_argument("recipients", nargs="*",
                        help="recipient addresses; each argument may be a list (a@x, b@y)")
    parser.set_defaults(func=run)


def read_message(stream: Any, ignore_dots: bool) -> bytes:
    if ignore_dots:
        return stream.read()
    lines = []
    for line in stream:
        if line.rstrip(b"\r\n") == b".":
            break
        lines.append(line)
    return b"".join(lines)


def run(args: argparse.Namespace) -> int:
    ignore_dots = args.ignore_dots or "i" in args.options
    if not args.recipients and not args.extract:
        print("mta sendmail: fatal: no recipient addresses given (use -t to read them from "
              "the headers)", file=sys.stderr)
        return EX_USAGE
    try:
        config = configuration.load(configuration.find_config(args.config))
    except ConfigError as error:
        print(f"mta sendmail: fatal: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    maillog.setup(syslog_name=config.syslog_name, hostname=config.myhostname,
                  maillog_file=str(config.path_of(config.maillog_file))
                  if config.maillog_file else None, stderr=False)
    uid = os.getuid()
    sender = args.sender
    if sender is None:
        try:
            sender = pwd.getpwuid(uid).pw_name
        except KeyError:
            sender = f"uid{uid}"
    data = read_message(sys.stdin.buffer, ignore_dots)
    spool = Spool(config.path_of(config.queue_directory))
    try:
        spool.create()
        asyncio.run(submit(config, spool, sender=sender, recipients=list(args.recipients),
                           data=data, uid=uid, extract=args.extract,
                           full_name=args.full_name))
    except ValueError as error:
        print(f"mta sendmail: fatal: {error}", file=sys.stderr)
        return EX_DATAERR
    except OSError as error:
        print(f"mta sendmail: fatal: cannot queue the message: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        spool.close()
    return 0
