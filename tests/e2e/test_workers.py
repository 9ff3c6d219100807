"""receiver_processes: smtpd in worker processes beside one master."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
from pathlib import Path

import pytest

from tests.e2e.secure_env import SecureSiteFactory
from tests.helpers import Daemon, DaemonFactory, RawSmtp, must_search, wait_for


def worker_pids(daemon: Daemon) -> list[int]:
    assert daemon.process is not None
    out = subprocess.run(["pgrep", "-P", str(daemon.process.pid), "-f", "mta.workers"],
                         capture_output=True, text=True).stdout
    return sorted(int(pid) for pid in out.split())


def send(daemon: Daemon, count: int, user: str = "alice") -> None:
    for n in range(count):
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
            assert client.sendmail("bob@example.org", [f"{user}@example.test"],
                                   f"Subject: {n}\r\n\r\nmessage {n}\r\n".encode()) == {}


def test_workers_receive_and_the_master_delivers(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("receiver_processes = 2\n").start()
    pids = wait_for(lambda: (p if len(p := worker_pids(daemon)) == 2 else []),
                    message="two workers")
    send(daemon, 20)
    daemon.wait_maildir("alice", 20)
    log = daemon.log_text()
    smtpd_pids = {int(p) for p in re.findall(r"postern/smtpd\[(\d+)\]", log)}
    assert smtpd_pids and smtpd_pids <= set(pids)
    qmgr_pids = {int(p) for p in re.findall(r"postern/qmgr\[(\d+)\]", log)}
    assert daemon.process is not None
    assert qmgr_pids == {daemon.process.pid}

    # A scrape asks every worker for its counters now; the master sums them.
    assert 'mta_smtpd_messages_received_total{listener="smtp"} 20.0' in daemon.metrics()
    assert daemon.stop() == 0
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)


def test_a_dead_worker_is_restarted_and_counters_do_not_go_back(
        daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("receiver_processes = 1\n").start()
    first = wait_for(lambda: worker_pids(daemon), message="a worker")[0]
    send(daemon, 3)
    daemon.wait_maildir("alice", 3)
    wait_for(lambda: 'mta_smtpd_messages_received_total{listener="smtp"} 3.0'
             in daemon.metrics(), message="3 counted")
    os.kill(first, signal.SIGKILL)
    daemon.wait_log(rf"warning: process postern/smtpd pid {first} killed by signal 9")
    wait_for(lambda: (p := worker_pids(daemon)) and p[0] != first, message="a new worker")
    send(daemon, 2)
    daemon.wait_maildir("alice", 5)
    wait_for(lambda: 'mta_smtpd_messages_received_total{listener="smtp"} 5.0'
             in daemon.metrics(), message="5 counted")


def test_a_restarted_worker_runs_the_masters_configuration(daemon_factory: DaemonFactory) -> None:
    """An edit of main.cf that was not reloaded (here one that would not even
    load) must not reach a worker that restarts meanwhile."""
    daemon = daemon_factory("receiver_processes = 1\n").start()
    first = wait_for(lambda: worker_pids(daemon), message="a worker")[0]
    daemon.config.write_text(daemon.config.read_text() + "smtpd_timeout = soon\n")
    os.kill(first, signal.SIGKILL)
    daemon.wait_log(rf"warning: process postern/smtpd pid {first} killed by signal 9")
    wait_for(lambda: (p := worker_pids(daemon)) and p[0] != first, message="a new worker")
    send(daemon, 1)  # only the new worker can take it
    daemon.wait_maildir("alice", 1)
    assert "exit status" not in daemon.log_text()


def test_workers_reload_on_sighup(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("receiver_processes = 2\n").start()
    wait_for(lambda: len(worker_pids(daemon)) == 2, message="two workers")
    (daemon.root / "mailboxes").write_text((daemon.root / "mailboxes").read_text()
                                           + "carol carol/\n")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"reload -- configuration")
    # The master sends each worker the text it loaded, and logs its reload
    # line only once every worker has said it switched: from then on,
    # whichever worker takes a session knows carol, without waiting.
    for _ in range(6):
        send(daemon, 1, "carol")
    daemon.wait_maildir("carol", 6)


def test_the_master_going_away_takes_the_workers_with_it(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("receiver_processes = 2\n").start()
    pids = wait_for(lambda: (p if len(p := worker_pids(daemon)) == 2 else []),
                    message="two workers")
    daemon.kill()
    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        except FileNotFoundError:
            return True

    wait_for(lambda: all(gone(pid) for pid in pids), message="workers gone")


def test_auth_failures_slow_a_client_down_across_workers(
        secure_site_factory: SecureSiteFactory) -> None:
    """Each AUTH failure is told to the other workers, so a guessing client
    cannot escape the slow-down by landing on another process."""
    import time

    from tests.e2e.test_auth_and_client_certs import ALICE, plain

    site = secure_site_factory("receiver_processes = 2\nsmtpd_sasl_failure_delay = 0.1s\n")
    site.start()
    wait_for(lambda: len(worker_pids(site.daemon)) == 2, message="two workers")
    pattern = re.compile(r"postern/smtpd\[(\d+)\]: warning: localhost\S* SASL PLAIN "
                         r"authentication failed")
    handled: list[tuple[int, float]] = []  # (worker pid, time the 535 took)
    stopped: list[int] = []
    try:
        while len({pid for pid, _ in handled}) < 2:
            assert len(handled) < 20, f"every session went to one worker: {handled}"
            if len(handled) == 3:
                # Which worker accepts is the kernel's choice, and one may win
                # every time on a busy host: stop the one that had them all, so
                # that the other takes the next session.
                stopped.append(handled[0][0])
                os.kill(stopped[0], signal.SIGSTOP)
            session = site.starttls(site.submission_port)
            start = time.monotonic()
            assert session.docmd("AUTH", f"PLAIN {plain(ALICE, 'wrong')}")[0] == 535
            taken = time.monotonic() - start
            session.quit()
            pids = wait_for(lambda: (p if len(p := pattern.findall(site.daemon.log_text()))
                                     > len(handled) else []), message="the failure logged")
            handled.append((int(pids[-1]), taken))
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    # The first failure the second worker saw was the nth overall, and it was
    # delayed as the nth: it knew of the others' failures.
    n = len(handled)
    assert handled[-1][1] >= min(n - 1, 10) * 0.1 - 0.05, handled


def open_sessions(daemon: Daemon, count: int) -> list[RawSmtp]:
    """count greeted sessions that answer NOOP (all closed if one fails)."""
    sessions: list[RawSmtp] = []
    try:
        for _ in range(count):
            smtp = RawSmtp(daemon.smtp_port)
            sessions.append(smtp)
            assert smtp.reply().startswith("220 ")
            assert smtp.command("NOOP") == "250 2.0.0 Ok"
    except BaseException:
        for smtp in sessions:
            smtp.close()
        raise
    return sessions


def test_the_per_client_connection_limit_spans_the_workers(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("receiver_processes = 2\n"
                            "smtpd_client_connection_count_limit = 4\n"
                            "smtpd_client_event_limit_exceptions =\n").start()
    wait_for(lambda: len(worker_pids(daemon)) == 2, message="two workers")
    connect = re.compile(r"postern/smtpd\[(\d+)\]: connect from")
    sessions = open_sessions(daemon, 2)
    try:
        before = [int(p) for p in connect.findall(daemon.log_text())]
        busy = before[0]
        # Freeze a worker that holds one or both: from now on only the other
        # one can accept, and it must count what the frozen one holds.
        os.kill(busy, signal.SIGSTOP)
        try:
            replies = []
            for _ in range(4):
                smtp = RawSmtp(daemon.smtp_port)
                sessions.append(smtp)
                replies.append(smtp.reply()[:3])
            assert replies == ["220", "220", "421", "421"], replies
            after = [int(p) for p in connect.findall(daemon.log_text())][len(before):]
            assert len(after) == 4 and busy not in after
        finally:
            os.kill(busy, signal.SIGCONT)
    finally:
        for smtp in sessions:
            smtp.close()
    # Closed connections are forgotten everywhere: new ones are welcome again.
    daemon.wait_log(r"disconnect from", count=6)
    with RawSmtp(daemon.smtp_port) as again:
        assert again.reply().startswith("220 ")


def test_the_listener_total_spans_the_workers_for_a_client_with_a_limit(
        daemon_factory: DaemonFactory) -> None:
    """A client that is not exempt from the per-client limit waits for the
    master's count, so the total refuses it in place of the greeting."""
    daemon = daemon_factory("receiver_processes = 2\n"
                            "smtpd_client_connection_limit = 3\n"
                            "smtpd_client_event_limit_exceptions =\n").start()
    wait_for(lambda: len(worker_pids(daemon)) == 2, message="two workers")
    sessions = open_sessions(daemon, 3)
    try:
        with RawSmtp(daemon.smtp_port) as fourth:
            assert fourth.reply() == ("421 4.7.0 mx.example.test Error: too many connections")
        daemon.wait_log(r"warning: Connection limit exceeded: 4 for service smtp")
    finally:
        for smtp in sessions:
            smtp.close()
    daemon.wait_log(r"disconnect from", count=4)
    open_sessions(daemon, 3)[0].close()  # every slot was given back


