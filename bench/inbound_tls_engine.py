"""Measure the inbound TLS design choice (docs/architecture.md, "Inbound TLS").

    python bench/inbound_tls_engine.py

1. Does asking for a client certificate survive a certificate that chains to
   nothing? Python's ssl (CERT_OPTIONAL) versus pyOpenSSL with a recording
   verify callback.
2. What does carrying TLS ourselves (mta/tls/engine.py, pyOpenSSL over memory
   buffers) cost against asyncio's built-in TLS (sslproto)? Bulk upload
   throughput and sequential handshakes, on loopback, one core.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mta.tls import protocols
from mta.tls.engine import TlsEngine
from mta.tls.server import ContextSettings, ServerTls, load_identity
from tests.fakes.certs import TestCA, self_signed

PAYLOAD = 64 * 1024 * 1024
HANDSHAKES = 300


def setup(directory: Path) -> tuple[TestCA, ServerTls, ssl.SSLContext, object, object]:
    ca = TestCA(directory=directory)
    server = ca.issue("localhost", "127.0.0.1")
    stranger = self_signed("stranger.example", directory=directory)
    settings = ContextSettings(protocols.parse_protocols(">=TLSv1.2", protocols.INBOUND),
                               protocols.cipher_string("medium", (), protocols.INBOUND),
                               ask_ccert=True,
                               cafile=str(ca.cert_file), verify_depth=9)
    tls = ServerTls(settings, load_identity([server.key_file, server.cert_file]))
    native = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    native.load_cert_chain(str(server.cert_file), str(server.key_file))
    native.load_verify_locations(str(ca.cert_file))
    native.verify_mode = ssl.CERT_OPTIONAL
    return ca, tls, native, server, stranger


class Sink(asyncio.Protocol):
    """Counts bytes; with an engine, decrypts them first (as smtpd does)."""

    def __init__(self, tls: ServerTls | None, done: asyncio.Future[float]) -> None:
        self.tls = tls
        self.done = done
        self.count = 0
        self.engine: TlsEngine | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.tls is not None:
            self.engine = TlsEngine(self.tls.connection()[0])

    def data_received(self, data: bytes) -> None:
        if self.engine is not None:
            data = self.engine.receive(data)
            out = self.engine.outgoing()
            if out:
                self.transport.write(out)  # type: ignore[union-attr]
        self.count += len(data)
        if self.count >= PAYLOAD and not self.done.done():
            self.done.set_result(time.perf_counter())
            self.transport.write(b"k")  # type: ignore[union-attr]
            if self.engine is not None:
                self.transport.write(self.engine.send(b""))  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        return False


async def throughput(tls: ServerTls | None, native: ssl.SSLContext | None,
                     client: ssl.SSLContext) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    server = await loop.create_server(lambda: Sink(tls, done), "127.0.0.1", 0, ssl=native)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                   server_hostname="localhost")
    block = os.urandom(256 * 1024)
    start = time.perf_counter()
    for _ in range(PAYLOAD // len(block)):
        writer.write(block)
        await writer.drain()
    end = await done
    writer.close()
    server.close()
    return PAYLOAD / (end - start) / 1e6


async def handshakes(tls: ServerTls | None, native: ssl.SSLContext | None,
                     client: ssl.SSLContext) -> float:
    loop = asyncio.get_running_loop()

    class Greeter(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.engine = TlsEngine(tls.connection()[0]) if tls else None
            if self.engine is None:
                transport.write(b"hi")  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            assert self.engine is not None
            self.engine.receive(data)
            out = self.engine.outgoing()
            if self.engine.handshake_done:
                out += self.engine.send(b"hi")
            if out:
                self.transport.write(out)  # type: ignore[attr-defined]

    server = await loop.create_server(Greeter, "127.0.0.1", 0, ssl=native)
    port = server.sockets[0].getsockname()[1]
    start = time.perf_counter()
    for _ in range(HANDSHAKES):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                       server_hostname="localhost")
        await reader.readexactly(2)
        writer.close()
    elapsed = time.perf_counter() - start
    server.close()
    return HANDSHAKES / elapsed


def unverifiable_client_cert(tls: ServerTls, native: ssl.SSLContext, ca: TestCA,
                             stranger: object) -> None:
    client = ca.client_context()
    client.load_cert_chain(str(stranger.cert_file), str(stranger.key_file))  # type: ignore
    for name in ("python ssl, CERT_OPTIONAL", "pyOpenSSL, recording callback"):
        c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
        s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        native_server = native.wrap_bio(s_in, s_out, server_side=True)
        connection, state = tls.connection()
        engine = TlsEngine(connection)
        outcome = "handshake completed"
        try:
            for _ in range(10):
                try:
                    c.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                data = c_out.read()
                if name.startswith("python"):
                    s_in.write(data)
                    try:
                        native_server.do_handshake()
                    except ssl.SSLWantReadError:
                        pass
                    c_in.write(s_out.read())
                else:
                    engine.receive(data)
                    c_in.write(engine.outgoing())
        except ssl.SSLError as error:
            outcome = f"handshake aborted: {error.reason}"
        if not name.startswith("python"):
            outcome += (f", recorded: trusted={state.verify.trusted} "
                        f"error={state.verify.error}")
        print(f"  {name:32} {outcome}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca, tls, native, _server, stranger = setup(Path(tmp))
        print("1. client certificate that chains to nothing, asked for:")
        unverifiable_client_cert(tls, native, ca, stranger)
        client = ca.client_context()
        print(f"2. bulk upload, {PAYLOAD >> 20} MiB (MB/s), best of 3:")
        engines: tuple[tuple[str, ServerTls | None, ssl.SSLContext | None], ...] = (
            ("asyncio sslproto", None, native), ("pyOpenSSL engine", tls, None))
        for name, ours, builtin in engines:
            best = max([await throughput(ours, builtin, client) for _ in range(3)])
            print(f"  {name:32} {best:8.1f}")
        print(f"3. sequential handshakes ({HANDSHAKES}), per second:")
        for name, ours, builtin in engines:
            print(f"  {name:32} {await handshakes(ours, builtin, client):8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
