"""cleanup: the Received header layout and missing-header handling."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.cleanup import CleanupStream, ReceivedInfo, received_header


def info(**overrides: object) -> ReceivedInfo:
    values: dict[str, object] = dict(
        helo="client.example", client_name="localhost", client_address="127.0.0.1",
        protocol="ESMTP", myhostname="mx.example.test", mail_name="Postern",
        qid="2K04EZMPDJ00", recipients=["alice@example.test"], when=1795330516.0)
    values.update(overrides)
    # The overrides may name any field, so their types are only known to the caller.
    return ReceivedInfo(**values)  # type: ignore[arg-type]


DATE = r"Sun, 22 Nov 2026 \d\d:\d\d:16 [+-]\d{4} \(\w+\)"


def test_received_one_recipient() -> None:
    text = received_header(info()).decode()
    assert re.fullmatch(
        "Received: from client.example \\(localhost \\[127.0.0.1\\]\\)\r\n"
        "\tby mx.example.test \\(Postern\\) with ESMTP id 2K04EZMPDJ00\r\n"
        f"\tfor <alice@example.test>; {DATE}\r\n", text), text


def test_received_several_recipients_no_helo_ipv6_tls() -> None:
    text = received_header(info(helo=None, client_name="unknown", client_address="::1",
                                recipients=["a@x.test", "b@x.test"], protocol="ESMTPS",
                                tls_lines=["(using TLSv1.3 with cipher X (256/256 bits))",
                                           "(No client certificate requested)"])).decode()
    assert re.fullmatch(
        "Received: from unknown \\(unknown \\[IPv6:::1\\]\\)\r\n"
        "\t\\(using TLSv1.3 with cipher X \\(256/256 bits\\)\\)\r\n"
        "\t\\(No client certificate requested\\)\r\n"
        "\tby mx.example.test \\(Postern\\) with ESMTPS id 2K04EZMPDJ00;\r\n"
        f"\t{DATE}\r\n", text), text


class Sink:
    qid = "2K04EZMPDJ00"

    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def size(self) -> int:
        return len(self.data)

    async def write(self, data: bytes) -> None:
        self.data += data


async def clean(chunks: list[bytes], add_missing: bool = True,
                limit: int = 4096) -> tuple[str, CleanupStream]:
    sink = Sink()
    stream = CleanupStream(sink, received=b"Received: x\r\n", add_missing=add_missing,
                           myhostname="mx.example.test", header_size_limit=limit)
    for chunk in chunks:
        await stream.feed(chunk)
    await stream.finish()
    return sink.data.decode(), stream


@pytest.mark.parametrize("split", [1, 5, 17, 40])
async def test_missing_date_and_message_id_are_added_at_the_end_of_the_header(
        split: int) -> None:
    message = b"Subject: hi\r\nTo: a@x.test\r\n\r\nbody\r\n"
    out, stream = await clean([message[:split], message[split:]])
    lines = out.split("\r\n")
    assert lines[0] == "Received: x"
    assert lines[1:3] == ["Subject: hi", "To: a@x.test"]
    assert lines[3].startswith("Date: ")
    assert re.fullmatch(r"Message-ID: <\d{14}\.2K04EZMPDJ00@mx\.example\.test>", lines[4])
    assert lines[5:] == ["", "body", ""]
    assert stream.message_id == lines[4].split(": ", 1)[1]


async def test_present_headers_are_kept_and_message_id_is_reported() -> None:
    out, stream = await clean([b"Message-ID:\r\n <abc@x.test>\r\nDate: today\r\n\r\nb\r\n"])
    assert out == "Received: x\r\nMessage-ID:\r\n <abc@x.test>\r\nDate: today\r\n\r\nb\r\n"
    assert stream.message_id == "<abc@x.test>"


async def test_not_added_for_ordinary_clients() -> None:
    out, stream = await clean([b"Subject: x\r\n\r\nb\r\n"], add_missing=False)
    assert out == "Received: x\r\nSubject: x\r\n\r\nb\r\n"
    assert stream.message_id is None


async def test_a_body_without_headers_gets_a_separator() -> None:
    out, _ = await clean([b"just text\r\nmore\r\n"])
    assert re.fullmatch(r"Received: x\r\nDate: .*\r\nMessage-ID: <.*>\r\n\r\n"
                        r"just text\r\nmore\r\n", out), out


async def test_headers_only_message_without_final_newline() -> None:
    out, _ = await clean([b"Subject: x"], add_missing=False)
    assert out == "Received: x\r\nSubject: x\r\n"


async def _clean_limited(chunks: list[bytes]) -> tuple[str, CleanupStream]:
    """clean() with header_size_limit 1024, the added Date and stamp masked."""
    out, stream = await clean(chunks, limit=1024)
    return re.sub(r"\d{14}", "STAMP", re.sub(r"Date: [^\r]*", "Date: D", out)), stream


async def test_a_header_over_the_limit_is_cut_at_a_line_whatever_the_reads() -> None:
    """What does not fit in header_size_limit is body, from the first line
    that does not fit, however the content was split: a cut at a read's
    boundary glued the added Date into a header line (Message-ID: <Date:
    ...m@x>), or added a second Message-ID. Found by a review that split
    DATA reads at every position."""
    message = (b"Subject: hi\r\nX-Long: " + b"a" * 1000 + b"\r\nMessage-ID: <m@x>\r\n"
               b"\r\nbody\r\n")
    whole, stream = await _clean_limited([message])
    # Nothing added: the Message-ID past the cut is not seen, and ours would
    # make two.
    assert whole == "Received: x\r\n" + message.decode()
    assert stream.message_id is None
    for split in range(1, len(message)):
        out, split_stream = await _clean_limited([message[:split], message[split:]])
        assert (out, split_stream.message_id, split_stream.hops) == \
            (whole, stream.message_id, stream.hops), split


@pytest.mark.parametrize("name", ["blank", "text"])
async def test_a_header_that_ends_by_itself_near_the_limit_is_not_cut(name: str) -> None:
    """The blank line, or a first line that is no header field, ends the
    section whatever its length: the missing headers are added and a body
    line gets its separator (the review of the cut found both treated as
    a cut)."""
    if name == "blank":  # the blank line starts within the limit, ends past it
        message = b"Subject: " + b"s" * (1024 - len(b"Subject: \r\n") - 1) + b"\r\n\r\nbody\r\n"
    else:  # a first body line longer than the limit: no header field's name
        message = b"Subject: s\r\n" + b"x" * 3000 + b"\r\n"
    whole, _ = await _clean_limited([message])
    assert "Date: D\r\nMessage-ID: <STAMP.2K04EZMPDJ00@mx.example.test>\r\n\r\n" in whole
    assert whole.endswith(("\r\nbody\r\n", "x" * 3000 + "\r\n"))
    for split in (1, 500, 1023, 1024, 1025, 2000):
        assert (await _clean_limited([message[:split], message[split:]]))[0] == whole, split


_LINES = st.sampled_from([
    b"Subject: s\r\n", b"X-Long: " + b"a" * 700 + b"\r\n", b"Message-ID: <m@x>\r\n",
    b" folded\r\n", b"\r\n", b"body line\r\n", b"y" * 1100 + b"\r\n", b"Date: today\r\n",
    b"Name" + b"n" * 995 + b":\r\n"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_LINES, max_size=8), st.lists(st.integers(0, 3000), max_size=3))
def test_the_header_kept_never_depends_on_the_reads(lines: list[bytes], cuts: list[int]) -> None:
    message = b"".join(lines)
    points = sorted({min(cut, len(message)) for cut in cuts})
    pieces = [message[a:b] for a, b in zip([0, *points], [*points, len(message)], strict=True)
              if b > a]
    whole = asyncio.run(_clean_limited([message]))
    split = asyncio.run(_clean_limited(pieces))
    assert (split[0], split[1].message_id, split[1].hops) == \
        (whole[0], whole[1].message_id, whole[1].hops)
