"""``mta config``: show parameters the way postconf(1) does.

    mta config              every parameter, as main.cf would say it
    mta config -n           only those set in main.cf
    mta config -d           the built-in defaults
    mta config -x           with $name references expanded
    mta config -h NAME ...  values only
    mta config -M           the listeners (master.cf services)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mta import config as configuration
from mta.config import PARAMS, Config


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "config", parents=[common], add_help=False, help="show parameters (like postconf)",
        description="Show main.cf parameters like postconf: all, non-default (-n), "
                    "defaults (-d), or the named ones.")
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("-n", dest="non_default", action="store_true",
                        help="only parameters set in main.cf")
    parser.add_argument("-d", dest="defaults", action="store_true",
                        help="built-in default values")
    parser.add_argument("-x", dest="expand", action="store_true",
                        help="expand $name references")
    parser.add_argument("-h", dest="values_only", action="store_true",
                        help="print values only, without 'name = '")
    parser.add_argument("-M", dest="services", action="store_true",
                        help="show the listeners (master.cf services)")
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.set_defaults(func=run)


def _value(config: Config, name: str, *, defaults: bool, expand: bool) -> str:
    if defaults:
        # Like postconf -d: defaults expand against other defaults only, never
        # against main.cf (smtpd_banner's default is not "mx.example.com ESMTP Foo").
        # Only config_directory stays, being where main.cf is rather than a setting.
        bare = Config({}, config.path)
        if name == "mydomain":
            return bare.expanded("mydomain")
        if name == "config_directory":
            return config.directory
        return bare.expand_text(PARAMS[name].default) if expand else PARAMS[name].default
    return config.expanded(name) if expand else config.raw(name)


def run(args: argparse.Namespace) -> int:
    path = configuration.find_config(args.config)
    config = configuration.load(path)
    if args.services:
        for listener in config.listeners:
            print(f"{listener.name}/inet = {listener.address}")
            for name, setting in listener.overrides.items():
                print(f"{listener.name}/inet/{name} = {setting.value}")
        return 0
    status = 0
    if args.names:
        names = []
        for name in args.names:
            if name in PARAMS:
                names.append(name)
            else:
                print(f"mta config: warning: {name}: unknown parameter", file=sys.stderr)
                status = 1
    elif args.non_default:
        names = sorted(n for n in config.set_names() if n in PARAMS)
    else:
        names = sorted(PARAMS)
    for name in names:
        value = _value(config, name, defaults=args.defaults, expand=args.expand)
        print(value if args.values_only else (f"{name} = {value}" if value else f"{name} ="))
    return status
