"""Receiving end to end: real clients to the daemon, mail in the Maildir, and
the whole story in the maillog in Postfix's grammar."""

from __future__ import annotations

import re
import smtplib
import subprocess

import pytest

from tests.helpers import Daemon, DaemonFactory, RawSmtp, require_program

QID = r"[0-9A-HJKMNP-TV-Z]{12}"
STAMP = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
HEAD = rf"{STAMP} mx postern/(?P<program>[a-z]+)\[\d+\]: "
DATE = r"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)"

# One regular expression per maillog line kind (the Postfix grammar), with the program.
GRAMMAR = {
    "connect": ("smtpd", r"connect from localhost\[127\.0\.0\.1\]"),
    "client": ("smtpd", rf"{QID}: client=localhost\[127\.0\.0\.1\]"),
    "message-id": ("cleanup", rf"{QID}: message-id=<[^>]+>"),
    "queue active": ("qmgr", rf"{QID}: from=<[^>]*>, size=\d+, nrcpt=\d+ \(queue active\)"),
    "delivered": ("local", rf"{QID}: to=<[^>]+>, relay=local, delay=[\d.]+, "
                           r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, "
                           r"status=sent \(delivered to maildir\)"),
    "removed": ("qmgr", rf"{QID}: removed"),
    # NOQUEUE until a recipient was accepted, then the queue id (as Postfix).
    "reject": ("smtpd", rf"(NOQUEUE|{QID}): reject: RCPT from localhost\[127\.0\.0\.1\]: "
                        r"550 5\.1\.1 <nobody@example\.test>: Recipient address rejected: "
                        r"User unknown in local recipient table; from=<bob@example\.org> "
                        r"to=<nobody@example\.test> proto=ESMTP helo=<client\.example>"),
    "disconnect": ("smtpd", r"disconnect from localhost\[127\.0\.0\.1\]( [a-z]+=\d+(/\d+)?)+"
                            r" commands=\d+(/\d+)?"),
}


def classify(line: str) -> str | None:
    match = re.match(HEAD, line)
    assert match, f"not in syslog layout: {line!r}"
    text = line[match.end():]
    for kind, (program, pattern) in GRAMMAR.items():
        if re.fullmatch(pattern, text):
            assert match.group("program") == program, line
            return kind
    return None


