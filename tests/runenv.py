"""What the tests and the benchmark both need to run things here: listening
ports, and the environment that runs this checkout's mta as a subprocess. No
pytest import, so bench/ can use it too.

A port is picked below the kernel's ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default): a port
that the kernel handed out with bind(0) is free only until the next outbound
connect, which may take it as its own local port before the daemon under
test binds it ("address already in use", seen with Postern relaying to a
private Postfix). Ports below the range are never given to connects.

A port is handed out once per process, and picked with the system's random
source rather than the random module's (which hypothesis seeds): two picks
in one test, the daemon's SMTP and metrics ports say, can never be the same,
and a test that seeds the random module cannot make two daemons pick alike.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
_PICK = random.SystemRandom()
_HANDED_OUT: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port nobody listens on, outside the ephemeral range."""
    top = _ephemeral_start() - 1
    for _ in range(200):
        port = _PICK.randint(_LOWEST, top) if top > _LOWEST else 0
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def mta_env() -> dict[str, str]:
    """Environment for running this checkout's mta as a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    env.pop("MTA_CONFIG", None)
    return env
