"""MAIL/RCPT path parsing (RFC 5321 §4.1.2)."""

from __future__ import annotations

import pytest

from mta.smtpd.grammar import PathError, helo_name, parse_path, parse_vrfy


@pytest.mark.parametrize(("argument", "address", "params"), [
    ("FROM:<bob@example.org>", "bob@example.org", {}),
    ("FROM: <bob@example.org>", "bob@example.org", {}),
    ("from:<>", "", {}),
    ("FROM:<bob@example.org> SIZE=1000 BODY=8BITMIME", "bob@example.org",
     {"SIZE": "1000", "BODY": "8BITMIME"}),
    ("FROM:bob@example.org", "bob@example.org", {}),
    ('FROM:<"john doe"@example.org>', '"john doe"@example.org', {}),
    ("FROM:<@relay.example,@other.example:bob@example.org>", "bob@example.org", {}),
    ("FROM:<bob@[192.0.2.1]>", "bob@[192.0.2.1]", {}),
    ("FROM:<postmaster>", "postmaster", {}),
    ("FROM:<a@under_score.example>", "a@under_score.example", {}),  # as Postfix takes it
    ("FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]", {}),
    ("FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]", {}),
    ("FROM:<a@1b.example.>", "a@1b.example.", {}),
    ('FROM:<"a@b.example">', '"a@b.example"', {}),  # Postfix: a@b.example, resolvable
    ('FROM:<"a@b"@c.example>', '"a@b"@c.example', {}),
])
def test_good_paths(argument: str, address: str, params: dict) -> None:
    path = parse_path(argument, "FROM:", allow_empty=True, smtputf8=False)
    assert (path.address, path.params) == (address, params)


@pytest.mark.parametrize("argument", [
    "FROM:<bob@exa mple.org>", "FROM:<bob@@example.org>", "FROM:<bob@example.org",
    "FROM:<bob@-example.org>", "FROM:<bo\x00b@example.org>", "FROM:<a..b@example.org>",
    "TO:<bob@example.org>", "FROM:<bob@example.org>junk",
    # Domains Postfix's trivial-rewrite cannot resolve (resolve.c): all
    # digits without brackets, an address literal that is no address.
    "FROM:<bob@192.0.2.1>", "FROM:<bob@1.2.3>", "FROM:<bob@[bogus]>", "FROM:<bob@[256.0.0.1]>",
    'FROM:<"a@b"@1.2.3.4>', 'FROM:<"a@1.2.3.4">',  # judged unquoted, as Postfix does
])
def test_bad_paths(argument: str) -> None:
    with pytest.raises(PathError):
        parse_path(argument, "FROM:", allow_empty=True, smtputf8=False)


@pytest.mark.parametrize(("argument", "address", "params"), [
    ("FROM:a@b.test SIZE=5", "a@b.test", {"SIZE": "5"}),
    ("FROM:<a@b.test>\tSIZE=100", "a@b.test", {"SIZE": "100"}),
    ("FROM:a@b.test\tBODY=8BITMIME", "a@b.test", {"BODY": "8BITMIME"}),
    ("FROM:<a@b.test> SIZE=1=2", "a@b.test", {"SIZE": "1=2"}),  # SIZE's check refuses it
])
def test_parameters_after_any_blank(argument: str, address: str, params: dict) -> None:
    """The review of 24d9880 found the first two refused as junk."""
    path = parse_path(argument, "FROM:", allow_empty=True, smtputf8=False)
    assert (path.address, path.params) == (address, params)


def test_a_malformed_parameter_is_an_unknown_option() -> None:
    """Postfix answers "=x" as any option it does not know (555), not as
    address syntax."""
    path = parse_path("FROM:<bob@example.org> =x", "FROM:", allow_empty=True, smtputf8=False)
    assert path.param_texts == {"=X": "=x"}


def test_empty_recipient_is_refused() -> None:
    with pytest.raises(PathError):
        parse_path("TO:<>", "TO:", allow_empty=False, smtputf8=False)


def test_unicode_needs_smtputf8() -> None:
    with pytest.raises(PathError) as caught:
        parse_path("TO:<jöran@example.org>", "TO:", allow_empty=False, smtputf8=False)
    assert caught.value.utf8
    assert parse_path("TO:<jöran@example.org>", "TO:", allow_empty=False,
                      smtputf8=True).address == "jöran@example.org"


@pytest.mark.parametrize("argument", ["FROM:", "FROM: ", "FROM:  "])
def test_no_path_at_all_is_not_the_null_sender(argument: str) -> None:
    with pytest.raises(PathError) as caught:
        parse_path(argument, "FROM:", allow_empty=True, smtputf8=False)
    assert caught.value.missing


def test_parameters_keep_their_text_as_sent() -> None:
    # An empty value parses (the handler answers "Bad message size syntax").
    path = parse_path("FROM:<a@b.example> size= Foo=Bar", "FROM:", allow_empty=True,
                      smtputf8=False)
    assert path.params == {"SIZE": "", "FOO": "Bar"}
    assert path.param_texts == {"SIZE": "size=", "FOO": "Foo=Bar"}


@pytest.mark.parametrize(("argument", "address"), [
    ("postmaster", "postmaster"), ("<alice@example.org>", "alice@example.org"),
    ("  alice@example.org ", "alice@example.org"),
])
def test_vrfy_addresses(argument: str, address: str) -> None:
    assert parse_vrfy(argument) == address


@pytest.mark.parametrize("argument", ["a b c@@@", "<>", "alice bob", "<a@b.example"])
def test_bad_vrfy_addresses(argument: str) -> None:
    with pytest.raises(PathError):
        parse_vrfy(argument)


@pytest.mark.parametrize(("argument", "kept"), [
    ("client.test", "client.test"),
    ("[192.0.2.1]", "[192.0.2.1]"),
    ("[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
    # Every word, one space between them, and the space neutered as Postfix does.
    ("mail  example   com", "mail?example?com"),
    # What would end helo=<...>, start a new maillog field or break the
    # Received header's "from NAME (host [ip])" becomes "?".
    ("x<y>(z);\"w\"@v\\u", "x?y??z???w??v?u"),
    ("bad\x01name\x7f", "bad?name?"),
    ("café.example", "café.example"),  # printable UTF-8 stays (SMTPUTF8)
    ("\udcff.example", "?.example"),  # an undecodable byte
])
def test_helo_name_is_kept_as_postfix_keeps_it(argument: str, kept: str) -> None:
    assert helo_name(argument) == kept


@pytest.mark.parametrize(("argument", "illegal"), [
    ("FROM:<bob@192.0.2.1>", "<bob@192.0.2.1>"),
    ("FROM: <bob@[bogus]> SIZE=10", "<bob@[bogus]>"),
    ("FROM:bob@-x.example", "bob@-x.example"),
    ("FROM:<bob@example.org", None),  # Postfix's tokenizer refuses it: no warning
    ("FROM:<jöran@example.org>", None),  # SMTPUTF8's own reply
])
def test_what_postfix_would_log_as_illegal(argument: str, illegal: str | None) -> None:
    """Postfix's extract_addr logs "Illegal address syntax ... : <as sent>"."""
    with pytest.raises(PathError) as caught:
        parse_path(argument, "FROM:", allow_empty=True, smtputf8=False)
    assert caught.value.illegal == illegal