def test_smtplib_and_swaks_deliver_and_the_maillog_tells_the_story(daemon: Daemon) -> None:
    swaks = require_program("swaks")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.ehlo("client.example")
        refused = client.sendmail("bob@example.org", ["alice@example.test", "nobody@example.test"],
                                  b"Subject: one\r\nMessage-ID: <one@example.org>\r\n\r\nOne\r\n")
        assert list(refused) == ["nobody@example.test"]
    result = subprocess.run([swaks, "--server", f"127.0.0.1:{daemon.smtp_port}",
                             "--helo", "swaks.example", "--from", "carol@example.org",
                             "--to", "alice+tag@example.test", "--header", "Subject: two"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"<-  250 2\.0\.0 Ok: queued as {QID}", result.stdout)

    files = daemon.wait_maildir("alice", 2)
    texts = sorted(f.read_text() for f in files)
    one = next(t for t in texts if "Subject: one" in t)
    two = next(t for t in texts if "Subject: two" in t)
    assert re.match(
        r"Return-Path: <bob@example\.org>\nDelivered-To: alice@example\.test\n"
        r"Received: from client\.example \(localhost \[127\.0\.0\.1\]\)\n"
        rf"\tby mx\.example\.test \(Postern\) with ESMTP id {QID}\n"
        rf"\tfor <alice@example\.test>; {DATE}\n"
        # A loopback client is local (local_header_rewrite_clients =
        # permit_inet_interfaces), so the missing Date is added, as Postfix does.
        rf"Subject: one\nMessage-ID: <one@example\.org>\nDate: {DATE}\n\nOne\n\Z", one), one
    assert re.match(r"Return-Path: <carol@example\.org>\nDelivered-To: alice\+tag@example\.test\n"
                    r"Received: from swaks\.example \(localhost \[127\.0\.0\.1\]\)\n", two), two

    daemon.wait_log(rf"{QID}: removed", count=2)
    lines = [line for line in daemon.log_text().splitlines() if "postern/master" not in line]
    kinds = [classify(line) for line in lines]
    assert None not in kinds, [line for line, kind in zip(lines, kinds, strict=True)
                               if kind is None]
    for kind in GRAMMAR:
        assert kind in kinds, kind
    assert kinds.count("delivered") == 2
    disconnects = [line for line in daemon.log_text().splitlines() if "disconnect from" in line]
    assert disconnects[0].endswith("ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 commands=5/6")
    assert disconnects[1].endswith("ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")


def test_pflogsumm_counts_what_we_did(daemon: Daemon) -> None:
    pflogsumm = require_program("pflogsumm")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        for n in range(3):
            client.sendmail("bob@example.org", ["alice@example.test", "bob@example.test"],
                            f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("bob@example.org", ["nobody@example.test"], b"x\r\n")
    daemon.wait_log(rf"{QID}: removed", count=3)
    report = subprocess.run([pflogsumm, "--syslog-name=postern", str(daemon.maillog)],
                            capture_output=True, text=True, timeout=60).stdout
    counts = {m.group(2): int(m.group(1))
              for m in re.finditer(r"^\s+(\d+)\s+(received|delivered|rejected)\b", report, re.M)}
    assert counts["received"] == 3, report
    assert counts["delivered"] == 6, report
    assert counts["rejected"] == 1, report


def test_received_header_without_helo_and_for_many_recipients(daemon: Daemon) -> None:
    with RawSmtp(daemon.smtp_port) as smtp:
        assert smtp.reply().startswith("220 mx.example.test ESMTP Postern")
        assert smtp.command("MAIL FROM:<bob@example.org>") == "250 2.1.0 Ok"
        assert smtp.command("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok"
        assert smtp.command("RCPT TO:<bob@example.test>") == "250 2.1.5 Ok"
        assert smtp.command("DATA").startswith("354 ")
        reply = smtp.command("Subject: x\r\n\r\nhi\r\n.")
        assert re.fullmatch(rf"250 2\.0\.0 Ok: queued as {QID}", reply)
        assert smtp.command("QUIT") == "221 2.0.0 Bye"
    text = daemon.wait_maildir("bob")[0].read_text()
    assert re.search(r"Received: from localhost \(localhost \[127\.0\.0\.1\]\)\n"
                     rf"\tby mx\.example\.test \(Postern\) with SMTP id {QID};\n\t{DATE}\n",
                     text), text


def test_ehlo_advertises_what_the_spine_promises(daemon: Daemon) -> None:
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        lines = smtp.command("EHLO client.example").split("\n")
    assert lines[0] == "250-mx.example.test"
    keywords = [line[4:] for line in lines[1:]]
    for keyword in ("PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME"):
        assert keyword in keywords


def test_pipelined_transaction_gets_all_replies_in_order(daemon: Daemon) -> None:
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        # RFC 2920 §3.1: EHLO's reply first (it announces PIPELINING), then a group.
        assert smtp.command("EHLO client.example").startswith("250-mx.example.test")
        smtp.send("MAIL FROM:<bob@example.org>\r\n"
                  "RCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n")
        assert smtp.reply() == "250 2.1.0 Ok"
        assert smtp.reply() == "250 2.1.5 Ok"
        assert smtp.reply().startswith("550 5.1.1 <nobody@example.test>")
        assert smtp.reply().startswith("354 ")
        smtp.send("Subject: p\r\n\r\npipelined\r\n.\r\nQUIT\r\n")
        assert smtp.reply().startswith("250 2.0.0 Ok: queued as ")
        assert smtp.reply() == "221 2.0.0 Bye"
    assert "pipelined" in daemon.wait_maildir("alice")[0].read_text()


@pytest.mark.parametrize(("command", "reply"), [
    ("RCPT TO:<alice@example.test>", "503 5.5.1 Error: need MAIL command"),
    ("DATA", "503 5.5.1 Error: need RCPT command"),  # Postfix 3.7 says so
    ("MAIL FROM:<bob@exa mple.org>", "501 5.1.7 Bad sender address syntax"),
    ("MAIL TO:<bob@example.org>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    ("MAIL FROM:<bob@example.org> FOO=bar", "555 5.5.4 Unsupported option: FOO=bar"),
    ("MAIL FROM:<jöran@example.org>", "553 5.6.7 Must declare SMTPUTF8 to send unicode address"),
    ("XYZZY", "500 5.5.2 Error: command not recognized"),
    ("", "500 5.5.2 Error: bad syntax"),
    ("NOOP", "250 2.0.0 Ok"),
    ("RSET", "250 2.0.0 Ok"),
    ("VRFY alice@example.test", "252 2.0.0 alice@example.test"),
    ("VRFY nobody@example.test", "550 5.1.1 <nobody@example.test>: Recipient address rejected: "
                                 "User unknown in local recipient table"),
])
def test_replies_have_enhanced_status_codes(daemon: Daemon, command: str, reply: str) -> None:
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        assert smtp.command(command) == reply


def test_sequence_errors_in_a_transaction(daemon: Daemon) -> None:
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        assert smtp.command("MAIL FROM:<bob@example.org>") == "250 2.1.0 Ok"
        assert smtp.command("MAIL FROM:<bob@example.org>") == \
            "503 5.5.1 Error: nested MAIL command"
        assert smtp.command("DATA") == "554 5.5.1 Error: no valid recipients"
        assert smtp.command("RCPT TO:<nobody@example.test>").startswith("550 5.1.1")
        assert smtp.command("DATA") == "554 5.5.1 Error: no valid recipients"
        assert smtp.command("RCPT TO:<>") == "501 5.1.3 Bad recipient address syntax"


def test_postmaster_without_a_mailbox_waits_in_the_queue(daemon_factory: DaemonFactory) -> None:
    """RFC 5321 §4.5.1: the bare postmaster is accepted although no mailbox is
    listed; its mail (here a bounce, whose own bounce would be discarded) is
    deferred, not bounced, until the operator lists postmaster."""
    daemon = daemon_factory(mailboxes="alice  alice/\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("HELO client.example")
        assert smtp.command("MAIL FROM:<>") == "250 2.1.0 Ok"
        assert smtp.command("RCPT TO:<postmaster>") == "250 2.1.5 Ok"
        assert smtp.command("VRFY postmaster") == "252 2.0.0 postmaster"
        smtp.command("DATA")
        assert smtp.command("Subject: bounce\r\n\r\nx\r\n.").startswith("250 2.0.0 Ok")
    daemon.wait_log(rf"{QID}: to=<postmaster@example\.test>, relay=local, .*dsn=4\.3\.0, "
                    r"status=deferred \(no mailbox for postmaster: list postmaster in "
                    r"local_recipient_maps\)$")
    assert "status=bounced" not in daemon.log_text()


def test_null_sender_and_postmaster_are_accepted(daemon: Daemon) -> None:
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("HELO client.example")
        assert smtp.command("MAIL FROM:<>") == "250 2.1.0 Ok"
        assert smtp.command("RCPT TO:<Postmaster>") == "250 2.1.5 Ok"
        smtp.command("DATA")
        assert smtp.command("Subject: bounce\r\n\r\nx\r\n.").startswith("250 2.0.0 Ok")
    text = daemon.wait_maildir("postmaster")[0].read_text()
    assert text.startswith("Return-Path: <>\nDelivered-To: postmaster@example.test\n")


@pytest.mark.parametrize(("delay", "refused", "logged"), [
    # smtpd_delay_reject = yes (Postfix's default): the refusal answers RCPT.
    ("yes", "RCPT", "RCPT from localhost[127.0.0.1]: {reply}; from=<bob@example.org> "
                    "to=<alice@example.test> proto=ESMTP helo=<localhost>"),
    ("no", "EHLO", "EHLO from localhost[127.0.0.1]: {reply}; proto=SMTP helo=<localhost>"),
], ids=["delayed-to-rcpt", "at-ehlo"])
def test_helo_restrictions_refuse_and_log_as_postfix(
        daemon_factory: DaemonFactory, delay: str, refused: str, logged: str) -> None:
    reply = "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    daemon = daemon_factory(
        "smtpd_helo_restrictions = reject_invalid_helo_hostname, "
        f"reject_non_fqdn_helo_hostname\nsmtpd_delay_reject = {delay}\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        answers = {"EHLO": smtp.command("EHLO localhost").splitlines()[-1],
                   "MAIL": smtp.command("MAIL FROM:<bob@example.org>"),
                   "RCPT": smtp.command("RCPT TO:<alice@example.test>")}
    assert answers.pop(refused) == reply
    assert all(answer.startswith("250 ") for answer in answers.values()), answers
    daemon.wait_log(re.escape("NOQUEUE: reject: " + logged.format(reply=reply)) + "$")
