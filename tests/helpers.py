"""Test helpers shared by unit, e2e and interop tests: a daemon runner,
free ports, polling (never sleeping for something we can poll), peers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage, Message
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar

import pytest

from tests.runenv import free_port, mta_env

if TYPE_CHECKING:
    from mta.config import Config
    from mta.smtpd.server import SmtpdContext, SmtpdServer
    from mta.spool import Spool
    from tests.fakes.certs import TestCA

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# main.cf of an in-process listener on a free loopback port: the unit tests
# that start an SmtpdServer or a Daemon in the test's own event loop.
IN_PROCESS_CF = """\
myhostname = mx.test
mydestination = mx.test
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:9
smtpd_peername_lookup = no
smtp/inet = 127.0.0.1:0
"""


async def start_in_process_smtpd(config: Config, spool: Spool,
                                 protocol: Callable[[SmtpdContext], asyncio.Protocol] | None = None,
                                 **context: Any) -> SmtpdServer:
    """An SmtpdServer for config's first listener on spool, started in the
    test's event loop (protocol: the session class, SecureSmtpdProtocol by
    default; context: SmtpdContext fields to override, such as security,
    connections or on_queued). The caller stops it (stop_accepting)."""
    from mta.master import build_parts
    from mta.smtpd.secure import SecureSmtpdProtocol
    from mta.smtpd.server import ConnectionRegistry, NameCache, SmtpdContext, SmtpdServer

    fields: dict[str, Any] = {
        "restrictions": build_parts(config).restrictions,
        "connections": ConnectionRegistry(config), "names": NameCache(False),
        "on_queued": lambda envelope: None, "loop": asyncio.get_running_loop()}
    fields.update(context)
    ctx = SmtpdContext(config=config, listener=config.listeners[0], spool=spool, **fields)
    smtpd = SmtpdServer(ctx, protocol or SecureSmtpdProtocol)
    await smtpd.start()
    return smtpd


def in_process_tls_cf(tmp_path: Path, extra: str = "") -> tuple[str, TestCA]:
    """main.cf text for an in-process listener that offers STARTTLS with a
    certificate for localhost from a new test CA (returned too)."""
    from tests.fakes.certs import TestCA

    ca = TestCA(directory=tmp_path)
    leaf = ca.issue("localhost", stem="server")
    return (IN_PROCESS_CF + "smtpd_tls_security_level = may\n"
            f"smtpd_tls_cert_file = {leaf.cert_file}\nsmtpd_tls_key_file = {leaf.key_file}\n"
            + extra), ca


@contextlib.asynccontextmanager
async def in_process_smtpd(tmp_path: Path, main_cf: str,
                           protocol: Callable[[SmtpdContext], asyncio.Protocol] | None = None,
                           **context: Any) -> AsyncIterator[SmtpdServer]:
    """An in-process listener on main_cf (IN_PROCESS_CF and changes) with a
    spool in tmp_path/queue (no fsync), stopped and closed at the end."""
    from mta.config import from_text
    from mta.spool import Spool

    config = from_text(main_cf + f"queue_directory = {tmp_path / 'queue'}\n")
    if "security" not in context and config.smtpd_tls_security_level != "none":
        from mta.sasl import FailureTracker
        from mta.smtpd.security import build_security

        context["security"], _ = build_security(config, FailureTracker())
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    try:
        smtpd = await start_in_process_smtpd(config, spool, protocol, **context)
        try:
            yield smtpd
        finally:
            smtpd.stop_accepting()
    finally:
        spool.close()


async def read_reply(reader: asyncio.StreamReader) -> str:
    """The last line of the next (possibly multi-line) reply; fails when the
    server closed instead."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line, "connection closed"
        if line[3:4] != b"-":
            return line.decode().rstrip("\r\n")


async def one_at_a_time(port: int, commands: list[str]) -> list[str]:
    """A session with the listener on port: after the greeting, each command
    once the previous one is answered; the last line of each reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await read_reply(reader)  # the greeting
        answers = []
        for command in commands:
            writer.write(command.encode() + b"\r\n")
            answers.append(await read_reply(reader))
        return answers
    finally:
        writer.close()


async def until(predicate: Callable[[], object], timeout: float = 5.0,
                interval: float = 0.005) -> None:
    """Poll predicate on the running event loop (in-process servers); fail after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        await asyncio.sleep(interval)


