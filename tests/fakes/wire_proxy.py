"""A man in the middle for client tests: a TCP relay on loopback that records
the bytes the client sent, as an eavesdropper on the wire would, and can strip
STARTTLS from the server's EHLO reply, as a downgrading attacker does."""

from __future__ import annotations

import asyncio
import contextlib

from tests.fakes.loopback import LoopbackServer


class WireProxy(LoopbackServer):
    """Relays to target_port and records what the client sent; strip=True removes
    STARTTLS from the server's EHLO reply."""

    def __init__(self, target_port: int, strip: bool = False) -> None:
        super().__init__()
        self.target_port = target_port
        self.strip = strip
        self.client_bytes = bytearray()

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def upstream() -> None:
            while data := await client_r.read(65536):
                self.client_bytes += data
                server_w.write(data)
                await server_w.drain()
            server_w.close()

        async def downstream() -> None:
            if not self.strip:  # bytes as they come (TLS records are not lines)
                while data := await server_r.read(65536):
                    client_w.write(data)
                    await client_w.drain()
                client_w.close()
                return
            reply: list[bytes] = []
            while line := await server_r.readline():
                reply.append(line)
                if line[3:4] == b"-":
                    continue  # collect a multi-line reply whole
                kept = [x for x in reply if x[4:].strip().upper() != b"STARTTLS"]
                kept = [x[:3] + b"-" + x[4:] for x in kept[:-1]] + \
                    [kept[-1][:3] + b" " + kept[-1][4:]]
                client_w.write(b"".join(kept))
                await client_w.drain()
                reply = []
            client_w.close()

        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.gather(upstream(), downstream())
