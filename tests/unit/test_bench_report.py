"""bench/report.py: medians, their ratio, and the spread of the paired runs."""

from __future__ import annotations

from bench import report


def _run(mta: str, number: int, rate: float) -> dict[str, object]:
    return {"scenario": "source-1k", "mta": mta, "run": number, "accept_rate": rate}


def test_the_ratio_of_medians_and_the_range_of_the_pairs() -> None:
    results = [_run("postfix", 0, 400.0), _run("postern", 0, 800.0),   # 2.00
               _run("postern", 1, 900.0), _run("postfix", 1, 600.0),   # 1.50
               _run("postfix", 2, 500.0), _run("postern", 2, 850.0)]   # 1.70
    row = report.summarize(results)["source-1k"]["accept_rate"]
    assert row["postfix"] == 500.0 and row["postern"] == 850.0
    assert row["ratio"] == 1.7
    assert row["ratio_range"] == (1.5, 2.0)
    line = next(line for line in report.render(report.summarize(results)).splitlines()
                if line.startswith("| accept throughput"))
    assert line == ("| accept throughput (msg/s) | 500 [400–600] | 850 [800–900] "
                    "| 1.70 [pairs 1.50–2.00] |")


def test_a_single_pair_shows_no_range() -> None:
    results = [_run("postfix", 0, 400.0), _run("postern", 0, 600.0)]
    row = report.summarize(results)["source-1k"]["accept_rate"]
    assert row["ratio"] == 1.5 and "ratio_range" not in row
