"""SMTP AUTH: Postfix's smtpd and ours, the same conversations, the same replies.

A private Postfix checks logins with a Dovecot auth server (a fake in the
test's loop, tests/fakes/dovecot_auth.py, knowing the same user and
password) and Postern with its password file. Both offer STARTTLS with
smtpd_tls_auth_only = yes. Each conversation is sent to both, one command
at a time, and every reply must be the same (a 235's session goes on to a
relayed RCPT, which permit_sasl_authenticated allows); then the log lines
that say what happened: the failed and aborted logins, the client= line
with sasl_method and sasl_username, check_sasl_access's reject line.

The one text that depends on the back end is a failure's reason, which the
fake gives as Postern does ("authentication failure", Cyrus SASL's words);
what Postfix checks itself (the mechanism, the base64 alphabet) is its own.
"""

from __future__ import annotations

import asyncio
import base64
import re
import smtplib
import ssl
import tempfile
from pathlib import Path

import pytest

from mta import sasl
from tests.fakes.certs import Issued, TestCA
from tests.fakes.dovecot_auth import DovecotAuth
from tests.helpers import IN_PROCESS_CF, in_process_smtpd
from tests.interop.postfix import PostfixFactory, PostfixInstance

pytestmark = pytest.mark.interop

USER, SECRET = "alice@example.test", "correct horse"
COMMON = ("smtpd_peername_lookup = no\nmynetworks = 192.0.2.0/24\n"
          "smtpd_tls_security_level = may\nsmtpd_tls_auth_only = yes\n"
          "smtpd_sasl_auth_enable = yes\n"
          "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


PLAIN_OK = b64(f"\0{USER}\0{SECRET}")
PLAIN_BAD = b64(f"\0{USER}\0wrong")
# Each a conversation after STARTTLS and EHLO (None: before STARTTLS).
CONVERSATIONS: dict[str, list[str]] = {
    "plain": [f"AUTH PLAIN {PLAIN_OK}", f"AUTH PLAIN {PLAIN_OK}", "MAIL FROM:<a@b.test>",
              "RCPT TO:<x@elsewhere.test>"],
    # MAIL's AUTH= (RFC 4954 §5), logged as sasl_sender in the client= line.
    "auth-param": [f"AUTH PLAIN {PLAIN_OK}", "MAIL FROM:<a@b.test> AUTH=alice@example.test",
                   "RCPT TO:<x@elsewhere.test>"],
    "auth-param-null": [f"AUTH PLAIN {PLAIN_OK}", "MAIL FROM:<a@b.test> AUTH=<>",
                        "RCPT TO:<x@elsewhere.test>"],
    "auth-param-no-login": ["MAIL FROM:<a@b.test> AUTH=<bob@b.test>", "RCPT TO:<x@b.test>"],
    "plain-wrong": [f"AUTH PLAIN {PLAIN_BAD}", "MAIL FROM:<a@b.test>",
                    "RCPT TO:<x@elsewhere.test>"],
    "plain-asked": ["AUTH PLAIN", PLAIN_OK],
    "login": ["AUTH LOGIN", b64(USER), b64(SECRET)],
    "login-initial": [f"AUTH LOGIN {b64(USER)}", b64(SECRET)],
    "login-wrong": ["AUTH LOGIN", b64(USER), b64("wrong")],
    "aborted": ["AUTH LOGIN", "*"],
    "aborted-plain": ["AUTH PLAIN", "*"],
    "unknown-mechanism": ["AUTH CRAM-MD5"],
    "no-mechanism": ["AUTH"],
    "too-many-words": ["AUTH PLAIN a b"],
    "bad-alphabet": ["AUTH PLAIN !!!!"],
    "in-transaction": ["MAIL FROM:<a@b.test>", f"AUTH PLAIN {PLAIN_OK}"],
    "lowercase": [f"auth plain {PLAIN_OK}"],
}
BEFORE_TLS = ["EHLO laptop.test", f"AUTH PLAIN {PLAIN_OK}"]
LOGGED = re.compile(r"smtpd(?:\[\d+\])?: (warning: .*SASL.*|[0-9A-Z]+: client=.*sasl.*|"
                    r"NOQUEUE: reject: .*)$")


def converse(port: int, commands: list[str], tls: bool = True) -> list[str]:
    """The commands one at a time (after STARTTLS and EHLO with tls); the
    last line of each reply, and whether EHLO offered AUTH."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=20)
    try:
        smtp.ehlo("laptop.test")
        replies = [f"AUTH offered: {smtp.has_extn('auth')}"]
        if tls:
            smtp.starttls(context=context)
            smtp.ehlo("laptop.test")
            replies.append(f"AUTH {smtp.esmtp_features.get('auth', '').strip()}")
        for command in commands:
            smtp.putcmd(command)
            code, text = smtp.getreply()
            replies.append(f"{code} {(text.decode().splitlines() or [''])[-1]}")
        return replies
    finally:
        smtp.close()  # no QUIT: it would be an answer to a 334


def all_conversations(port: int) -> dict[str, list[str]]:
    replies = {name: converse(port, commands) for name, commands in CONVERSATIONS.items()}
    replies["before-tls"] = converse(port, BEFORE_TLS[1:], tls=False)
    return replies


def logged(lines: list[str]) -> list[str]:
    """The AUTH log lines, queue IDs and pids taken out."""
    found = [match.group(1) for line in lines if (match := LOGGED.search(line))]
    return [re.sub(r"^[0-9A-Z]+: ", "QID: ", line) for line in found]


def postfix_with_dovecot(postfix_factory: PostfixFactory, socket: Path, ca: TestCA,
                         extra: str = "") -> PostfixInstance:
    postfix = postfix_factory()
    server = ca.issue("localhost").write(postfix.conf, "smtpd")
    with open(postfix.conf / "main.cf", "a") as main_cf:
        main_cf.write(COMMON + extra + "smtpd_sasl_type = dovecot\n"
                      f"smtpd_sasl_path = {socket}\n"
                      f"smtpd_tls_cert_file = {server.cert_file}\n"
                      f"smtpd_tls_key_file = {server.key_file}\n")
    return postfix.start()


def postern_cf(tmp_path: Path, server: Issued, extra: str = "") -> str:
    sasl.update_password_file(tmp_path / "sasl_passwd", USER, sasl.hash_password(SECRET, ln=4))
    return (IN_PROCESS_CF + COMMON + extra + f"smtpd_sasl_password_file = {tmp_path}/sasl_passwd\n"
            "smtpd_sasl_failure_delay = 0s\n"
            f"smtpd_tls_cert_file = {server.cert_file}\nsmtpd_tls_key_file = {server.key_file}\n")


@pytest.fixture
def auth_socket() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="dovecot-"))
    directory.chmod(0o755)  # the postfix user connects to the socket in it
    return directory / "auth"


async def test_auth_conversations_as_postfix_answers_them(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str],
        auth_socket: Path) -> None:
    ca = TestCA("Interop Server CA")
    async with DovecotAuth(auth_socket, {USER: SECRET}) as dovecot:
        postfix = postfix_with_dovecot(postfix_factory, auth_socket, ca)
        theirs = await asyncio.to_thread(all_conversations, postfix.port)
    async with in_process_smtpd(tmp_path, postern_cf(tmp_path, ca.issue("localhost").write(
            tmp_path, "server"))) as smtpd:
        ours = await asyncio.to_thread(all_conversations, smtpd.port)
    assert dovecot.requests, "Postfix never asked the auth server"
    # The two documented differences (docs/inbound-tls.md): RFC 4954's replies.
    assert (ours.pop("before-tls")[-1], theirs.pop("before-tls")[-1]) == (
        "538 5.7.11 Encryption required for requested authentication mechanism",
        "503 5.5.1 Error: authentication not enabled")
    assert (ours.pop("unknown-mechanism")[-1], theirs.pop("unknown-mechanism")[-1]) == (
        "504 5.5.4 Unrecognized authentication type",
        "535 5.7.8 Error: authentication failed: Invalid authentication mechanism")
    differ = {name: (ours[name], theirs[name]) for name in theirs if ours[name] != theirs[name]}
    assert not differ, "\n".join(f"{n}: ours {o}\n  theirs {t}" for n, (o, t) in differ.items())
    # Not a vacuous comparison: logins succeed and fail.
    assert ours["plain"][2:] == ["235 2.7.0 Authentication successful",
                                 "503 5.5.1 Error: already authenticated", "250 2.1.0 Ok",
                                 "250 2.1.5 Ok"]
    assert ours["login-wrong"][-1] == "535 5.7.8 Error: authentication failed: " \
                                      "authentication failure"
    postfix.wait_log(r"SASL LOGIN authentication aborted", count=1)
    postfix.wait_log(r"client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN", count=3)
    assert any(line.endswith(", sasl_sender=alice@example.test") for line in logged(maillog_lines))
    # Postfix also logs the unknown mechanism as a failed login (see above).
    postfix_lines = [line for line in logged(postfix.log_text().splitlines())
                     if "Invalid authentication mechanism" not in line]
    assert sorted(logged(maillog_lines)) == sorted(postfix_lines)


OWNERS = ("smtpd_sender_login_maps = inline:{ owned@b.test=bob, mine@b.test=alice@example.test }\n"
          "smtpd_sender_restrictions = reject_sender_login_mismatch\n"
          "smtpd_recipient_restrictions = check_sasl_access inline:{ "
          "alice@example.test=REJECT }\n")
LOGINS = {
    "not-owned": [f"AUTH PLAIN {PLAIN_OK}", "MAIL FROM:<owned@b.test>",
                  "RCPT TO:<x@elsewhere.test>"],
    "login-rejected": [f"AUTH PLAIN {PLAIN_OK}", "MAIL FROM:<mine@b.test>",
                       "RCPT TO:<x@elsewhere.test>"],
    "not-logged-in": ["MAIL FROM:<mine@b.test>", "RCPT TO:<x@elsewhere.test>"],
}


async def test_the_login_restrictions_as_postfix_has_them(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str],
        auth_socket: Path) -> None:
    """reject_sender_login_mismatch and check_sasl_access, with a real login
    on both (the unit tests have them against Postern alone)."""
    ca = TestCA("Interop Server CA")

    def conversations(port: int) -> dict[str, list[str]]:
        return {name: converse(port, commands) for name, commands in LOGINS.items()}

    async with DovecotAuth(auth_socket, {USER: SECRET}):
        postfix = postfix_with_dovecot(postfix_factory, auth_socket, ca, OWNERS)
        theirs = await asyncio.to_thread(conversations, postfix.port)
    async with in_process_smtpd(tmp_path, postern_cf(
            tmp_path, ca.issue("localhost").write(tmp_path, "server"), OWNERS)) as smtpd:
        ours = await asyncio.to_thread(conversations, smtpd.port)
    assert ours == theirs
    assert [replies[-1] for replies in ours.values()] == [
        "553 5.7.1 <owned@b.test>: Sender address rejected: not owned by user "
        "alice@example.test",
        "554 5.7.1 <alice@example.test>: SASL login name rejected: Access denied",
        "553 5.7.1 <mine@b.test>: Sender address rejected: not logged in"]
    postfix.wait_log(r"NOQUEUE: reject: .*", count=3)
    rejects = [line for line in logged(maillog_lines) if "reject:" in line]
    assert sorted(rejects) == sorted(line for line in logged(postfix.log_text().splitlines())
                                     if "reject:" in line)
