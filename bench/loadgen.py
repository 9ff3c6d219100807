"""An asyncio SMTP load generator: messages over plaintext or STARTTLS sessions,
idle connections, and NOOP probes beside one large message; prints JSON.

smtp-source(1) cannot do STARTTLS and cannot tell how long the server took
to answer the final dot, so this one does both: for every message it takes
the time from writing the ``.`` line (after the body was handed to the
kernel) to reading the 250, which is the server's commit latency as a
client sees it. Like smtp-source without -d it uses one session per message
by default; with STARTTLS that means a full handshake per message. Like
smtp-source it waits for each reply before the next command, unless told to
pipeline as an MTA's client does (``--pipelining``: MAIL, RCPT and DATA in
one write when the server offers PIPELINING, RFC 2920 §3.1).

    python3 bench/loadgen.py load --port 2525 --sessions 20 --messages 5000 --size 1024
    python3 bench/loadgen.py load --port 2525 --starttls --cafile cert.pem ...
    python3 bench/loadgen.py load --port 2525 --starttls --pipelining ...
    python3 bench/loadgen.py idle --port 2525 --connections 1000
    python3 bench/loadgen.py big --port 2525 --size 26214400 --probes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time
from dataclasses import dataclass, field

CRLF = b"\r\n"


class SmtpError(Exception):
    """The server answered something other than what the step needs."""


class SmtpClient:
    """A minimal SMTP client over asyncio streams; pipelines MAIL, RCPT and
    DATA only when asked to and the server offers it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, pipelining: bool = False) -> None:
        self.reader = reader
        self.writer = writer
        self.pipelining = pipelining
        self.extensions: set[str] = set()

    @classmethod
    async def connect(cls, host: str, port: int, *, pipelining: bool = False) -> SmtpClient:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer, pipelining=pipelining)

    async def reply(self) -> tuple[int, list[bytes]]:
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionResetError("server closed the connection")
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), lines

    async def command(self, line: bytes, expect: int) -> list[bytes]:
        self.writer.write(line + CRLF)
        code, lines = await self.reply()
        if code != expect:
            raise SmtpError(f"{line[:20]!r}: {lines[-1][:120]!r}")
        return lines

    async def greet(self, helo: str = "loadgen.bench.test") -> None:
        code, lines = await self.reply()
        if code != 220:
            raise SmtpError(f"greeting: {lines[-1][:120]!r}")
        await self.ehlo(helo)

    async def ehlo(self, helo: str = "loadgen.bench.test") -> None:
        lines = await self.command(b"EHLO " + helo.encode(), 250)
        self.extensions = {line[4:].split(b" ")[0].decode().upper() for line in lines[1:]}

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        if "STARTTLS" not in self.extensions:
            raise SmtpError("STARTTLS not offered")
        await self.command(b"STARTTLS", 220)
        await self.writer.start_tls(context, server_hostname=server_hostname)
        await self.ehlo()

    async def send(self, sender: str, recipient: str, content: bytes) -> float:
        """One transaction; returns seconds from the final dot to the 250."""
        mail = f"MAIL FROM:<{sender}>".encode()
        rcpt = f"RCPT TO:<{recipient}>".encode()
        if self.pipelining and "PIPELINING" in self.extensions:
            # RFC 2920 §3.1: DATA ends the group; the replies come in order.
            self.writer.write(mail + CRLF + rcpt + CRLF + b"DATA" + CRLF)
            for line, expect in ((mail, 250), (rcpt, 250), (b"DATA", 354)):
                code, lines = await self.reply()
                if code != expect:
                    raise SmtpError(f"{line[:20]!r}: {lines[-1][:120]!r}")
        else:
            await self.command(mail, 250)
            await self.command(rcpt, 250)
            await self.command(b"DATA", 354)
        view = memoryview(content)
        for start in range(0, len(view), 1 << 20):
            self.writer.write(view[start:start + (1 << 20)])
            await self.writer.drain()
        started = time.perf_counter()
        self.writer.write(b".\r\n")
        code, lines = await self.reply()
        elapsed = time.perf_counter() - started
        if code != 250:
            raise SmtpError(f"end of data: {lines[-1][:120]!r}")
        return elapsed

    async def quit(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.reply(), 5)
        except (OSError, SmtpError, TimeoutError, ssl.SSLError):
            pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, TimeoutError, ssl.SSLError):
            pass


