"""The queue manager's public/qmgr socket: created at start and removed at
stop by the spool's disk threads, never on the event loop (binding a unix
socket creates a file; the loop never waits on the disk)."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from mta.config import from_text
from mta.mailboxes import Mailboxes
from mta.qmgr import QueueManager
from mta.routing import Router
from mta.spool import Spool
from tests.helpers import until


async def test_the_wakeup_socket_is_made_and_removed_off_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    path = str(spool.wakeup_path)
    calls: list[tuple[str, bool]] = []  # (call, made on the loop's thread)
    loop_thread = threading.current_thread()

    def note(name: str, target: object) -> None:
        if str(target) == path:
            calls.append((name, threading.current_thread() is loop_thread))

    unlink, chmod, bind = os.unlink, os.chmod, socket.socket.bind

    def watched_unlink(target: Any, *args: Any, **kwargs: Any) -> None:
        note("unlink", target)
        unlink(target, *args, **kwargs)

    def watched_chmod(target: Any, mode: int, *args: Any, **kwargs: Any) -> None:
        note("chmod", target)
        chmod(target, mode, *args, **kwargs)

    def watched_bind(sock: socket.socket, address: Any) -> None:
        note("bind", address)
        bind(sock, address)

    monkeypatch.setattr(os, "unlink", watched_unlink)
    monkeypatch.setattr(os, "chmod", watched_chmod)
    monkeypatch.setattr(socket.socket, "bind", watched_bind)

    config = from_text("myhostname = mx.test\nmydestination = mx.test\n")
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)), {})
    await qmgr.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o622
        flushed: list[bool] = []
        monkeypatch.setattr(qmgr, "wake",
                            lambda *, flush=False, revive=False: flushed.append(flush))
        assert spool.wake(b"F")  # mta queue flush reaches the daemon
        await until(lambda: flushed == [True])
    finally:
        await qmgr.stop(grace=0)
        spool.close()
    assert not os.path.exists(path)
    assert [name for name, _ in calls] == ["unlink", "bind", "chmod", "unlink"]
    assert not any(on_loop for _, on_loop in calls), calls
