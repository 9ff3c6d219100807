"""Client rate limits (anvil(8)): Postfix's smtpd and ours, the same sessions,
the same answers.

Each case starts a private Postfix and a Postern daemon with the same
smtpd_client_*_rate_limit settings and smtpd_client_event_limit_exceptions
empty (its default, $mynetworks, would exempt 127.0.0.1), and sends both the
same sessions, one command at a time. Replies must be the same whole, each
server's host name masked; only greetings and EHLO replies, which name the
software, are compared by their code. Both maillogs must hold the same
rate-limit warnings, the service name masked (a private Postfix names its
smtpd service by port number, Postern by listener name), and the same
command counts on their disconnect lines.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from mta import sasl
from tests.fakes.certs import TestCA
from tests.helpers import Daemon, DaemonFactory, RawSmtp
from tests.interop.postfix import PostfixFactory, PostfixInstance

pytestmark = pytest.mark.interop

# Not exempt: the default exceptions ($mynetworks) hold 127.0.0.1.
NO_EXCEPTIONS = "smtpd_client_event_limit_exceptions =\n"
EHLO = "EHLO client.example"
MAIL = "MAIL FROM:<a@example.org>"
RCPT = "RCPT TO:<alice@%s>"  # each server's own recipient domain
READ = ""  # no command: read what the server says unasked
BAD_PLAIN = "AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()
WARNING = re.compile(r"warning: ((?:.* rate limit exceeded: \d+|Refusing .* request) from \S+ "
                     r"for service) \S+$")
DISCONNECT = re.compile(r"disconnect from \S+ (.*)$")


@dataclass
class Server:
    """One side of a comparison: where it listens, the names it uses, its maillog."""

    port: int
    hostname: str
    domain: str
    instance: PostfixInstance | Daemon

    def log_text(self) -> str:
        return self.instance.log_text()

    def wait_log(self, pattern: str, count: int = 1) -> list[str]:
        return self.instance.wait_log(pattern, count)


def postfix_server(postfix_factory: PostfixFactory, main_cf: str) -> Server:
    postfix = postfix_factory(main_cf=NO_EXCEPTIONS + main_cf).start()
    return Server(postfix.port, postfix.hostname, postfix.hostname, postfix)


def postern_server(daemon_factory: DaemonFactory, main_cf: str) -> Server:
    daemon = daemon_factory(NO_EXCEPTIONS + main_cf).start()
    return Server(daemon.smtp_port, "mx.example.test", "example.test", daemon)


def tls_settings(ca: TestCA, directory: Path) -> str:
    """main.cf text that offers STARTTLS with a certificate for localhost from
    ca, written to directory."""
    leaf = ca.issue("localhost").write(directory, "smtpd")
    return (f"smtpd_tls_cert_file = {leaf.cert_file}\nsmtpd_tls_key_file = {leaf.key_file}\n"
            "smtpd_tls_security_level = may\n")


def tls_pair(postfix_factory: PostfixFactory, daemon_factory: DaemonFactory, tmp_path: Path,
             limits: str, wrappermode: bool = False) -> tuple[Server, Server, ssl.SSLContext]:
    """A Postfix and a Postern with limits that offer TLS with certificates
    for localhost from one new CA, and a client context that trusts it; with
    wrappermode, on connect (implicit TLS) instead of after STARTTLS."""
    ca = TestCA("Postern Interop CA")
    postfix = postfix_factory(main_cf=NO_EXCEPTIONS + limits, smtpd_options={
        "smtpd_tls_wrappermode": "yes", "smtpd_tls_security_level": "encrypt"}
        if wrappermode else None)
    with open(postfix.conf / "main.cf", "a") as main_cf:
        # No session cache: no handshake resumes a session (Postern resumes none).
        main_cf.write(tls_settings(ca, postfix.conf) + "smtpd_tls_session_cache_database =\n")
    postfix.start()
    (tmp_path / "mta").mkdir()
    wrapper = "smtpd_tls_wrappermode = yes\n" if wrappermode else ""
    daemon = daemon_factory(NO_EXCEPTIONS + limits + tls_settings(ca, tmp_path / "mta")
                            + wrapper).start()
    return (Server(postfix.port, postfix.hostname, postfix.hostname, postfix),
            Server(daemon.smtp_port, "mx.example.test", "example.test", daemon),
            ca.client_context())


def answer(client: RawSmtp) -> str:
    """The next reply, or how the session ended instead."""
    try:
        return client.reply()
    except (ConnectionError, ssl.SSLError):
        return "closed"
    except TimeoutError:
        return "nothing"


def handshake(client: RawSmtp, context: ssl.SSLContext) -> str | None:
    """Start TLS on the client's socket; None, or why it failed."""
    try:
        client.sock = context.wrap_socket(client.sock, server_hostname="localhost")
    except OSError as error:  # ssl.SSLError too
        return f"handshake failed: {type(error).__name__}"
    return None


