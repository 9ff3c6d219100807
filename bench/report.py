"""Medians over runs, the Postern/Postfix ratio, and the table the benchmark prints.

A metric that one MTA could not produce is shown as "not measurable yet"
with the reason the run recorded, never as a number; its ratio is left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from bench.scenarios import SCENARIOS

# (key, label, unit, format) per kind of scenario. Rows after the first
# informational one (INFO) describe the machine, not the MTA: no ratio.
LOAD_METRICS = (
    ("accept_rate", "accept throughput", "msg/s", "{:.0f}"),
    ("e2e_rate", "end-to-end throughput", "msg/s", "{:.0f}"),
    ("latency_p50", "latency . to 250, p50", "ms", "ms"),
    ("latency_p99", "latency . to 250, p99", "ms", "ms"),
    ("session_setup_p50", "session setup (connect..EHLO), p50", "ms", "ms"),
    ("peak_rss_mb", "peak RSS, process tree", "MB", "{:.0f}"),
    ("peak_pss_mb", "peak PSS, process tree", "MB", "{:.0f}"),
    ("cpu_total", "CPU user+sys, to settled", "s", "{:.1f}"),
    ("cpu_user", "  of which user", "s", "{:.1f}"),
    ("cpu_sys", "  of which system", "s", "{:.1f}"),
    ("cpu_accept", "CPU user+sys, to last 250", "s", "{:.1f}"),
    ("client_cpu", "load generator CPU", "s", "{:.1f}"),
    ("kernel_threads_cpu", "kernel threads CPU (writeback, journal)", "s", "{:.1f}"),
    ("interrupts_cpu", "interrupts CPU (loopback TCP, I/O)", "s", "{:.1f}"),
    ("steal_cpu", "CPU stolen by the hypervisor", "s", "{:.1f}"),
    ("other_cpu", "other processes' CPU (other users)", "s", "{:.1f}"),
)
INFO = {"client_cpu", "kernel_threads_cpu", "interrupts_cpu", "steal_cpu", "other_cpu"}
# Work until "settled": relaying for Postfix; for a Postern that cannot relay,
# accepting and deferring once, which is not the same work (no ratio then).
SETTLE_DEPENDENT = {"cpu_total", "cpu_user", "cpu_sys"}
SETTLE_NOTE = ("* Postern could not relay: its work until settled is accepting and "
               "deferring each message once, not relaying it; not comparable")
IDLE_METRICS = (
    ("greeted", "sessions greeted (of those opened)", "", "{:.0f}"),
    ("alive_after_hold", "sessions answering NOOP after the hold", "", "{:.0f}"),
    ("held_rss_mb", "RSS with all sessions open", "MB", "{:.0f}"),
    ("held_pss_mb", "PSS with all sessions open", "MB", "{:.0f}"),
    ("pss_kb_per_session", "PSS per session", "KB", "{:.1f}"),
    ("held_processes", "processes", "", "{:.0f}"),
)
BIG_METRICS = (
    ("transfer_seconds", "25 MB transfer, DATA to 250", "s", "{:.2f}"),
    ("dot_to_250", "latency . to 250", "ms", "ms"),
    ("noop_p50", "NOOP round trip on other sessions, p50", "ms", "ms"),
    ("noop_p99", "NOOP round trip on other sessions, p99", "ms", "ms"),
    ("noop_max", "NOOP round trip, max", "ms", "ms"),
    ("rss_growth_mb", "RSS growth over idle", "MB", "{:.0f}"),
    ("pss_growth_mb", "PSS growth over idle", "MB", "{:.0f}"),
    ("postern_vmhwm_mb", "Postern peak RSS (VmHWM)", "MB", "{:.0f}"),
)
MTAS = ("postfix", "postern")


def metrics_for(kind: str) -> tuple[tuple[str, str, str, str], ...]:
    return {"idle": IDLE_METRICS, "big": BIG_METRICS}.get(kind, LOAD_METRICS)


def _numbers(runs: Iterable[dict[str, object]], key: str) -> list[float]:
    return [float(run[key]) for run in runs  # type: ignore[arg-type]
            if isinstance(run.get(key), int | float) and not isinstance(run.get(key), bool)]


def _why_not(runs: list[dict[str, object]], key: str) -> str | None:
    for run in runs:
        if run.get("skipped"):
            return str(run["skipped"])
        if key == "e2e_rate" and run.get("e2e_not_measurable"):
            return str(run["e2e_not_measurable"])
    return None


def _pair(value: object) -> tuple[float, float]:
    """A (low, high) range out of a summary row (rows hold mixed values)."""
    assert isinstance(value, tuple) and len(value) == 2
    return float(value[0]), float(value[1])


def _count(value: object) -> int:
    assert isinstance(value, int)
    return value


def _show(value: float, fmt: str) -> str:
    if fmt == "ms":
        return f"{value * 1000:.1f}"
    return fmt.format(value)


def paired_ratios(runs: list[dict[str, object]], key: str, mine: str, theirs: str,
                  field: str = "mta") -> list[float]:
    """key of mine's run n over theirs' run n (runs told apart by field), for
    each run number that has both: the two ran one right after the other, so
    a pair sees the same machine, and the spread of the pairs shows how much
    the machine moved the ratio within the set."""
    def number(run: dict[str, object]) -> float | None:
        value = run.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return None

    baseline = {run.get("run"): value for run in runs
                if run.get(field) == theirs and (value := number(run))}
    return [value / baseline[run.get("run")] for run in runs
            if run.get(field) == mine and (value := number(run)) is not None
            and run.get("run") in baseline]


def summarize(results: list[dict[str, object]]) -> dict[str, dict[str, dict[str, object]]]:
    """scenario -> metric -> {postfix: median, postern: median, ratio, spread, notes}."""
    summary: dict[str, dict[str, dict[str, object]]] = {}
    for name, scenario in SCENARIOS.items():
        runs = [r for r in results if r["scenario"] == name]
        if not runs:
            continue
        table: dict[str, dict[str, object]] = {}
        for key, *_ in metrics_for(scenario.kind):
            row: dict[str, object] = {}
            for mta in MTAS:
                mine = [r for r in runs if r["mta"] == mta]
                values = _numbers(mine, key)
                reason = _why_not(mine, key)
                if values and len(values) == len(mine) and reason is None:
                    row[mta] = statistics.median(values)
                    row[f"{mta}_range"] = (min(values), max(values))
                    row[f"{mta}_n"] = len(values)
                elif mine and reason is not None:
                    row[f"{mta}_note"] = reason
                if key in SETTLE_DEPENDENT and any(r.get("settled_as") for r in mine):
                    row[f"{mta}_caveat"] = SETTLE_NOTE
            comparable = key not in INFO and not any(f"{m}_caveat" in row for m in MTAS)
            if comparable and isinstance(row.get("postfix"), float) \
                    and isinstance(row.get("postern"), float) and row["postfix"]:
                row["ratio"] = row["postern"] / row["postfix"]  # type: ignore[operator]
                pairs = paired_ratios(runs, key, "postern", "postfix")
                if len(pairs) > 1:
                    row["ratio_range"] = (min(pairs), max(pairs))
            if any(k in row for k in ("postfix", "postern")):
                table[key] = row
        summary[name] = table
    return summary


def render(summary: dict[str, dict[str, dict[str, object]]]) -> str:
    """The summary as a Markdown table per scenario: medians, [min-max], and
    the ratio of the medians with the range of the paired runs' ratios."""
    out = []
    for name, table in summary.items():
        scenario = SCENARIOS[name]
        out.append(f"\n### {name}: {scenario.title}\n")
        out.append("| metric | Postfix | Postern | Postern/Postfix |")
        out.append("|---|---|---|---|")
        notes: list[str] = []
        caveat = ""
        for key, label, unit, fmt in metrics_for(scenario.kind):
            row = table.get(key)
            if row is None:
                continue
            cells = []
            for mta in MTAS:
                if mta in row:
                    low, high = _pair(row[f"{mta}_range"])
                    cell = _show(row[mta], fmt)  # type: ignore[arg-type]
                    if _count(row.get(f"{mta}_n", 1)) > 1 and low != high:
                        cell += f" [{_show(low, fmt)}–{_show(high, fmt)}]"
                    if f"{mta}_caveat" in row:
                        cell += " *"
                        caveat = str(row[f"{mta}_caveat"])
                    cells.append(cell)
                elif f"{mta}_note" in row:
                    note = str(row[f"{mta}_note"])
                    if note not in notes:
                        notes.append(note)
                    cells.append(f"not measurable yet ({notes.index(note) + 1})")
                else:
                    cells.append("–")
            ratio = f"{row['ratio']:.2f}" if "ratio" in row else "–"
            if "ratio_range" in row:
                low, high = _pair(row["ratio_range"])
                ratio += f" [pairs {low:.2f}–{high:.2f}]"
            unit_text = f" ({unit})" if unit else ""
            out.append(f"| {label}{unit_text} | {cells[0]} | {cells[1]} | {ratio} |")
        for number, note in enumerate(notes, 1):
            out.append(f"\n({number}) {note}")
        if caveat:
            out.append(f"\n{caveat}")
    return "\n".join(out) + "\n"
