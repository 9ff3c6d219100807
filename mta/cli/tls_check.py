"""``mta tls-check DEST``: what outbound TLS would do with a destination (our posttls-finger).

    mta tls-check example.com            MX lookup, as delivery does
    mta tls-check '[mx.example.com]:587' one host, no MX lookup
    mta tls-check -p 2525 mx.example.com the port (implies no MX lookup)
    mta tls-check -l verify --json ...   judge at a level; JSON out

Connects to the first server that answers, shows the banner, the EHLO reply,
STARTTLS and the TLS summary, the server's chain (subjects, names, issuers,
validity, SHA-256 fingerprints), which names matched, and the verdict of
every level (may, encrypt, fingerprint, verify, secure) with the deferral
text delivery would use. Exit status: 0 when delivery would proceed at the
destination's level (or -l), 1 when it would not, 2 when no server answered.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from typing import Any

from mta import config as configuration
from mta.config import Config
from mta.errors import BadValue, ConfigError
from mta.resolver import DnspythonBackend, LookupFailure, Resolver
from mta.smtp.client import (
    Peer,
    SmtpClientError,
    SmtpSession,
    StartTlsRefused,
    Timeouts,
    TlsHandshakeFailed,
)
from mta.smtp.nexthop import parse_nexthop, server_addresses
from mta.smtp.reply import Reply
from mta.tls.chain import TrustStore
from mta.tls.check_report import Probe, build, render_json, render_text
from mta.tls.client_context import peer_chain
from mta.tls.fingerprints import parse_fingerprint
from mta.tls.levels import TlsLevel, parse_level
from mta.tls.outbound import OutboundTls
from mta.tls.policy_table import default_policy


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "tls-check", parents=[common], help="check a destination's TLS (like posttls-finger)",
        description="Connect to a destination as the SMTP client would and show its TLS: "
                    "banner, EHLO, STARTTLS, certificate chain, names, and the verdict of "
                    "every TLS level.")
    parser.add_argument("destination", metavar="DEST",
                        help="a domain (MX lookup), [host] or [host]:port")
    parser.add_argument("-l", "--level", help="judge at this level instead of the "
                        "destination's policy (none, may, encrypt, fingerprint, verify, secure)")
    parser.add_argument("-p", "--port", type=int, help="the port (no MX lookup then)")
    parser.add_argument("-F", "--CAfile", dest="cafile",
                        help="trusted CA certificates instead of smtp_tls_CAfile")
    parser.add_argument("--fingerprint", action="append", default=[], metavar="FP",
                        help="a SHA-256 fingerprint to accept at the fingerprint level "
                             "(repeatable)")
    parser.add_argument("--helo", help="the EHLO name (default: smtp_helo_name)")
    parser.add_argument("--json", action="store_true", help="JSON instead of text")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds for each step (default 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = configuration.load(configuration.find_config(args.config))
    try:
        level = parse_level(args.level) if args.level else None
        pins = frozenset(parse_fingerprint(fp) for fp in args.fingerprint)
    except BadValue as error:
        raise ConfigError(str(error)) from None
    return asyncio.run(check(config, args.destination, level=level, port=args.port,
                             cafile=args.cafile, pins=pins, helo=args.helo,
                             as_json=args.json, timeout=args.timeout))


def _destination(text: str, port: int | None) -> str:
    """DEST as a next hop; with -p, one host on that port ([host]:port, no MX lookup)."""
    if port is None:
        return text
    if text.startswith("["):
        host = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        host = text.partition(":")[0]
    else:
        host = text
    return f"[{host}]:{port}"


async def check(config: Config, destination: str, *, level: TlsLevel | None = None,
                port: int | None = None, cafile: str | None = None,
                pins: frozenset[bytes] = frozenset(), helo: str | None = None,
                as_json: bool = False, timeout: float = 30.0, resolver: Resolver | None = None,
                connector: Any = None, out: Any = None) -> int:
    out = out or sys.stdout
    outbound = OutboundTls.from_config(config)
    store = TrustStore(cafile=cafile) if cafile else outbound.store
    nexthop = _destination(destination, port)
    policy = outbound.policy_for(nexthop)
    if level is not None:
        policy = default_policy(config, level, where="tls-check -l")
    resolver = resolver or Resolver(config.smtp_host_lookup,
                                    dns=DnspythonBackend(timeout=config.smtp_dns_timeout),
                                    preference=config.smtp_address_preference)
    try:
        hop = parse_nexthop(nexthop)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        # The servers delivery would try, in its order (smtp_mx_address_limit).
        servers = [(mx.hostname, address) for mx, address in await server_addresses(
            resolver, hop, config.smtp_mx_address_limit)]
    except LookupFailure as failure:
        print(f"mta tls-check: {failure.text}", file=sys.stderr)
        return 2
    timeouts = Timeouts.from_config(config)
    timeouts = dataclasses.replace(timeouts, **{
        f.name: min(getattr(timeouts, f.name), timeout) for f in dataclasses.fields(timeouts)})
    context_policy = policy if policy.level >= TlsLevel.MAY else default_policy(
        config, TlsLevel.MAY)
    context = outbound.contexts.for_policy(context_policy)
    sni = context_policy.server_name(servers[0][0] if servers else hop.host, hop.host)
    probe: Probe | None = None
    for hostname, address in servers:
        probe = await _probe(Peer(hostname, address, hop.port), nexthop, timeouts,
                             helo or config.smtp_helo_name, context, sni, connector)
        if probe.error is None or probe.transcript:
            break
    if probe is None:
        print(f"mta tls-check: no servers for {destination}", file=sys.stderr)
        return 2
    report = build(probe, store, config, policy, extra_fingerprints=pins)
    out.write(render_json(report) if as_json else render_text(report))
    if probe.error and not probe.transcript:
        return 2
    verdict = report.configured
    return 0 if verdict is None or verdict.deliver else 1


def _reply_lines(reply: Reply) -> list[str]:
    last = len(reply.lines) - 1
    return [f"< {reply.code}{'-' if i < last else ' '}{line}".rstrip()
            for i, line in enumerate(reply.lines)]


async def _probe(peer: Peer, nexthop: str, timeouts: Timeouts, helo: str, context: Any,
                 sni: str | None, connector: Any) -> Probe:
    probe = Probe(nexthop, peer.hostname, peer.address, peer.port)
    try:
        session = await SmtpSession.connect(peer, timeouts, connector=connector)
    except SmtpClientError as error:
        probe.error = error.text
        return probe
    try:
        probe.transcript += _reply_lines(await session.read_greeting())
        probe.transcript.append(f"> EHLO {helo}")
        ehlo = await session.ehlo(helo)
        probe.transcript += _reply_lines(ehlo)
        probe.starttls_offered = ehlo.code == 250 and "STARTTLS" in ehlo.keywords
        if not probe.starttls_offered:
            await session.quit()
            return probe
        probe.transcript.append("> STARTTLS")
        try:
            facts = await session.starttls(context, sni)
        except StartTlsRefused as refused:
            probe.transcript += _reply_lines(refused.reply)
            probe.starttls_reply = (refused.reply.code, refused.reply.dsn, str(refused.reply))
            await session.quit()
            return probe
        except TlsHandshakeFailed as failed:
            probe.transcript.append("< 220 (then the TLS handshake failed)")
            probe.handshake_error = failed.reason
            return probe
        probe.transcript.append("< 220 (TLS handshake done)")
        probe.protocol, probe.cipher, probe.cipher_bits = (facts.protocol, facts.cipher,
                                                           facts.secret_bits)
        if facts.ssl_object is not None:
            probe.chain = peer_chain(facts.ssl_object)
        probe.transcript.append(f"> EHLO {helo}")
        probe.transcript += _reply_lines(await session.ehlo(helo))
        await session.quit()
    except SmtpClientError as error:
        probe.error = error.text
        session.close()
    return probe