def test_an_exempt_client_over_the_total_is_greeted_then_refused(
        daemon_factory: DaemonFactory) -> None:
    """A client in smtpd_client_event_limit_exceptions ($mynetworks) is greeted
    without waiting for the master, which still counts it: over the
    listener's total it gets the same 421 right after the greeting. One
    worker: its requests reach the master in order on one channel, so the
    fourth session is the one counted fourth (with two, a session's request
    could overtake an earlier one's from the other worker)."""
    daemon = daemon_factory("receiver_processes = 1\n"
                            "smtpd_client_connection_limit = 3\n").start()
    wait_for(lambda: worker_pids(daemon), message="a worker")
    sessions = open_sessions(daemon, 3)
    try:
        with RawSmtp(daemon.smtp_port) as fourth:
            assert fourth.reply().startswith("220 ")
            assert fourth.reply() == "421 4.7.0 mx.example.test Error: too many connections"
            wait_for(fourth.closed, message="the refused session closed")
        daemon.wait_log(r"warning: Connection limit exceeded: 4 for service smtp")
        # The three admitted sessions are untouched.
        assert [smtp.command("NOOP") for smtp in sessions] == ["250 2.0.0 Ok"] * 3
    finally:
        for smtp in sessions:
            smtp.close()
    daemon.wait_log(r"disconnect from", count=4)
    # The master counted three and was given three back; the refused one was
    # never counted, so three fit again.
    again = open_sessions(daemon, 3)
    with RawSmtp(daemon.smtp_port) as fourth:
        assert fourth.reply().startswith("220 ")
        assert fourth.reply().startswith("421 ")
    for smtp in again:
        smtp.close()


