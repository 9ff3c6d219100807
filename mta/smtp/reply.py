"""SMTP replies as typed values: code, enhanced status and the text as received."""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3463 §2: class.subject.detail, class 2, 4 or 5; subject and detail up to 3 digits.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


@dataclass(frozen=True, slots=True)
class Reply:
    """One (possibly multi-line) server reply."""

    code: int
    lines: tuple[str, ...]  # each line's text after the code and separator

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def dsn(self) -> str:
        """The enhanced status code, or X.0.0 from the reply code (Postfix smtp_chat.c).

        A code whose class contradicts the reply code is replaced: the reply
        code decides soft versus hard (RFC 3463 §3.1; errors.classify).
        """
        match = _ENHANCED.match(self.lines[0]) if self.lines else None
        klass = str(self.code // 100)
        if match and match.group(1) == klass:
            return match.group(0)
        return f"{klass}.0.0"

    def __str__(self) -> str:
        """The reply as Postfix logs it: all lines, codes kept, joined by spaces."""
        last = len(self.lines) - 1
        return " ".join(f"{self.code}{'-' if i < last else ' '}{line}".rstrip()
                        for i, line in enumerate(self.lines))

    @property
    def keywords(self) -> dict[str, str]:
        """EHLO extension keywords (upper case) and their parameters (RFC 5321 §4.1.1.1)."""
        features: dict[str, str] = {}
        for line in self.lines[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                features[keyword.upper()] = params.strip()
        return features


class ReplyParser:
    """Collects reply lines (``250-…`` … ``250 …``) into Reply values."""

    def __init__(self) -> None:
        self._code: int | None = None
        self._lines: list[str] = []

    def feed(self, raw: bytes) -> Reply | None:
        """One line without its CRLF; a Reply when it was the last line of one."""
        text = raw.decode("utf-8", "replace")
        if len(text) < 3 or not text[:3].isdigit() or (len(text) > 3 and text[3] not in " -"):
            raise ValueError(f"malformed reply line {text[:80]!r}")
        code = int(text[:3])
        if self._code is not None and code != self._code:
            raise ValueError(f"reply code changed within a reply: {text[:80]!r}")
        self._code = code
        self._lines.append(text[4:])
        if len(text) > 3 and text[3] == "-":
            return None
        reply = Reply(code, tuple(self._lines))
        self._code, self._lines = None, []
        return reply
