"""Hostile input: each abuse gets its reply, the server stays responsive and
other sessions are unaffected. Disk trouble answers 452, never 250."""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Daemon, DaemonFactory, RawSmtp, wait_for


def healthy(daemon: Daemon) -> None:
    """Another session works normally, at once."""
    started = time.monotonic()
    with RawSmtp(daemon.smtp_port) as smtp:
        assert smtp.reply().startswith("220 ")
        assert smtp.command("NOOP") == "250 2.0.0 Ok"
    assert time.monotonic() - started < 5


def open_session(daemon: Daemon) -> RawSmtp:
    smtp = RawSmtp(daemon.smtp_port)
    smtp.reply()
    smtp.command("EHLO hostile.example")
    return smtp


@pytest.mark.parametrize("smuggled", [
    b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n.\r",
])
def test_smuggling_variants_never_end_the_message(daemon: Daemon, smuggled: bytes) -> None:
    with open_session(daemon) as smtp:
        smtp.command("MAIL FROM:<bob@example.org>")
        smtp.command("RCPT TO:<alice@example.test>")
        smtp.command("DATA")
        smtp.send(b"Subject: smuggle\r\n\r\nfirst" + smuggled +
                  b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                  b"Subject: smuggled\r\n\r\nsecond\r\n.\r\n")
        assert smtp.reply().startswith("250 2.0.0 Ok: queued as")
        assert smtp.command("QUIT") == "221 2.0.0 Bye"
    text = daemon.wait_maildir("alice")[0].read_bytes()
    assert b"MAIL FROM:<evil@example.org>" in text  # it stayed content
    assert b"\r" not in text  # the Maildir has LF only, the queue had CRLF only
    assert daemon.maildir("bob") == []


def test_nul_and_8bit_bytes_in_commands(daemon: Daemon) -> None:
    with open_session(daemon) as smtp:
        smtp.send(b"NOOP\x00junk\r\n")
        assert smtp.reply() == "500 5.5.2 Error: bad syntax"
        smtp.send(b"MAIL FROM:<b\xffb@example.org>\r\n")
        assert smtp.reply() in ("501 5.1.7 Bad sender address syntax",
                                "553 5.6.7 Must declare SMTPUTF8 to send unicode address")
        assert smtp.command("NOOP") == "250 2.0.0 Ok"
        # A line that does not start with a letter is no SMTP at all (binary,
        # a ClientHello): the session ends, as Postfix ends it.
        smtp.send(b"\xff\xfe\r\n")
        assert smtp.reply() == "221 2.7.0 Error: I can break rules, too. Goodbye."
        assert wait_for(smtp.closed)
    healthy(daemon)


@pytest.mark.parametrize("address", [
    "<", "<>>", "<a@b@c>", "<a@[1.2.3.4>", "<@>", "<a@.b>", '<"unterminated@x.test>',
    "<" + "a" * 300 + "@example.test>", "<alice@example.test> " + "X=" * 200,
])
def test_malformed_addresses(daemon: Daemon, address: str) -> None:
    with open_session(daemon) as smtp:
        smtp.command("MAIL FROM:<bob@example.org>")
        reply = smtp.command(f"RCPT TO:{address}")
        assert reply[:3] in ("501", "555", "500"), reply
        assert reply[4] == "5" and reply[5] == "."
        assert smtp.command("NOOP") == "250 2.0.0 Ok"


def test_thousands_of_recipients(daemon: Daemon) -> None:
    with open_session(daemon) as smtp:
        smtp.command("MAIL FROM:<bob@example.org>")
        batch = "".join(f"RCPT TO:<alice+{n}@example.test>\r\n" for n in range(1500))
        smtp.send(batch)
        replies = [smtp.reply() for _ in range(1500)]
        assert replies[:1000] == ["250 2.1.5 Ok"] * 1000
        assert set(replies[1000:]) == {"452 4.5.3 Error: too many recipients"}
        smtp.command("DATA")
        assert smtp.command("Subject: many\r\n\r\nx\r\n.").startswith("250 2.0.0 Ok")
    assert len(daemon.wait_maildir("alice", 1000, timeout=60)) == 1000


