"""smtpd_data_restrictions, against Postfix's smtpd_check_data (the replies
and reject lines were compared with Postfix 3.7.11 in
tests/interop/test_postfix_data_restrictions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import from_text
from mta.errors import ConfigError
from mta.master import build_parts
from mta.smtpd.checks import ClientFacts, DataFacts, Restrictions
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time

CLIENT = ClientFacts(address="192.0.2.7")
BOUNCE = DataFacts(sender="", recipient=None, recipients=2, helo="c.test",
                   ill_pipelining=False)
SINGLE = DataFacts(sender="a@b.test", recipient="x@r.test", recipients=1, helo="c.test",
                   ill_pipelining=False)


def restrictions(extra: str) -> Restrictions:
    return build_parts(from_text(IN_PROCESS_CF + extra)).restrictions


def test_none_by_default() -> None:
    assert restrictions("").data == []


def test_multi_recipient_bounce_and_its_code() -> None:
    judged = restrictions("smtpd_data_restrictions = reject_multi_recipient_bounce\n"
                          "multi_recipient_bounce_reject_code = 554\n")
    assert judged.check_data(CLIENT, BOUNCE) == \
        "554 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce"
    one = DataFacts(sender="", recipient="x@r.test", recipients=1, helo=None,
                    ill_pipelining=False)
    assert judged.check_data(CLIENT, one) is None  # a bounce has one recipient
    assert judged.check_data(CLIENT, SINGLE) is None


def test_the_recipient_is_judged_only_when_there_is_one() -> None:
    judged = restrictions("smtpd_data_restrictions = check_recipient_access "
                          "inline:{ x@r.test=REJECT }\n")
    assert judged.check_data(CLIENT, SINGLE) == \
        "554 5.7.1 <x@r.test>: Recipient address rejected: Access denied"
    several = DataFacts(sender="a@b.test", recipient=None, recipients=2, helo="c.test",
                        ill_pipelining=False)
    assert judged.check_data(CLIENT, several) is None


def test_unauth_pipelining() -> None:
    judged = restrictions("smtpd_data_restrictions = reject_unauth_pipelining\n")
    pipelined = DataFacts(sender="a@b.test", recipient="x@r.test", recipients=1,
                          helo="c.test", ill_pipelining=True)
    assert judged.check_data(CLIENT, pipelined) == \
        "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"
    assert judged.check_data(CLIENT, SINGLE) is None


@pytest.mark.parametrize(("setting", "message"), [
    ("smtpd_recipient_restrictions = reject_multi_recipient_bounce",
     "reject_multi_recipient_bounce judges no data command here: it works in "
     "smtpd_data_restrictions"),
    ("smtpd_data_restrictions = reject_unauth_destination",
     "reject_unauth_destination judges no recipient address here"),
    ("smtpd_data_restrictions = inline:{ a=OK }", "unknown restriction"),
])
def test_a_restriction_where_it_cannot_judge_stops_start(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        restrictions(setting + "\n")


async def test_a_refused_data_leaves_the_transaction(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    cf = IN_PROCESS_CF + "smtpd_data_restrictions = reject_multi_recipient_bounce\n"
    async with in_process_smtpd(tmp_path, cf) as smtpd:
        replies = await one_at_a_time(smtpd.port, [
            "EHLO c.test", "MAIL FROM:<>", "RCPT TO:<x@elsewhere.test>",
            "RCPT TO:<y@elsewhere.test>", "DATA", "RCPT TO:<z@elsewhere.test>", "DATA", "RSET",
            "QUIT"])
    refused = "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce"
    assert replies[4:8] == [refused, "250 2.1.5 Ok", refused, "250 2.0.0 Ok"]
    assert any(line.endswith(f"reject: DATA from unknown[127.0.0.1]: {refused}; from=<> "
                             "proto=ESMTP helo=<c.test>") for line in maillog_lines)
    assert any("disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=3 data=0/2 rset=1 "
               "quit=1 commands=7/9" in line for line in maillog_lines)
