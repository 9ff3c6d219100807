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
- ``postern-nofsync``: os.fsync made a no-op in every process of the daemon (NOT durable):
  what the fsyncs themselves cost, an upper bound for any fsync batching;
- ``postern-x2``: two independent daemons, each with its own spool, each
  taking half the load (10 sessions): two whole Posterns, receivers and queue
  managers, side by side;
- ``postern-receivers1`` and ``postern-receivers2``: ``receiver_processes``
  = 1 or 2 (smtpd in worker processes on the shared socket, qmgr and delivery
  in the master);
- ``postern-maildir``: delivering to a local Maildir instead of deferring;
- ``postfix`` and ``postfix-reuse``: the same loads against Postfix;
- ``postern@REV``: Postern as it was (or will be) at git revision REV, from a
  worktree made for the run: a change measured against the code without it.

    python3 bench/experiments.py --variants postern,postern@HEAD~1 --runs 8

The runs alternate (A B, B A, ...), and besides the medians the table gives
the range of each variant's paired ratios to ``postern`` (run n against run
n): on a shared virtual machine the same code differs by up to a quarter
from one run to the next (docs/performance.md, "How large an effect this
machine can show"), so a lever is shown only when its pairs agree. Like
bench/run.py, the spools are on a fresh journaled ext4 unless --scratch-fs 0.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import procstat  # noqa: E402
from bench.mtas import SENDER, Mta, PosternBench, PostfixBench, Sink, program  # noqa: E402
from bench.report import paired_ratios  # noqa: E402
from bench.scenarios import wait_for_quiet  # noqa: E402
from bench.scratchfs import journaled_scratch  # noqa: E402

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


def revision_of(variant: str) -> str | None:
    """REV of a ``postern@REV`` variant, else None."""
    name, at, revision = variant.partition("@")
    return revision if at and name == "postern" and revision else None


@contextmanager
def checkouts(variants: list[str], parent: Path) -> Iterator[dict[str, Path]]:
    """A detached git worktree of this repository per ``postern@REV`` variant,
    removed afterwards."""
    trees: dict[str, Path] = {}
    try:
        for variant in variants:
            revision = revision_of(variant)
            if revision is None:
                continue
            tree = Path(tempfile.mkdtemp(prefix="postern-rev-", dir=parent))
            tree.rmdir()
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet",
                            str(tree), revision], check=True)
            trees[variant] = tree
        yield trees
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(tree)], check=False)


def run_variant(variant: str, root: Path, messages: int,
                checkout: Path | None = None) -> dict[str, object]:
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
                                extra=extra, checkout=checkout, **common)]  # type: ignore[arg-type]
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
                "cpu_to_last_250": round(cpu, 2),
                "cpu_us_per_message": round(1e6 * cpu / (share * len(daemons))),
                "errors": failed}
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


def _pairs(base: list[dict[str, object]], mine: list[dict[str, object]],
           key: str) -> list[float]:
    """A variant's runs against postern's, run n against run n."""
    return paired_ratios(base + mine, key, str(mine[0]["variant"]), "postern", "variant")


def table(variants: list[str], results: dict[str, list[dict[str, object]]], runs: int) -> str:
    """The Markdown table of medians, ratios to ``postern`` and their pairs."""
    lines = [f"| variant | accept msg/s, median [min–max] of {runs} | vs postern [pairs] "
             "| CPU µs per message [pairs] |", "|---|---|---|---|"]
    base = results.get("postern", [])
    base_rates = [float(r["accept_rate"]) for r in base  # type: ignore[arg-type]
                  if r["accept_rate"] is not None]
    base_rate = statistics.median(base_rates) if base_rates else None
    base_cpus = [float(r["cpu_us_per_message"]) for r in base]  # type: ignore[arg-type]
    base_cpu = statistics.median(base_cpus) if base_cpus else None

    def vs(median: float, baseline: float | None, pairs: list[float]) -> str:
        if not baseline:
            return "–"
        text = f"{median / baseline:.2f}"
        if len(pairs) > 1:
            text += f" [{min(pairs):.2f}–{max(pairs):.2f}]"
        return text

    for variant in variants:
        mine = results[variant]
        rates = [float(r["accept_rate"]) for r in mine  # type: ignore[arg-type]
                 if r["accept_rate"] is not None]
        if not rates:
            lines.append(f"| {variant} | failed: {mine[0]['errors'] if mine else '–'} | | |")
            continue
        cpus = [float(r["cpu_us_per_message"]) for r in mine]  # type: ignore[arg-type]
        rate, cpu = statistics.median(rates), statistics.median(cpus)
        if variant == "postern":
            rate_vs, cpu_vs = "1.00", ""
        else:
            rate_vs = vs(rate, base_rate, _pairs(base, mine, "accept_rate"))
            cpu_vs = f" ({vs(cpu, base_cpu, _pairs(base, mine, 'cpu_us_per_message'))})"
        lines.append(f"| {variant} | {rate:.0f} [{min(rates):.0f}–{max(rates):.0f}] "
                     f"| {rate_vs} | {cpu:.0f}{cpu_vs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--scratch-fs", type=int, metavar="GB", default=8,
                        help="the spools on a fresh journaled ext4 of GB GiB, as in "
                        "bench/run.py; 0 puts them in --workdir itself")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS and revision_of(v) is None]
    if unknown:
        sys.exit(f"unknown variant(s): {', '.join(unknown)}")
    with contextlib.ExitStack() as stack:
        workdir = args.workdir
        if args.scratch_fs:
            workdir = stack.enter_context(journaled_scratch(args.scratch_fs, workdir))
        trees = stack.enter_context(checkouts(variants, args.workdir))
        results = _run_all(variants, trees, workdir, args.runs, args.messages)
    print()
    print(table(variants, results, args.runs), end="")
    return 0


def _run_all(variants: list[str], trees: dict[str, Path], workdir: Path, runs: int,
             messages: int) -> dict[str, list[dict[str, object]]]:
    results: dict[str, list[dict[str, object]]] = {v: [] for v in variants}
    for index in range(runs):
        order = variants if index % 2 == 0 else list(reversed(variants))
        for variant in order:
            # A short name: the spool's UNIX sockets must fit in 107 bytes.
            root = Path(tempfile.mkdtemp(prefix=f"v{variants.index(variant)}-", dir=workdir))
            root.chmod(0o755)
            waited, busy = wait_for_quiet(60)
            result = run_variant(variant, root, messages, trees.get(variant))
            result.update({"run": index, "waited_for_quiet": waited, "busy_at_start": busy})
            print(result, flush=True)
            results[variant].append(result)
            shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
