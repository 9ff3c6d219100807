"""The smtp agent against scripted peers and a fake DNS: routing, replies, timeouts, reuse."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import pytest

from mta.delivery import DeliveryResult
from mta.smtp.client import DataEncoder
from tests.fakes.resolver import FakeDns
from tests.fakes.smtp_peer import CLOSE, HANG, ScriptedPeer
from tests.unit.smtp_helpers import MESSAGE, Content, agent, port_map, request

SHORT = """
smtp_helo_timeout = 0.3s
smtp_mail_timeout = 0.3s
smtp_rcpt_timeout = 0.3s
smtp_data_init_timeout = 0.3s
smtp_data_xfer_timeout = 0.3s
smtp_data_done_timeout = 0.3s
smtp_connect_timeout = 0.3s
smtp_connection_cache_time_limit = 0s
"""


def by_status(results: list[DeliveryResult]) -> list[tuple[str, str]]:
    return [(r.status, r.dsn) for r in results]


# -- MX routing through the fake DNS --------------------------------------------------------
async def test_mx_order_lowest_preference_first_and_next_mx_on_connect_failure() -> None:
    dns = FakeDns(mx_records={"dest.test": [(20, "mx2.dest.test"), (10, "mx1.dest.test")]},
                  a={"mx1.dest.test": ["127.0.0.2"], "mx2.dest.test": ["127.0.0.3"]})
    async with ScriptedPeer(host="127.0.0.3") as mx2:
        # mx1 (127.0.0.2) refuses connections: the agent must go on to mx2.
        smtp = agent(SHORT, dns=dns, connector=port_map({"127.0.0.3": mx2.port}))
        results = await smtp.deliver(request(["a@dest.test"], "dest.test"))
    assert by_status(results) == [("sent", "2.0.0")]
    assert results[0].relay == "mx2.dest.test[127.0.0.3]:25"
    assert dns.queries[:3] == [("dest.test", "MX"), ("mx1.dest.test", "A"),
                               ("mx1.dest.test", "AAAA")]
    assert mx2.messages[0].recipients == ["a@dest.test"]


async def test_equal_preferences_are_shuffled() -> None:
    dns = FakeDns(mx_records={"d.test": [(10, f"mx{i}.d.test") for i in range(6)]})
    import random

    from mta.resolver import Resolver
    firsts = set()
    for seed in range(30):
        resolver = Resolver(("dns",), dns=dns, rand=random.Random(seed))
        firsts.add((await resolver.mx_hosts("d.test"))[0].hostname)
    assert len(firsts) > 1


async def test_no_mx_falls_back_to_the_domains_own_address() -> None:
    dns = FakeDns(a={"plain.test": ["127.0.0.4"]})
    async with ScriptedPeer(host="127.0.0.4") as peer:
        smtp = agent(SHORT, dns=dns, connector=port_map({"127.0.0.4": peer.port}))
        results = await smtp.deliver(request(["a@plain.test"], "plain.test"))
    assert by_status(results) == [("sent", "2.0.0")]
    assert results[0].relay == "plain.test[127.0.0.4]:25"


@pytest.mark.parametrize(("dns", "status", "dsn", "text"), [
    (FakeDns(mx_records={"null.test": [(0, ".")]}), "bounced", "5.1.10",
     "Domain null.test does not accept mail (nullMX)"),
    (FakeDns(nxdomain={"null.test"}), "bounced", "5.4.4",
     "Host or domain name not found. Name service error for name=null.test type=MX: "
     "Host not found"),
    (FakeDns(servfail={"null.test"}), "deferred", "4.4.3",
     "Host or domain name not found. Name service error for name=null.test type=MX: "
     "Host not found, try again"),
    (FakeDns(mx_records={"null.test": [(10, "gone.null.test")]}, nxdomain={"gone.null.test"}),
     "deferred", "4.4.3",
     "Host or domain name not found. Name service error for name=gone.null.test type=A: "
     "Host not found"),
], ids=["null-mx", "nxdomain", "servfail", "mx-host-missing"])
async def test_dns_outcomes(dns: FakeDns, status: str, dsn: str, text: str) -> None:
    connects: list[str] = []

    async def never(address: str, port: int, local: str | None) -> NoReturn:
        connects.append(address)
        raise AssertionError("no connection may be attempted")

    results = await agent(SHORT, dns=dns, connector=never).deliver(
        request(["a@null.test", "b@null.test"], "null.test"))
    assert by_status(results) == [(status, dsn)] * 2
    assert results[0].text == text
    assert results[0].relay == "none"
    assert connects == []


async def test_dns_timeout_defers() -> None:
    from mta.resolver import DnspythonBackend

    class Stuck:
        async def resolve(self, *args: object, **kwargs: object) -> None:
            import dns.exception
            raise dns.exception.Timeout()

    smtp = agent(SHORT)
    smtp.resolver.dns = DnspythonBackend(resolver=Stuck())
    results = await smtp.deliver(request(["a@slow.test"], "slow.test"))
    assert by_status(results) == [("deferred", "4.4.3")]


async def test_bracketed_nexthop_skips_mx_lookup_and_native_finds_localhost() -> None:
    dns = FakeDns()
    async with ScriptedPeer() as peer:
        smtp = agent("smtp_host_lookup = dns, native\n" + SHORT, dns=dns,
                     hosts={"localhost": ["127.0.0.1"]})
        results = await smtp.deliver(request(["a@x.test"], f"[localhost]:{peer.port}"))
    assert by_status(results) == [("sent", "2.0.0")]
    assert results[0].relay == f"localhost[127.0.0.1]:{peer.port}"
    assert dns.queries == []  # RFC 6761: localhost never goes to the DNS


# -- replies at each stage -------------------------------------------------------------------
STAGES = [
    ({"GREETING": "421 4.3.2 busy"}, "deferred", "4.3.2",
     "host peer.test[127.0.0.1] refused to talk to me: 421 4.3.2 busy"),
    ({"GREETING": "554 5.7.1 go away"}, "deferred", "4.7.1",
     "host peer.test[127.0.0.1] refused to talk to me: 554 5.7.1 go away"),
    # A refused HELO (after EHLO was refused) is worded as Postfix's smtp_helo
    # words it, soft or hard: no "(in reply to HELO command)".
    ({"HELO": "504 5.5.2 <client.test>: Helo command rejected: need fully-qualified hostname",
      "EHLO": "502 5.5.2 Error: command not recognized"},
     "bounced", "5.5.2",
     "host peer.test[127.0.0.1] refused to talk to me: 504 5.5.2 <client.test>: "
     "Helo command rejected: need fully-qualified hostname"),
    ({"HELO": "450 4.7.1 <client.test>: Helo command rejected: Host not found",
      "EHLO": "502 5.5.2 Error: command not recognized"},
     "deferred", "4.7.1",
     "host peer.test[127.0.0.1] refused to talk to me: 450 4.7.1 <client.test>: "
     "Helo command rejected: Host not found"),
    ({"MAIL": "451 4.3.0 try later"}, "deferred", "4.3.0",
     "host peer.test[127.0.0.1] said: 451 4.3.0 try later (in reply to MAIL FROM command)"),
    ({"MAIL": "553 5.7.1 sender refused"}, "bounced", "5.7.1",
     "host peer.test[127.0.0.1] said: 553 5.7.1 sender refused (in reply to MAIL FROM "
     "command)"),
    ({"RCPT": "450 4.2.0 greylisted"}, "deferred", "4.2.0",
     "host peer.test[127.0.0.1] said: 450 4.2.0 greylisted (in reply to RCPT TO command)"),
    ({"RCPT": "550 5.1.1 no such user"}, "bounced", "5.1.1",
     "host peer.test[127.0.0.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)"),
    ({"DATA": "451 4.3.0 no data now"}, "deferred", "4.3.0",
     "host peer.test[127.0.0.1] said: 451 4.3.0 no data now (in reply to DATA command)"),
    ({"DOT": "452 4.3.1 disk full"}, "deferred", "4.3.1",
     "host peer.test[127.0.0.1] said: 452 4.3.1 disk full (in reply to end of DATA command)"),
    ({"DOT": "554 5.7.1 spam"}, "bounced", "5.7.1",
     "host peer.test[127.0.0.1] said: 554 5.7.1 spam (in reply to end of DATA command)"),
    ({"DOT": "550 rejected"}, "bounced", "5.0.0",
     "host peer.test[127.0.0.1] said: 550 rejected (in reply to end of DATA command)"),
]


@pytest.mark.parametrize(("script", "status", "dsn", "text"), STAGES,
                         ids=[f"{next(iter(s[0]))}-{s[0][next(iter(s[0]))][:3]}"
                              for s in STAGES])
async def test_reply_at_each_stage(script: dict[str, str], status: str, dsn: str,
                                   text: str) -> None:
    dns = FakeDns(mx_records={"d.test": [(10, "peer.test")]}, a={"peer.test": ["127.0.0.1"]})
    async with ScriptedPeer(replies=script) as peer:
        smtp = agent(SHORT, dns=dns, connector=port_map({"127.0.0.1": peer.port}))
        results = await smtp.deliver(request(["a@d.test"], "d.test"))
    assert by_status(results) == [(status, dsn)]
    assert results[0].text == text
    assert results[0].relay == "peer.test[127.0.0.1]:25"


async def test_5xx_greeting_bounces_when_skip_is_off() -> None:
    async with ScriptedPeer(replies={"GREETING": "554 5.7.1 go away"}) as peer:
        smtp = agent("smtp_skip_5xx_greeting = no\n" + SHORT)
        results = await smtp.deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert by_status(results) == [("bounced", "5.7.1")]


async def test_4xx_greeting_tries_next_mx() -> None:
    dns = FakeDns(mx_records={"d.test": [(10, "mx1.d.test"), (20, "mx2.d.test")]},
                  a={"mx1.d.test": ["127.0.0.2"], "mx2.d.test": ["127.0.0.3"]})
    async with ScriptedPeer(host="127.0.0.2", replies={"GREETING": "421 4.3.2 busy"}) as mx1, \
            ScriptedPeer(host="127.0.0.3") as mx2:
        smtp = agent(SHORT, dns=dns,
                     connector=port_map({"127.0.0.2": mx1.port, "127.0.0.3": mx2.port}))
        results = await smtp.deliver(request(["a@d.test"], "d.test"))
    assert by_status(results) == [("sent", "2.0.0")]
    assert len(mx1.connections) == 1 and len(mx2.messages) == 1


async def test_partial_rcpt_failure_delivers_to_the_accepted_ones() -> None:
    script = {"RCPT": lambda arg: ("550 5.1.1 unknown" if "bad" in arg else
                                   "451 4.2.0 later" if "soft" in arg else "250 2.1.5 Ok")}
    async with ScriptedPeer(replies=script) as peer:
        smtp = agent(SHORT)
        results = await smtp.deliver(request(["good@x.test", "bad@x.test", "soft@x.test",
                                              "fine@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert by_status(results) == [("sent", "2.0.0"), ("bounced", "5.1.1"),
                                  ("deferred", "4.2.0"), ("sent", "2.0.0")]
    assert peer.messages[0].recipients == ["good@x.test", "fine@x.test"]


async def test_pipelining_sends_mail_and_rcpts_in_one_write() -> None:
    async with ScriptedPeer() as peer:
        await agent(SHORT).deliver(request(["a@x.test", "b@x.test"],
                                           f"[127.0.0.1]:{peer.port}"))
    raw = bytes(peer.connections[0].raw)
    assert b"MAIL FROM:<bob@client.test> SIZE=35\r\nRCPT TO:<a@x.test>\r\n" \
           b"RCPT TO:<b@x.test>\r\nDATA\r\n" in raw


async def test_without_pipelining_mail_refusal_sends_no_rcpt() -> None:
    async with ScriptedPeer(ehlo_keywords=(), replies={"MAIL": "550 5.7.1 no"}) as peer:
        await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert not any(c.startswith("RCPT") for c in peer.commands)


async def test_ehlo_refused_falls_back_to_helo() -> None:
    async with ScriptedPeer(replies={"EHLO": "502 5.5.2 what"}) as peer:
        results = await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert by_status(results) == [("sent", "2.0.0")]
    assert peer.commands[:2] == ["EHLO client.test", "HELO client.test"]
    assert peer.commands[2] == "MAIL FROM:<bob@client.test>"  # no ESMTP: no SIZE


async def test_size_limit_of_the_server_is_respected() -> None:
    async with ScriptedPeer(ehlo_keywords=("SIZE 10",)) as peer:
        results = await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert by_status(results) == [("bounced", "5.3.4")]
    assert results[0].text == ("message size 35 exceeds size limit 10 of server "
                               "127.0.0.1[127.0.0.1]")
    assert not any(c.startswith("MAIL") for c in peer.commands)


async def test_utf8_address_needs_smtputf8() -> None:
    async with ScriptedPeer(ehlo_keywords=("8BITMIME",)) as peer:
        results = await agent(SHORT).deliver(request(["jörg@x.test"],
                                                     f"[127.0.0.1]:{peer.port}"))
    assert by_status(results) == [("bounced", "5.6.7")]
    assert results[0].text == ("SMTPUTF8 is required, but was not offered by host "
                               "127.0.0.1[127.0.0.1]")
    assert results[0].relay == "127.0.0.1[127.0.0.1]:" + str(peer.port)
    assert not any(c.startswith("MAIL") for c in peer.commands)


# -- the wire ------------------------------------------------------------------------------
async def test_dot_stuffing_and_crlf_on_the_wire_across_chunks() -> None:
    data = b"Subject: x\r\n\r\n.leading\r\nmid\r\n..two\r\nbare\nlf\rcr\r\n.\r\nlast"
    async with ScriptedPeer() as peer:
        for size in (1, 2, 3, 7, len(data)):

            encoder = DataEncoder()
            wire = b"".join(encoder.feed(data[i:i + size]) for i in range(0, len(data), size))
            wire += encoder.finish()
            assert wire == (b"Subject: x\r\n\r\n..leading\r\nmid\r\n...two\r\nbare\r\nlf\r\n"
                            b"cr\r\n..\r\nlast\r\n.\r\n"), size
        await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}",
                                           data=data))
    assert peer.messages[0].wire == (b"Subject: x\r\n\r\n..leading\r\nmid\r\n...two\r\n"
                                     b"bare\r\nlf\r\ncr\r\n..\r\nlast\r\n.\r\n")
    assert b"\n" not in peer.messages[0].wire.replace(b"\r\n", b"")
    assert b"\r" not in peer.messages[0].wire.replace(b"\r\n", b"")


# -- timeouts --------------------------------------------------------------------------------
TIMEOUTS = [
    ({"GREETING": HANG}, "receiving the initial server greeting"),
    ({"EHLO": HANG}, "performing the EHLO handshake"),
    ({"MAIL": HANG}, "sending MAIL FROM"),
    ({"RCPT": HANG}, "sending RCPT TO"),
    ({"DATA": HANG}, "sending DATA command"),
    ({"DOT": HANG}, "sending end of data -- message may be sent more than once"),
]


@pytest.mark.parametrize(("script", "stage"), TIMEOUTS, ids=[t[1].split()[1] for t in TIMEOUTS])
async def test_each_timeout_defers_with_the_stage(script: dict[str, object],
                                                  stage: str) -> None:
    async with ScriptedPeer(replies=script) as peer:
        smtp = agent(SHORT)
        started = asyncio.get_running_loop().time()
        results = await smtp.deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
        elapsed = asyncio.get_running_loop().time() - started
    assert by_status(results) == [("deferred", "4.4.2")]
    assert results[0].text == f"conversation with 127.0.0.1[127.0.0.1] timed out while {stage}"
    assert elapsed < 2


async def test_data_transfer_timeout_when_the_peer_stops_reading() -> None:
    # A peer that never reads: the kernel buffers fill and drain() must time out.
    stuck = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 slow ESMTP\r\n")
        for reply in (b"250 slow\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            await reader.readline()
            writer.write(reply)
        await stuck.wait()  # never reads the content
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    big = (b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n") * 40000
    try:
        results = await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{port}",
                                                     data=big))
    finally:
        stuck.set()
        server.close()
        await server.wait_closed()
    assert by_status(results) == [("deferred", "4.4.2")]
    assert results[0].text == ("conversation with 127.0.0.1[127.0.0.1] timed out while "
                               "sending message body")


async def test_connect_timeout() -> None:
    async def hang(address: str, port: int, local: str | None) -> NoReturn:
        await asyncio.Event().wait()  # never set: the connect timeout cancels this
        raise AssertionError("unreachable")

    results = await agent(SHORT, connector=hang).deliver(request(["a@x.test"],
                                                                 "[127.0.0.9]:25"))
    assert by_status(results) == [("deferred", "4.4.1")]
    assert results[0].text == "connect to 127.0.0.9[127.0.0.9]:25: Connection timed out"
    assert results[0].relay == "none"


async def test_connection_refused_is_a_real_refusal() -> None:
    from tests.helpers import free_port
    port = free_port()
    results = await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{port}"))
    assert by_status(results) == [("deferred", "4.4.1")]
    assert results[0].text == f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused"
    assert results[0].extra["feedback"] == "site_failure"


async def test_lost_connection_defers() -> None:
    async with ScriptedPeer(replies={"RCPT": CLOSE}) as peer:
        results = await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert by_status(results) == [("deferred", "4.4.2")]
    assert results[0].text == "lost connection with 127.0.0.1[127.0.0.1] while sending RCPT TO"


# -- connection reuse ---------------------------------------------------------------------------
async def test_connection_reuse_sends_rset_and_counts_uses() -> None:
    async with ScriptedPeer() as peer:
        smtp = agent("smtp_connection_cache_time_limit = 5s\n")
        nexthop = f"[127.0.0.1]:{peer.port}"
        uses = []
        for i in range(3):
            results = await smtp.deliver(request([f"r{i}@x.test"], nexthop, qid=f"0QUEUEID000{i}"))
            assert results[0].status == "sent"
            uses.append(results[0].conn_use)
        await smtp.close()
    assert uses == [1, 2, 3]
    assert len(peer.connections) == 1
    assert [c.split()[0] for c in peer.commands].count("RSET") == 2
    assert peer.commands[-1] == "QUIT"
    assert len(peer.messages) == 3


async def test_mail_rcpt_and_data_go_in_one_group_and_rset_leads_on_reuse() -> None:
    """RFC 2920 §3.1 as Postfix does it: the server sees MAIL, both RCPTs and
    DATA before it has answered any; on a reused connection RSET comes first
    in the same group."""
    groups: list[list[bytes]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-sink\r\n250 PIPELINING\r\n")
        while True:
            group: list[bytes] = []
            while not group or group[-1] != b"DATA\r\n":
                line = await reader.readline()  # no reply yet: the client must go on
                if not line or line.startswith(b"QUIT"):
                    writer.close()
                    return
                group.append(line)
            groups.append(group)
            writer.write(b"".join(b"354 go\r\n" if line == b"DATA\r\n" else b"250 ok\r\n"
                                  for line in group))
            while await reader.readline() != b".\r\n":
                pass
            writer.write(b"250 2.0.0 queued\r\n")

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        smtp = agent("smtp_connection_cache_time_limit = 5s\n")
        nexthop = f"[127.0.0.1]:{port}"
        for qid in ("0QUEUEID0001", "0QUEUEID0002"):
            results = await smtp.deliver(request(["a@x.test", "b@x.test"], nexthop, qid=qid))
            assert [r.status for r in results] == ["sent", "sent"]
        await smtp.close()
    finally:
        server.close()
    verbs = [[line.split(b":")[0].split()[0] for line in group] for group in groups]
    assert verbs == [[b"MAIL", b"RCPT", b"RCPT", b"DATA"],
                     [b"RSET", b"MAIL", b"RCPT", b"RCPT", b"DATA"]]


async def test_a_354_with_no_recipient_accepted_ends_the_empty_message() -> None:
    async with ScriptedPeer(replies={"RCPT": "550 5.1.1 no such user"}) as peer:
        smtp = agent("smtp_connection_cache_time_limit = 5s\n")
        results = await smtp.deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
        assert by_status(results) == [("bounced", "5.1.1")]
        await smtp.close()
    assert [c.split()[0] for c in peer.commands] == ["EHLO", "MAIL", "RCPT", "DATA"]
    assert [m.content for m in peer.messages] == [b""]  # only the final dot was sent
    assert len(smtp.cache) == 0  # not kept for another message


async def test_dead_cached_connection_is_replaced() -> None:
    async with ScriptedPeer(replies={"RSET": CLOSE}) as peer:
        smtp = agent("smtp_connection_cache_time_limit = 5s\n")
        nexthop = f"[127.0.0.1]:{peer.port}"
        await smtp.deliver(request(["a@x.test"], nexthop))
        results = await smtp.deliver(request(["b@x.test"], nexthop))
        await smtp.close()
    assert results[0].status == "sent" and results[0].conn_use == 1
    assert len(peer.connections) == 2


async def test_idle_cached_connection_is_closed_after_the_time_limit() -> None:
    async with ScriptedPeer() as peer:
        smtp = agent("smtp_connection_cache_time_limit = 0.1s\n")
        await smtp.deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
        for _ in range(100):
            if peer.commands[-1:] == ["QUIT"]:
                break
            await asyncio.sleep(0.02)
    assert peer.commands[-1] == "QUIT"
    assert len(smtp.cache) == 0


async def test_message_body_arrives_intact() -> None:
    async with ScriptedPeer() as peer:
        await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert peer.messages[0].content == MESSAGE


# -- loops, handshake failures, the relayhost ---------------------------------------------
@pytest.fixture
def maillog(maillog_lines: list[str]) -> list[str]:
    """The maillog lines the agent writes (program: text)."""
    return maillog_lines


# Our own name (myhostname = client.test) first in the EHLO reply, as another
# Postern (or this one) answers: a mail loop (Postfix smtp_proto.c).
OWN_EHLO = "250 CLIENT.test Hello\n250 PIPELINING"


async def test_ehlo_reply_with_my_own_hostname_bounces_the_mail_5_4_6(
        maillog: list[str]) -> None:
    # Port 25 (the connector takes it to the scripted peer): Postfix checks there only.
    async with ScriptedPeer(replies={"EHLO": OWN_EHLO}) as peer:
        nexthop = "[127.0.0.1]"
        results = await agent(SHORT, connector=port_map({"127.0.0.1": peer.port})).deliver(
            request(["a@x.test"], nexthop))
    assert by_status(results) == [("bounced", "5.4.6")]
    assert results[0].text == f"mail for {nexthop} loops back to myself"
    assert results[0].relay == "127.0.0.1[127.0.0.1]:25"
    assert "smtp: warning: host 127.0.0.1[127.0.0.1]:25 replied to HELO/EHLO " \
           "with my own hostname client.test" in maillog
    assert not any(c.startswith("MAIL") for c in peer.commands)
    assert peer.commands[-1] == "QUIT"
    # Only the first word of the EHLO reply counts, and only in full; the
    # greeting alone is no loop (Postfix merely warns about it).
    for ehlo in ("250 client.test.example Hello\n250 PIPELINING",
                 "250 peer.test says client.test\n250 PIPELINING"):
        async with ScriptedPeer(replies={"EHLO": ehlo,
                                         "GREETING": "220 client.test ESMTP"}) as peer:
            results = await agent(SHORT, connector=port_map({"127.0.0.1": peer.port})
                                  ).deliver(request(["a@x.test"], "[127.0.0.1]"))
        assert by_status(results) == [("sent", "2.0.0")]
        assert "smtp: warning: host 127.0.0.1[127.0.0.1]:25 greeted me with my " \
               "own hostname client.test" in maillog


async def test_my_own_hostname_on_another_port_is_no_loop(maillog: list[str]) -> None:
    """A content filter on port 10024, or a second instance, answers with this
    machine's name: Postfix looks for loops by EHLO name on port 25 only."""
    async with ScriptedPeer(replies={"EHLO": OWN_EHLO,
                                     "GREETING": "220 client.test ESMTP"}) as peer:
        results = await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert by_status(results) == [("sent", "2.0.0")]
    assert not [line for line in maillog if "my own hostname" in line]