def test_an_exempt_client_is_greeted_while_the_master_is_stuck(
        daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("receiver_processes = 1\n").start()
    wait_for(lambda: worker_pids(daemon), message="a worker")
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        with RawSmtp(daemon.smtp_port, timeout=2) as smtp:  # not the 5 s anvil timeout
            assert smtp.reply().startswith("220 ")
            assert smtp.command("NOOP") == "250 2.0.0 Ok"
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    send(daemon, 1)
    daemon.wait_maildir("alice", 1)
    assert "problem talking to the master" not in daemon.log_text()


def test_a_worker_serves_clients_when_the_master_does_not_answer(
        daemon_factory: DaemonFactory) -> None:
    """Postfix's smtpd goes on when anvil does not answer; so do our workers
    when the master that counts connections is stuck (here: stopped)."""
    daemon = daemon_factory("receiver_processes = 1\n"
                            "smtpd_client_event_limit_exceptions =\n").start()
    wait_for(lambda: worker_pids(daemon), message="a worker")
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        with RawSmtp(daemon.smtp_port, timeout=15) as smtp:
            assert smtp.reply().startswith("220 ")
            assert smtp.command("NOOP") == "250 2.0.0 Ok"
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    daemon.wait_log(r"warning: problem talking to the master: no connection count after "
                    r"5s; admitting 127\.0\.0\.1 uncounted")
    send(daemon, 1)
    daemon.wait_maildir("alice", 1)


def test_a_dead_workers_connections_are_forgotten(daemon_factory: DaemonFactory) -> None:
    """The master drops the connection counts a killed worker held before its
    replacement asks: the client is not locked out by sessions that died."""
    daemon = daemon_factory("receiver_processes = 1\n"
                            "smtpd_client_connection_count_limit = 2\n"
                            "smtpd_client_event_limit_exceptions =\n").start()
    first = wait_for(lambda: worker_pids(daemon), message="a worker")[0]
    held = [RawSmtp(daemon.smtp_port) for _ in range(2)]
    try:
        for smtp in held:
            assert smtp.reply().startswith("220 ")
        with RawSmtp(daemon.smtp_port) as third:
            assert third.reply().startswith("421 ")  # the limit is reached
        os.kill(first, signal.SIGKILL)
        daemon.wait_log(rf"warning: process postern/smtpd pid {first} killed by signal 9")
        wait_for(lambda: (p := worker_pids(daemon)) and p[0] != first, message="a new worker")
        again = [RawSmtp(daemon.smtp_port) for _ in range(2)]
        try:
            assert [smtp.reply()[:3] for smtp in again] == ["220", "220"]
        finally:
            for smtp in again:
                smtp.close()
    finally:
        for smtp in held:
            smtp.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_configuration_warning_is_logged_once_per_load(daemon_factory: DaemonFactory,
                                                         workers: int) -> None:
    """The master logs what the listeners' restrictions and TLS warn about;
    the receivers (its own, or each worker) build theirs silently."""
    daemon = daemon_factory(f"receiver_processes = {workers}\n"
                            "smtpd_sender_restrictions = reject_sender_login_mismatch\n"
                            "smtpd_sasl_auth_enable = no\n"
                            "submission/inet = 127.0.0.1:0\n"
                            "submission/inet/smtpd_sender_restrictions = "
                            "reject_unauthenticated_sender_login_mismatch\n").start()
    wait_for(lambda: len(worker_pids(daemon)) == workers, message=f"{workers} workers")
    ignored = r"warning: .*restriction '(\w+)' ignored: smtpd_sasl_auth_enable = no"
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"reload -- configuration")
    lines = [must_search(ignored, line)[1] for line in daemon.log_text().splitlines()
             if re.search(ignored, line)]
    assert sorted(lines) == ["reject_sender_login_mismatch"] * 2 + [
        "reject_unauthenticated_sender_login_mismatch"] * 2, lines


def test_a_sighup_while_workers_start_does_not_kill_them(daemon_factory: DaemonFactory) -> None:
    """A maillog rotation (SIGHUP) right after the start, while the workers
    are still starting up, must not end them (the default action of SIGHUP
    in a process that has no handler for it yet)."""
    daemon = daemon_factory("receiver_processes = 2\n").start()
    assert daemon.process is not None
    for count in range(1, 4):  # one at a time: pending signals of a kind coalesce
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_log(r"reload -- configuration", count)
    wait_for(lambda: len(worker_pids(daemon)) == 2, message="two workers")
    send(daemon, 2)
    daemon.wait_maildir("alice", 2)
    assert "killed by signal" not in daemon.log_text()