def test_a_client_sending_one_byte_a_second_does_not_hold_others(daemon: Daemon) -> None:
    slow = open_session(daemon)
    stop = threading.Event()

    def dribble() -> None:
        for byte in b"MAIL FROM:<slow@example.org>\r\n":
            if stop.wait(1.0):
                return
            slow.send(bytes([byte]))

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as client:
                assert client.sendmail("bob@example.org", ["alice@example.test"],
                                       b"Subject: fast\r\n\r\nfast\r\n") == {}
    finally:
        stop.set()
        thread.join()
        slow.close()
    daemon.wait_maildir("alice", 3)


def test_a_flood_of_connections(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("smtpd_client_connection_count_limit = 20\n"
                            "smtpd_client_event_limit_exceptions =\n").start()
    sockets = []
    try:
        for _ in range(200):
            sockets.append(socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=10))
        greetings = []
        for sock in sockets:
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
            greetings.append(data.decode())
        accepted = [g for g in greetings if g.startswith("220 ")]
        refused = [g for g in greetings if g.startswith("421 4.7.0 ")]
        assert len(accepted) == 20 and len(refused) == 180
    finally:
        for sock in sockets:
            sock.close()
    daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\]", count=200)
    healthy(daemon)


def test_a_full_listener_sheds_idle_and_dribbling_clients(daemon_factory: DaemonFactory) -> None:
    """Slowloris at the listener's limit: half the sessions sit idle after
    EHLO, half dribble a message a byte every half second (each read would
    restart a per-read timer). The refused client puts the listener under
    stress: the idle ones get the stress timeout, the dribblers the per-request
    deadline, and the client that was refused gets in on its next try."""
    daemon = daemon_factory("smtpd_client_connection_limit = 10\n"
                            "smtpd_timeout = ${stress?{1}:{300}}s\n").start()
    hostile = [open_session(daemon) for _ in range(10)]
    for smtp in hostile[5:]:
        for line in ("MAIL FROM:<slow@example.org>", "RCPT TO:<alice@example.test>", "DATA"):
            assert smtp.command(line)[:1] in "23"
    stop = threading.Event()

    def dribble(smtp: RawSmtp) -> None:
        while not stop.wait(0.5):
            try:
                smtp.send(b"x")
            except OSError:
                return  # shed

    threads = [threading.Thread(target=dribble, args=(smtp,), daemon=True)
               for smtp in hostile[5:]]
    for thread in threads:
        thread.start()
    try:
        with RawSmtp(daemon.smtp_port) as refused:
            assert refused.reply() == "220 mx.example.test ESMTP Postern"  # exempt: greeted,
            assert refused.reply() == "421 4.7.0 mx.example.test Error: too many connections"
        wait_for(lambda: all(smtp.closed() for smtp in hostile), timeout=20,
                 message="the idle and the dribbling sessions to be shed")
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as client:
            assert client.sendmail("bob@example.org", ["alice@example.test"],
                                   b"Subject: in\r\n\r\nin\r\n") == {}
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for smtp in hostile:
            smtp.close()
    assert len(daemon.wait_log(r"timeout after EHLO from", 5)) == 5
    assert len(daemon.wait_log(r"timeout after DATA \(\d+ bytes\) from", 5)) == 5
    daemon.wait_maildir("alice", 1)


class _Session:
    """A throwaway session for the property test (one per example)."""

    def __init__(self, port: int) -> None:
        self.smtp = RawSmtp(port, timeout=10)
        assert self.smtp.reply().startswith("220 ")


_COMMANDS = st.sampled_from([
    "HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "VRFY", "QUIT",
    "mail from:", "rcpt to:", "BDAT", "STARTTLS", "AUTH PLAIN", "HELP", "", "XYZZY"])