async def test_a_loop_at_a_backup_mx_defers_4_4_6_and_the_best_mx_loop_bounces(
        maillog: list[str]) -> None:
    dns = FakeDns(mx_records={"d.test": [(10, "mx1.d.test"), (20, "mx2.d.test")]},
                  a={"mx1.d.test": ["127.0.0.2"], "mx2.d.test": ["127.0.0.3"]})
    # The best MX is busy and the backup is ourselves: not for us to bounce.
    async with ScriptedPeer(host="127.0.0.2", replies={"GREETING": "421 4.3.2 busy"}) as mx1, \
            ScriptedPeer(host="127.0.0.3", replies={"EHLO": OWN_EHLO}) as mx2:
        smtp = agent(SHORT, dns=dns,
                     connector=port_map({"127.0.0.2": mx1.port, "127.0.0.3": mx2.port}))
        results = await smtp.deliver(request(["a@d.test"], "d.test"))
    assert by_status(results) == [("deferred", "4.4.6")]
    assert results[0].text == "mail for d.test loops back to myself"
    # The best MX is ourselves: bounced at once, the backup is not tried.
    async with ScriptedPeer(host="127.0.0.2", replies={"EHLO": OWN_EHLO}) as mx1, \
            ScriptedPeer(host="127.0.0.3") as mx2:
        smtp = agent(SHORT, dns=dns,
                     connector=port_map({"127.0.0.2": mx1.port, "127.0.0.3": mx2.port}))
        results = await smtp.deliver(request(["a@d.test"], "d.test"))
    assert by_status(results) == [("bounced", "5.4.6")]
    assert mx2.connections == []