def body(size: int) -> bytes:
    """size bytes of printable text in 78-character lines (none starts with a dot)."""
    line = (b"abcdefghijklmnopqrstuvwxyz0123456789" * 3)[:76] + CRLF
    text = line * (size // len(line) + 1)
    return text[:max(0, size - 2)] + CRLF if size >= 2 else CRLF


def message(index: int, sender: str, recipient: str, payload: bytes) -> bytes:
    header = (f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: loadgen {index}\r\n"
              f"Message-ID: <{index}.{os.getpid()}.{time.time_ns()}@loadgen.bench.test>\r\n"
              "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n").encode()
    return header + payload


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """Verification on: the harness's certificate is the trust anchor."""
    context = ssl.create_default_context(cafile=cafile)
    return context


@dataclass
class LoadResult:
    accepted: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    setup: list[float] = field(default_factory=list)
    started: float = 0.0
    last_250: float = 0.0
    finished: float = 0.0
    started_wall: float = 0.0

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text)

    def summary(self) -> dict[str, object]:
        span = self.last_250 - self.started
        return {
            "accepted": self.accepted, "errors": self.errors, "error_samples": self.error_samples,
            "accept_seconds": round(span, 4),
            "accept_rate": round(self.accepted / span, 2) if span > 0 and self.accepted else None,
            "latency_p50": percentile(self.latencies, 0.50),
            "latency_p90": percentile(self.latencies, 0.90),
            "latency_p99": percentile(self.latencies, 0.99),
            "latency_max": max(self.latencies, default=None),
            "session_setup_p50": percentile(self.setup, 0.50),
            "session_setup_p99": percentile(self.setup, 0.99),
            "started_wall": self.started_wall,
        }


async def load(host: str, port: int, *, sessions: int, messages: int, size: int,
               per_session: int, context: ssl.SSLContext | None, server_hostname: str,
               sender: str, recipient: str, pipelining: bool = False) -> LoadResult:
    """Send messages over sessions concurrent sessions, per_session per connection."""
    result = LoadResult()
    payload = body(size)
    remaining = [messages]

    def take() -> int | None:
        if remaining[0] <= 0:
            return None
        remaining[0] -= 1
        return messages - remaining[0]

    async def worker() -> None:
        while remaining[0] > 0:
            began = time.perf_counter()
            client: SmtpClient | None = None
            try:
                client = await SmtpClient.connect(host, port, pipelining=pipelining)
                await client.greet()
                if context is not None:
                    await client.starttls(context, server_hostname)
                result.setup.append(time.perf_counter() - began)
                for sent in range(per_session):
                    index = take()
                    if index is None:
                        break
                    latency = await client.send(sender, recipient,
                                                message(index, sender, recipient, payload))
                    result.latencies.append(latency)
                    result.accepted += 1
                    result.last_250 = time.perf_counter()
                    if sent < per_session - 1:
                        await client.command(b"RSET", 250)
            except (OSError, SmtpError, ssl.SSLError, asyncio.IncompleteReadError) as error:
                result.error(f"{type(error).__name__}: {error}")
                if result.errors > max(50, messages // 10):
                    return  # the server is not coping; do not spin
            finally:
                if client is not None:
                    await client.quit()

    result.started = time.perf_counter()
    result.started_wall = time.time()
    await asyncio.gather(*(worker() for _ in range(sessions)))
    result.finished = time.perf_counter()
    return result


async def idle(host: str, port: int, *, connections: int, greeting_timeout: float,
               hold: float) -> dict[str, object]:
    """Open connections, greet and EHLO on each, hold them, then QUIT all.

    Prints ``READY n`` on stderr once all are open so that a harness can
    measure the server meanwhile; holds until stdin closes or hold runs out.
    """
    clients: list[SmtpClient] = []
    greeted = 0
    failed: list[str] = []

    async def open_one() -> None:
        nonlocal greeted
        try:
            client = await SmtpClient.connect(host, port)
        except OSError as error:
            failed.append(str(error))
            return
        clients.append(client)
        try:
            await asyncio.wait_for(client.greet(), greeting_timeout)
            greeted += 1
        except (TimeoutError, OSError, SmtpError) as error:
            failed.append(f"{type(error).__name__}: {error}")

    started = time.perf_counter()
    for start in range(0, connections, 100):  # do not overrun the listen backlog
        await asyncio.gather(*(open_one() for _ in range(start, min(connections, start + 100))))
    opened = time.perf_counter() - started
    print(f"READY {len(clients)} {greeted}", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), hold)
    except TimeoutError:
        pass
    # Still alive? A NOOP on each tells whether the server kept every session.
    alive = 0

    async def probe(client: SmtpClient) -> None:
        nonlocal alive
        try:
            await asyncio.wait_for(client.command(b"NOOP", 250), 10)
            alive += 1
        except (TimeoutError, OSError, SmtpError):
            pass

    await asyncio.gather(*(probe(c) for c in clients))
    await asyncio.gather(*(c.quit() for c in clients))
    return {"connections": len(clients), "greeted": greeted, "alive_after_hold": alive,
            "open_seconds": round(opened, 3), "failures": len(failed),
            "failure_samples": failed[:5]}