_ARGS = st.one_of(st.just(""), st.sampled_from(
    ["<alice@example.test>", "<>", "<x@remote.test>", "example.test", "<a@b> SIZE=1",
     "<a@b> BODY=8BITMIME", " <bob@example.test>", "<postmaster>"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(_COMMANDS, _ARGS), min_size=1, max_size=12))
def test_command_layer_property(daemon_for_property: Daemon,
                                commands: list[tuple[str, str]]) -> None:
    """Any sequence of commands gets one well-formed reply each (3 digits, and an
    enhanced status code on every final 4xx/5xx/2xx reply but the greeting and
    HELO's and EHLO's own 250 and 501, RFC 2034), and never kills the server."""
    session = _Session(daemon_for_property.smtp_port)
    with session.smtp as smtp:
        for verb, argument in commands:
            if verb == "DATA":
                reply = smtp.command("DATA")
                if reply.startswith("354"):
                    reply = smtp.command("x\r\n.")
            else:
                reply = smtp.command(f"{verb} {argument}".strip() if argument else verb)
            last = reply.split("\n")[-1]
            assert last[:3].isdigit() and last[3] in " -", reply
            if not (verb in ("EHLO", "HELO") and last[:3] in ("250", "501")) \
                    and not last.startswith("354"):
                assert last[4:5].isdigit() and last[5:6] == ".", reply
            # 221 2.7.0: a line that is no SMTP command (one starting with "<"
            # or a digit, or "word:" like a header) ends the session.
            if verb == "QUIT" or last.startswith(("421", "221")):
                break
    healthy(daemon_for_property)


# Lines for the pipelining property: every one gets exactly one reply in
# command mode, none of them hangs up, and DATA's content follows it. (A
# header line such as "Subject: s" would hang up in command mode, as a
# non-SMTP command: test_smtpd_pipelining.py.)
_LINES = st.sampled_from([
    b"EHLO client.example\r\n", b"HELO client.example\r\n", b"MAIL FROM:<a@example.test>\r\n",
    b"RCPT TO:<alice@example.test>\r\n", b"RCPT TO:<x@remote.test>\r\n", b"RSET\r\n",
    b"NOOP\r\n", b"NOOP\n", b"VRFY alice@example.test\r\n", b"XYZZY\r\n", b"\r\n",
    b"NO\0OP\r\n", b"MAIL FROM:<a@b> SIZE=x\r\n", b"DATA\r\n", b"subject s\r\n",
    b".\r\n", b"x\rNOOP\r\n"])


def _replies_one_at_a_time(port: int, lines: list[bytes]) -> tuple[list[str], bytes]:
    """Each line sent after the previous reply (the session task's path): the
    code and enhanced code of every reply, and the stream that got them (the
    lines up to one that ended the session, a "." in command mode being no
    SMTP command; and a "." to end a message the lines left open)."""
    codes = []
    in_data = False
    # Only <CR><LF>.<CR><LF> ends a message: a "." line after a line that
    # ended in a bare LF or CR is content (SMTP smuggling, docs/smtpd.md).
    after_crlf = True
    sent: list[bytes] = []
    with RawSmtp(port, timeout=10) as smtp:
        assert smtp.reply().startswith("220 ")
        for line in lines:
            smtp.send(line)
            sent.append(line)
            if in_data and not (line == b".\r\n" and after_crlf):
                after_crlf = line.endswith(b"\r\n")
                continue
            reply = smtp.reply()
            codes.append(reply.split("\n")[-1][:9])
            in_data = reply.startswith("354")
            after_crlf = True  # the DATA line's end, for a "." first
            if reply.startswith("221"):
                return codes, b"".join(sent)
        if in_data:
            end = b".\r\n" if after_crlf else b"\r\n.\r\n"
            smtp.send(end)
            sent.append(end)
            codes.append(smtp.reply()[:9])
    return codes, b"".join(sent)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_LINES, min_size=1, max_size=12), st.lists(st.integers(0, 400), max_size=6))
