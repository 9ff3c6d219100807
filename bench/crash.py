"""Crash harness: kill -9 Postern at random moments under load, restart it, and
check that nothing acknowledged was lost.

    python3 bench/crash.py                  # 20 kills (the stress command)
    python3 bench/crash.py --kills 50 --seed 7 --sessions 20

Postern delivers to one local Maildir, or with --relay relays everything
to smtp-sink, which keeps each message it accepts in a file (-d); either
way every copy can be read back and checked. Clients send messages that carry
a token (``X-Crash-Token: N``) and a closing line naming it, and remember
every token that got a 250. The daemon is killed with SIGKILL at a random
moment, restarted at once on the same spool, and the clients reconnect.
After the last kill the load stops and the queue drains. Then:

- every token that got a 250 must be in the Maildir (at least once);
- duplicates (a token delivered twice) are counted and reported, not
  failed: at-least-once is the promise (RFC 5321 §6.1 prefers duplicates to
  loss). Into a Maildir there should be none: a copy made before a kill is
  found by its fixed name when the message is tried again (mta/local.py).
  Relayed, a kill between the next hop's 250 and the queue file's removal
  sends the message again, as Postfix would;
- every delivered file must be whole (its closing line present);
- nothing may be left in the spool but corrupt/: no temporary (dot) file,
  no queue file in incoming/, active/, deferred/ or hold/;
- corrupt/ should be empty (a committed file is never torn), and any
  Python traceback on the daemon's stderr is reported.
Exit status 0 when the checks pass, 1 otherwise; the report is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.loadgen import SmtpClient, SmtpError  # noqa: E402
from bench.mtas import LOCAL_RECIPIENT, RELAY_RECIPIENT, SENDER, PosternBench, Sink  # noqa: E402

_TOKEN = re.compile(rb"^X-Crash-Token: (\d+)$", re.MULTILINE)
_CLIENT_ERRORS = (OSError, SmtpError, TimeoutError, asyncio.IncompleteReadError,
                  ssl.SSLError, ValueError)


def crash_message(token: int, size: int, recipient: str = LOCAL_RECIPIENT) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    body = line * max(1, size // len(line))
    return (f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: crash {token}\r\n"
            f"X-Crash-Token: {token}\r\n\r\n").encode() + body + \
        f"end of message {token}\r\n".encode()


@dataclass
class CrashReport:
    kills: int = 0
    seed: int = 0
    sent_ok: int = 0  # tokens that got a 250
    uncertain: int = 0  # tokens whose transaction broke off (no 250 seen)
    delivered_files: int = 0
    delivered_tokens: int = 0
    missing: list[int] = field(default_factory=list)  # got a 250, never delivered
    duplicates: int = 0  # extra copies of delivered tokens
    torn_deliveries: list[str] = field(default_factory=list)
    # Relayed: transfers to the sink cut off by a kill (no final line): the
    # sink never acknowledged them, so they are not deliveries.
    aborted_transfers: int = 0
    uncertain_delivered: int = 0
    spool_leftovers: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    maildir_tmp_leftovers: int = 0
    tracebacks: int = 0
    restart_failures: int = 0  # restarts that exited at once (retried after 0.5 s)
    drained: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.missing and not self.torn_deliveries and not self.spool_leftovers
                and not self.corrupt and self.drained and self.sent_ok > 0)

    def as_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["missing"] = self.missing[:20]
        data["missing_count"] = len(self.missing)
        data["ok"] = self.ok
        return data


class _Load:
    """Clients that keep sending through kills and restarts."""

    def __init__(self, port: int, size: int, recipient: str = LOCAL_RECIPIENT) -> None:
        self.port = port
        self.size = size
        self.recipient = recipient
        self.next_token = 0
        self.confirmed: set[int] = set()
        self.uncertain: set[int] = set()
        self.stop = asyncio.Event()

    async def session_loop(self) -> None:
        while not self.stop.is_set():
            client: SmtpClient | None = None
            try:
                client = await asyncio.wait_for(SmtpClient.connect("127.0.0.1", self.port), 5)
                await asyncio.wait_for(client.greet(), 5)
                while not self.stop.is_set():
                    self.next_token += 1
                    token = self.next_token
                    try:
                        await asyncio.wait_for(client.send(
                            SENDER, self.recipient,
                            crash_message(token, self.size, self.recipient)), 10)
                    except BaseException:
                        self.uncertain.add(token)
                        raise
                    self.confirmed.add(token)
            except _CLIENT_ERRORS:
                await asyncio.sleep(0.02)  # the daemon is down or restarting
            finally:
                if client is not None:
                    client.writer.close()


async def _restart(daemon: PosternBench, report: CrashReport) -> None:
    """Start the daemon again at once; if it exits, retry like a supervisor would."""
    for _ in range(20):
        try:
            await asyncio.to_thread(daemon.start)
            return
        except RuntimeError:
            report.restart_failures += 1
            await asyncio.sleep(0.5)
    raise RuntimeError("the daemon does not start again")


async def run_crashes(root: Path, *, kills: int, sessions: int, seed: int,
                      min_interval: float = 0.1, max_interval: float = 1.5,
                      size: int = 2048, drain_timeout: float = 120.0,
                      receiver_processes: int | None = None,
                      relay: bool = False) -> CrashReport:
    """The whole experiment in root (a fresh directory); returns the report."""
    rng = random.Random(seed)
    report = CrashReport(seed=seed)
    began = time.monotonic()
    # Relayed, the next hop is smtp-sink keeping every message in sink/;
    # otherwise port 9 (discard) as relayhost, never used. With receiver
    # processes, only the master is killed: its workers must notice and
    # exit, and the restarted master must get its sockets back.
    sink = None
    if relay:
        root.chmod(0o755)  # smtp-sink runs as postfix and must reach its dump directory
        sink = Sink(root / "sink", dump=root / "sink" / "dump").start()
    daemon = PosternBench(root / "postern", sink_port=sink.port if sink else 9,
                          mode="relay" if relay else "maildir", cert=None, key=None,
                          extra="" if receiver_processes is None
                          else f"receiver_processes = {receiver_processes}\n")
    await asyncio.to_thread(daemon.start)
    load = _Load(daemon.port, size, RELAY_RECIPIENT if relay else LOCAL_RECIPIENT)
    tasks = [asyncio.create_task(load.session_loop()) for _ in range(sessions)]
    try:
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(min_interval, max_interval))
            await asyncio.to_thread(daemon.kill)
            report.kills += 1
            await _restart(daemon, report)
        await asyncio.sleep(rng.uniform(min_interval, max_interval))
    finally:
        load.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    delivered: dict[int, int] = {}

    def copies() -> list[str]:
        if sink is not None:
            assert sink.dump is not None
            return [entry.path for entry in os.scandir(sink.dump)]
        return [entry.path for sub in ("new", "cur")
                if (daemon.mail / "sink" / sub).exists()
                for entry in os.scandir(daemon.mail / "sink" / sub)]

    def scan() -> None:
        delivered.clear()
        report.torn_deliveries.clear()
        report.aborted_transfers = 0
        for path in copies():
            # smtp-sink keeps the CRLF of the wire; Maildirs hold LF.
            data = Path(path).read_bytes().replace(b"\r\n", b"\n")
            name = os.path.basename(path)
            match = _TOKEN.search(data)
            if match is None:
                if sink is not None:  # cut off before the token's header line
                    report.aborted_transfers += 1
                    continue
                report.torn_deliveries.append(name)
                continue
            token = int(match.group(1))
            if f"end of message {token}\n".encode() not in data:
                if sink is not None:
                    report.aborted_transfers += 1
                    continue
                report.torn_deliveries.append(name)
            delivered[token] = delivered.get(token, 0) + 1

    def drained() -> bool:
        if daemon.queued():
            return False
        scan()
        return load.confirmed <= delivered.keys()

    deadline = time.monotonic() + drain_timeout
    while not await asyncio.to_thread(drained):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    else:
        report.drained = True
    await asyncio.to_thread(daemon.stop)
    if sink is not None:
        await asyncio.to_thread(sink.stop)
    scan()
    report.sent_ok = len(load.confirmed)
    report.uncertain = len(load.uncertain)
    report.delivered_files = sum(delivered.values())
    report.delivered_tokens = len(delivered)
    report.missing = sorted(load.confirmed - delivered.keys())
    report.duplicates = sum(count - 1 for count in delivered.values())
    report.uncertain_delivered = len(load.uncertain & delivered.keys())
    for queue in ("incoming", "active", "deferred", "hold"):
        folder = daemon.queue / queue
        if folder.exists():
            report.spool_leftovers += [f"{queue}/{name}" for name in os.listdir(folder)]
    corrupt = daemon.queue / "corrupt"
    report.corrupt = sorted(os.listdir(corrupt)) if corrupt.exists() else []
    tmp = daemon.mail / "sink" / "tmp"
    report.maildir_tmp_leftovers = len(os.listdir(tmp)) if tmp.exists() else 0
    stderr = root / "postern" / "stderr.log"
    report.tracebacks = stderr.read_text(errors="replace").count("Traceback") \
        if stderr.exists() else 0
    report.seconds = round(time.monotonic() - began, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--size", type=int, default=2048, help="message body bytes")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--min-interval", type=float, default=0.1)
    parser.add_argument("--max-interval", type=float, default=1.5)
    parser.add_argument("--drain-timeout", type=float, default=120.0,
                        help="seconds to wait, after the load, for every acknowledged message")
    parser.add_argument("--receiver-processes", type=int, default=None,
                        help="Postern's receiver_processes (default: Postern's default, "
                             "auto; 0: smtpd in the master)")
    parser.add_argument("--relay", action="store_true",
                        help="relay to smtp-sink (which keeps each message) instead of "
                             "delivering to a Maildir")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--keep", action="store_true", help="keep the spool and Maildir")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    root = Path(tempfile.mkdtemp(prefix="postern-crash-", dir=args.workdir))
    report = asyncio.run(run_crashes(root, kills=args.kills, sessions=args.sessions, seed=seed,
                                     min_interval=args.min_interval,
                                     max_interval=args.max_interval, size=args.size,
                                     receiver_processes=args.receiver_processes,
                                     drain_timeout=args.drain_timeout, relay=args.relay))
    print(json.dumps(report.as_dict(), indent=1))
    if args.keep or not report.ok:
        print(f"spool and Maildir kept in {root}", file=sys.stderr)
    else:
        import shutil
        shutil.rmtree(root, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