async def test_ehlo_421_is_a_site_failure_without_helo() -> None:
    async with ScriptedPeer(replies={"EHLO": "421 4.3.2 Service shutting down"}) as peer:
        results = await agent(SHORT).deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert by_status(results) == [("deferred", "4.3.2")]
    assert results[0].text == ("host 127.0.0.1[127.0.0.1] refused to talk to me: "
                               "421 4.3.2 Service shutting down")
    assert "HELO client.test" not in peer.commands
    assert peer.messages == []


async def test_handshake_failures_do_not_count_towards_the_session_limit() -> None:
    # smtp_mx_session_limit = 2 (the default); Postfix smtp_connect.c: "Don't
    # count handshake errors towards the session limit."
    dns = FakeDns(mx_records={"d.test": [(10, "mx1.d.test"), (20, "mx2.d.test"),
                                         (30, "mx3.d.test")]},
                  a={"mx1.d.test": ["127.0.0.2"], "mx2.d.test": ["127.0.0.3"],
                     "mx3.d.test": ["127.0.0.4"]})
    async with ScriptedPeer(host="127.0.0.2", replies={"GREETING": "421 4.3.2 busy"}) as mx1, \
            ScriptedPeer(host="127.0.0.3", replies={"EHLO": CLOSE}) as mx2, \
            ScriptedPeer(host="127.0.0.4") as mx3:
        ports = port_map({"127.0.0.2": mx1.port, "127.0.0.3": mx2.port, "127.0.0.4": mx3.port})
        results = await agent(SHORT, dns=dns, connector=ports).deliver(
            request(["a@d.test"], "d.test"))
    assert by_status(results) == [("sent", "2.0.0")]
    assert len(mx3.messages) == 1
    # A failed transaction does count: two of them and the third MX is not tried.
    async with ScriptedPeer(host="127.0.0.2", replies={"MAIL": "451 4.3.0 later"}) as mx1, \
            ScriptedPeer(host="127.0.0.3", replies={"MAIL": "451 4.3.0 later"}) as mx2, \
            ScriptedPeer(host="127.0.0.4") as mx3:
        ports = port_map({"127.0.0.2": mx1.port, "127.0.0.3": mx2.port, "127.0.0.4": mx3.port})
        results = await agent(SHORT, dns=dns, connector=ports).deliver(
            request(["a@d.test"], "d.test"))
    assert by_status(results) == [("deferred", "4.3.0")]
    assert mx3.connections == []