def test_pipelined_and_split_commands_get_the_replies_of_one_at_a_time(
        daemon_for_property: Daemon, lines: list[bytes], cuts: list[int]) -> None:
    """The same lines sent in one stream cut at arbitrary places (so that
    commands are answered in data_received, or split across reads, or left
    to the session task) get exactly the replies they get one at a time."""
    port = daemon_for_property.smtp_port
    expected, stream = _replies_one_at_a_time(port, lines)
    with RawSmtp(port, timeout=10) as smtp:
        assert smtp.reply().startswith("220 ")
        start = 0
        for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
            if cut > start:
                smtp.send(stream[start:cut])
                start = cut
        got = [smtp.reply().split("\n")[-1][:9] for _ in expected]
    assert got == expected
    healthy(daemon_for_property)


@pytest.fixture(scope="module")
def daemon_for_property(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    # The pipelining property compares two code paths on any stream, rules
    # broken or not; the pipelining rules have their own tests
    # (tests/unit/test_smtpd_pipelining.py).
    daemon = Daemon(tmp_path_factory.mktemp("property"),
                    "smtpd_forbid_unauth_pipelining = no\n").start()
    yield daemon
    daemon.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "queue"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path, leave: int) -> None:
    stat = os.statvfs(path)
    size = stat.f_bavail * stat.f_frsize - leave
    with open(path / "filler", "wb") as stream:
        stream.write(b"\0" * max(0, size))


def test_full_disk_answers_452_and_recovers(daemon_factory: DaemonFactory,
                                            small_disk: Path) -> None:
    daemon = daemon_factory(f"queue_directory = {small_disk}\nmessage_size_limit = 1000000\n")
    daemon.start()
    # 1: too little room at MAIL time (less than 1.5 x message_size_limit).
    fill(small_disk, 200_000)

    def mail_refused() -> bool:  # within a second: the figure is measured each second
        with open_session(daemon) as smtp:
            reply = smtp.command("MAIL FROM:<bob@example.org>")
            assert reply in ("250 2.1.0 Ok", "452 4.3.1 Insufficient system storage")
            return reply.startswith("452")

    wait_for(mail_refused, timeout=5)
    daemon.wait_log(r"warning: not enough free space in mail queue")
    # 2: room at MAIL, none when the data is written (someone else took it).
    # The free space is measured once a second off the event loop
    # (smtpd/space.py), so MAIL is taken again within a second.
    (small_disk / "filler").unlink()

    def session_past_mail() -> RawSmtp | None:
        """A session whose MAIL was taken (each receiver worker measures on
        its own second, so a session may need another try)."""
        smtp = open_session(daemon)
        if smtp.command("MAIL FROM:<bob@example.org>") == "250 2.1.0 Ok":
            return smtp
        smtp.close()
        return None

    with wait_for(session_past_mail, timeout=5) as smtp:
        smtp.command("RCPT TO:<alice@example.test>")
        fill(small_disk, 20_000)
        smtp.command("DATA")
        smtp.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 300 + b".\r\n")
        assert smtp.reply() == "452 4.3.1 Insufficient system storage"
        assert smtp.command("NOOP") == "250 2.0.0 Ok"
    daemon.wait_log(r"warning: \w+: queue file write error: No space left on device")
    assert not [p for p in (small_disk / "incoming").iterdir()]
    # 3: space returns, mail flows again without a restart.
    (small_disk / "filler").unlink()

    def sent() -> bool:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
            try:
                return client.sendmail("bob@example.org", ["alice@example.test"],
                                       b"Subject: ok\r\n\r\nback\r\n") == {}
            except smtplib.SMTPSenderRefused as refused:
                assert refused.smtp_code == 452  # the figure a second old; soon fresh
                return False

    wait_for(sent, timeout=5)
    wait_for(lambda: any("back" in f.read_text() for f in daemon.maildir("alice")))
