"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    """Make daemons in tmp_path (extra main.cf text as argument); all are
    stopped at the end of the test."""
    made: list[Daemon] = []

    def make(extra: str = "", name: str = "mta", **kwargs: object) -> Daemon:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        daemon = Daemon(root, extra, **kwargs)  # type: ignore[arg-type]
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.process is not None:
            daemon.stop()


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    """A running daemon with the test main.cf."""
    return daemon_factory().start()
