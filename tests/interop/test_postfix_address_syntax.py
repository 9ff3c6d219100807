"""Address syntax in MAIL, RCPT and VRFY: Postfix's smtpd and ours, the same answers.

Postfix takes an envelope address only if trivial-rewrite can resolve its
domain: a hostname (not all digits: user@192.0.2.1 without brackets is no
address) or a valid address literal. A refused address gets the command's
syntax reply and, when Postfix's extract_addr refused it (not its
tokenizer), the warning "Illegal address syntax from host[ip] in RCPT
command: <address as sent>". Both servers see unknown[127.0.0.1].
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time
from tests.interop.postfix import PostfixFactory
from tests.interop.test_postfix_access import replies

pytestmark = pytest.mark.interop

RECIPIENTS = ["x@1.2.3.4", "x@1.2.3", "x@[bogus]", "x@[256.1.1.1]", "x@[1.2.3.4]",
              "x@[IPv6:2001:db8::1]", "x@-dash.test", "x@b.test..", "x@a..b.test",
              "x@under_score.test", "x@1b.test", "x@b.test."]
SENDERS = ["s@1.2.3.4", "s@[bogus]", "s@-dash.test", "s@[192.0.2.1]", '"s@1.2.3.4"',
           '"s@b.test"', '"s@b"@c.test']
CASES = ([("c.test", "a@b.test", recipient) for recipient in RECIPIENTS]
         + [("c.test", sender, "x@elsewhere.test") for sender in SENDERS])
RAW = [["EHLO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<>"],
       ["EHLO c.test", "MAIL FROM:<s@b.test> =x", "MAIL FROM:<s@1.2.3.4> =x",
        "MAIL FROM:<s@b.test>junk>", "MAIL FROM:<s@b.test>", "RCPT TO:<x@b.test> =x",
        "RCPT TO:<x@1.2.3.4> =x", "RCPT TO:<x@b.test>junk>"],
       ["EHLO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@b.test"],
       # Parameters after a path without brackets, after a tab, with a value
       # no esmtp-value allows (the review of 24d9880 found the first two
       # refused).
       ["EHLO c.test", "MAIL FROM:a@b.test SIZE=5", "RSET", "MAIL FROM:<a@b.test>\tSIZE=100",
        "RSET", "MAIL FROM:<a@b.test> SIZE=1=2", "MAIL FROM:<a@b.test> BODY=8BITMIME"],
       # A repeated parameter: each is judged, as Postfix's mail_cmd does.
       ["EHLO c.test", "MAIL FROM:<a@b.test> SIZE=abc SIZE=1", "MAIL FROM:<a@b.test> SIZE=1 SIZE=x",
        "MAIL FROM:<a@b.test> SIZE=1 SIZE=2"],
       # AUTH= with AUTH off here: taken, once (RFC 4954 §5; Postfix's
       # smtpd_sasl_mail_opt). After the 503, Postfix keeps the first AUTH=
       # until RSET and refuses the next MAIL's AUTH= too; we do not copy
       # that, so the RSET.
       ["EHLO c.test", "MAIL FROM:<a@b.test> AUTH=<>", "RSET",
        "MAIL FROM:<a@b.test> AUTH=x@y.test AUTH=<>", "RSET",
        "MAIL FROM:<a@b.test> SIZE=1 auth=<>"],
       ["EHLO c.test", "VRFY x@1.2.3.4", "VRFY <x@[bogus]>", "VRFY x@b.test"]]
WARNING = re.compile(r"smtpd(?:\[\d+\])?: (warning: Illegal address syntax .*)$")


async def conversations(port: int) -> list[list[str]]:
    return [*await replies(port, CASES),
            *[(await one_at_a_time(port, [*commands, "QUIT"]))[1:-1] for commands in RAW]]


async def test_address_syntax_as_postfix_judges_it(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n").start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF) as smtpd:
        ours = await conversations(smtpd.port)
    theirs = await conversations(postfix.port)
    assert ours == theirs
    assert ["250 2.1.0 Ok", "501 5.1.3 Bad recipient address syntax"] in ours
    assert ["501 5.1.7 Bad sender address syntax", "503 5.5.1 Error: need MAIL command"] \
        in ours
    assert ["250 2.1.0 Ok", "250 2.1.5 Ok"] in ours

    def warnings(lines: list[str]) -> list[str]:
        return [match.group(1) for line in lines if (match := WARNING.search(line))]

    expected = len(warnings(maillog_lines))
    assert expected >= 10
    postfix.wait_log(r"warning: Illegal address syntax", count=expected)
    assert warnings(maillog_lines) == warnings(postfix.log_text().splitlines())
    assert "warning: Illegal address syntax from unknown[127.0.0.1] in RCPT command: " \
        "<x@1.2.3.4>" in warnings(maillog_lines)
