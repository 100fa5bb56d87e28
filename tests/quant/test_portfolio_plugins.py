"""Plugins through entry points: a real third-party distribution (tests/quant/plugin_pkg) is
installed once per session with pip into a temporary ``--target`` directory (a real
``.dist-info`` with ``entry_points.txt``, no change to the shared venv), then

- the loader reads it from an injected distribution list and registers its optimiser;
- it shows up in ``ata strategy list`` (a subprocess with the target on PYTHONPATH) and runs.

Why this way: ``pip install -e`` into the venv would be slow, would outlive the test and would
leak the plugin into every other test; a ``--target`` install is a genuine install (pip builds
the wheel with the package's own pyproject and writes the metadata) that vanishes with the
temporary directory. The injected list keeps the loader test independent of whatever else
is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from ata.quant.portfolio import plugins
from ata.quant.portfolio.constraints import Constraints
from ata.quant.portfolio.optimisers import OptimiserSelection, available_optimisers, make_optimiser

PLUGIN_SRC = Path(__file__).parent / "plugin_pkg"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    src, site = root / "src", root / "site"
    shutil.copytree(PLUGIN_SRC, src)  # setuptools writes build/ and egg-info next to the sources
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(src)],
        check=True, timeout=300, capture_output=True,
    )
    assert (site / "ata_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    return site


def test_loader_registers_the_optimiser_of_an_injected_distribution(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))
    dists = list(metadata.distributions(path=[str(plugin_site)]))
    assert [d.metadata["Name"] for d in dists] == ["ata-example-plugin"]
    loaded = plugins.load_optimiser_plugins(dists)
    assert loaded.errors == () and set(loaded.objects) == {"example_capped_equal"}
    assert "example_capped_equal" in available_optimisers()
    selection = OptimiserSelection.model_validate({"default": "risk_parity", "by_regime": {"crisis": "example_capped_equal"},
                                                   "params": {"example_capped_equal": {"cap": 0.2}}})
    opt = selection.optimiser_for("crisis")
    cons = Constraints.long_only_portfolio(4, gross_max=0.8)
    res = opt.weights(np.eye(4) * 1e-4, constraints=cons)
    assert res.converged and res.weights == pytest.approx([0.2, 0.2, 0.2, 0.2]) and res.diagnostics == {"cap": 0.2}
    assert make_optimiser("example_capped_equal").weights(np.eye(2)).weights == pytest.approx([0.5, 0.5])
    strategies = plugins.load_entry_points(plugins.STRATEGY_GROUP, dists)
    assert set(strategies.objects) == {"example_always_long"}


def test_broken_plugins_are_reported_not_fatal(tmp_path: Path) -> None:
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[ata.optimisers]\n"
        "missing = no_such_module_anywhere:Thing\n"
        "risk_parity = ata.quant.portfolio.optimisers:RiskParity\n"
        "not_an_optimiser = ata.quant.portfolio.constraints:Constraints\n"
    )
    loaded = plugins.load_optimiser_plugins([metadata.PathDistribution(info)])
    assert loaded.objects == {}
    errors = {e.name: e.error for e in loaded.errors}
    assert errors["missing"].startswith("ModuleNotFoundError")
    assert errors["risk_parity"] == "name taken by a built-in optimiser"
    assert errors["not_an_optimiser"].startswith("cannot build with default parameters")


def test_plugin_strategy_shows_in_ata_strategy_list_and_runs(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "250", "NO_COLOR": "1"}
    ata = Path(sys.executable).parent / "ata"
    # ~5 s of CPU (imports); 120 s was not enough wall time at load 20 on two cores.
    out = subprocess.run([str(ata), "strategy", "list"], env=env, capture_output=True, text=True, timeout=280, check=True)
    assert "example_always_long" in out.stdout and "ata_example_plugin.strategy" in out.stdout
    monkeypatch.syspath_prepend(str(plugin_site))
    from ata.strategy.core.strategies.base import Bar, MarketContext
    from ata.strategy.registry import available_strategies

    cls = available_strategies()["example_always_long"]
    signal = cls().update(Bar(ts_ns=1, open=1.0, high=1.0, low=1.0, close=1.0), MarketContext())
    assert signal is not None and (signal.strategy, signal.direction, signal.strength) == ("example_always_long", 1, 0.5)
