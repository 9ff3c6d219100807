"""DATA reading: the end is only CRLF.CRLF, bare newlines are normalised,
dots are unstuffed, pipelined bytes after the end are kept."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.newlines import crlf_only, to_crlf
from mta.smtpd.data import DataDecoder, DataResult, read_data


async def run(chunks: list[bytes], limit: int = 0) -> tuple[bytes, bytes, DataResult]:
    """read_data over chunks that arrive one at a time: each one is given to
    the reader only once it has taken all before it, so that every chunk is
    one read, as when the client's segments arrive apart."""
    reader = asyncio.StreamReader(limit=2048)
    received = bytearray()

    async def sink(data: bytes) -> None:
        received.extend(data)

    reading = asyncio.ensure_future(read_data(reader, sink, limit))
    for chunk in chunks:
        reader.feed_data(chunk)  # after the end: pipelined commands, left to read
        while reader._buffer and not reading.done():  # type: ignore[attr-defined]
            await asyncio.sleep(0)
    reader.feed_eof()
    result = await reading
    rest = await reader.read()
    return bytes(received), rest, result


@pytest.mark.parametrize(("wire", "content", "rest"), [
    (b"hello\r\n.\r\nQUIT\r\n", b"hello\r\n", b"QUIT\r\n"),
    (b".\r\n", b"", b""),  # an empty message
    (b"..dot\r\n.\r\n", b".dot\r\n", b""),
    (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", b""),
    (b"a\r\n.b\r\n.\r\n", b"a\r\nb\r\n", b""),  # an unstuffed dot is removed (RFC 5321)
    # SMTP smuggling: none of these end the message.
    (b"a\n.\nMAIL FROM:<x>\r\n.\r\n", b"a\r\n\r\nMAIL FROM:<x>\r\n", b""),
    (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", b""),
    (b"a\n.\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", b""),
    (b"a\r.\rb\r\n.\r\n", b"a\r\n\r\nb\r\n", b""),
    (b"a\r\n.\rb\r\n.\r\n", b"a\r\n\r\nb\r\n", b""),
    (b"bare\nlf\r\n.\r\n", b"bare\r\nlf\r\n", b""),
])
async def test_data_end_and_normalisation(wire: bytes, content: bytes, rest: bytes) -> None:
    got, left, _ = await run([wire])
    assert (got, left) == (content, rest)
    assert b"\r\n.\r\n" not in b"\r\n" + got.replace(b"\r\n.", b"\r\n..")


@pytest.mark.parametrize("split", range(1, 19))
async def test_terminator_split_across_reads(split: int) -> None:
    """Wherever the reads split it, the terminator ends the message; before
    the fix a split inside it ("…\r\n." then "\r\n") left the session
    waiting for an end that had come."""
    wire = b"line one\r\n.\r\nNOOP\r\n"
    got, left, result = await run([wire[:split], wire[split:]])
    assert (got, left) == (b"line one\r\n", b"NOOP\r\n")
    assert result.raw_bytes == len(b"line one\r\n")


@pytest.mark.parametrize("wire", [b".\r\n", b"a\r\n.\r\n", b"..\r\n.\r\n", b"a\r\n.b\r\n.\r\n",
                                  b"a\n.\r\nb\r\n.\r\n", b"a\r\n.\rb\r\n.\r\n",
                                  b"line\n..foo\r\n.\r\n", b"..\r\n..x\r\n.\r\n"])
async def test_any_split_into_single_bytes_reads_the_same(wire: bytes) -> None:
    whole = await run([wire])
    assert await run([bytes([byte]) for byte in wire]) == whole


async def test_size_limit_reads_to_the_end_but_keeps_nothing() -> None:
    got, left, result = await run([b"x" * 5000 + b"\r\n.\r\nQUIT\r\n"], limit=1000)
    assert result.too_big and got == b"" and left == b"QUIT\r\n"


async def test_bare_newlines_are_reported() -> None:
    _, _, result = await run([b"a\nb\rc\r\n.\r\n"])
    assert result.bare_lf and result.bare_cr


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.data())
def test_any_input_yields_crlf_only_content(parts: list[bytes], data: st.DataObject) -> None:
    """Whatever the client sends and however it is split, content has no bare
    CR or LF and relaying it with dot-stuffing can never end the message early."""
    payload = b"".join(parts)
    # Stuff as a client must (RFC 5321 §4.5.2), so the only terminator is the last.
    wire = (b"\r\n" + payload).replace(b"\r\n.", b"\r\n..")[2:] + b"\r\n.\r\n"
    cut = data.draw(st.integers(0, len(wire)))
    got, left, _ = asyncio.run(run([wire[:cut], wire[cut:]]))
    assert left == b""
    assert got.count(b"\n") == got.count(b"\r\n") == got.count(b"\r")
    stuffed = (b"\r\n" + got).replace(b"\r\n.", b"\r\n..")  # as a relaying client does
    assert b"\r\n.\r\n" not in stuffed


@pytest.mark.parametrize("split", range(1, 15))
def test_a_stuffing_dot_at_a_chunk_end_is_removed_once(split: int) -> None:
    """The decoder alone, fed in two pieces anywhere (the reader holds back
    only what may start the terminator, so "line\\n." can end a piece): the
    content is that of one piece. Found by the review of f66fbe7: a piece
    ending in a stuffing dot took the next piece's first dot too."""
    wire = b"line\n..foo\r\n"
    whole = DataDecoder().feed(wire, final=True)
    decoder = DataDecoder()
    assert decoder.feed(wire[:split]) + decoder.feed(wire[split:], final=True) == whole
    assert whole == b"line\r\n.foo\r\n"


def test_decoder_holds_a_trailing_cr() -> None:
    decoder = DataDecoder()
    assert decoder.feed(b"abc\r") == b"abc"
    assert decoder.feed(b"\ndef\r\n") == b"\r\ndef\r\n"
    assert not decoder.bare_cr


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b".", b"\n\r"]), max_size=30))
def test_crlf_only_is_exactly_no_bare_cr_and_no_bare_lf(parts: list[bytes]) -> None:
    """The one-pass check agrees with counting CR, LF and CRLF apart."""
    data = b"".join(parts)
    crlf = data.count(b"\r\n")
    assert crlf_only(data) == (data.count(b"\r") == crlf == data.count(b"\n"))
    assert crlf_only(to_crlf(data))
