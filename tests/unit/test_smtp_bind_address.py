"""smtp_bind_address (IPv4) and smtp_bind_address6 (IPv6): each only for its own family.

Real sockets on 127.0.0.1 and ::1. An address that is not this machine's
(192.0.2.1, 2001:db8::1: documentation ranges) cannot be bound, so a
connection that used it fails with "Cannot assign requested address": that
shows which connections a bind address was applied to.
"""

from __future__ import annotations

import socket

import pytest

from mta.delivery import DeliveryResult
from tests.fakes.smtp_peer import ScriptedPeer
from tests.unit.smtp_helpers import agent, request


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1)")

SHORT = "smtp_connect_timeout = 5s\nsmtp_helo_timeout = 5s\n" \
        "smtp_connection_cache_time_limit = 0s\n"


async def _deliver(config: str, host: str) -> tuple[DeliveryResult, ScriptedPeer]:
    """One message to a scripted peer on host ("127.0.0.1" or "::1")."""
    async with ScriptedPeer(host=host) as peer:
        nexthop = f"[{host}]:{peer.port}"
        results = await agent(SHORT + config).deliver(request(["a@x.test"], nexthop))
    return results[0], peer


def _refused_bind(result: DeliveryResult, host: str, peer: ScriptedPeer) -> bool:
    return (result.status, result.dsn) == ("deferred", "4.4.1") and result.text == (
        f"connect to {host}[{host}]:{peer.port}: Cannot assign requested address")


async def test_an_ipv4_bind_address_leaves_ipv6_connections_alone() -> None:
    config = "smtp_bind_address = 192.0.2.1\n"
    result, peer = await _deliver(config, "::1")
    assert result.status == "sent", result.text
    assert peer.connections[0].client_address == "::1"
    # ... and is applied to IPv4 connections (this one cannot be bound).
    result, peer = await _deliver(config, "127.0.0.1")
    assert _refused_bind(result, "127.0.0.1", peer), result.text
    assert peer.connections == []


async def test_an_ipv6_bind_address_leaves_ipv4_connections_alone() -> None:
    config = "smtp_bind_address6 = 2001:db8::1\n"
    result, peer = await _deliver(config, "127.0.0.1")
    assert result.status == "sent", result.text
    result, peer = await _deliver(config, "::1")
    assert _refused_bind(result, "::1", peer), result.text
    assert peer.connections == []


async def test_each_family_connects_from_its_own_bind_address() -> None:
    # 127.0.0.2 is this machine's too (all of 127/8 is loopback), but not
    # the address the system would choose for 127.0.0.1.
    config = "smtp_bind_address = 127.0.0.2\nsmtp_bind_address6 = ::1\n"
    result, peer = await _deliver(config, "127.0.0.1")
    assert result.status == "sent", result.text
    assert peer.connections[0].client_address == "127.0.0.2"
    result, peer = await _deliver(config, "::1")
    assert result.status == "sent", result.text
    assert peer.connections[0].client_address == "::1"
