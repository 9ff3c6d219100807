"""One measured run of one scenario against one MTA: start it fresh, load it, measure, stop.

Every run gets new spool directories and a new smtp-sink, so no run inherits
another's queue directories (a directory that has seen thousands of creates
and deletes is slower to create files in). Times are wall-clock from the
start of the load: accept until the last 250, end to end until the next hop
has every message and the queue is empty. CPU and memory cover the MTA's
whole process tree (procstat.py); the client's and the sink's CPU and the
machine's other load are recorded too, because the machine is shared.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import procstat
from bench.mtas import SENDER, Mta, PosternBench, PostfixBench, Sink, program

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # source | loadgen | idle | big
    size: int = 1024
    starttls: bool = False
    pipelining: bool = False  # loadgen: MAIL, RCPT, DATA in one write (RFC 2920)
    title: str = ""


SCENARIOS = {s.name: s for s in (
    Scenario("source-1k", "source", 1024, title="smtp-source, 20 sessions, 1 KB"),
    Scenario("source-100k", "source", 102400, title="smtp-source, 20 sessions, 100 KB"),
    Scenario("loadgen-1k", "loadgen", 1024, title="loadgen plaintext, 20 sessions, 1 KB"),
    Scenario("loadgen-1k-tls", "loadgen", 1024, starttls=True,
             title="loadgen STARTTLS every session, 20 sessions, 1 KB"),
    Scenario("loadgen-1k-tls-pipelining", "loadgen", 1024, starttls=True, pipelining=True,
             title="loadgen STARTTLS every session, pipelining, 20 sessions, 1 KB"),
    Scenario("loadgen-100k", "loadgen", 102400, title="loadgen plaintext, 20 sessions, 100 KB"),
    Scenario("idle-1000", "idle", title="1,000 concurrent idle sessions"),
    Scenario("big-25m", "big", 25 * 1024 * 1024,
             title="4 messages of 25 MB in a row while 10 sessions send NOOPs"),
)}
DEFAULT_SCENARIOS = ("source-1k", "source-100k", "loadgen-1k", "loadgen-1k-tls", "idle-1000",
                     "big-25m")


@dataclass
class Settings:
    """What every run shares."""

    workdir: Path
    cert: Path
    key: Path
    mode: str  # relay | maildir
    messages: int
    sessions: int
    idle_connections: int
    postern_relays: bool
    postern_relay_reason: str
    postern_starttls: bool | None = None  # learnt at the first Postern start
    postern_starttls_reason: str = ""
    quiet_wait: float = 60.0  # seconds to wait for other users' load to pass
    postern_extra: str = ""  # more main.cf lines for Postern (receiver_processes)


@dataclass
class MachineCpu:
    """The whole machine's CPU seconds so far, by where /proc/stat puts them."""

    processes: float  # user + nice + system: every process and kernel thread
    interrupts: float  # irq + softirq (loopback TCP is mostly softirq)
    steal: float  # taken by the hypervisor for other guests
    kernel_threads: float  # kthreadd's children: writeback, the ext4 journal, ...

    @classmethod
    def now(cls) -> MachineCpu:
        with open("/proc/stat") as stream:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                int(v) / os.sysconf("SC_CLK_TCK") for v in stream.readline().split()[1:9])
        return cls(user + nice + system, irq + softirq, steal, procstat.cpu(2).total)

    def __sub__(self, other: MachineCpu) -> MachineCpu:
        return MachineCpu(self.processes - other.processes, self.interrupts - other.interrupts,
                          self.steal - other.steal, self.kernel_threads - other.kernel_threads)


def wait_for_quiet(max_wait: float, threshold: float = 0.5) -> tuple[float, float]:
    """Wait (up to max_wait seconds) for a second in which the machine's other
    work used less than threshold cores; returns (seconds waited, cores busy).

    The machine is shared: a run that starts while someone's test suite is
    busy measures them as much as us. This does not stop them starting later.
    """
    began = time.monotonic()
    while True:
        before = MachineCpu.now()
        time.sleep(1.0)
        used = MachineCpu.now() - before
        busy = used.processes + used.interrupts
        waited = time.monotonic() - began
        if busy < threshold or waited >= max_wait:
            return round(waited, 1), round(busy, 2)


