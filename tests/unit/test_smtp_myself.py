"""Which servers are our own listeners (mta/smtp/myself.py): a table, and the real bind test."""

from __future__ import annotations

import pytest

from mta.config import from_text
from mta.smtp.myself import Myself, bindable

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


def test_bindable_is_true_only_for_this_machines_addresses() -> None:
    assert bindable("127.0.0.1")
    assert bindable("127.0.0.2")  # all of 127/8 is the loopback interface's
    assert not bindable("192.0.2.1")  # TEST-NET-1, nobody's
