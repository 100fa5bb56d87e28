"""Helpers shared by the ``ata`` command groups."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

DEFAULT_STATE_DIR = ".ata"
#: Width used when output is not a terminal (pipes, CI logs), so tables are not squeezed to 80 columns.
PIPE_WIDTH = 200


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=PIPE_WIDTH)


def state_dir() -> Path:
    """``ATA_STATE_DIR`` or ``.ata`` in the current directory."""
    return Path(os.environ.get("ATA_STATE_DIR") or DEFAULT_STATE_DIR)


def external_endpoints() -> tuple[str | None, str | None]:
    """``ATA_KAFKA_BOOTSTRAP`` / ``ATA_REDIS_URL`` when set: used instead of starting anything."""
    return os.environ.get("ATA_KAFKA_BOOTSTRAP") or None, os.environ.get("ATA_REDIS_URL") or None


def summary(cls: type) -> str:
    """First line of a class docstring, or its name."""
    lines = (cls.__doc__ or "").strip().splitlines()
    return lines[0] if lines else cls.__name__
