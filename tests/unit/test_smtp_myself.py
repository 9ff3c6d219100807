"""Which servers are our own listeners (mta/smtp/myself.py): a table, and
the real test of this machine's addresses."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mta.config import from_text
from mta.smtp.myself import Myself, this_machines
from tests.helpers import REPO

LOCAL = {"127.0.0.1", "192.0.2.10", "2001:db8::10", "::1"}  # the fake machine's addresses


@pytest.mark.parametrize(("listeners", "address", "port", "mine"), [
    ([("127.0.0.1", 2525)], "127.0.0.1", 2525, True),
    ([("127.0.0.1", 2525)], "127.0.0.1", 25, False),  # another server on this machine
    ([("127.0.0.1", 2525)], "192.0.2.10", 2525, False),  # ours, but nothing listens there
    ([("::1", 25)], "0:0:0:0:0:0:0:1", 25, True),  # compared as addresses, not text
    ([("", 25)], "192.0.2.10", 25, True),  # every address of the machine
    ([("", 25)], "2001:db8::10", 25, True),
    ([("", 25)], "192.0.2.99", 25, False),  # not the machine's
    ([("0.0.0.0", 25)], "192.0.2.10", 25, True),
    ([("0.0.0.0", 25)], "2001:db8::10", 25, False),  # IPv4 only
    ([("::", 25)], "2001:db8::10", 25, True),
    ([("::", 25)], "192.0.2.10", 25, False),  # IPv6 only (asyncio sets IPV6_V6ONLY)
    ([("127.0.0.1", 0)], "127.0.0.1", 0, False),  # an ephemeral port is nobody's next hop
    ([("127.0.0.1", 25)], "mail.example", 25, False),  # only numerical addresses are asked
])
def test_listens_at(listeners: list[tuple[str, int]], address: str, port: int,
                    mine: bool) -> None:
    assert Myself(listeners, is_local=LOCAL.__contains__).listens_at(address, port) is mine


def test_listener_names_are_resolved_once() -> None:
    config = from_text("smtp/inet = localhost:2526\n")
    myself = Myself.from_config(config, is_local=lambda address: False)
    assert myself.listens_at("127.0.0.1", 2526)
    assert not myself.listens_at("127.0.0.1", 2527)


def test_only_this_machines_addresses_are_ours() -> None:
    assert this_machines("127.0.0.1")
    assert this_machines("127.0.0.2")  # all of 127/8 is the loopback interface's
    assert this_machines("::1")
    assert not this_machines("203.0.113.7")  # TEST-NET-3, nobody's
    assert not this_machines("not an address")


NONLOCAL_BIND = """
import sys
from mta.smtp.myself import this_machines
print(this_machines("203.0.113.7"), this_machines("127.0.0.1"))
"""


def test_a_host_that_binds_any_address_still_knows_its_own() -> None:
    """With net.ipv4.ip_nonlocal_bind = 1 (hosts with floating service
    addresses) a test bind succeeds for any address; in a network namespace
    of its own with that setting, a remote server must still not be us
    (else every delivery would bounce "loops back to myself")."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    # A default route (through lo) makes the remote address routable, so the
    # answer is the kernel's choice of source, not a missing route.
    script = ("echo 1 > /proc/sys/net/ipv4/ip_nonlocal_bind && ip link set lo up && "
              f"ip route add default dev lo && {sys.executable} -c '{NONLOCAL_BIND}'")
    result = subprocess.run([unshare, "-rn", "sh", "-c", script], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip(f"no network namespace here: {result.stderr.strip()}")
    assert result.stdout.split() == ["False", "True"], result.stderr