async def big(host: str, port: int, *, size: int, count: int, probes: int, interval: float,
              sender: str, recipient: str) -> dict[str, object]:
    """count messages of size bytes, one after the other on one session, while
    probes other sessions time a NOOP every interval."""
    probe_clients = []
    for _ in range(probes):
        client = await SmtpClient.connect(host, port)
        await client.greet()
        probe_clients.append(client)
    sender_client = await SmtpClient.connect(host, port)
    await sender_client.greet()
    done = asyncio.Event()
    rtts: list[float] = []

    async def prober(client: SmtpClient) -> None:
        while not done.is_set():
            began = time.perf_counter()
            await client.command(b"NOOP", 250)
            rtts.append(time.perf_counter() - began)
            try:
                await asyncio.wait_for(done.wait(), interval)
            except TimeoutError:
                pass

    tasks = [asyncio.create_task(prober(c)) for c in probe_clients]
    payload = message(0, sender, recipient, body(size))
    transfers: list[float] = []
    latencies: list[float] = []
    error = None
    for _ in range(count):
        began = time.perf_counter()
        try:
            latencies.append(await sender_client.send(sender, recipient, payload))
        except (OSError, SmtpError) as failure:
            error = f"{type(failure).__name__}: {failure}"
            break
        transfers.append(time.perf_counter() - began)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in [*probe_clients, sender_client]:
        await client.quit()
    return {"size": len(payload), "accepted": len(transfers), "error": error,
            "transfer_seconds": percentile(transfers, 0.5), "dot_to_250": max(latencies,
                                                                              default=None),
            "noops": len(rtts), "noop_p50": percentile(rtts, 0.5),
            "noop_p99": percentile(rtts, 0.99), "noop_max": max(rtts, default=None)}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("load", "idle", "big"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=1024, help="payload bytes per message")
    parser.add_argument("--per-session", type=int, default=1,
                        help="messages per connection (default 1, like smtp-source)")
    parser.add_argument("--starttls", action="store_true", help="STARTTLS on every session")
    parser.add_argument("--cafile", help="trust anchor for the server certificate")
    parser.add_argument("--pipelining", action="store_true",
                        help="MAIL, RCPT and DATA in one write when the server offers PIPELINING")
    parser.add_argument("--server-hostname", default="localhost")
    parser.add_argument("--from", dest="sender", default="loadgen@bench.test")
    parser.add_argument("--to", dest="recipient", default="sink@relay.bench.test")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--greeting-timeout", type=float, default=10.0)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--count", type=int, default=1, help="big: messages in a row")
    parser.add_argument("--interval", type=float, default=0.01)
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.mode == "load":
        context = tls_context(args.cafile) if args.starttls else None
        result = asyncio.run(load(
            args.host, args.port, sessions=args.sessions, messages=args.messages,
            size=args.size, per_session=args.per_session, context=context,
            server_hostname=args.server_hostname, sender=args.sender,
            recipient=args.recipient, pipelining=args.pipelining))
        output = result.summary()
    elif args.mode == "idle":
        output = asyncio.run(idle(args.host, args.port, connections=args.connections,
                                  greeting_timeout=args.greeting_timeout, hold=args.hold))
    else:
        output = asyncio.run(big(args.host, args.port, size=args.size, count=args.count,
                                 probes=args.probes,
                                 interval=args.interval, sender=args.sender,
                                 recipient=args.recipient))
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
