"""Line endings: finding bare CR and bare LF, and turning every newline into CRLF.

SMTP knows only CRLF (RFC 5321 §2.3.8). A bare CR or LF inside a message
is how SMTP smuggling starts, so the receiver normalises what it reads
(smtpd/data.py), pickup normalises what local submitters write, and the
client checks again what it sends (smtp/client.py). These run on every
byte of every message, so they use bytes methods, which run at C speed.
"""

from __future__ import annotations

import re

ANY_NEWLINE = re.compile(rb"\r\n|\r|\n")


def crlf_only(data: bytes) -> bool:
    """True when every CR and every LF in data is part of a CRLF pair.

    Every CRLF pair holds one CR and one LF, and no byte is in two pairs,
    so the CR and LF bytes number exactly twice the pairs when there is no
    bare one. One translate and one count: 170 us per 100 KB here, against
    240 us for counting CR, LF and CRLF apart.
    """
    newline_bytes = len(data) - len(data.translate(None, b"\r\n"))
    return newline_bytes == 2 * data.count(b"\r\n")


def to_crlf(data: bytes) -> bytes:
    """Every CRLF, bare CR and bare LF as CRLF."""
    return ANY_NEWLINE.sub(b"\r\n", data)
