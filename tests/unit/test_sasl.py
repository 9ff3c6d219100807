"""AUTH's building blocks: password hashes, the password file, PLAIN, failure delays."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from mta import sasl
from mta.errors import ConfigError
from mta.tls import pemfiles


def test_hash_is_salted_scrypt_and_verifies() -> None:
    one, two = sasl.hash_password("s3cret", ln=4), sasl.hash_password("s3cret", ln=4)
    assert one.startswith("$scrypt$ln=4,r=8,p=1$") and one != two
    assert sasl.verify_password("s3cret", one) and sasl.verify_password("s3cret", two)
    assert not sasl.verify_password("S3cret", one)
    for broken in ("", "plain", "$md5$x$y$z", one.replace("ln=4", "ln=x"), one[:-3]):
        assert not sasl.verify_password("s3cret", broken)


def test_password_file_updates_keep_comments_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "sasl_passwd"
    path.write_text("# users of the submission port\n")
    assert sasl.update_password_file(path, "alice@example.test", sasl.hash_password("a", ln=4))
    assert sasl.update_password_file(path, "bob", sasl.hash_password("b", ln=4))
    assert sasl.update_password_file(path, "alice@example.test", sasl.hash_password("A", ln=4))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    lines = path.read_text().splitlines()
    assert lines[0] == "# users of the submission port"
    assert [line.split()[0] for line in lines[1:]] == ["alice@example.test", "bob"]
    assert sasl.list_users(path) == ["alice@example.test", "bob"]
    passwords = sasl.PasswordFile(path)
    assert sasl.verify_password("A", passwords.lookup("alice@example.test") or "")
    assert passwords.lookup("carol") is None
    assert sasl.update_password_file(path, "bob", None)
    assert not sasl.update_password_file(path, "bob", None)
    assert passwords.lookup("bob") is None  # re-read after the change
    with pytest.raises(ValueError):
        sasl.update_password_file(path, "two words", "x")
    os.unlink(path)
    with pytest.raises(ConfigError, match="cannot read"):
        passwords.lookup("alice@example.test")


def test_password_file_is_written_like_a_key(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A temporary name planted beforehand (here the one the pid made
    # predictable) must not be followed: the write would land in the victim.
    path = tmp_path / "sasl_passwd"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / f".sasl_passwd.{os.getpid()}.tmp").symlink_to(victim)
    synced: list[Path] = []
    monkeypatch.setattr(pemfiles, "fsync_directory", synced.append)
    assert sasl.update_password_file(path, "alice", sasl.hash_password("a", ln=4))
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and sasl.list_users(path) == ["alice"]
    assert synced == [tmp_path]  # the rename itself is made durable


def test_plain_messages() -> None:
    assert sasl.parse_plain(b"\0alice\0pw") == ("", "alice", "pw")
    assert sasl.parse_plain(b"alice\0alice\0p\xc3\xa4ss") == ("alice", "alice", "päss")
    for bad in (b"alice\0pw", b"\0\0pw", b"a\0b\0c\0d", b"\0al\xffice\0pw"):
        with pytest.raises(sasl.SaslError):
            sasl.parse_plain(bad)
    assert sasl.decode_response(base64.b64encode(b"\0a\0b").decode()) == b"\0a\0b"
    assert sasl.decode_response("=") == b""
    with pytest.raises(sasl.BadBase64):
        sasl.decode_response("not base64!")


def test_failure_delays_grow_per_address_and_lapse_with_time() -> None:
    now = [0.0]
    tracker = sasl.FailureTracker(window=900, cap=5, clock=lambda: now[0])
    delays = [tracker.delay(tracker.failed("192.0.2.1"), 2.0) for _ in range(8)]
    assert delays == [0, 2, 4, 6, 8, 10, 10, 10]
    assert tracker.delay(tracker.failed("192.0.2.2"), 2.0) == 0  # another client
    now[0] = 1000.0  # the window has passed
    assert tracker.failed("192.0.2.2") == 1


async def test_a_success_between_guesses_does_not_reset_the_delay(tmp_path: Path) -> None:
    # One worker sees the sessions; another learns its failures (the master
    # relays them, mta/workers.py). The client logs in with its own account
    # between guesses at someone else's: neither worker may forget a guess.
    other = sasl.FailureTracker()
    tracker = sasl.FailureTracker(on_failure=other.learn)
    path = tmp_path / "sasl_passwd"
    sasl.update_password_file(path, "mallory", sasl.hash_password("own", ln=4))
    server = sasl.SaslServer(sasl.PasswordFile(path), tracker, 1.0)
    delays = []
    for _ in range(6):
        assert await server.check("mallory", "own")  # mallory's own account
        delays.append(tracker.delay(tracker.failed("192.0.2.1"), 1.0))  # alice's
    assert delays == [0, 1, 2, 3, 4, 5]
    assert other.delay(other.failed("192.0.2.1"), 1.0) == 6


async def test_server_checks_in_a_thread(tmp_path: Path) -> None:
    path = tmp_path / "sasl_passwd"
    sasl.update_password_file(path, "alice", sasl.hash_password("right", ln=4))
    server = sasl.SaslServer(sasl.PasswordFile(path), sasl.FailureTracker(), 0.0)
    assert await server.check("alice", "right")
    assert not await server.check("alice", "wrong")
    assert not await server.check("mallory", "right")
