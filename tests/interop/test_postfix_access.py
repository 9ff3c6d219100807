"""Access maps: Postfix's smtpd and ours, the same tables, the same answers.

The same texthash tables and the same smtpd_recipient_restrictions are given
to a private Postfix (smtpd_peername_lookup = no, so the client is
unknown[127.0.0.1] to both) and to an in-process Postern receiver; each
conversation must get the same replies to MAIL and RCPT, and each refusal the
same reject line. The cases cover parent-domain keys, the null sender,
user@ keys, DEFER, numeric replies, enhanced codes fitted to what is refused,
the all-numeric OK, the client key ``unknown``, and WARN (logged as Postfix's
log_whatsup logs it, with the queue ID, command and protocol).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time
from tests.interop.postfix import PostfixFactory, PostfixInstance

pytestmark = pytest.mark.interop

TABLES = {
    "helo": ("bad.test        REJECT\n"
             "defer.test      DEFER\n"
             "code.test       450 5.7.2 soft\n"
             "dsn.test        REJECT 5.1.1 custom\n"
             "numeric.test    550\n"
             "warn.test       WARN suspicious (helo)\n"),
    "senders": ("<>              REJECT no bounces\n"
                "s.test          REJECT 5.1.1 sender dsn\n"
                "user@           REJECT localpart\n"
                "w.test          WARN watched sender\n"),
    "recipients": "r.test          REJECT 5.1.7 recipient dsn\n",
    "clients": "unknown         REJECT\n",
}
RESTRICTIONS = ("smtpd_recipient_restrictions = check_helo_access texthash:{dir}/helo, "
                "check_sender_access texthash:{dir}/senders, "
                "check_recipient_access texthash:{dir}/recipients, "
                "check_client_access texthash:{dir}/clients\n")
ELSEWHERE = "x@elsewhere.test"  # relayed for 127.0.0.1 (mynetworks) by both
CASES = [  # (HELO name, sender, recipient)
    ("mail.bad.test", "a@b.test", ELSEWHERE),
    ("defer.test", "a@b.test", ELSEWHERE),
    ("code.test", "a@b.test", ELSEWHERE),
    ("dsn.test", "a@b.test", ELSEWHERE),
    ("numeric.test", "a@b.test", ELSEWHERE),
    ("c.test", "", ELSEWHERE),
    ("c.test", "a@mx.s.test", ELSEWHERE),
    ("c.test", "user@any.test", ELSEWHERE),
    ("c.test", "a@b.test", "x@r.test"),
    ("c.test", "a@b.test", ELSEWHERE),
    # WARN: logged, then on to the next restriction (here: refused by the
    # recipient table, or accepted).
    ("warn.test", "a@b.test", ELSEWHERE),
    ("warn.test", "a@w.test", "x@r.test"),
]
REJECTED = re.compile(r"(?:NOQUEUE|[0-9A-Z]+): ((?:reject|warn): RCPT from .*)$")


def rejects(lines: list[str]) -> list[str]:
    """The reject and warn lines from "RCPT from" on (the prefixes name each
    program; the queue IDs differ)."""
    return [match.group(1) for line in lines if (match := REJECTED.search(line))]


async def replies(port: int, cases: list[tuple[str, str, str]] = CASES) -> list[list[str]]:
    return [(await one_at_a_time(port, [f"EHLO {helo}", f"MAIL FROM:<{sender}>",
                                        f"RCPT TO:<{recipient}>", "QUIT"]))[1:3]
            for helo, sender, recipient in cases]


async def same_replies(postfix_factory: PostfixFactory, tmp_path: Path, main_cf: str,
                       cases: list[tuple[str, str, str]], tables: dict[str, str] | None = None,
                       ) -> tuple[list[list[str]], PostfixInstance]:
    """The replies to MAIL and RCPT of each case, the same from a Postfix and
    an in-process Postern given main_cf ({dir}: where tables are); the
    Postfix instance, for its log."""
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n"
                              + main_cf.format(dir="$config_directory"))
    for name, text in (tables or {}).items():
        (postfix.conf / name).write_text(text)
        (tmp_path / name).write_text(text)
    postfix.start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + main_cf.format(dir=tmp_path)) \
            as smtpd:
        ours = await replies(smtpd.port, cases)
    assert ours == await replies(postfix.port, cases)
    return ours, postfix


def same_rejects(postfix: PostfixInstance, maillog_lines: list[str], count: int) -> list[str]:
    """Our reject lines, once Postfix has logged count, the same as its."""
    postfix.wait_log(r"NOQUEUE: reject: .*", count=count)
    assert rejects(maillog_lines) == rejects(postfix.log_text().splitlines())
    return rejects(maillog_lines)


async def test_postern_answers_access_maps_as_postfix_does(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    ours, postfix = await same_replies(postfix_factory, tmp_path, RESTRICTIONS, CASES, TABLES)
    # Not a vacuous comparison: each kind of answer is among them.
    assert ["250 2.1.0 Ok", "250 2.1.5 Ok"] in ours
    assert ["250 2.1.0 Ok", "554 5.1.3 <x@r.test>: Recipient address rejected: "
                            "recipient dsn"] in ours
    refusals = [reply for _, reply in ours if reply[0] in "45"]
    postfix.wait_log(r": warn: .*", count=3)
    same_rejects(postfix, maillog_lines, len(refusals))
    assert "warn: RCPT from unknown[127.0.0.1]: suspicious (helo); from=<a@b.test> " \
        "to=<x@elsewhere.test> proto=ESMTP helo=<warn.test>" in rejects(maillog_lines)


SETTINGS = ("access_map_reject_code = 550\naccess_map_defer_code = 451\n"
            "smtpd_null_access_lookup_key = <null>\n")
CODED_TABLES = {"helo": "defer.test      DEFER\nbad.test        REJECT\n",
                "senders": "<null>          REJECT no bounces\n<>   OK\n",
                "recipients": "", "clients": ""}
CODED_CASES = [("mail.bad.test", "a@b.test", ELSEWHERE), ("defer.test", "a@b.test", ELSEWHERE),
               ("c.test", "", ELSEWHERE)]


async def test_the_access_map_settings_as_postfix_has_them(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """access_map_reject_code, access_map_defer_code and
    smtpd_null_access_lookup_key, set alike on both."""
    ours, postfix = await same_replies(postfix_factory, tmp_path, SETTINGS + RESTRICTIONS,
                                       CODED_CASES, CODED_TABLES)
    assert [reply[:9] for _, reply in ours] == ["550 5.7.1", "451 4.7.1", "550 5.7.1"]
    same_rejects(postfix, maillog_lines, 3)


WARNED = ("smtpd_helo_restrictions = warn_if_reject reject_non_fqdn_helo_hostname\n"
          "smtpd_recipient_restrictions = warn_if_reject check_recipient_access "
          "texthash:{dir}/recipients\n")
WARNING = re.compile(r"(?:NOQUEUE|[0-9A-Z]+): (reject_warning: RCPT from .*)$")


async def test_warn_if_reject_logs_the_refusal_as_postfix_does(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """warn_if_reject: the next restriction's refusal is logged as
    reject_warning, with the reply, and the request goes on (accepted here)."""
    table = "r.test          REJECT 5.1.7 recipient dsn\n"
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n"
                              + WARNED.format(dir="$config_directory"))
    (postfix.conf / "recipients").write_text(table)
    (tmp_path / "recipients").write_text(table)
    postfix.start()
    cases = [("localhost", "a@b.test", "x@r.test")]
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + WARNED.format(dir=tmp_path)) \
            as smtpd:
        ours = await replies(smtpd.port, cases)
    theirs = await replies(postfix.port, cases)
    assert ours == theirs == [["250 2.1.0 Ok", "250 2.1.5 Ok"]]
    postfix.wait_log(r"reject_warning: .*", count=2)

    def warnings(lines: list[str]) -> list[str]:
        return [match.group(1) for line in lines if (match := WARNING.search(line))]

    assert warnings(maillog_lines) == warnings(postfix.log_text().splitlines())
    assert warnings(maillog_lines) == [
        "reject_warning: RCPT from unknown[127.0.0.1]: 504 5.5.2 <localhost>: Helo command "
        "rejected: need fully-qualified hostname; from=<a@b.test> to=<x@r.test> proto=ESMTP "
        "helo=<localhost>",
        "reject_warning: RCPT from unknown[127.0.0.1]: 554 5.1.3 <x@r.test>: Recipient address "
        "rejected: recipient dsn; from=<a@b.test> to=<x@r.test> proto=ESMTP helo=<localhost>"]


PLAINTEXT = ("smtpd_relay_restrictions = reject_plaintext_session, permit_mynetworks, "
             "reject_unauth_destination\n")


async def test_reject_plaintext_session_as_postfix_has_it(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """A session without TLS gets Postfix's 450 4.7.1 and its reject line."""
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + PLAINTEXT).start()
    cases = [("c.test", "a@b.test", ELSEWHERE)]
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + PLAINTEXT) as smtpd:
        ours = await replies(smtpd.port, cases)
    theirs = await replies(postfix.port, cases)
    assert ours == theirs == [["250 2.1.0 Ok", "450 4.7.1 Session encryption is required"]]
    postfix.wait_log(r"NOQUEUE: reject: .*")
    assert rejects(maillog_lines) == rejects(postfix.log_text().splitlines()) == [
        "reject: RCPT from unknown[127.0.0.1]: 450 4.7.1 Session encryption is required; "
        "from=<a@b.test> to=<x@elsewhere.test> proto=ESMTP helo=<c.test>"]