def session(server: Server, commands: list[str], context: ssl.SSLContext | None = None,
            implicit_tls: bool = False) -> list[str]:
    """One session: the greeting (after the handshake with implicit_tls), then
    each command once the last was answered (READ: only read), STARTTLS's 220
    followed by the handshake, until a 421; then how it ended ("closed" or
    "nothing" said in time). The replies have the server's host name masked,
    greetings and EHLO replies only their code."""
    said: list[str] = []
    with RawSmtp(server.port, timeout=5) as client:
        failed = handshake(client, context) if implicit_tls and context is not None else None
        if failed:
            return [failed]
        greeting = answer(client)
        said.append("220 (greeting)" if greeting.startswith("220 ") else greeting)
        for command in commands:
            if said[-1] == "closed" or said[-1].startswith("421 "):
                break
            if command != READ:
                client.send(command.replace("%s", server.domain) + "\r\n")
            reply = answer(client)
            said.append("250 (EHLO)" if command == EHLO and reply.startswith("250") else reply)
            if command == "STARTTLS" and reply.startswith("220 ") and context is not None:
                failed = handshake(client, context)
                if failed:
                    said.append(failed)
                    break
        if said[-1] != "closed":
            said.append(answer(client))
    return [reply.replace(server.hostname, "HOST") for reply in said]


def closed_before_a_byte(server: Server) -> bool:
    """Whether the server closes a new connection without sending anything."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        try:
            return raw.recv(1024) == b""
        except ConnectionError:
            return True


def warnings(server: Server) -> list[str]:
    """The rate-limit warnings in server's maillog, the service name masked."""
    return [f"{match.group(1)} SVC" for line in server.log_text().splitlines()
            if (match := WARNING.search(line))]


def disconnects(server: Server, count: int) -> list[str]:
    """The command counts of server's first count disconnect lines, once logged."""
    lines = server.wait_log(r"disconnect from ", count)
    return [match.group(1) if (match := DISCONNECT.search(line)) else line
            for line in lines[:count]]


def compare(postfix: Server, postern: Server, sessions: list[list[str]],
            context: ssl.SSLContext | None = None, implicit_tls: bool = False,
            expected_warnings: int = 1) -> tuple[list[list[str]], list[str]]:
    """Send both servers the sessions; require the same replies, warnings and
    disconnect counts. Postfix's replies and warnings, for the caller to check
    that the case tests what it means to."""
    theirs = [session(postfix, commands, context, implicit_tls) for commands in sessions]
    ours = [session(postern, commands, context, implicit_tls) for commands in sessions]
    assert ours == theirs
    postfix.wait_log(WARNING.pattern, expected_warnings)
    postern.wait_log(WARNING.pattern, expected_warnings)
    assert disconnects(postern, len(sessions)) == disconnects(postfix, len(sessions))
    assert warnings(postern) == warnings(postfix)
    return theirs, warnings(postfix)


