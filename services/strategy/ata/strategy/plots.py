"""PNG plots of the research commands (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd


def plot_equity(path: Path, curves: Mapping[str, npt.NDArray[np.float64]], times_ns: Sequence[int], *, title: str) -> None:
    """Equity curves (log scale) against time; every curve has one point per time."""
    dates = pd.to_datetime(list(times_ns))
    fig, ax = plt.subplots(figsize=(11, 6))
    for name, curve in curves.items():
        ax.plot(dates, curve, label=name, linewidth=2.2 if name == "meta-strategy" else 1.0)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_ylabel("equity (start = 1)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_heatmap(path: Path, table: pd.DataFrame, *, title: str, value_label: str) -> None:
    """A strategies x regimes heatmap of ``table`` (rows: strategies, columns: regimes)."""
    fig, ax = plt.subplots(figsize=(1.6 * max(4, table.shape[1]) + 2, 0.6 * max(3, table.shape[0]) + 2))
    values = table.to_numpy(dtype=float)
    limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    image = ax.imshow(values, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=30, ha="right")
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label=value_label)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
