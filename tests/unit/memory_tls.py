"""TLS handshakes in memory between a Python ssl client and smtpd's engine
(mta/tls/engine.py), with no socket in between."""

from __future__ import annotations

import ssl

from mta.tls.engine import TlsEngine, TlsError
from mta.tls.protocols import INBOUND, cipher_string, parse_protocols
from mta.tls.server import ContextSettings, ServerTls, SessionTls, load_identity
from tests.fakes.certs import Issued, TestCA


def memory_handshake(server: ServerTls, client: ssl.SSLContext,
                     server_hostname: str = "localhost"
                     ) -> tuple[TlsEngine, SessionTls, ssl.SSLObject | None, str]:
    """Run a handshake between a Python ssl client and our engine, in memory.

    Returns the engine, its callback state, the client object (None when the
    client gave up) and the client's error text ("" on success).
    """
    connection, state = server.connection()
    engine = TlsEngine(connection)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    peer = client.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    for _ in range(20):
        try:
            peer.do_handshake()
            if engine.handshake_done:
                return engine, state, peer, ""
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as error:
            return engine, state, None, str(error.reason)
        try:
            engine.receive(outgoing.read())
        except TlsError as error:
            incoming.write(engine.outgoing())
            try:
                peer.do_handshake()
            except ssl.SSLError:
                pass
            return engine, state, None, str(error)
        incoming.write(engine.outgoing())
    raise AssertionError("handshake did not finish")


def server_tls(ca: TestCA, server: Issued, *, ask_ccert: bool = True,
               protocols: str = ">=TLSv1.2", grade: str = "medium",
               sni: dict[str, Issued] | None = None) -> ServerTls:
    """A ServerTls as smtpd builds it, trusting ca (written to its directory)
    for client certificates."""
    settings = ContextSettings(
        protocols=parse_protocols(protocols, INBOUND),
        ciphers=cipher_string(grade, (), INBOUND), ask_ccert=ask_ccert,
        cafile=str(ca.cert_file), verify_depth=9)
    identities = {name: load_identity([i.key_file, i.cert_file])
                  for name, i in (sni or {}).items()}
    return ServerTls(settings, load_identity([server.key_file, server.cert_file]),
                     identities)