async def test_a_relayhost_that_does_not_resolve_defers_4_3_5(maillog: list[str]) -> None:
    dns = FakeDns(nxdomain={"smarthost.typo.test"})
    relay = "[smarthost.typo.test]"
    results = await agent("relayhost = " + relay + "\n" + SHORT, dns=dns).deliver(
        request(["a@x.test"], relay))
    # Postfix smtp_connect.c: a configuration problem, not the recipient's.
    assert by_status(results) == [("deferred", "4.3.5")]
    assert results[0].text == ("Host or domain name not found. Name service error for "
                               "name=smarthost.typo.test type=A: Host not found")
    assert "smtp: warning: relayhost configuration problem" in maillog
    # The same next hop when it is not the relayhost (a transport map, say) bounces.
    results = await agent(SHORT, dns=dns).deliver(request(["a@x.test"], relay))
    assert by_status(results) == [("bounced", "5.4.4")]


# Our own listener, played by a scripted peer that answers EHLO as we would:
# the mail-loop check by address (Postfix smtp_addr.c) must stop the
# delivery before any connection, so the peer must see none.
async def test_a_relayhost_that_is_our_own_listener_defers_4_3_5_unconnected(
        maillog: list[str]) -> None:
    async with ScriptedPeer(replies={"EHLO": OWN_EHLO}) as me:
        relay = f"[127.0.0.1]:{me.port}"
        listening = f"smtp/inet = 127.0.0.1:{me.port}\n" + SHORT
        results = await agent(f"relayhost = {relay}\n" + listening).deliver(
            request(["a@x.test"], relay))
        # Postfix smtp_connect.c: a configuration problem, not the recipient's.
        assert by_status(results) == [("deferred", "4.3.5")]
        assert results[0].text == "mail for 127.0.0.1 loops back to myself"
        assert results[0].relay == "none"
        assert maillog.count("smtp: warning: relayhost configuration problem") == 1
        # The same next hop from a transport map, not the relayhost: bounced.
        results = await agent(listening).deliver(request(["a@x.test"], relay))
        assert by_status(results) == [("bounced", "5.4.6")]
        assert results[0].text == "mail for 127.0.0.1 loops back to myself"
        assert maillog.count("smtp: warning: relayhost configuration problem") == 1
        # Our address at another port is another server, not a loop; and
        # off port 25 its EHLO name is no loop either (a second instance).
        results = await agent(SHORT + "smtp/inet = 127.0.0.1:1\n").deliver(
            request(["a@x.test"], relay))
        assert by_status(results) == [("sent", "2.0.0")]
        assert results[0].relay == f"127.0.0.1[127.0.0.1]:{me.port}"
    assert len(me.connections) == 1


