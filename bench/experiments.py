"""What would the levers buy? Accept throughput of Postern variants made without changing mta/.

    python3 bench/experiments.py --runs 3 --messages 5000

Every variant takes the source-1k load (smtp-source, 20 sessions, 1 KB,
relayed to smtp-sink) on a fresh spool; runs alternate between variants and
the medians of accept throughput are printed. The variants bound what a change could
buy; they are measurements, not proposals to ship as they are:

- ``postern``: as it is (the baseline of this table);
- ``postern-reuse``: smtp-source -d, up to 5000/20 messages per connection,
  so per-connection costs (accept, aiosmtpd's SMTP.__init__, greeting, EHLO,
  the client-name lookup, the session log lines) are paid 20 times, not 5,000;
- ``postern-nofsync``: os.fsync made a no-op in the daemon (NOT durable):
  what the fsyncs themselves cost, an upper bound for any fsync batching;
- ``postern-x2``: two independent daemons, each with its own spool, each
  taking half the load (10 sessions): two whole Posterns, receivers and queue
  managers, side by side;
- ``postern-receivers1`` and ``postern-receivers2``: ``receiver_processes``
  = 1 or 2 (smtpd in worker processes on the shared socket, qmgr and delivery
  in the master);
- ``postern-maildir``: delivering to a local Maildir instead of deferring;
- ``postfix`` and ``postfix-reuse``: the same loads against Postfix.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import procstat  # noqa: E402
from bench.mtas import SENDER, Mta, PosternBench, PostfixBench, Sink, program  # noqa: E402
from bench.scenarios import wait_for_quiet  # noqa: E402

NO_FSYNC = "import os\nos.fsync = lambda fd: None"
VARIANTS = ("postern", "postern-reuse", "postern-nofsync", "postern-x2", "postern-receivers1",
            "postern-receivers2", "postern-maildir", "postfix", "postfix-reuse")


def _source(mta: Mta, sessions: int, count: int, reuse: bool) -> subprocess.Popen[bytes]:
    source = program("smtp-source")
    assert source is not None
    return subprocess.Popen(
        [source, *(["-d"] if reuse else []), "-s", str(sessions), "-m", str(count),
         "-l", "1024", "-f", SENDER, "-t", mta.recipient, "-M", "loadgen.bench.test",
         f"127.0.0.1:{mta.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_variant(variant: str, root: Path, messages: int) -> dict[str, object]:
    sink = Sink(root / "sink").start()
    common = {"sink_port": sink.port, "cert": None, "key": None}
    mode = "maildir" if variant == "postern-maildir" else "relay"
    daemons: list[Mta]
    if variant.startswith("postfix"):
        daemons = [PostfixBench(root / "postfix", mode="relay", cert=root / "c.pem",
                                key=root / "k.pem", sink_port=sink.port)]
        _certificate(root)
    elif variant == "postern-x2":
        daemons = [PosternBench(root / f"postern{i}", mode=mode, **common)  # type: ignore[arg-type]
                   for i in (1, 2)]
    else:
        prelude = NO_FSYNC if variant == "postern-nofsync" else ""
        extra = (f"receiver_processes = {variant[-1]}\n"
                 if variant.startswith("postern-receivers") else "")
        daemons = [PosternBench(root / "postern", mode=mode, python_prelude=prelude,
                                extra=extra, **common)]  # type: ignore[arg-type]
    try:
        for daemon in daemons:
            daemon.start()
        time.sleep(0.5)
        before = [procstat.cpu(d.pid) for d in daemons]
        share = messages // len(daemons)
        started = time.monotonic()
        loads = [_source(d, 20 // len(daemons), share, variant.endswith("-reuse"))
                 for d in daemons]
        failed = [p.stderr.read().decode()[-200:] for p in loads  # type: ignore[union-attr]
                  if p.wait() != 0]
        elapsed = time.monotonic() - started
        cpu = sum((procstat.cpu(d.pid) - b).total for d, b in zip(daemons, before, strict=True))
        return {"variant": variant, "accept_rate": None if failed else
                round(share * len(daemons) / elapsed, 1),
                "cpu_to_last_250": round(cpu, 2), "errors": failed}
    finally:
        for daemon in daemons:
            daemon.stop()
        sink.stop()


def _certificate(root: Path) -> None:
    from mta.tls import certs
    if not (root / "c.pem").exists():
        key = certs.generate_key()
        (root / "c.pem").write_bytes(certs.cert_pem(certs.self_signed(key, "localhost")))
        certs.write_private(root / "k.pem", certs.key_pem(key))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    results: dict[str, list[dict[str, object]]] = {v: [] for v in variants}
    for index in range(args.runs):
        order = variants if index % 2 == 0 else list(reversed(variants))
        for variant in order:
            root = Path(tempfile.mkdtemp(prefix=f"postern-exp-{variant}-", dir=args.workdir))
            root.chmod(0o755)
            waited, busy = wait_for_quiet(60)
            result = run_variant(variant, root, args.messages)
            result.update({"run": index, "waited_for_quiet": waited, "busy_at_start": busy})
            print(result, flush=True)
            results[variant].append(result)
            shutil.rmtree(root, ignore_errors=True)
    base = None
    print(f"\n| variant | accept msg/s, median [min–max] of {args.runs} | vs postern "
          "| CPU s to last 250 |")
    print("|---|---|---|---|")
    for variant in variants:
        rates = [float(r["accept_rate"]) for r in results[variant]  # type: ignore[arg-type]
                 if r["accept_rate"] is not None]
        cpus = [float(r["cpu_to_last_250"]) for r in results[variant]]  # type: ignore[arg-type]
        if not rates:
            print(f"| {variant} | failed: {results[variant][0]['errors']} | | |")
            continue
        median = statistics.median(rates)
        if variant == "postern":
            base = median
        ratio = f"{median / base:.2f}" if base else "–"
        print(f"| {variant} | {median:.0f} [{min(rates):.0f}–{max(rates):.0f}] | {ratio} "
              f"| {statistics.median(cpus):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
