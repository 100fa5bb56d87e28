"""Reading and writing the RL policy file (``.npz``): the only file I/O around the numpy policy."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ata.strategy.core.policy import NumpyPolicy, PolicyError


def save_policy(policy: NumpyPolicy, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez(fh, **policy.to_arrays())  # type: ignore[arg-type]


def load_policy(path: Path) -> NumpyPolicy:
    """The policy stored at ``path``; a missing, corrupt or inconsistent file raises ``PolicyError``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from exc
    return NumpyPolicy.from_arrays(arrays)
