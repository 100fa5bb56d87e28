"""Benchmark runner behind ``make bench`` (``python -m bench``).

A benchmark is a function in a module ``bench/bench_<topic>.py``, registered with
``@benchmark``. It receives a ``Context`` (sizes via ``ctx.params``, ``ctx.quick``) and returns
the ``Metric`` values it measured; a metric with ``at_most`` / ``at_least`` carries its goal and
gets a pass/fail verdict. The runner discovers the modules, runs the selected benchmarks with a
progress display, prints one table row per metric and writes ``bench/results/<name>.json`` with
the measurements, parameters, machine information and a timestamp. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True, slots=True)
class Metric:
    """One measured number. ``at_most`` / ``at_least`` state the goal (either, both or none)."""

    name: str
    value: float
    unit: str = ""
    at_most: float | None = None
    at_least: float | None = None

    @property
    def goal(self) -> str:
        parts = []
        if self.at_least is not None:
            parts.append(f">= {_fmt(self.at_least)}")
        if self.at_most is not None:
            parts.append(f"<= {_fmt(self.at_most)}")
        return " and ".join(f"{p} {self.unit}".strip() for p in parts)

    @property
    def passed(self) -> bool | None:
        """None when the metric has no goal (informational)."""
        if self.at_most is None and self.at_least is None:
            return None
        return (self.at_most is None or self.value <= self.at_most) and (self.at_least is None or self.value >= self.at_least)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "at_most": self.at_most,
            "at_least": self.at_least,
            "goal": self.goal or None,
            "passed": self.passed,
        }


@dataclasses.dataclass
class Context:
    """What a benchmark function receives."""

    params: dict[str, Any]
    quick: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    status: Callable[[str], None] = lambda _msg: None

    def record(self, key: str, value: Any) -> None:
        """Keep an extra JSON-serialisable detail in the result file (not shown in the table)."""
        self.details[key] = value


BenchFunc = Callable[[Context], Iterable[Metric]]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    goal: str
    func: BenchFunc
    params: Mapping[str, Any]
    quick_params: Mapping[str, Any]
    module: str

    def resolved_params(self, quick: bool) -> dict[str, Any]:
        return {**self.params, **(self.quick_params if quick else {})}


def benchmark(
    name: str, goal: str = "", *, params: Mapping[str, Any] | None = None, quick: Mapping[str, Any] | None = None
) -> Callable[[BenchFunc], BenchFunc]:
    """Register a benchmark function.

    ``name`` names the result file (lower case, digits, ``_ . -``), ``goal`` says in words what
    the benchmark must show, ``params`` are the full-size parameters and ``quick`` the overrides
    used with ``--quick``.
    """
    if not _NAME.match(name):
        raise ValueError(f"benchmark name {name!r} must match {_NAME.pattern}")

    def register(func: BenchFunc) -> BenchFunc:
        func.__benchmark__ = Benchmark(name, goal, func, dict(params or {}), dict(quick or {}), func.__module__)  # type: ignore[attr-defined]
        return func

    return register


# ----------------------------------------------------------------------------- measuring helpers


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    """Wall-clock seconds of repeated runs."""

    samples: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def timeit(func: Callable[[], object], repeat: int = 5, warmup: int = 1) -> Timing:
    """Run ``func`` ``warmup`` times untimed, then ``repeat`` times timed."""
    for _ in range(warmup):
        func()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return Timing(tuple(samples))


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, linear interpolation between ranks."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# ----------------------------------------------------------------------------- discovery and running


def discover(directory: Path = BENCH_DIR) -> list[Benchmark]:
    """Import every ``bench_*.py`` in ``directory`` and collect its registered benchmarks."""
    found: list[Benchmark] = []
    for path in sorted(directory.glob("bench_*.py")):
        found.extend(_benchmarks_in(_load(path)))
    names = [b.name for b in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate benchmark names: {', '.join(duplicates)}")
    return found


def _load(path: Path) -> ModuleType:
    module_name = f"bench.{path.stem}" if path.parent == BENCH_DIR else f"_bench_{abs(hash(path))}_{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _benchmarks_in(module: ModuleType) -> list[Benchmark]:
    return [obj.__benchmark__ for obj in vars(module).values() if isinstance(getattr(obj, "__benchmark__", None), Benchmark)]


def select(benchmarks: Sequence[Benchmark], pattern: str | None) -> list[Benchmark]:
    """Benchmarks whose name or module matches ``pattern``: a glob if it has ``*?[``, else a
    case-insensitive substring. None selects all."""
    if not pattern:
        return list(benchmarks)
    p = pattern.lower()
    is_glob = any(c in p for c in "*?[")

    def matches(text: str) -> bool:
        return fnmatch.fnmatch(text.lower(), p) if is_glob else p in text.lower()

    return [b for b in benchmarks if matches(b.name) or matches(b.module.rsplit(".", 1)[-1])]


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "git_commit": _git_commit(),
    }
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclasses.dataclass
class Outcome:
    benchmark: Benchmark
    params: dict[str, Any]
    metrics: list[Metric]
    details: dict[str, Any]
    duration_s: float
    error: str | None

    @property
    def passed(self) -> bool | None:
        """False on error or any failed goal; None when no metric has a goal."""
        if self.error is not None:
            return False
        verdicts = [m.passed for m in self.metrics if m.passed is not None]
        return all(verdicts) if verdicts else None

    def to_dict(self, quick: bool, machine: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": self.benchmark.name,
            "goal": self.benchmark.goal,
            "module": self.benchmark.module,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "params": self.params,
            "machine": machine,
            "duration_s": round(self.duration_s, 3),
            "passed": self.passed,
            "error": self.error,
            "metrics": [m.to_dict() for m in self.metrics],
            "details": self.details,
        }


def run_one(bench: Benchmark, quick: bool, status: Callable[[str], None] = lambda _m: None) -> Outcome:
    """Run one benchmark; an exception becomes an error outcome, never aborts the run."""
    params = bench.resolved_params(quick)
    ctx = Context(params=dict(params), quick=quick, status=status)
    start = time.perf_counter()
    try:
        metrics = list(bench.func(ctx))
        for m in metrics:
            if not isinstance(m, Metric):
                raise TypeError(f"benchmark returned {type(m).__name__}, expected Metric")
        error = None
    except Exception:
        metrics, error = [], traceback.format_exc()
    return Outcome(bench, params, metrics, ctx.details, time.perf_counter() - start, error)


def _fmt(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e6:
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def _verdict(passed: bool | None) -> str:
    return {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[dim]info[/]"}[passed]


def render_table(outcomes: Sequence[Outcome]) -> Table:
    table = Table(title="Benchmarks")
    table.add_column("name", no_wrap=True)
    table.add_column("metric")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("goal", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for o in outcomes:
        if o.error is not None:
            last_line = o.error.strip().splitlines()[-1]
            table.add_row(o.benchmark.name, "[red]" + escape(last_line) + "[/]", "-", "-", "[red]ERROR[/]")
            continue
        for i, m in enumerate(o.metrics):
            value = f"{_fmt(m.value)} {m.unit}".strip()
            table.add_row(o.benchmark.name if i == 0 else "", m.name, value, m.goal, _verdict(m.passed))
    return table


def write_result(outcome: Outcome, results_dir: Path, quick: bool, machine: dict[str, Any]) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{outcome.benchmark.name}.json"
    path.write_text(json.dumps(outcome.to_dict(quick, machine), indent=2, default=str) + "\n")
    return path


def run(
    benchmarks: Sequence[Benchmark], *, quick: bool, results_dir: Path, console: Console
) -> list[Outcome]:
    """Run ``benchmarks`` in order with a progress display, print the table, write the JSON files."""
    machine = machine_info()
    outcomes: list[Outcome] = []
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("benchmarks", total=len(benchmarks))
        for bench in benchmarks:
            progress.update(task, description=bench.name)

            def status(msg: str, _name: str = bench.name) -> None:
                progress.update(task, description=f"{_name}: {msg}")

            outcome = run_one(bench, quick, status)
            outcomes.append(outcome)
            write_result(outcome, results_dir, quick, machine)
            if outcome.error is not None:
                progress.console.print(f"[red]{bench.name} raised:[/]\n{outcome.error}")
            progress.advance(task)
    console.print(render_table(outcomes))
    console.print(f"results written to {results_dir}")
    return outcomes


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """``python -m bench``: exit status 0 when every goal is met, 1 on a failed goal or error."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-k", dest="pattern", help="run only benchmarks whose name or module matches (substring or glob)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a fast smoke run")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--path", type=Path, default=BENCH_DIR, help="directory holding bench_*.py modules")
    parser.add_argument("--results-dir", type=Path, default=None, help="where to write <name>.json (default: <path>/results)")
    args = parser.parse_args(argv)
    # Piped output (make bench | tee) would otherwise be cut to 80 columns.
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    selected = select(discover(args.path), args.pattern)
    if args.list:
        for b in selected:
            console.print(f"{b.name}\t{b.goal}")
        return 0
    if not selected:
        console.print(f"[red]no benchmark matches {args.pattern!r}[/]")
        return 1
    results_dir = args.results_dir or args.path / "results"
    outcomes = run(selected, quick=args.quick, results_dir=results_dir, console=console)
    return 1 if any(o.passed is False for o in outcomes) else 0
