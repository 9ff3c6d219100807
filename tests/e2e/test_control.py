"""One master per spool, and `mta status|stop|reload` (Postfix's postfix
status/stop/reload) through its locked pid file (mta/pidfile.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.helpers import Daemon, DaemonFactory, free_port, mta_env, run_mta, wait_for


def test_a_second_master_on_the_same_spool_stops_before_touching_it(
        daemon: Daemon, daemon_factory: DaemonFactory) -> None:
    """Two masters on one spool would both deliver the same messages: the
    second, listening elsewhere but sharing the queue, must refuse to start."""
    other = daemon_factory(name="other",
                           extra=f"queue_directory = {daemon.queue}\n")
    result = subprocess.run([sys.executable, "-m", "mta", "start", "-c", str(other.config)],
                            cwd=other.root, env=mta_env(), capture_output=True, timeout=60)
    assert result.returncode == 1
    assert b"mta: fatal: the Postern mail system is already running" in result.stderr
    with socket.socket() as probe:  # it never listened
        assert probe.connect_ex(("127.0.0.1", other.smtp_port)) != 0
    assert "fatal: the Postern mail system is already running" in other.log_text()
    assert daemon.process is not None and daemon.process.poll() is None  # the first runs on
    pid_file = daemon.queue / "pid" / "master.pid"
    assert pid_file.read_text() == f"{daemon.process.pid:>10}\n"  # Postfix's layout


def test_status_reload_and_stop(daemon: Daemon) -> None:
    assert daemon.process is not None
    status = run_mta("status", config=daemon.config)
    assert status.stderr.decode() == (
        f"mta: the Postern mail system is running: PID: {daemon.process.pid}\n")
    reload = run_mta("reload", config=daemon.config)
    assert reload.stderr.decode() == "mta: refreshing the Postern mail system\n"
    daemon.wait_log(r"master\[\d+\]: reload -- configuration")
    stop = run_mta("stop", "--wait", "30", config=daemon.config)
    assert stop.stderr.decode() == "mta: stopping the Postern mail system\n"
    # --wait returned once the lock was gone, i.e. as the process exits
    assert daemon.process.wait(timeout=5) == 0
    assert "terminating on signal 15" in daemon.log_text()
    daemon.stop()
    status = run_mta("status", config=daemon.config, check=False)
    assert (status.returncode, status.stderr.decode()) == (
        1, "mta: the Postern mail system is not running\n")
    stop = run_mta("stop", config=daemon.config, check=False)
    assert (stop.returncode, stop.stderr.decode()) == (
        1, "mta: fatal: the Postern mail system is not running\n")


def test_a_killed_master_leaves_no_lock_behind(daemon: Daemon) -> None:
    """kill -9 leaves the pid file with a dead number: status trusts the lock,
    not the number, and a new master starts at once."""
    daemon.kill()
    assert (daemon.queue / "pid" / "master.pid").exists()
    status = run_mta("status", config=daemon.config, check=False)
    assert status.returncode == 1
    assert run_mta("reload", config=daemon.config, check=False).returncode == 1
    daemon.smtp_port = free_port()  # the killed one's workers may hold the old port a moment
    daemon.config.write_text(daemon.config.read_text().replace(
        "smtp/inet = 127.0.0.1:", f"smtp/inet = 127.0.0.1:{daemon.smtp_port}\n#"))
    daemon.start()
    wait_for(lambda: run_mta("status", config=daemon.config, check=False).returncode == 0,
             message="the new master to hold the lock")
