"""Improper pipelining and non-SMTP commands: Postfix's smtpd and ours, the
same bytes, the same answers.

Each case is sent to a private Postfix with smtpd_forbid_unauth_pipelining
= yes (the default from Postfix 3.9; Debian's 3.7 has the parameter, off)
and to a Postern daemon with its defaults. Replies are compared by code and
enhanced code (greetings and EHLO texts name different hosts), the refusals
by their whole text, and both maillogs must name the violation alike.
"""

from __future__ import annotations

import re
import socket

import pytest

from tests.helpers import Daemon
from tests.interop.postfix import PostfixFactory

pytestmark = pytest.mark.interop

EHLO = b"EHLO client.example\r\n"
TRANSACTION = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@%s>\r\n"

# (bytes to send after the greeting, one write per step; replies per step)
CASES: dict[str, list[tuple[bytes, int]]] = {
    "ehlo-then-mail": [(EHLO + b"MAIL FROM:<a@example.org>\r\n", 1)],
    "data-with-content": [(EHLO, 1), (TRANSACTION + b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n", 3)],
    "after-helo": [(b"HELO client.example\r\n", 1), (TRANSACTION, 1)],
    "noop-noop": [(EHLO, 1), (b"NOOP\r\nNOOP\r\n", 1)],
    "vrfy-noop": [(EHLO, 1), (b"VRFY postmaster\r\nNOOP\r\n", 1)],
    "allowed": [(EHLO, 1), (b"RSET\r\n" + TRANSACTION + b"DATA\r\n", 4),
                (b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", 2)],
    "quit-then-more": [(EHLO, 1), (b"QUIT\r\nNOOP\r\n", 1)],
    # Without EHLO no PIPELINING was announced: QUIT is no exception.
    "quit-then-more-first": [(b"QUIT\r\nNOOP\r\n", 1)],
    "quit-then-more-after-helo": [(b"HELO client.example\r\n", 1), (b"QUIT\r\nNOOP\r\n", 1)],
    "http": [(b"GET / HTTP/1.0\r\n", 1)],
    "header": [(EHLO, 1), (b"Subject: hi\r\n", 1)],
    "binary": [(b"\x16\x03\x01\x00\x05hello\r\n", 1)],
}


def _reply(stream: socket.SocketIO, buffer: bytearray) -> str:
    """One reply's last line, or "closed"."""
    while True:
        while b"\n" not in buffer:
            chunk = stream.read(4096)
            if not chunk:
                return "closed"
            buffer += chunk
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        if line[3:4] != b"-":
            return line.decode(errors="replace").rstrip("\r")


def conversation(port: int, domain: str, steps: list[tuple[bytes, int]]) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        stream = socket.SocketIO(raw, "rb")
        buffer = bytearray()
        said = [_reply(stream, buffer)]
        for data, count in steps:
            raw.sendall(data.replace(b"%s", domain.encode()))
            said += [_reply(stream, buffer) for _ in range(count)]
        said.append(_reply(stream, buffer) if said[-1] != "closed" else "closed")
        return said


def comparable(reply: str) -> str:
    """A refusal whole; other replies by code and enhanced code."""
    if reply.startswith(("554 5.5.0", "221 2.7.0")) or reply == "closed":
        return reply
    coded = re.match(r"\d{3} [245]\.\d{1,3}\.\d{1,3}\b", reply)
    return coded.group() if coded else reply[:3]


VIOLATION = re.compile(r"(improper command pipelining after \w+|warning: non-SMTP command) "
                       r"from [^:]+: (.*)$")


def violations(log: str) -> list[tuple[str, str]]:
    return [(match.group(1), match.group(2)) for line in log.splitlines()
            if (match := VIOLATION.search(line))]


def test_postern_answers_improper_pipelining_as_postfix_does(
        postfix_factory: PostfixFactory, daemon: Daemon) -> None:
    postfix = postfix_factory(main_cf="smtpd_forbid_unauth_pipelining = yes\n"
                                      "mynetworks = 127.0.0.0/8\n").start()
    for name, steps in CASES.items():
        theirs = conversation(postfix.port, "postfix.test", steps)
        ours = conversation(daemon.smtp_port, "example.test", steps)
        assert [comparable(r) for r in ours] == [comparable(r) for r in theirs], \
            (name, ours, theirs)
    postfix.wait_log(r"non-SMTP command from .*hello$")
    daemon.wait_log(r"non-SMTP command from .*hello$")
    # The same lines, but for the recipient domain each was sent.
    theirs_logged = violations(postfix.log_text().replace("@postfix.test", "@example.test"))
    assert violations(daemon.log_text()) == theirs_logged
