"""Key and certificate files on disk: written atomically (keys 0600,
certificates 0644), and checked for modes that let others read a secret.

A running daemon re-reads these files on SIGHUP, so a file is never written
in place: the bytes go to a temporary file in the same directory (created
with its final mode before any byte is written, so a key is never readable by
others), which is fsynced and renamed over the old name; then the directory
is fsynced so the rename survives a crash. A reader sees the old file or the
new one, never half of either.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from mta.spool import fsync_directory

PRIVATE = 0o600
PUBLIC = 0o644


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; PUBLIC is meant
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.rename(temp, path)
    fsync_directory(path.parent)


def write_private(path: Path, data: bytes) -> None:
    """A private key (or a file that holds one), readable by its owner only."""
    write_atomic(path, data, PRIVATE)


def write_public(path: Path, data: bytes) -> None:
    """A certificate, request or CA file: world-readable."""
    write_atomic(path, data, PUBLIC)


def keep_old(path: Path) -> Path | None:
    """Copy path to path.old (same mode) before it is replaced; the copy's name."""
    if not path.exists():
        return None
    old = path.with_name(path.name + ".old")
    write_atomic(old, path.read_bytes(), path.stat().st_mode & 0o777)
    return old


def loose_mode(path: Path) -> int | None:
    """The permission bits of a secret file (a key, a password file) when its
    group or others have any access to it, else None. OSError when it cannot
    be examined."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & (stat.S_IRWXG | stat.S_IRWXO) else None
