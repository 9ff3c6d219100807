"""The error hierarchy: configuration errors and soft/hard mail failures.

Mail failures carry an SMTP reply code, an RFC 3463 enhanced status code and a
text. Whether a failure is temporary (4xx, retry later) or permanent (5xx,
bounce) is decided here and nowhere else.
"""

from __future__ import annotations


class PosternError(Exception):
    """Base class of every error Postern raises on purpose."""


class BadValue(ValueError):
    """A value that does not fit its parameter's type; the text says why.

    Raised by the value parsers (mta/config/types.py and those of mta/tls/
    that parameters use); Config turns it into a ConfigError naming file:line.
    It lives here, outside the mta.config package, so that the parsers of
    mta/tls/ can be imported before mta.config (whose parameter table imports
    them) without an import cycle.
    """


class ConfigError(PosternError):
    """A bad main.cf value, map entry or file; the message names file:line."""


class SpoolError(PosternError):
    """The spool could not store or read a queue file."""


class CorruptQueueFile(SpoolError):
    """A queue file is torn or unreadable; it belongs in corrupt/."""


class MailFailure(PosternError):
    """A delivery or acceptance failure with SMTP code, enhanced status and text."""

    def __init__(self, code: int, dsn: str, text: str) -> None:
        super().__init__(f"{code} {dsn} {text}")
        self.code = code
        self.dsn = dsn
        self.text = text

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def reply(self) -> str:
        return f"{self.code} {self.dsn} {self.text}"


class TempFailure(MailFailure):
    """A soft error: the message stays queued and is retried later."""

    def __init__(self, text: str, dsn: str = "4.0.0", code: int = 451) -> None:
        super().__init__(code, dsn, text)


class PermFailure(MailFailure):
    """A hard error: the recipient is bounced."""

    def __init__(self, text: str, dsn: str = "5.0.0", code: int = 550) -> None:
        super().__init__(code, dsn, text)


def classify(code: int, dsn: str | None) -> str:
    """Soft or hard, from an SMTP reply: 'deferred' for 4xx, 'bounced' for 5xx.

    RFC 3463 §3.1: the class digit of the enhanced status code agrees with the
    reply code; when a peer sends a contradictory pair we trust the reply code,
    as Postfix does (smtp_trouble.c).
    """
    return "bounced" if code >= 500 else "deferred"