ME = "smtp/inet = 127.0.0.3:25\n"  # our listener, at the address of an MX host below


async def _to_d_test(mx_records: list[tuple[int, str]], extra: str = "",
                     nexthop: str = "d.test") -> tuple[list[DeliveryResult], ScriptedPeer,
                                                       ScriptedPeer]:
    """A delivery to d.test's MX hosts: mx1 (127.0.0.2) refuses connections,
    me (127.0.0.3) is our listener, mx3 (127.0.0.4) would take the mail, and
    gone.d.test does not resolve."""
    dns = FakeDns(mx_records={"d.test": mx_records},
                  a={"mx1.d.test": ["127.0.0.2", "127.0.0.5"], "me.d.test": ["127.0.0.3"],
                     "mx3.d.test": ["127.0.0.4"]}, nxdomain={"gone.d.test"})
    async with ScriptedPeer(host="127.0.0.3", replies={"EHLO": OWN_EHLO}) as me, \
            ScriptedPeer(host="127.0.0.4") as mx3:
        smtp = agent(SHORT + ME + extra, dns=dns,
                     connector=port_map({"127.0.0.3": me.port, "127.0.0.4": mx3.port}))
        results = await smtp.deliver(request(["a@d.test"], nexthop))
    return results, me, mx3


async def test_mx_hosts_as_good_as_myself_are_never_tried(maillog: list[str]) -> None:
    # A backup MX: only the better ones are tried; when they fail the mail
    # waits for them rather than going to me or to worse MX hosts.
    results, me, mx3 = await _to_d_test([(10, "mx1.d.test"), (20, "me.d.test"),
                                         (30, "mx3.d.test")])
    assert by_status(results) == [("deferred", "4.4.1")]
    assert results[0].text == "connect to mx1.d.test[127.0.0.5]:25: Connection refused"
    assert me.connections == [] and mx3.connections == []
    # The best MX: the mail loops, bounced without a connection.
    for records in ([(10, "me.d.test"), (20, "mx3.d.test")],
                    [(10, "mx1.d.test"), (10, "me.d.test")]):  # a tie is no better
        results, me, mx3 = await _to_d_test(records)
        assert by_status(results) == [("bounced", "5.4.6")]
        assert results[0].text == "mail for d.test loops back to myself"
        assert results[0].relay == "none"
        assert me.connections == [] and mx3.connections == []
    # A tie found past smtp_mx_address_limit still counts.
    results, _, _ = await _to_d_test([(10, "mx1.d.test"), (10, "me.d.test")],
                                     "smtp_mx_address_limit = 1\n")
    assert by_status(results) == [("bounced", "5.4.6")]
    # Better MX hosts that do not resolve: they may later, so defer.
    results, me, _ = await _to_d_test([(10, "gone.d.test"), (20, "me.d.test")])
    assert by_status(results) == [("deferred", "4.4.4")]
    assert results[0].text == "unable to find primary relay for d.test"
    assert me.connections == []
    assert not any("configuration problem" in line for line in maillog)
    # The relayhost's best MX is me: the relayhost's problem again.
    results, _, _ = await _to_d_test([(10, "me.d.test"), (20, "mx3.d.test")],
                                     "relayhost = d.test\n")
    assert by_status(results) == [("deferred", "4.3.5")]
    assert results[0].text == "mail for d.test loops back to myself"
    assert "smtp: warning: relayhost configuration problem" in maillog


async def test_unreadable_content_after_data_closes_the_connection() -> None:
    class Gone(Content):
        async def read_all(self) -> bytes:
            raise FileNotFoundError(2, "No such file or directory")

    writers: list[asyncio.StreamWriter] = []

    async def connect(address: str, port: int, local: str | None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(address, port)
        writers.append(writer)
        return reader, writer

    async with ScriptedPeer() as peer:
        smtp = agent("smtp_connection_cache_time_limit = 5s\n", connector=connect)
        message = request(["a@x.test"], f"[127.0.0.1]:{peer.port}")
        message.content = Gone(MESSAGE)
        with pytest.raises(FileNotFoundError):
            await smtp.deliver(message)
        assert len(smtp.cache) == 0
        assert writers and writers[0].is_closing()
        await smtp.close()
