"""The two MTAs under test and their next hop: a private Postfix, Postern, and smtp-sink.

Both MTAs get the same job: accept mail for anyone from 127.0.0.0/8 and
relay it to ``relayhost = [127.0.0.1]:SINKPORT`` (or, in maildir mode,
deliver it into one local Maildir), with their spools side by side under
one working directory (one filesystem) and durable writes (Postfix fsyncs
its queue files by default; Postern always does). Apart from what that job
needs, Postfix keeps its defaults: default_process_limit 100, SMTP connection
caching on demand, destination concurrency 20, TLS session tickets.
"""

from __future__ import annotations

import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.interop.postfix_layout import private_instance
from tests.runenv import free_port, mta_env

REPO = Path(__file__).resolve().parent.parent
RELAY_RECIPIENT = "sink@relay.bench.test"
LOCAL_RECIPIENT = "sink@local.bench.test"
SENDER = "loadgen@bench.test"
# 25 MB messages must fit; both MTAs default to 10240000.
MESSAGE_SIZE_LIMIT = 52428800


def program(name: str) -> str | None:
    path = shutil.which(name)
    if path is None and os.path.exists(f"/usr/sbin/{name}"):
        path = f"/usr/sbin/{name}"
    return path


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def count_files(*directories: Path) -> int:
    """Files (not dot files) under the directories, recursively."""
    total = 0
    for directory in directories:
        for _, _, files in os.walk(directory):
            total += sum(1 for name in files if not name.startswith("."))
    return total


