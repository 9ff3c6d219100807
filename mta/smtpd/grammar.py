"""SMTP command grammar: MAIL/RCPT paths and ESMTP parameters (RFC 5321 §4.1.2).

Parsing is strict where it protects the queue (no line breaks, no NUL, a
syntactically valid mailbox) and lenient where Postfix is lenient (a space
after ``FROM:``, a missing pair of angle brackets, a source route, which
§4.1.1.3 says to accept and ignore).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mta.smtpd import hostnames

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_QUOTED = r'"(?:[^"\\\r\n]|\\.)*"'
# RFC 5321's sub-domain, with "_" allowed anywhere in a label, as Postfix's
# valid_hostname allows it (real hosts have them; Postfix 3.7 takes
# user@under_score.example, compared in tests/interop).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*\.?"
_LITERAL = r"\[[^\[\]\\\s]+\]"
_MAILBOX = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})(?:@(?:{_DOMAIN}|{_LITERAL}))?\Z")
_UTF8_MAILBOX = re.compile(r"(?:[^\s@\"<>()\[\]\\,;:]+(?:\.[^\s@\"<>()\[\]\\,;:]+)*|"
                           + _QUOTED + r")(?:@[^\s@\"<>()\\,;:]+)?\Z")
# An empty value (SIZE=) parses: the command handler rejects it with the
# parameter's own reply, as Postfix does ("Bad message size syntax").
_PARAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([!-<>-~]*))?\Z")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_BLANK = re.compile(r"[ \t]")


class PathError(ValueError):
    """A path that is not a valid mailbox; .utf8 when it only lacks SMTPUTF8,
    .missing when there is no path at all ("MAIL FROM:"), which Postfix
    answers with the command's syntax reply, not the address syntax reply.
    .illegal is the path as sent (brackets and all) when Postfix's
    extract_addr would refuse it, which logs "Illegal address syntax"; a
    path its tokenizer cannot read (an unbalanced "<") is refused unlogged."""

    def __init__(self, message: str, *, utf8: bool = False, missing: bool = False,
                 illegal: str | None = None) -> None:
        super().__init__(message)
        self.utf8 = utf8
        self.missing = missing
        self.illegal = illegal


@dataclass(frozen=True, slots=True)
class Path:
    address: str
    # (upper-cased name, value, text as sent) of every parameter in order, a
    # repeated one included: Postfix's mail_cmd judges each in turn, and its
    # "Unsupported option: foo=bar" quotes the parameter verbatim.
    sent_params: tuple[tuple[str, str | None, str], ...] = ()

    @property
    def params(self) -> dict[str, str | None]:
        return {name: value for name, value, _ in self.sent_params}

    @property
    def param_texts(self) -> dict[str, str]:
        return {name: text for name, _, text in self.sent_params}


def _split_path(text: str) -> tuple[str, str]:
    """(path text, rest) where path text may be bracketed."""
    text = text.lstrip(" ")
    if not text.startswith("<"):
        # Without brackets the path is the first word (blanks: space or tab).
        match = _BLANK.search(text)
        return (text, "") if match is None else (text[:match.start()], text[match.start():])
    quoted = False
    escaped = False
    for index, char in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return text[1:index], text[index + 1:]
    raise PathError("unbalanced <")


def parse_params(text: str) -> list[tuple[str, str | None, str]]:
    """(upper-cased name, value, text as sent) of each parameter. An item
    that is no esmtp-param (``=x``) is kept whole as its own name: Postfix
    answers it as any option it does not know, 555 Unsupported option."""
    found = []
    for item in text.split():
        match = _PARAM.match(item)
        if match:
            name, value = match.group(1).upper(), match.group(2)
        else:
            # A keyword with a value no esmtp-value allows (SIZE=1=2): the
            # keyword's own check judges the value, as Postfix's mail_cmd
            # matches "SIZE=" by its prefix; anything else is one name.
            keyword, eq, rest = item.partition("=")
            if eq and _KEYWORD.match(keyword):
                name, value = keyword.upper(), rest
            else:
                name, value = item.upper(), None
        found.append((name, value, item))
    return found


def parse_path(argument: str, keyword: str, *, allow_empty: bool,
               smtputf8: bool) -> Path:
    """Parse the argument of MAIL (keyword FROM:) or RCPT (keyword TO:)."""
    if not argument[: len(keyword)].upper() == keyword:
        raise PathError("missing " + keyword)
    if not argument[len(keyword):].strip(" "):
        # Postfix's argc < 3: "MAIL FROM:" is a syntax error, not the null
        # sender, which must be written <> (RFC 5321 §4.1.2 Reverse-path).
        raise PathError("no path", missing=True)
    sent = argument[len(keyword):].lstrip(" ")
    path_text, rest = _split_path(sent)
    if rest and not _BLANK.match(rest):
        # "<a@b.example>junk": Postfix's argument is the whole word, an
        # address with junk after it.
        raise PathError("junk after the path", illegal=_BLANK.split(sent, 1)[0])
    sent = sent[:len(sent) - len(rest)].rstrip(" \t")  # the path as sent
    if path_text.startswith("@"):
        # A source route <@a,@b:user@c>: accepted and ignored (RFC 5321 §4.1.1.3).
        path_text = path_text.partition(":")[2]
    # The path first, then the parameters, as Postfix's extract_addr judges
    # (and logs) the address before mail_cmd looks at an option.
    if not path_text:
        if not allow_empty:
            raise PathError("empty address", illegal=sent)
    else:
        try:
            _check_mailbox(path_text, smtputf8)
        except PathError as error:
            if not error.utf8:
                error.illegal = sent
            raise
    return Path(path_text, tuple(parse_params(rest)))


# Postfix's smtpd.c NEUTER_CHARACTERS: what a HELO name may not carry into
# the Received header and the maillog's helo=<...> (a space, brackets that
# would end helo=<>, quotes, a semicolon that would start a new field).
_HELO_NEUTER = str.maketrans({c: "?" for c in ' <>()\\";@'})


def helo_argument(argument: str) -> str:
    """The HELO/EHLO name as sent: every word, one space between them
    (Postfix's collapse_args). HELO restrictions at HELO time judge this."""
    return " ".join(argument.split())


def printable(text: str) -> str:
    """Unprintable characters replaced with "?" (Postfix's printable())."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def helo_name(argument: str) -> str:
    """The HELO/EHLO name as Postfix keeps it: every word (collapse_args, one
    space between them), unprintable characters and the NEUTER_CHARACTERS
    replaced with "?" (printable() and neuter() in helo_cmd)."""
    return printable(helo_argument(argument)).translate(_HELO_NEUTER)


def parse_vrfy(argument: str) -> str:
    """The address in VRFY's argument, with or without angle brackets.

    Like Postfix's vrfy_cmd, the words are taken together as one address
    (collapse_args), so "VRFY a b" is not the address a; an empty or
    malformed address raises PathError.
    """
    text = " ".join(argument.split())
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text:
        raise PathError("empty address", illegal=" ".join(argument.split()))
    try:
        _check_mailbox(text, smtputf8=False)
    except PathError as error:
        error.illegal = " ".join(argument.split())
        raise
    return text


def _check_mailbox(path_text: str, smtputf8: bool) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in path_text):
        raise PathError("control character in address")
    if path_text.isascii():
        if not _MAILBOX.match(path_text):
            raise PathError("bad address syntax")
    else:
        if not _UTF8_MAILBOX.match(path_text):
            raise PathError("bad address syntax")
        if not smtputf8:
            raise PathError("unicode address without SMTPUTF8", utf8=True)
    local, at, _ = path_text.rpartition("@")
    if at and len(local) > 64 * 4:
        raise PathError("local part too long")
    # The domain as Postfix's trivial-rewrite sees it: after the last "@" of
    # the unquoted (internal) form ("a@b"@c.example is a@b@c.example there,
    # and "a@b.example" is a@b.example).
    _, at, domain = hostnames.unquoted(path_text).rpartition("@")
    if at and not _valid_domain(domain):
        raise PathError("bad domain")


def _valid_domain(domain: str) -> bool:
    """A domain Postfix's trivial-rewrite resolves (resolve.c): a hostname
    (one root dot allowed; not all digits, so user@192.0.2.1 without
    brackets is no address), or a valid address literal (user@[192.0.2.1],
    user@[IPv6:2001:db8::1]; not user@[bogus] or [256.1.1.1])."""
    if domain.startswith("["):
        return hostnames.valid_address_literal(domain)
    return hostnames.valid_hostname(hostnames.without_root_dot(domain))
