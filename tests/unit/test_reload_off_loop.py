"""A reload (SIGHUP) builds the new configuration in a thread: reading
main.cf, the maps, the CA bundle and the keys took 50-270 ms, during which
the event loop used to serve no session. Only the switch-over runs on the
loop, and a configuration that cannot be built leaves the old one running."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mta import config as configuration
from mta import master
from mta.config import Config
from tests.helpers import IN_PROCESS_CF

CF = IN_PROCESS_CF + """\
receiver_processes = 0
queue_directory = {queue}
maillog_file = {maillog}
smtpd_recipient_limit = {limit}
"""


def write_cf(tmp_path: Path, limit: int, extra: str = "") -> Path:
    path = tmp_path / "main.cf"
    path.write_text(CF.format(queue=tmp_path / "queue", maillog=tmp_path / "maillog",
                              limit=limit) + extra)
    return path


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[master.Daemon]:
    config = configuration.load(str(write_cf(tmp_path, 100)))
    master.setup_maillog(config)
    daemon = master.Daemon(config)
    await daemon.start()
    yield daemon
    await daemon.shutdown()


def listener_config(daemon: master.Daemon) -> Config:
    assert daemon.receiver is not None
    return daemon.receiver.servers[0].ctx.config


@pytest.mark.asyncio
async def test_the_build_runs_in_a_thread_while_the_loop_goes_on(
        daemon: master.Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = master.build_parts

    def slow_build_parts(config: Config, warn: bool = True) -> master.Parts:
        threads.append(threading.current_thread())
        time.sleep(0.3)  # a slow map or disk: it must not hold the loop
        return real(config, warn)

    monkeypatch.setattr(master, "build_parts", slow_build_parts)
    write_cf(tmp_path, 7)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    await daemon.reload()
    ticking.cancel()
    assert threads and threading.main_thread() not in threads
    assert ticks >= 10  # the loop ran on through the 0.3 s builds
    assert listener_config(daemon).smtpd_recipient_limit == 7
    assert "reload -- configuration" in (tmp_path / "maillog").read_text()


@pytest.mark.asyncio
@pytest.mark.parametrize("extra", [
    "smtpd_relay_restrictions = permit_mynetworks\n",  # an open relay
    "mynetworks = 127.0.0.0/8, 203.0.113.5/8\n",  # host bits set: not read as 203/8
    "myhostname = mx.$mydomain\n",  # $mydomain's default comes from myhostname
])
async def test_an_unusable_configuration_leaves_the_running_one(
        daemon: master.Daemon, tmp_path: Path, extra: str) -> None:
    write_cf(tmp_path, 7, extra)
    await daemon.reload()
    assert listener_config(daemon).smtpd_recipient_limit == 100
    assert "warning: reload failed, keeping the running configuration: " \
        in (tmp_path / "maillog").read_text()


@pytest.mark.asyncio
async def test_reloads_one_after_the_other_end_with_the_last_file(
        daemon: master.Daemon, tmp_path: Path) -> None:
    first = daemon.reload()
    write_cf(tmp_path, 9)
    second = daemon.reload()
    await asyncio.gather(first, second)
    assert listener_config(daemon).smtpd_recipient_limit == 9
