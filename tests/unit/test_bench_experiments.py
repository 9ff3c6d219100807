"""bench/experiments.py: variants against the baseline, with their paired runs."""

from __future__ import annotations

from bench import experiments, report


def _run(variant: str, number: int, rate: float | None, cpu: float) -> dict[str, object]:
    return {"variant": variant, "run": number, "accept_rate": rate,
            "cpu_us_per_message": cpu, "errors": [] if rate else ["smtp-source: 421"]}


def test_a_revision_variant_names_its_revision() -> None:
    assert experiments.revision_of("postern@HEAD~1") == "HEAD~1"
    assert experiments.revision_of("postern@4e3689a") == "4e3689a"
    assert experiments.revision_of("postern") is None
    assert experiments.revision_of("postern-nofsync") is None
    assert experiments.revision_of("postfix@HEAD") is None
    assert experiments.revision_of("postern@") is None


def test_pairs_are_run_n_against_run_n() -> None:
    base = [_run("postern", 0, 800.0, 1500.0), _run("postern", 1, 600.0, 1800.0)]
    other = [_run("postern@HEAD~1", 1, 660.0, 1620.0), _run("postern@HEAD~1", 0, 720.0, 1650.0)]
    assert report.paired_ratios(base + other, "accept_rate", "postern@HEAD~1", "postern",
                                "variant") == [1.1, 0.9]
    failed = [_run("postern@HEAD~1", 0, None, 1500.0)]
    assert report.paired_ratios(base + failed, "accept_rate", "postern@HEAD~1", "postern",
                                "variant") == []


def test_the_table_gives_medians_ratios_and_the_range_of_the_pairs() -> None:
    results = {
        "postern": [_run("postern", 0, 800.0, 1500.0), _run("postern", 1, 600.0, 1800.0),
                    _run("postern", 2, 700.0, 1600.0)],
        "postern@HEAD~1": [_run("postern@HEAD~1", 0, 720.0, 1650.0),
                           _run("postern@HEAD~1", 1, 660.0, 1620.0),
                           _run("postern@HEAD~1", 2, 770.0, 1440.0)],
        "postern-x2": [_run("postern-x2", 0, None, 0.0)],
    }
    lines = experiments.table(list(results), results, 3).splitlines()
    assert lines[2] == "| postern | 700 [600–800] | 1.00 | 1600 |"
    # medians 720 / 700 and 1620 / 1600; pairs 0.90, 1.10, 1.10 and 1.10, 0.90, 0.90
    assert lines[3] == ("| postern@HEAD~1 | 720 [660–770] | 1.03 [0.90–1.10] "
                        "| 1620 (1.01 [0.90–1.10]) |")
    assert lines[4] == "| postern-x2 | failed: ['smtp-source: 421'] | | |"
