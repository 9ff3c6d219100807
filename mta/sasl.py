"""SMTP AUTH for smtpd: PLAIN and LOGIN against a table of salted scrypt hashes.

The password file is a Postfix-style table, one user per line::

    alice@example.org  $scrypt$ln=14,r=8,p=1$<salt>$<hash>

(salt and hash in unpadded base64), maintained with ``mta sasl``. It is
re-read when it changes, so added users can log in without a reload.
scrypt (RFC 7914) costs about 50 ms and 16 MiB per check, which is the point:
checks run in a worker thread, never on the event loop. Failed attempts
from one client address are answered ever more slowly, successes between
them notwithstanding (``FailureTracker``).
The mechanisms are RFC 4616 PLAIN and the LOGIN mechanism that Outlook-era
clients still use (draft-murchison-sasl-login).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mta.errors import ConfigError
from mta.maps import read_table
from mta.tls.pemfiles import write_private

MECHANISMS = ("PLAIN", "LOGIN")
LOGIN_USERNAME = base64.b64encode(b"Username:").decode()
LOGIN_PASSWORD = base64.b64encode(b"Password:").decode()
_SCHEME = "scrypt"
_DEFAULT_COST = {"ln": 14, "r": 8, "p": 1}


class SaslError(Exception):
    """A malformed client response (bad base64, bad PLAIN message, not UTF-8):
    an authentication failure, as with Postfix's SASL back ends (Dovecot fails
    the request), not merely a syntax error (see cmd_auth)."""


class BadBase64(SaslError):
    """A response that is not base64."""


class ResponseTooLong(SaslError):
    """A response line longer than line_length_limit: RFC 4954 §6's 500 5.5.6,
    not a failed login."""


# --- password hashes -----------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: bytes, salt: bytes, ln: int, r: int, p: int) -> bytes:
    n = 1 << ln
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32,
                          maxmem=129 * r * n * p + (1 << 20))


def hash_password(password: str, *, ln: int = 14, r: int = 8, p: int = 1) -> str:
    """``$scrypt$ln=14,r=8,p=1$salt$hash`` for a new password, with a random salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password.encode("utf-8"), salt, ln, r, p)
    return f"${_SCHEME}$ln={ln},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether password matches an encoded hash; False for a malformed hash."""
    try:
        _, scheme, params, salt, digest = encoded.split("$")
        if scheme != _SCHEME:
            return False
        cost = {k: int(v) for k, v in (item.split("=") for item in params.split(","))}
        expected = _unb64(digest)
        actual = _scrypt(password.encode("utf-8"), _unb64(salt), cost["ln"], cost["r"],
                         cost["p"])
    except (ValueError, KeyError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


# --- the password file ----------------------------------------------------------------
class PasswordFile:
    """The user table, re-read whenever its size or modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}

    def lookup(self, user: str) -> str | None:
        """The encoded hash of user, or None. Blocking: call from a thread.
        Raises ConfigError when the file cannot be read."""
        try:
            st = self.path.stat()
        except OSError as error:
            raise ConfigError(f"{self.path}: cannot read: {error.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._users = {entry.key: entry.value.split()[0]
                           for entry in read_table(self.path) if entry.value}
            self._stamp = stamp
        return self._users.get(user)


def update_password_file(path: Path, user: str, encoded: str | None) -> bool:
    """Set (or with None, remove) user's line; True if the file changed.

    Comments and other users' lines are kept. Written as a new file and
    renamed over the old one (mode 0600), so readers never see half a file.
    """
    if any(c.isspace() for c in user) or not user or user.startswith("#"):
        raise ValueError(f"bad user name {user!r}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    out: list[str] = []
    found = False
    for line in lines:
        key = line.split(None, 1)[0] if line.strip() and not line.lstrip().startswith(
            "#") and line[:1] not in " \t" else None
        if key == user:
            found = True
            if encoded is not None:
                out.append(f"{user} {encoded}")
            continue
        out.append(line)
    if encoded is not None and not found:
        out.append(f"{user} {encoded}")
    if encoded is None and not found:
        return False
    # As keys are written: a random temporary name opened with O_EXCL (a name
    # planted in the directory, e.g. a symlink, is never followed), the file
    # and then the directory synced, so the rename survives a crash.
    write_private(path, ("\n".join(out) + "\n").encode("utf-8"))
    return True


def list_users(path: Path) -> list[str]:
    try:
        return [entry.key for entry in read_table(path)]
    except ConfigError:
        return []


# --- mechanisms -------------------------------------------------------------------------
def decode_response(text: str) -> bytes:
    """A client's base64 response; an empty line or "=" is the empty response."""
    text = text.strip()
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadBase64("Invalid base64 data") from None


def parse_plain(message: bytes) -> tuple[str, str, str]:
    """RFC 4616: authzid NUL authcid NUL passwd → (authzid, authcid, password)."""
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise SaslError("malformed PLAIN response")
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise SaslError("PLAIN response is not UTF-8") from None
    return authzid, authcid, password


# --- checking, with failures slowed down -----------------------------------------------
@dataclass
class FailureTracker:
    """Recent AUTH failures per client address, shared by all listeners.

    The nth failure within ``window`` seconds is answered after (n-1) x delay
    seconds, at most ``cap`` x delay: a typo costs nothing, a guessing client
    slows to a crawl. The count is forgotten only when ``window`` seconds pass
    without a failure, never on a success: a client with one account of its
    own could otherwise log in between guesses at another and never be slowed.
    """

    window: float = 900.0
    cap: int = 10
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    # Told of every local failure, so receiver worker processes can share
    # what they see (mta/workers.py). Successes change nothing to share.
    on_failure: Callable[[str], None] | None = None

    def failed(self, address: str) -> int:
        count = self._count(address)
        if self.on_failure is not None:
            self.on_failure(address)
        return count

    def learn(self, address: str) -> None:
        """A failure another process saw: count it, without telling anyone again."""
        self._count(address)

    def _count(self, address: str) -> int:
        now = self.clock()
        count, last = self._failures.get(address, (0, now))
        count = count + 1 if now - last < self.window else 1
        if len(self._failures) >= 10000:
            self._prune(now)
        self._failures[address] = (count, now)
        return count

    def delay(self, count: int, unit: float) -> float:
        return min(max(count - 1, 0), self.cap) * unit

    def _prune(self, now: float) -> None:
        for address, (_, last) in list(self._failures.items()):
            if now - last >= self.window:
                del self._failures[address]
        if len(self._failures) >= 10000:
            self._failures.clear()


class SaslServer:
    """Checks credentials for the listeners that share one password file."""

    def __init__(self, passwords: PasswordFile, tracker: FailureTracker,
                 failure_delay: float = 1.0) -> None:
        self.passwords = passwords
        self.tracker = tracker
        self.failure_delay = failure_delay

    async def check(self, user: str, password: str) -> bool:
        """True if the password is right. Raises ConfigError when the file is unusable."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._check, user, password)

    def _check(self, user: str, password: str) -> bool:
        encoded = self.passwords.lookup(user)
        if encoded is None:
            # Spend the same time as for a real user, so timing does not
            # reveal which user names exist.
            verify_password(password, _dummy_hash())
            return False
        return verify_password(password, encoded)

    async def failed(self, address: str) -> None:
        """Record a failure and wait out its delay before the 535 goes out."""
        count = self.tracker.failed(address)
        delay = self.tracker.delay(count, self.failure_delay)
        if delay > 0:
            await asyncio.sleep(delay)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))