def test_connection_rate_limit(postfix_factory: PostfixFactory,
                               daemon_factory: DaemonFactory) -> None:
    limits = "smtpd_client_connection_rate_limit = 2\n"
    postfix = postfix_server(postfix_factory, limits)
    postern = postern_server(daemon_factory, limits)
    replies, logged = compare(postfix, postern, [[EHLO, "QUIT"]] * 4, expected_warnings=2)
    assert replies[2] == ["421 4.7.0 HOST Error: too many connections from 127.0.0.1",
                          "closed"]
    assert logged == [
        f"Connection rate limit exceeded: {n} from localhost[127.0.0.1] for service SVC"
        for n in (3, 4)]


def test_message_and_recipient_rate_limits(postfix_factory: PostfixFactory,
                                           daemon_factory: DaemonFactory) -> None:
    """MAIL and RCPT are counted whether they succeed or not, once their
    syntax is known to name an address, before the address is parsed."""
    limits = "smtpd_client_message_rate_limit = 2\nsmtpd_client_recipient_rate_limit = 3\n"
    postfix = postfix_server(postfix_factory, limits)
    postern = postern_server(daemon_factory, limits)
    commands = [EHLO, MAIL, RCPT, RCPT, "RSET", MAIL, RCPT, RCPT, "RCPT TO:",
                "RCPT TO:<alice@%s", "RSET", MAIL, "MAIL FROM:", "MAIL FROM:<a@example.org",
                "RCPT TO:<alice@%s>", "QUIT"]
    replies, logged = compare(postfix, postern, [commands], expected_warnings=4)
    assert replies[0][8] == "450 4.7.1 Error: too many recipients from 127.0.0.1"
    assert replies[0][12] == "450 4.7.1 Error: too much mail from 127.0.0.1"
    assert logged == [
        "Recipient address rate limit exceeded: 4 from localhost[127.0.0.1] for service SVC",
        "Recipient address rate limit exceeded: 5 from localhost[127.0.0.1] for service SVC",
        "Message delivery request rate limit exceeded: 3 from localhost[127.0.0.1] "
        "for service SVC",
        "Message delivery request rate limit exceeded: 4 from localhost[127.0.0.1] "
        "for service SVC"]


