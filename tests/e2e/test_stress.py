"""Stress with receiver workers: the master, which counts every worker's
sessions, decides that a listener is full and tells every worker, so idle
sessions in all of them get the stress timeout at once."""

from __future__ import annotations

import socket
import time

from tests.e2e.test_workers import worker_pids
from tests.helpers import DaemonFactory, wait_for


def test_the_master_puts_every_worker_under_stress(daemon_factory: DaemonFactory) -> None:
    # Not exempt, so a session waits for the master's count before its greeting.
    daemon = daemon_factory("receiver_processes = 2\nsmtpd_client_event_limit_exceptions =\n"
                            "smtpd_client_connection_limit = 3\n"
                            "smtpd_timeout = ${stress?{1}:{300}}s\n").start()
    wait_for(lambda: len(worker_pids(daemon)) == 2, message="two workers")
    idle = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=20)
        assert sock.makefile("rb").readline().startswith(b"220 ")
        idle.append(sock)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=20) as refused:
        assert refused.makefile("rb").readline() == \
            b"421 4.7.0 mx.example.test Error: too many connections\r\n"
    for sock in idle:
        with sock:
            assert sock.makefile("rb").readline() == \
                b"421 4.4.2 mx.example.test Error: timeout exceeded\r\n"
    assert time.monotonic() - started < 10  # not smtpd_timeout's 300s
    daemon.wait_log(r'postern/master\[\d+\]: warning: service "smtp" has reached its '
                    r'connection limit "3"')
    daemon.wait_log(r'postern/master\[\d+\]: service "smtp": stress is over: [0-2] of 3 '
                    r"connections$")
    # Every session then timed out after its own second, whichever worker had it.
    assert len(daemon.wait_log(r"timeout after CONNECT from", 3)) == 3
    assert 'mta_smtpd_stress{listener="smtp"} 0.0' in daemon.metrics()