def wait_for(predicate: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll predicate until it returns something truthy (so never None); fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def wait_lines(read: Callable[[], str], pattern: str, count: int = 1, timeout: float = 15,
               what: str = "log line") -> list[str]:
    """Poll the text read() returns until count of its lines match pattern; those lines."""
    regex = re.compile(pattern)

    def found() -> list[str]:
        lines = [line for line in read().splitlines() if regex.search(line)]
        return lines if len(lines) >= count else []

    return wait_for(found, timeout=timeout, message=f"{what} /{pattern}/ x{count}")


def must_search(pattern: str, text: str) -> re.Match[str]:
    """re.search that fails the test when the pattern is not found."""
    match = re.search(pattern, text)
    assert match is not None, f"/{pattern}/ not found in {text!r}"
    return match


def mime_parts(message: Message) -> list[EmailMessage]:
    """The parts of a multipart or message/* part (its get_payload() list), parsed
    with email.policy.default (so each is an EmailMessage)."""
    payload = message.get_payload()
    assert isinstance(payload, list), f"{message.get_content_type()} has no parts"
    parts = []
    for part in payload:
        assert isinstance(part, EmailMessage), part
        parts.append(part)
    return parts


def maildir_messages(maildir: Path) -> list[Path]:
    """The messages delivered to a Maildir (its new/ folder), sorted by name."""
    new = maildir / "new"
    return sorted(new.iterdir()) if new.exists() else []


def wait_maildir_messages(maildir: Path, count: int = 1, timeout: float = 15) -> list[Path]:
    return wait_for(lambda: (files if len(files := maildir_messages(maildir)) >= count else []),
                    timeout=timeout, message=f"{count} message(s) in {maildir}")


def require_program(name: str) -> str:
    """The path of a peer program; skip (or fail under .ci/run) when missing."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}")
                                  else None)
    if path is None:
        if os.environ.get("POSTERN_REQUIRE_PEERS"):
            pytest.fail(f"{name} is required under .ci/run but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


def run_mta(*args: str, config: Path | None = None, input: bytes | None = None,
            check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "mta", *args]
    if config is not None:
        command += ["-c", str(config)]
    result = subprocess.run(command, input=input, capture_output=True, env=mta_env(),
                            timeout=timeout, cwd=str(config.parent) if config else None)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n"
                             f"{result.stdout.decode()}\n{result.stderr.decode()}")
    return result


MAIN_CF = """\
myhostname = mx.example.test
mydomain = example.test
myorigin = example.test
mydestination = localhost, example.test
mynetworks = 127.0.0.0/8
queue_directory = queue
mail_spool_directory = mail/
local_recipient_maps = texthash:mailboxes
recipient_delimiter = +
maillog_file = maillog
maillog_stderr = no
metrics_listen = 127.0.0.1:{metrics_port}
smtp/inet = 127.0.0.1:{smtp_port}
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
smtpd_peername_lookup = yes
# Mail for other domains (bounces to example.org senders, say) must never make
# a test ask a real name server: it waits in the queue unless a test routes it.
default_transport = retry:4.4.0 outbound delivery is off in tests
smtp_host_lookup = native
"""

MAILBOXES = """\
postmaster   postmaster/
alice        alice/
bob          bob/
"""


class Daemon:
    """``mta start`` as a subprocess in a directory of its own."""

    def __init__(self, root: Path, extra: str = "", mailboxes: str = MAILBOXES) -> None:
        self.root = root
        self.config = root / "main.cf"
        self._extra = extra
        self._pick_ports()
        (root / "mailboxes").write_text(mailboxes)
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: BinaryIO | None = None
        self.stderr_path = root / "stderr.log"

    def _pick_ports(self) -> None:
        self.smtp_port = free_port()
        self.metrics_port = free_port()
        self.config.write_text(MAIN_CF.format(smtp_port=self.smtp_port,
                                              metrics_port=self.metrics_port)
                               + self._extra)

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    def log_text(self) -> str:
        return self.maillog.read_text() if self.maillog.exists() else ""

    def start(self, wait: bool = True) -> Daemon:
        self._spawn()
        if wait:
            try:
                wait_for(self._listening, message="the daemon to listen")
            except AssertionError:
                if not self._lost_own_port():
                    raise
                # Something outside this test took a port between free_port()
                # and the daemon's bind (a CI host is shared): new ports, once.
                self._pick_ports()
                self._spawn()
                wait_for(self._listening, message="the daemon to listen")
        return self

    def _spawn(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mta", "start", "-c", str(self.config)],
            cwd=self.root, env=mta_env(), stdout=self._stderr, stderr=self._stderr)

    def _lost_own_port(self) -> bool:
        stderr = self.stderr_path.read_text()
        return "address already in use" in stderr and any(
            f"'127.0.0.1', {port})" in stderr
            for port in (self.smtp_port, self.metrics_port))

    def _listening(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"mta start exited {self.process.returncode}:\n"
                                 + self.stderr_path.read_text())
        return "daemon started" in self.log_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
        self.process = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 15) -> list[str]:
        return wait_lines(self.log_text, pattern, count, timeout, "maillog line")

    def metrics(self) -> str:
        """What a Prometheus scrape of the daemon gets now."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def maildir(self, user: str) -> list[Path]:
        return maildir_messages(self.root / "mail" / user)

    def wait_maildir(self, user: str, count: int = 1, timeout: float = 15) -> list[Path]:
        return wait_maildir_messages(self.root / "mail" / user, count, timeout)


class DaemonFactory(Protocol):
    """The daemon_factory fixture (tests/conftest.py): a Daemon in tmp_path/name."""

    def __call__(self, extra: str = "", name: str = "mta",
                 mailboxes: str = MAILBOXES) -> Daemon: ...


class RawSmtp:
    """A plain socket SMTP client for tests that need exact bytes and replies."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def reply(self) -> str:
        """One whole (possibly multi-line) reply, lines joined by newlines."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; partial reply {lines!r} {self.buffer!r}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            text = line.decode()
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    def command(self, line: str) -> str:
        self.send(line + "\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True once the server has closed the connection (what it sent
        before is read and dropped); never waits, so it can be polled."""
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True  # reset
        finally:
            self.sock.settimeout(timeout)