def test_new_tls_session_rate_limit(postfix_factory: PostfixFactory,
                                    daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    """The handshake that passes the limit is answered with 421 inside TLS;
    after it, STARTTLS is refused with 454 (looked at, not counted)."""
    postfix, postern, context = tls_pair(postfix_factory, daemon_factory, tmp_path,
                                         "smtpd_client_new_tls_session_rate_limit = 1\n")
    sessions = [[EHLO, "STARTTLS", EHLO, "QUIT"], [EHLO, "STARTTLS", READ],
                [EHLO, "STARTTLS", MAIL, "QUIT"], [EHLO, "STARTTLS", "QUIT"]]
    replies, logged = compare(postfix, postern, sessions, context, expected_warnings=3)
    assert replies[1][-2:] == [
        "421 4.7.0 HOST Error: too many new TLS sessions from localhost[127.0.0.1]", "closed"]
    assert replies[2][2] == "454 4.7.0 Error: too many new TLS sessions from localhost[127.0.0.1]"
    assert logged == [
        "New TLS session rate limit exceeded: 2 from localhost[127.0.0.1] for service SVC",
        "Refusing STARTTLS request from localhost[127.0.0.1] for service SVC",
        "Refusing STARTTLS request from localhost[127.0.0.1] for service SVC"]


def test_new_tls_session_rate_limit_in_wrapper_mode(postfix_factory: PostfixFactory,
                                                    daemon_factory: DaemonFactory,
                                                    tmp_path: Path) -> None:
    """Implicit TLS: the handshake that passes the limit is answered with 421
    before the greeting; after it, the connection is closed before a byte."""
    postfix, postern, context = tls_pair(postfix_factory, daemon_factory, tmp_path,
                                         "smtpd_client_new_tls_session_rate_limit = 1\n",
                                         wrappermode=True)
    sessions = [[EHLO, "QUIT"], []]
    replies, _ = compare(postfix, postern, sessions, context, implicit_tls=True)
    assert replies[1] == [
        "421 4.7.0 HOST Error: too many new TLS sessions from localhost[127.0.0.1]", "closed"]
    for server in (postfix, postern):
        assert closed_before_a_byte(server), server.instance
        server.wait_log(WARNING.pattern, 2)
        server.wait_log(r"disconnect from ", 3)
    assert warnings(postern) == warnings(postfix) == [
        "New TLS session rate limit exceeded: 2 from localhost[127.0.0.1] for service SVC",
        "Refusing TLS service request from localhost[127.0.0.1] for service SVC"]
    assert disconnects(postern, 3) == disconnects(postfix, 3)


def auth_pair(postfix_factory: PostfixFactory, daemon_factory: DaemonFactory,
              tmp_path: Path, enabled: bool = True) -> tuple[Server, Server]:
    """A Postfix and a Postern with smtpd_client_auth_rate_limit = 2, AUTH
    offered without TLS (if enabled) and alice's password never given."""
    limits = "smtpd_client_auth_rate_limit = 2\n"
    yes = "yes" if enabled else "no"
    postfix = postfix_factory(main_cf=NO_EXCEPTIONS + limits + f"smtpd_sasl_auth_enable = {yes}\n")
    # Cyrus SASL with a password database that does not exist: every AUTH fails.
    (postfix.conf / "sasl").mkdir()
    (postfix.conf / "sasl" / "smtpd.conf").write_text(
        "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
        f"sasldb_path: {postfix.root}/sasldb2\n")
    with open(postfix.conf / "main.cf", "a") as main_cf:
        main_cf.write(f"cyrus_sasl_config_path = {postfix.conf}/sasl\n")
    postfix.start()
    (tmp_path / "mta").mkdir()
    sasl.update_password_file(tmp_path / "mta" / "sasl_passwd", "alice",
                              sasl.hash_password("right", ln=4))
    postern = postern_server(daemon_factory, limits + f"smtpd_sasl_auth_enable = {yes}\n"
                             "smtpd_sasl_password_file = sasl_passwd\n"
                             "smtpd_tls_auth_only = no\nsmtpd_sasl_failure_delay = 0s\n")
    return Server(postfix.port, postfix.hostname, postfix.hostname, postfix), postern


def test_auth_rate_limit(postfix_factory: PostfixFactory, daemon_factory: DaemonFactory,
                         tmp_path: Path) -> None:
    """Every AUTH is counted, a malformed one too, before its mechanism is looked at."""
    postfix, postern = auth_pair(postfix_factory, daemon_factory, tmp_path)
    commands = [EHLO, BAD_PLAIN, "AUTH", BAD_PLAIN, "AUTH LOGIN", "AUTH FOO", "QUIT"]
    replies, logged = compare(postfix, postern, [commands], expected_warnings=3)
    assert replies[0][2:5] == ["535 5.7.8 Error: authentication failed: authentication failure",
                               "501 5.5.4 Syntax: AUTH mechanism",
                               "450 4.7.1 Error: too many AUTH commands from 127.0.0.1"]
    assert logged == [f"AUTH command rate limit exceeded: {n} from localhost[127.0.0.1] "
                      "for service SVC" for n in (3, 4, 5)]


@pytest.mark.parametrize("enabled", [True, False], ids=["auth-enabled", "auth-disabled"])
def test_auth_is_counted_in_any_state(postfix_factory: PostfixFactory,
                                      daemon_factory: DaemonFactory, tmp_path: Path,
                                      enabled: bool) -> None:
    """Postfix 3.7 counts an AUTH command before it looks at the session's
    state: one refused in a mail transaction (503), or where AUTH is not
    offered (503), counts towards the limit too."""
    postfix, postern = auth_pair(postfix_factory, daemon_factory, tmp_path, enabled)
    commands = [EHLO, MAIL, BAD_PLAIN, BAD_PLAIN, "RSET", BAD_PLAIN, "QUIT"]
    replies, logged = compare(postfix, postern, [commands])
    assert replies[0][-3] == "450 4.7.1 Error: too many AUTH commands from 127.0.0.1"
    assert logged == ["AUTH command rate limit exceeded: 3 from localhost[127.0.0.1] "
                      "for service SVC"]