def _wait_child(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for a child and return its exit status and CPU seconds (wait4)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{process.args!r} did not finish within {timeout}s")
        time.sleep(0.01)


def make_mta(name: str, root: Path, sink: Sink, settings: Settings, scenario: Scenario) -> Mta:
    if name == "postfix":
        # For the idle test Postfix needs one smtpd per session (its default
        # process limit is 100); everything else keeps the default.
        maxproc = str(settings.idle_connections + 100) if scenario.kind == "idle" else "-"
        return PostfixBench(root, sink_port=sink.port, mode=settings.mode, cert=settings.cert,
                            key=settings.key, smtpd_maxproc=maxproc)
    limit = settings.idle_connections + 100 if scenario.kind == "idle" else 1000
    return PosternBench(root, sink_port=sink.port, mode=settings.mode, cert=settings.cert,
                        key=settings.key, connection_limit=limit, extra=settings.postern_extra)


def offers_starttls(port: int) -> bool:
    import asyncio

    from bench.loadgen import SmtpClient

    async def check() -> bool:
        client = await SmtpClient.connect("127.0.0.1", port)
        await client.greet()
        offered = "STARTTLS" in client.extensions
        await client.quit()
        return offered

    return asyncio.run(check())


class Run:
    """One scenario, one MTA, one fresh instance."""

    def __init__(self, scenario: Scenario, mta_name: str, index: int,
                 settings: Settings) -> None:
        self.scenario = scenario
        self.mta_name = mta_name
        self.settings = settings
        self.root = settings.workdir / f"{scenario.name}-{index}-{mta_name}"
        self.result: dict[str, object] = {"scenario": scenario.name, "mta": mta_name,
                                          "run": index}

    # -- life cycle ----------------------------------------------------------------
    def execute(self, profile: Path | None = None, gil_only: bool = False
                ) -> dict[str, object]:
        settings = self.settings
        os.sync()  # the previous run's writeback must not land in this one
        waited, busy = wait_for_quiet(settings.quiet_wait)
        self.result["waited_for_quiet"] = waited
        self.result["busy_cores_at_start"] = busy
        sink = Sink(self.root / "sink").start()
        mta = make_mta(self.mta_name, self.root / self.mta_name, sink, settings, self.scenario)
        try:
            mta.start()
            if isinstance(mta, PosternBench) and settings.postern_starttls is None:
                settings.postern_starttls = offers_starttls(mta.port)
                if not settings.postern_starttls:
                    settings.postern_starttls_reason = (
                        "Postern does not offer STARTTLS yet (inbound TLS, issue 4)")
            time.sleep(0.5)  # let the daemon finish starting its helpers
            self.result["loadavg_before"] = round(os.getloadavg()[0], 2)
            kind = self.scenario.kind
            if kind in ("source", "loadgen"):
                self._load(mta, sink, profile, gil_only)
            elif kind == "idle":
                self._idle(mta)
            else:
                self._big(mta, sink)
        finally:
            mta.stop()
            sink.stop()
        return self.result

    def _expect_delivery(self, mta: Mta) -> str | None:
        """None when end-to-end delivery can be measured, else why not."""
        if isinstance(mta, PosternBench) and self.settings.mode == "relay" \
                and not self.settings.postern_relays:
            return self.settings.postern_relay_reason
        return None

    def _delivered(self, mta: Mta, sink: Sink) -> int:
        return sink.count() if self.settings.mode == "relay" else mta.delivered_local()

    # -- message load ------------------------------------------------------------
    def _load(self, mta: Mta, sink: Sink, profile: Path | None, gil_only: bool) -> None:
        scenario, settings, result = self.scenario, self.settings, self.result
        if scenario.starttls and isinstance(mta, PosternBench) \
                and not settings.postern_starttls:
            result["skipped"] = settings.postern_starttls_reason
            return
        count = settings.messages
        command = self._load_command(mta, count)
        spies: list[subprocess.Popen[bytes]] = []
        if profile is not None:
            # One py-spy per process: the master (qmgr, delivery) and each
            # receiver worker, so every process gets its own profile.
            for number, pid in enumerate(procstat.tree(mta.pid)):
                destination = profile if number == 0 else profile.with_name(
                    f"{profile.stem}-worker{number}{profile.suffix}")
                spies.append(subprocess.Popen(
                    ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--format",
                     "raw", "--nonblocking", "--output", str(destination),
                     *(["--gil"] if gil_only else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)  # attached
        threads_before = procstat.thread_cpu(mta.pid)
        cpu_before = procstat.cpu(mta.pid)
        machine_before = MachineCpu.now()
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        with procstat.MemorySampler(mta.pid) as memory:
            started = time.monotonic()
            process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)
            # wait4 needs the pipes drained for large outputs; ours are small.
            status, client_cpu = _wait_child(process, timeout=max(600, count))
            ended = time.monotonic()
            output = process.stdout.read().decode() if process.stdout else ""
            errors = process.stderr.read().decode() if process.stderr else ""
            cpu_accept = procstat.cpu(mta.pid) - cpu_before
            if scenario.kind == "loadgen":
                report = json.loads(output.strip().splitlines()[-1])
                accepted = int(report["accepted"])
                accept_seconds = float(report["accept_seconds"])
                for key in ("latency_p50", "latency_p90", "latency_p99", "latency_max",
                            "session_setup_p50", "session_setup_p99", "errors",
                            "error_samples"):
                    result[key] = report[key]
            else:
                # smtp-source stops at the first reply it did not expect.
                accepted = count if status == 0 else 0
                accept_seconds = ended - started
                if status != 0:
                    result["error_samples"] = [errors.strip()[-300:]]
            result["accepted"] = accepted
            result["accept_seconds"] = round(accept_seconds, 3)
            result["accept_rate"] = round(accepted / accept_seconds, 1) if accepted else None
            why_not = self._expect_delivery(mta)
            timeout = max(120.0, count / 20)
            if why_not is None:
                done = procstat.wait_until(
                    lambda: self._delivered(mta, sink) >= accepted and mta.queued() == 0,
                    timeout, interval=0.02)
                if done is None:
                    why_not = (f"not complete after {timeout:.0f}s: next hop has "
                               f"{self._delivered(mta, sink)} of {accepted}, "
                               f"{mta.queued()} still queued")
                else:
                    result["e2e_seconds"] = round(done - started, 3)
                    result["e2e_rate"] = round(accepted / (done - started), 1)
            if why_not is not None:
                result["e2e_not_measurable"] = why_not
                if isinstance(mta, PosternBench):
                    # Settled: every message has had its first (deferred) attempt.
                    done = procstat.wait_until(lambda: mta.unsettled() == 0, timeout)
                    result["settled_as"] = "deferred (no relay)"
                    if done is not None:
                        result["settle_seconds"] = round(done - started, 3)
            cpu_total = procstat.cpu(mta.pid) - cpu_before
        machine = MachineCpu.now() - machine_before
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        harness = (self_after.ru_utime + self_after.ru_stime
                   - self_before.ru_utime - self_before.ru_stime)
        sink_cpu = procstat.cpu(sink.process.pid).total if sink.process else 0.0
        loop_cpu, pool_cpu = procstat.main_and_other_threads(
            threads_before, procstat.thread_cpu(mta.pid), mta.pid)
        if isinstance(mta, PosternBench):
            result["postern_loop_thread_cpu"] = {"user": round(loop_cpu.user, 2),
                                                 "sys": round(loop_cpu.system, 2)}
            result["postern_other_threads_cpu"] = {"user": round(pool_cpu.user, 2),
                                                   "sys": round(pool_cpu.system, 2)}
        for spy in spies:
            spy.send_signal(2)
        for spy in spies:
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
        result.update({
            "cpu_accept": round(cpu_accept.total, 2),
            "cpu_user": round(cpu_total.user, 2), "cpu_sys": round(cpu_total.system, 2),
            "cpu_total": round(cpu_total.total, 2),
            "cpu_per_1000_msgs": round(cpu_total.total / accepted * 1000, 2)
            if accepted else None,
            "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
            "peak_pss_mb": round(memory.peak_pss / 2**20, 1),
            "peak_processes": memory.peak_processes,
            "client_cpu": round(client_cpu, 2), "sink_cpu": round(sink_cpu, 2),
            # What else the machine did meanwhile: the kernel's own threads and
            # interrupts (partly this run's I/O and loopback traffic), the
            # hypervisor's steal, and other processes (other users' work).
            "kernel_threads_cpu": round(machine.kernel_threads, 2),
            "interrupts_cpu": round(machine.interrupts, 2),
            "steal_cpu": round(machine.steal, 2),
            "other_cpu": round(machine.processes - machine.kernel_threads - cpu_total.total
                               - client_cpu - sink_cpu - harness, 2),
            "wall_seconds": round(time.monotonic() - started, 2),
        })

    def _load_command(self, mta: Mta, count: int) -> list[str]:
        scenario, settings = self.scenario, self.settings
        if scenario.kind == "source":
            source = program("smtp-source")
            assert source is not None
            return [source, "-s", str(settings.sessions), "-m", str(count),
                    "-l", str(scenario.size), "-f", SENDER, "-t", mta.recipient,
                    "-M", "loadgen.bench.test", f"127.0.0.1:{mta.port}"]
        command = [sys.executable, str(LOADGEN), "load", "--port", str(mta.port),
                   "--sessions", str(settings.sessions), "--messages", str(count),
                   "--size", str(scenario.size), "--from", SENDER, "--to", mta.recipient]
        if scenario.starttls:
            command += ["--starttls", "--cafile", str(settings.cert)]
        if scenario.pipelining:
            command.append("--pipelining")
        return command

    # -- idle sessions -------------------------------------------------------------
    def _idle(self, mta: Mta) -> None:
        result = self.result
        pids = procstat.tree(mta.pid)
        result["baseline_rss_mb"] = round(procstat.rss(pids) / 2**20, 1)
        result["baseline_pss_mb"] = round(procstat.pss(pids) / 2**20, 1)
        count = self.settings.idle_connections
        with procstat.MemorySampler(mta.pid, interval=0.25) as memory:
            process = subprocess.Popen(
                [sys.executable, str(LOADGEN), "idle", "--port", str(mta.port),
                 "--connections", str(count), "--hold", "120"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert process.stderr is not None and process.stdin is not None
            ready = process.stderr.readline().decode()
            # Let the server settle with all sessions open, then measure.
            time.sleep(3)
            pids = procstat.tree(mta.pid)
            result["held_rss_mb"] = round(procstat.rss(pids) / 2**20, 1)
            result["held_pss_mb"] = round(procstat.pss(pids) / 2**20, 1)
            result["held_processes"] = len(pids)
            output, _ = process.communicate(input=b"", timeout=300)
        report = json.loads(output.decode().strip().splitlines()[-1])
        result.update({"ready_line": ready.strip(), "greeted": report["greeted"],
                       "alive_after_hold": report["alive_after_hold"],
                       "connections": report["connections"],
                       "open_seconds": report["open_seconds"],
                       "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
                       "peak_pss_mb": round(memory.peak_pss / 2**20, 1)})
        held = float(result["held_pss_mb"])  # type: ignore[arg-type]
        base = float(result["baseline_pss_mb"])  # type: ignore[arg-type]
        result["pss_kb_per_session"] = round((held - base) * 1024 / max(1, count), 1)

    # -- one large message -----------------------------------------------------------
    def _big(self, mta: Mta, sink: Sink) -> None:
        result, scenario = self.result, self.scenario
        pids = procstat.tree(mta.pid)
        baseline_rss, baseline_pss = procstat.rss(pids), procstat.pss(pids)
        result["baseline_rss_mb"] = round(baseline_rss / 2**20, 1)
        with procstat.MemorySampler(mta.pid, interval=0.05) as memory:
            output = subprocess.run(
                [sys.executable, str(LOADGEN), "big", "--port", str(mta.port),
                 "--size", str(scenario.size), "--count", "4", "--probes", "10",
                 "--interval", "0.01",
                 "--from", SENDER, "--to", mta.recipient],
                capture_output=True, timeout=600).stdout
            report = json.loads(output.decode().strip().splitlines()[-1])
            if self._expect_delivery(mta) is None:
                procstat.wait_until(lambda: self._delivered(mta, sink) >= 4
                                    and mta.queued() == 0, 120)
        result.update({key: report[key] for key in
                       ("accepted", "error", "transfer_seconds", "dot_to_250", "noops",
                        "noop_p50", "noop_p99", "noop_max")})
        result["peak_rss_mb"] = round(memory.peak_rss / 2**20, 1)
        result["peak_pss_mb"] = round(memory.peak_pss / 2**20, 1)
        result["rss_growth_mb"] = round((memory.peak_rss - baseline_rss) / 2**20, 1)
        result["pss_growth_mb"] = round((memory.peak_pss - baseline_pss) / 2**20, 1)
        if isinstance(mta, PosternBench):
            result["postern_vmhwm_mb"] = _vmhwm_mb(mta.pid)


def _vmhwm_mb(pid: int) -> float | None:
    """The process's own peak RSS since it started."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except FileNotFoundError:
        pass
    return None
