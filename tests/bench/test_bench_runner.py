"""bench.runner: discovery, selection, JSON results and the table, on a throwaway module."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from bench.runner import Metric, main, percentile

MODULE = textwrap.dedent(
    """
    from bench.runner import Metric, benchmark


    @benchmark(name="tiny.sum", goal="adds numbers", params={"n": 1000}, quick={"n": 10})
    def bench_sum(ctx):
        ctx.record("seen_n", ctx.params["n"])
        yield Metric("total", float(sum(range(ctx.params["n"]))), "units", at_least=0.0)
        yield Metric("note", 1.5)


    @benchmark(name="tiny.slow", goal="misses its goal", params={"x": 3})
    def bench_slow(ctx):
        return [Metric("latency", 10.0, "ms", at_most=5.0)]


    @benchmark(name="tiny.broken", goal="raises")
    def bench_broken(ctx):
        raise RuntimeError("boom in benchmark")
    """
)


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    (tmp_path / "bench_tiny.py").write_text(MODULE)
    (tmp_path / "helpers.py").write_text("raise AssertionError('only bench_*.py modules are imported')\n")
    return tmp_path


def run(bench_dir: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--path", str(bench_dir), *args], console=Console(file=out, width=200, color_system=None))
    return code, out.getvalue()


def test_runs_all_writes_json_and_table(bench_dir: Path) -> None:
    code, output = run(bench_dir)
    assert code == 1  # one goal missed and one benchmark raised
    results = bench_dir / "results"
    assert sorted(p.name for p in results.iterdir()) == ["tiny.broken.json", "tiny.slow.json", "tiny.sum.json"]

    tiny = json.loads((results / "tiny.sum.json").read_text())
    assert tiny["name"] == "tiny.sum" and tiny["goal"] == "adds numbers" and tiny["quick"] is False
    assert tiny["params"] == {"n": 1000} and tiny["details"] == {"seen_n": 1000}
    assert tiny["passed"] is True and tiny["error"] is None
    assert tiny["metrics"][0] == {
        "name": "total",
        "value": 499500.0,
        "unit": "units",
        "at_most": None,
        "at_least": 0.0,
        "goal": ">= 0 units",
        "passed": True,
    }
    assert tiny["metrics"][1]["passed"] is None and tiny["metrics"][1]["goal"] is None
    assert {"python", "platform", "cpu_count", "hostname"} <= tiny["machine"].keys()
    assert tiny["timestamp"].endswith("+00:00")

    slow = json.loads((results / "tiny.slow.json").read_text())
    assert slow["passed"] is False and slow["metrics"][0]["goal"] == "<= 5 ms"
    broken = json.loads((results / "tiny.broken.json").read_text())
    assert broken["passed"] is False and "RuntimeError: boom in benchmark" in broken["error"]

    header = next(line for line in output.splitlines() if "name" in line and "verdict" in line)
    assert [c.strip() for c in header.strip()[1:-1].split("┃")] == ["name", "metric", "value", "goal", "verdict"]
    rows = {tuple(c.strip() for c in line.strip()[1:-1].split("│")) for line in output.splitlines() if line.startswith("│")}
    assert ("tiny.sum", "total", "499,500 units", ">= 0 units", "PASS") in rows
    assert ("", "note", "1.5", "", "info") in rows
    assert ("tiny.slow", "latency", "10 ms", "<= 5 ms", "FAIL") in rows
    assert ("tiny.broken", "RuntimeError: boom in benchmark", "-", "-", "ERROR") in rows


def test_filter_and_quick(bench_dir: Path) -> None:
    code, output = run(bench_dir, "-k", "SUM", "--quick", "--results-dir", str(bench_dir / "out"))
    assert code == 0
    assert [p.name for p in (bench_dir / "out").iterdir()] == ["tiny.sum.json"]
    result = json.loads((bench_dir / "out" / "tiny.sum.json").read_text())
    assert result["quick"] is True and result["params"] == {"n": 10}
    assert "45 units" in output and "tiny.slow" not in output


def test_glob_filter_list_and_no_match(bench_dir: Path) -> None:
    code, output = run(bench_dir, "-k", "tiny.s*", "--list")
    assert code == 0 and output.split() == ["tiny.sum", "adds", "numbers", "tiny.slow", "misses", "its", "goal"]
    assert not (bench_dir / "results").exists()
    code, output = run(bench_dir, "-k", "nothing-like-this")
    assert code == 1 and "no benchmark matches" in output


def test_metric_goals_and_percentile() -> None:
    assert Metric("x", 5.0, at_least=1.0, at_most=5.0).passed is True
    assert Metric("x", 0.5, "s", at_least=1.0, at_most=5.0).goal == ">= 1 s and <= 5 s"
    assert Metric("x", 0.5, at_least=1.0).passed is False
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99) == pytest.approx(4.96)
    with pytest.raises(ValueError):
        percentile([], 50)