class Sink:
    """smtp-sink on a loopback port, counting the messages it received (-c);
    with dump, also keeping each one in a file there (-d, for bench/crash.py)."""

    def __init__(self, root: Path, dump: Path | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.output = root / "smtp-sink.out"
        self.dump = dump
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sink:
        sink = program("smtp-sink")
        if sink is None:
            raise RuntimeError("smtp-sink is not installed (Debian package postfix)")
        self.root.mkdir(parents=True, exist_ok=True)
        self._out = open(self.output, "wb")  # noqa: SIM115 - lives with the process
        # -c: running counters on stdout; -m: up to 1000 simultaneous sessions;
        # 1024: the listen backlog. It throws the mail away, as fast as it can,
        # unless dump names a directory: then each transaction is a file there
        # (-d; the template's strftime part plus smtp-sink's random suffix).
        dump: list[str] = []
        if self.dump is not None:
            self.dump.mkdir(parents=True, exist_ok=True)
            shutil.chown(self.dump, "postfix")  # smtp-sink writes as -u postfix
            dump = ["-d", f"{self.dump}/%H%M%S."]
        self.process = subprocess.Popen(
            [sink, "-c", "-m", "1000", "-u", "postfix", *dump, f"127.0.0.1:{self.port}",
             "1024"],
            stdout=self._out, stderr=subprocess.STDOUT, preexec_fn=_raise_fd_limit)
        _wait(self._listening, 10, "smtp-sink to listen")
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.recv(100)
            return True
        except OSError:
            return False

    def count(self) -> int:
        """Messages received so far (the last mesg= of its counter line)."""
        try:
            with open(self.output, "rb") as stream:
                stream.seek(max(0, os.path.getsize(self.output) - 200))
                tail = stream.read()
        except FileNotFoundError:
            return 0
        found = re.findall(rb"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
            self._out.close()


class Mta:
    """What the harness needs from either MTA."""

    name = "mta"
    root: Path
    port: int
    mode: str

    def start(self) -> Mta:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def queued(self) -> int:
        """Messages still in the queue (any state)."""
        raise NotImplementedError

    def delivered_local(self) -> int:
        raise NotImplementedError

    @property
    def recipient(self) -> str:
        return RELAY_RECIPIENT if self.mode == "relay" else LOCAL_RECIPIENT


class PostfixBench(Mta):
    """A private Postfix instance, laid out as the interop tests lay out theirs
    (tests/interop/postfix_layout.py)."""

    name = "postfix"

    def __init__(self, root: Path, *, sink_port: int, mode: str, cert: Path, key: Path,
                 smtpd_maxproc: str = "-") -> None:
        self.root = root
        self.port = free_port()
        self.mode = mode
        self.conf = root / "conf"
        self.queue = root / "queue"
        self.vmail = root / "vmail"
        self.maillog = root / "postfix.log"
        account = pwd.getpwnam("postfix")
        root.mkdir(parents=True)
        head = private_instance(root, "postfix.bench.test")
        (self.conf / "main.cf").write_text(head + f"""\
message_size_limit = {MESSAGE_SIZE_LIMIT}
# The next hop: smtp-sink on loopback, no DNS.
relayhost = [127.0.0.1]:{sink_port}
smtp_host_lookup = native
disable_dns_lookups = yes
smtp_dns_support_level = disabled
# maildir mode: one virtual Maildir, fsynced by virtual(8).
virtual_mailbox_domains = local.bench.test
virtual_mailbox_base = {self.vmail}
virtual_mailbox_maps = inline:{{ {LOCAL_RECIPIENT}=sink/ }}
virtual_uid_maps = static:{account.pw_uid}
virtual_gid_maps = static:{account.pw_gid}
# STARTTLS offered, as on any public MX.
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
""")
        master = Path("/etc/postfix/master.cf").read_text()
        master = re.sub(r"(?m)^smtp\s+inet\s.*$",
                        f"{self.port} inet n - n - {smtpd_maxproc} smtpd", master)
        # Debian chroots most services into the queue directory, which a private
        # instance has not populated; upstream's default is no chroot.
        master = re.sub(r"(?m)^(\S+\s+(?:unix|inet|fifo|pass|unix-dgram)\s+\S+\s+\S+\s+)y(\s)",
                        r"\1n\2", master)
        (self.conf / "master.cf").write_text(master)
        self.started = False

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["postfix", "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=120, preexec_fn=_raise_fd_limit)

    def start(self) -> PostfixBench:
        result = self.postfix("start")
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stdout}{result.stderr}")
        self.started = True
        _wait(lambda: "daemon started" in self.log_text(), 30, "postfix to start")
        _wait(lambda: (self.queue / "pid" / "master.pid").exists(), 10, "master.pid")
        return self

    def log_text(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    @property
    def pid(self) -> int:
        return int((self.queue / "pid" / "master.pid").read_text().split()[0])

    def queued(self) -> int:
        return count_files(*(self.queue / name for name in
                             ("maildrop", "incoming", "active", "deferred", "hold")))

    def delivered_local(self) -> int:
        new = self.vmail / "sink" / "new"
        return sum(1 for _ in os.scandir(new)) if new.exists() else 0

    def stop(self) -> None:
        if not self.started:
            return
        pid = self.pid
        self.postfix("stop")
        self.started = False
        _wait(lambda: not os.path.exists(f"/proc/{pid}"), 30, "postfix master to exit")


class PosternBench(Mta):
    """``mta start`` of this checkout with a main.cf the harness writes."""

    name = "postern"

    def __init__(self, root: Path, *, sink_port: int, mode: str, cert: Path | None,
                 key: Path | None, connection_limit: int = 1000, extra: str = "",
                 python_prelude: str = "", checkout: Path | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.mode = mode
        self.queue = root / "queue"
        self.mail = root / "mail"
        self.maillog = root / "maillog"
        self.config = root / "main.cf"
        root.mkdir(parents=True)
        (root / "mailboxes").write_text("sink sink/\n")
        tls = "" if cert is None else f"""\
# STARTTLS offered (needs inbound TLS, issue 4).
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
"""
        self.config.write_text(f"""\
myhostname = postern.bench.test
mydomain = bench.test
myorigin = bench.test
mydestination = local.bench.test
mynetworks = 127.0.0.0/8
queue_directory = {self.queue}
mail_spool_directory = {self.mail}/
local_recipient_maps = texthash:{root}/mailboxes
maillog_file = {self.maillog}
maillog_stderr = no
metrics_listen =
smtp/inet = 127.0.0.1:{self.port}
message_size_limit = {MESSAGE_SIZE_LIMIT}
smtpd_client_connection_limit = {connection_limit}
# The next hop: smtp-sink on loopback, no DNS (needs outbound delivery, issue 3).
relayhost = [127.0.0.1]:{sink_port}
smtp_host_lookup = native
{tls}{extra}""")
        self.process: subprocess.Popen[bytes] | None = None
        # Python run first in every process of the daemon, the master and its
        # receiver workers alike (bench/experiments.py uses it to measure what
        # a change would buy without changing mta/): a sitecustomize module on
        # the daemon's PYTHONPATH, since the workers are fresh interpreters.
        self.python_prelude = python_prelude
        # Another checkout's mta (bench/experiments.py's postern@REV variants).
        self.checkout = checkout

    @staticmethod
    def env() -> dict[str, str]:
        return mta_env()

    def _environment(self) -> dict[str, str]:
        env = self.env()
        if self.checkout is not None:
            env["PYTHONPATH"] = str(self.checkout)
        if self.python_prelude:
            prelude = self.root / "prelude"
            prelude.mkdir(exist_ok=True)
            (prelude / "sitecustomize.py").write_text(self.python_prelude + "\n")
            env["PYTHONPATH"] = f"{prelude}{os.pathsep}{env['PYTHONPATH']}"
        return env

    def start(self) -> PosternBench:
        self._stderr = open(self.root / "stderr.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mta", "start", "-c", str(self.config)],
            cwd=self.root, env=self._environment(), stdout=self._stderr, stderr=self._stderr,
            preexec_fn=_raise_fd_limit)
        try:
            _wait(self._ready, 30, "postern to start")
        except RuntimeError:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None
            self._stderr.close()
            raise
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"mta start exited {self.process.returncode}: "
                               + (self.root / "stderr.log").read_text())
        # This process's own line: after a restart the log holds earlier ones.
        assert self.process is not None
        return self.maillog.exists() and \
            f"[{self.process.pid}]: daemon started" in self.maillog.read_text()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def queued(self) -> int:
        return count_files(*(self.queue / name for name in
                             ("incoming", "active", "deferred", "hold")))

    def unsettled(self) -> int:
        """Messages not yet through the queue manager's first attempt."""
        return count_files(self.queue / "incoming", self.queue / "active")

    def delivered_local(self) -> int:
        new = self.mail / "sink" / "new"
        return sum(1 for _ in os.scandir(new)) if new.exists() else 0

    def log_text(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def kill(self) -> None:
        """kill -9: no drain, no cleanup, as in a crash or a power cut of the process."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None
        self._stderr.close()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        self._stderr.close()


def postern_knows(*names: str) -> dict[str, bool]:
    """Which main.cf parameters this checkout's Postern knows (mta config -d)."""
    result = subprocess.run([sys.executable, "-m", "mta", "config", "-d", *names],
                            capture_output=True, text=True, env=PosternBench.env(),
                            cwd=REPO, timeout=60)
    unknown = set(re.findall(r"warning: (\S+): unknown parameter", result.stderr))
    return {name: name not in unknown for name in names}
