"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.secure_env import SecureSite, SecureSiteFactory, secure_site
from tests.helpers import MAILBOXES, Daemon, DaemonFactory


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Make daemons in tmp_path (extra main.cf text as argument); all are
    stopped at the end of the test."""
    made: list[Daemon] = []

    def make(extra: str = "", name: str = "mta", mailboxes: str = MAILBOXES) -> Daemon:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        daemon = Daemon(root, extra, mailboxes)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.process is not None:
            daemon.stop()


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> Daemon:
    """A running daemon with the test main.cf."""
    return daemon_factory().start()


@pytest.fixture
def secure_site_factory(daemon_factory: DaemonFactory) -> SecureSiteFactory:
    """Make (not start) sites with a public MX, submission and submissions
    listeners, a test CA, users and pinned client certificates
    (tests/e2e/secure_env.py); arguments: extra main.cf text, server_kind."""

    def make(extra: str = "", server_kind: str = "ecdsa") -> SecureSite:
        return secure_site(daemon_factory, extra, server_kind)

    return make


@pytest.fixture
def site(secure_site_factory: SecureSiteFactory) -> SecureSite:
    """A running secure site with the default settings."""
    return secure_site_factory().start()


@pytest.fixture
def maillog_lines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The maillog lines written in the test's own process ("program: text"),
    captured instead of written."""
    from mta import log

    lines: list[str] = []
    monkeypatch.setattr(log, "emit", lambda program, text, level=0: lines.append(
        f"{program}: {text}"))
    return lines
