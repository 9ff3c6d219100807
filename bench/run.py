"""Postern side by side with Postfix on this machine: one command, medians and ratios.

    python3 bench/run.py                     # everything, 3 runs each (about 15 minutes)
    python3 bench/run.py --quick             # 1 run of 500 messages, to try it out
    python3 bench/run.py --scenarios source-1k,loadgen-1k --runs 5
    python3 bench/run.py --profile           # also py-spy Postern under smtp-source load

It installs what it lacks (Debian's postfix for smtp-source and smtp-sink,
py-spy for --profile), makes a TLS certificate, and for every scenario and
run starts a fresh private Postfix and a fresh Postern that relay everything
from 127.0.0.0/8 to an smtp-sink on loopback, loads them one after the other
(the order alternates between runs), and prints medians, ranges and the
ratio Postern/Postfix. Results go to bench/results/ as JSON and Markdown.
See bench/README.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import mtas, report  # noqa: E402
from bench import profile as spy  # noqa: E402
from bench.scenarios import DEFAULT_SCENARIOS, SCENARIOS, Run, Settings  # noqa: E402
from bench.scratchfs import journaled_scratch  # noqa: E402


def ensure_installed(need_spy: bool) -> None:
    """Install the peers the benchmark needs, without upgrading anything else."""
    missing = [name for name in ("postfix", "smtp-source", "smtp-sink")
               if mtas.program(name) is None]
    if missing:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            sys.exit(f"missing {', '.join(missing)}: install Debian's postfix package (as root)")
        print("installing postfix (for smtp-source and smtp-sink) ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["debconf-set-selections"], check=True, env=env,
                       input=b"postfix postfix/main_mailer_type select No configuration\n")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-upgrade", "postfix"],
                       check=True, env=env)
    if importlib.util.find_spec("aiosmtpd") is None:
        print("installing Postern's dependencies (pip install -e .) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)],
                       check=True)
    if need_spy and shutil.which("py-spy") is None:
        print("installing py-spy ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    if os.geteuid() != 0:
        sys.exit("the benchmark runs a private Postfix instance, which needs root")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """One RSA-2048 server certificate for both MTAs (the common choice on MXs)."""
    from mta.tls import certs

    key = certs.generate_key("rsa", 2048)
    cert = certs.self_signed(key, "localhost", ["127.0.0.1", "postfix.bench.test",
                                                "postern.bench.test"])
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certs.cert_pem(cert))
    certs.write_private(key_path, certs.key_pem(key))
    return cert_path, key_path


def postern_relay_support() -> tuple[bool, str]:
    known = mtas.postern_knows("relayhost")
    if not known["relayhost"]:
        return False, ("Postern cannot relay yet: no relayhost / outbound SMTP delivery on "
                       "this checkout (issue 3); its mail stays deferred in the queue")
    return True, ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario and MTA")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--idle-connections", type=int, default=1000)
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--mta", default="postfix,postern", help="postfix,postern or one")
    parser.add_argument("--mode", choices=("relay", "maildir"), default="relay",
                        help="relay to smtp-sink (the benchmark) or deliver to one local "
                             "Maildir on both (works without outbound delivery)")
    parser.add_argument("--receiver-processes", type=int, default=None,
                        help="Postern's receiver_processes (default: Postern's default)")
    parser.add_argument("--quick", action="store_true", help="1 run of 500 messages")
    parser.add_argument("--profile", action="store_true",
                        help="afterwards, py-spy Postern during one run of --profile-scenario")
    parser.add_argument("--profile-scenario", default="source-1k",
                        help="the scenario --profile runs (default source-1k)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"),
                        help="where the spools go (both on this one filesystem)")
    parser.add_argument("--scratch-fs", type=int, metavar="GB", default=8,
                        help="both spools on a fresh journaled ext4 of GB GiB (a sparse "
                             "image on a loop device under --workdir, removed afterwards): "
                             "what production spools run on, and steady from run to run; "
                             "0 puts them in --workdir itself (docs/performance.md, the "
                             "eleventh set)")
    parser.add_argument("--keep", action="store_true", help="keep the spools and logs")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="before each run, wait up to this many seconds for a second "
                             "in which other processes use less than half a core")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.messages = 1, 500
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scratch_fs:
        with journaled_scratch(args.scratch_fs, args.workdir) as mount:
            args.workdir = mount
            return run_sets(args)
    return run_sets(args)


def run_sets(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s): {', '.join(unknown)}")
    chosen = [m.strip() for m in args.mta.split(",") if m.strip()]
    ensure_installed(args.profile)
    workdir = Path(tempfile.mkdtemp(prefix="postern-bench-", dir=args.workdir))
    os.chmod(workdir, 0o755)
    cert, key = make_certificate(workdir)
    relays, relay_reason = postern_relay_support()
    settings = Settings(workdir=workdir, cert=cert, key=key, mode=args.mode,
                        messages=args.messages, sessions=args.sessions,
                        idle_connections=args.idle_connections, postern_relays=relays,
                        postern_relay_reason=relay_reason, quiet_wait=args.quiet_wait,
                        postern_extra="" if args.receiver_processes is None
                        else f"receiver_processes = {args.receiver_processes}\n")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"bench-{stamp}.json"
    print(f"workdir {workdir} ({os.cpu_count()} CPUs, mode {args.mode}, {args.runs} run(s), "
          f"{args.messages} messages, {args.sessions} sessions)", flush=True)
    if not relays:
        print(f"note: {relay_reason}", flush=True)
    results: list[dict[str, object]] = []
    try:
        for name in names:
            for index in range(args.runs):
                order = chosen if index % 2 == 0 else list(reversed(chosen))
                for mta in order:
                    run = Run(SCENARIOS[name], mta, index, settings)
                    try:
                        result = run.execute()
                    except Exception as error:  # keep going; the table says what failed
                        result = {**run.result, "skipped": f"run failed: {error}"}
                    results.append(result)
                    print(json.dumps(result), flush=True)
                    json_path.write_text(json.dumps(results, indent=1))
                    if not args.keep:
                        shutil.rmtree(run.root, ignore_errors=True)
        profile_text = ""
        if args.profile and "postern" in chosen:
            # Twice: all non-idle threads (wall time, blocking syscalls included),
            # then only the thread holding the GIL (where Python's one core goes).
            for number, gil_only in ((98, False), (99, True)):
                what = "holding the GIL" if gil_only else "all threads, wall time"
                raw = args.out / f"profile-{stamp}-{'gil' if gil_only else 'wall'}.txt"
                run = Run(SCENARIOS[args.profile_scenario], "postern", number, settings)
                result = run.execute(profile=raw, gil_only=gil_only)
                print(json.dumps(result), flush=True)
                profile_text += (f"### py-spy, {what}; accept {result.get('accept_rate')} "
                                 f"msg/s under the profiler; master's event loop thread "
                                 f"CPU {result.get('postern_loop_thread_cpu')}, its other "
                                 f"threads {result.get('postern_other_threads_cpu')}\n\n")
                for path in [raw, *sorted(raw.parent.glob(f"{raw.stem}-worker*"))]:
                    if path.exists():
                        process = ("master" if path == raw
                                   else path.stem.rsplit("-", 1)[-1])
                        profile_text += f"{process}:\n\n```\n{spy.render(path)}```\n\n"
                if not args.keep:
                    shutil.rmtree(run.root, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = report.summarize(results)
    table = report.render(summary)
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    header = (f"Postern ({commit}) vs Postfix, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
              f"{os.cpu_count()} CPUs, mode {args.mode}"
              + (f", receiver_processes = {args.receiver_processes}"
                 if args.receiver_processes is not None else "")
              + (f", spools on a fresh journaled ext4 of {args.scratch_fs} GiB"
                 if args.scratch_fs else "")
              + f": median of {args.runs} run(s) [min–max], {args.messages} messages, "
              f"{args.sessions} sessions\n")
    profiled = f"\n## Profile of Postern under {args.profile_scenario}\n\n"
    text = header + table + (profiled + profile_text if profile_text else "")
    (args.out / f"bench-{stamp}.md").write_text(text)
    print("\n" + text)
    print(f"results: {json_path} and {json_path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
