"""Routing (relayhost, transport_maps) and name lookup (dns, native) as tables."""

from __future__ import annotations

import pytest

from mta.config import from_text
from mta.delivery import Recipient, Route
from mta.error_transport import ErrorDelivery, RetryDelivery
from mta.mailboxes import Mailboxes
from mta.resolver import LookupFailure, Resolver
from mta.routing import Router
from mta.smtp.nexthop import NextHop, parse_nexthop
from tests.fakes.resolver import FakeDns, fake_native
from tests.unit.smtp_helpers import request

BASE = "myhostname = mx.here.test\nmydestination = here.test\nsmtp/inet = 127.0.0.1:0\n"
MAPS = ("transport_maps = inline:{ special.test=smtp:[10.0.0.1]:2525, "
        "user@odd.test=error:5.1.1 gone away, .sub.test=relay-smtp:[hub.test], "
        "held.test=retry:4.3.0 maintenance, here.test=:[lmtp.test]:24, bare.test=smtp: }\n")


@pytest.mark.parametrize(("extra", "recipient", "route"), [
    ("", "a@far.test", Route("smtp", "far.test", "far.test")),
    ("", "a@here.test", Route("local", "here.test")),
    ("relayhost = [smarthost.test]:587\n", "a@far.test",
     Route("smtp", "[smarthost.test]:587", "[smarthost.test]:587")),
    ("relayhost = [smarthost.test]:587\n", "a@here.test", Route("local", "here.test")),
    ("relayhost = [r.test]\ndefault_transport = smtp:[d.test]\n", "a@far.test",
     Route("smtp", "[d.test]", "[d.test]")),  # default_transport's next hop wins
    (MAPS, "a@special.test", Route("smtp", "[10.0.0.1]:2525", "[10.0.0.1]:2525")),
    (MAPS, "user@odd.test", Route("error", "5.1.1 gone away")),
    (MAPS, "other@odd.test", Route("smtp", "odd.test", "odd.test")),
    (MAPS, "a@deep.sub.test", Route("relay-smtp", "[hub.test]", "[hub.test]")),
    (MAPS, "a@sub.test", Route("smtp", "sub.test", "sub.test")),  # .sub.test: subdomains only
    (MAPS, "a@held.test", Route("retry", "4.3.0 maintenance")),
    (MAPS, "a@here.test", Route("local", "[lmtp.test]:24", "[lmtp.test]:24")),
    (MAPS + "relayhost = [r.test]\n", "a@bare.test", Route("smtp", "[r.test]", "[r.test]")),
    ("transport_maps = inline:{ *=error:no outbound mail }\n", "a@far.test",
     Route("error", "no outbound mail")),
])
def test_routes(extra: str, recipient: str, route: Route) -> None:
    config = from_text(BASE + extra)
    assert Router(config, Mailboxes.from_config(config)).route(recipient) == route


@pytest.mark.parametrize(("text", "hop"), [
    ("example.com", NextHop("example.com", 25, True)),
    ("Example.COM.", NextHop("example.com", 25, True)),
    ("[mx.example.com]", NextHop("mx.example.com", 25, False)),
    ("[127.0.0.1]:2626", NextHop("127.0.0.1", 2626, False)),
    ("[localhost]:submission", NextHop("localhost", 587, False)),
    ("mx.example.com:2525", NextHop("mx.example.com", 2525, True)),
    ("[ipv6:::1]:25", NextHop("::1", 25, False)),
    ("inet:[lmtp.example]:24", NextHop("lmtp.example", 24, False)),
])
def test_nexthop_syntax(text: str, hop: NextHop) -> None:
    assert parse_nexthop(text) == hop


def test_nexthop_with_an_unknown_service() -> None:
    with pytest.raises(ValueError, match="unknown service 'pop3s' in next hop"):
        parse_nexthop("[mx.example.com]:pop3s")


@pytest.mark.parametrize(("nexthop", "status", "dsn", "text"), [
    ("5.1.1 gone away", "bounced", "5.1.1", "gone away"),
    ("no such domain here", "bounced", "5.0.0", "no such domain here"),
    ("4.3.0 maintenance", "deferred", "4.3.0", "maintenance"),
])
async def test_error_transport(nexthop: str, status: str, dsn: str, text: str) -> None:
    req = request(["a@x.test"], "x")
    req.route = Route("error", nexthop)
    [result] = await ErrorDelivery().deliver(req)
    assert (result.status, result.dsn, result.text, result.relay) == (status, dsn, text, "none")


async def test_retry_transport_always_defers() -> None:
    req = request(["a@x.test"], "x")
    req.route = Route("retry", "5.0.0 never bounce")
    [result] = await RetryDelivery().deliver(req)
    assert (result.status, result.dsn) == ("deferred", "4.0.0")
    assert isinstance(req.recipients[0], Recipient)


@pytest.mark.parametrize(("methods", "host", "expected"), [
    (("dns",), "mx.test", ["192.0.2.1", "2001:db8::1"]),
    (("dns", "native"), "etc-hosts.test", ["127.0.0.7"]),  # not in DNS: native finds it
    (("native",), "mx.test", LookupFailure),  # native only: DNS records are not seen
    (("dns",), "etc-hosts.test", LookupFailure),
    (("dns", "native"), "localhost", ["127.0.0.1"]),
    (("dns",), "192.0.2.55", ["192.0.2.55"]),  # an address needs no lookup
])
async def test_address_lookup(methods: tuple[str, ...], host: str, expected: object) -> None:
    dns = FakeDns(a={"mx.test": ["192.0.2.1"]}, aaaa={"mx.test": ["2001:db8::1"]})
    resolver = Resolver(methods, dns=dns, native=fake_native(
        {"etc-hosts.test": ["127.0.0.7"], "localhost": ["127.0.0.1"]}))
    if expected is LookupFailure:
        with pytest.raises(LookupFailure):
            await resolver.addresses(host)
    else:
        assert await resolver.addresses(host) == expected
    if host == "localhost":
        assert dns.queries == []


@pytest.mark.parametrize(("preference", "first"), [("ipv4", "192.0.2.1"),
                                                   ("ipv6", "2001:db8::1")])
async def test_address_preference(preference: str, first: str) -> None:
    dns = FakeDns(a={"mx.test": ["192.0.2.1"]}, aaaa={"mx.test": ["2001:db8::1"]})
    resolver = Resolver(("dns",), dns=dns, preference=preference)
    assert (await resolver.addresses("mx.test"))[0] == first


async def test_native_only_does_no_mx_lookup() -> None:
    dns = FakeDns(mx_records={"d.test": [(10, "mx.d.test")]})
    hosts = await Resolver(("native",), dns=dns).mx_hosts("d.test")
    assert [h.hostname for h in hosts] == ["d.test"] and dns.queries == []


async def test_null_mx_among_others_is_ignored() -> None:
    dns = FakeDns(mx_records={"d.test": [(0, "."), (10, "mx.d.test")]})
    hosts = await Resolver(("dns",), dns=dns).mx_hosts("d.test")
    assert [h.hostname for h in hosts] == ["mx.d.test"]
