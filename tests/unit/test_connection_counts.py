"""Connection counts with receiver workers: when a session waits for the
master's count before its greeting, and what happens when it does not."""

from __future__ import annotations

import asyncio

from mta.config import from_text
from mta.smtpd.server import ConnectionRegistry, Slot

CF = """\
myhostname = mx.example.test
mynetworks = 127.0.0.0/8
smtpd_client_connection_limit = 3
smtpd_client_connection_count_limit = 2
"""


class FakeAnvil:
    """The master's side of the count, answered by the test."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, asyncio.Future[tuple[str, int]]]] = []
        self.released: list[str] = []

    def ask(self, address: str, total_limit: int, client_limit: int,
            rate_limit: int) -> asyncio.Future[tuple[str, int]]:
        answer: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        self.asked.append((address, answer))
        return answer

    async def admit(self, address: str, total_limit: int, client_limit: int,
                    rate_limit: int) -> tuple[str, int]:
        return await self.ask(address, total_limit, client_limit, rate_limit)

    def release(self, address: str) -> None:
        self.released.append(address)

    async def event(self, address: str, event: str, count: bool) -> int:
        raise AssertionError("no event rate is limited in these tests")


def registry(extra: str = "") -> tuple[ConnectionRegistry, FakeAnvil]:
    connections = ConnectionRegistry(from_text(CF + extra))
    anvil = FakeAnvil()
    connections.anvil = anvil
    return connections, anvil


async def test_a_client_with_a_limit_of_its_own_waits_for_the_count() -> None:
    connections, anvil = registry()
    refused: list[str] = []
    admit = asyncio.ensure_future(connections.admit("192.0.2.7", "x[192.0.2.7]", "smtp",
                                                    refuse_later=refused.append))
    await asyncio.sleep(0)
    assert not admit.done() and [a for a, _ in anvil.asked] == ["192.0.2.7"]
    anvil.asked[0][1].set_result(("client", 2))
    assert await admit == "421 4.7.0 mx.example.test Error: too many connections from 192.0.2.7"
    assert connections.total == 0 and not refused


async def trusted_session(connections: ConnectionRegistry, refused: list[str]) -> Slot:
    """A session from 127.0.0.1 (in mynetworks, so exempt), admitted while
    the master's answer is still outstanding: admit must not wait for it."""
    slot = await asyncio.wait_for(connections.admit("127.0.0.1", "localhost[127.0.0.1]",
                                                    "smtp", refuse_later=refused.append), 5)
    assert isinstance(slot, Slot)
    return slot


async def test_an_exempt_client_is_admitted_before_the_answer() -> None:
    connections, anvil = registry()
    refused: list[str] = []
    slot = await trusted_session(connections, refused)
    assert connections.total == 1
    assert len(anvil.asked) == 1  # the master is still asked, and counts it
    anvil.asked[0][1].set_result(("ok", 0))
    await asyncio.sleep(0)
    assert not refused
    connections.release(slot)
    connections.release(slot)  # once only
    assert anvil.released == ["127.0.0.1"] and connections.total == 0


async def test_an_exempt_client_over_the_total_is_refused_when_the_answer_comes() -> None:
    connections, anvil = registry()
    refused: list[str] = []
    slot = await trusted_session(connections, refused)
    anvil.asked[0][1].set_result(("total", 3))
    await asyncio.sleep(0)
    assert refused == ["421 4.7.0 mx.example.test Error: too many connections"]
    connections.release(slot)
    assert anvil.released == []  # the master never counted it


async def test_a_session_that_ends_before_the_answer_gives_back_its_count_later() -> None:
    connections, anvil = registry()
    refused: list[str] = []
    slot = await trusted_session(connections, refused)
    connections.release(slot)
    assert anvil.released == [] and connections.total == 0
    anvil.asked[0][1].set_result(("ok", 0))
    await asyncio.sleep(0)
    assert anvil.released == ["127.0.0.1"] and not refused  # nobody left to refuse


async def test_without_refuse_later_an_exempt_client_waits_too() -> None:
    connections, anvil = registry()
    admit = asyncio.ensure_future(connections.admit("127.0.0.1", "localhost[127.0.0.1]",
                                                    "smtp"))
    await asyncio.sleep(0)
    assert not admit.done()
    anvil.asked[0][1].set_result(("total", 3))
    assert await admit == "421 4.7.0 mx.example.test Error: too many connections"


async def test_in_one_process_the_counts_are_local_and_exact() -> None:
    connections = ConnectionRegistry(from_text(CF))
    slots = [await connections.admit("127.0.0.1", "localhost[127.0.0.1]", "smtp")
             for _ in range(4)]
    assert [isinstance(s, Slot) for s in slots] == [True, True, True, False]
    assert slots[3] == "421 4.7.0 mx.example.test Error: too many connections"
    first = slots[0]
    assert isinstance(first, Slot)
    connections.release(first)
    assert isinstance(await connections.admit("127.0.0.1", "l[127.0.0.1]", "smtp"), Slot)


async def test_without_a_per_client_limit_nobody_waits() -> None:
    connections, anvil = registry("smtpd_client_connection_count_limit = 0\n"
                                  "smtpd_client_event_limit_exceptions =\n")
    refused: list[str] = []
    slot = await asyncio.wait_for(connections.admit("192.0.2.7", "x[192.0.2.7]", "smtp",
                                                    refuse_later=refused.append), 5)
    assert isinstance(slot, Slot) and len(anvil.asked) == 1
