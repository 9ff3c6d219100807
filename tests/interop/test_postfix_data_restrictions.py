"""smtpd_data_restrictions: Postfix's smtpd and ours, the same lists, the same answers at DATA.

Each list is given to a private Postfix and to an in-process Postern, and
three transactions are sent to each: a bounce (null sender) to two
recipients, a message to one recipient, and the same pipelined after HELO
(improper pipelining, with smtpd_forbid_unauth_pipelining = no so that the
restriction has something to judge). The reply to DATA and the reject
lines must be the same: <DATA>: Data command rejected for the command's own
refusals, the recipient judged only when there is one (no to= otherwise).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time
from tests.interop.postfix import PostfixFactory

pytestmark = pytest.mark.interop

LISTS = {
    "bounce": "reject_multi_recipient_bounce",
    "reject": "reject",
    "defer": "defer",
    "client": "check_client_access inline:{ 127.0.0.1=REJECT }",
    "sender": "check_sender_access inline:{ a@b.test=REJECT }",
    "recipient": "check_recipient_access inline:{ x@elsewhere.test=REJECT }",
    "pipelining": "reject_unauth_pipelining",
    "warned": "warn_if_reject reject_multi_recipient_bounce, reject_non_fqdn_helo_hostname",
}
REJECTED = re.compile(r"(?:NOQUEUE|[0-9A-Z]+): ((?:reject|reject_warning): DATA from .*)$")


async def transactions(port: int) -> list[str]:
    """The reply to DATA in each of the three transactions."""
    bounce = await one_at_a_time(port, ["EHLO c.test", "MAIL FROM:<>",
                                        "RCPT TO:<x@elsewhere.test>",
                                        "RCPT TO:<y@elsewhere.test>", "DATA"])
    single = await one_at_a_time(port, ["EHLO c.test", "MAIL FROM:<a@b.test>",
                                        "RCPT TO:<x@elsewhere.test>", "DATA"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        writer.write(b"HELO c.test\r\nMAIL FROM:<a@b.test>\r\n"
                     b"RCPT TO:<x@elsewhere.test>\r\nDATA\r\n")
        lines = [(await asyncio.wait_for(reader.readline(), 10)).decode().rstrip()
                 for _ in range(4)]
    finally:
        writer.close()
    return [bounce[-1], single[-1], lines[-1]]


def rejects(lines: list[str]) -> list[str]:
    return [match.group(1) for line in lines if (match := REJECTED.search(line))]


@pytest.mark.parametrize("name", list(LISTS))
async def test_data_restrictions_as_postfix_has_them(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str],
        name: str) -> None:
    cf = ("smtpd_forbid_unauth_pipelining = no\n"
          f"smtpd_data_restrictions = {LISTS[name]}\n")
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + cf).start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + cf) as smtpd:
        ours = await transactions(smtpd.port)
    theirs = await transactions(postfix.port)
    assert ours == theirs
    refused = [reply for reply in ours if reply[0] in "45"]
    assert refused or name == "warned"
    if refused:
        postfix.wait_log(r": reject: DATA from .*", count=len(refused))
    else:  # the bounce is logged, and goes on to its 354
        assert ours[0].startswith("354 ")
        postfix.wait_log(r": reject_warning: DATA from .*", count=1)
    assert sorted(rejects(maillog_lines)) == sorted(rejects(postfix.log_text().splitlines()))
