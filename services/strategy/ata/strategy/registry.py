"""Which strategies exist: the built-ins plus plugins registered under the ``ata.strategies``
entry-point group (``<name> = "package.module:StrategyClass"``, a :class:`Strategy` subclass
whose ``name`` equals the entry-point name). A broken plugin is skipped with a warning, never
fatal; a plugin cannot replace a built-in of the same name."""

from __future__ import annotations

import logging
from importlib import metadata

from ata.strategy.core.strategies import BUILTIN, Strategy

GROUP = "ata.strategies"
log = logging.getLogger(__name__)


def available_strategies() -> dict[str, type[Strategy]]:
    found = dict(BUILTIN)
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in BUILTIN:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the service down
            log.warning("cannot load strategy plugin %r: %s", ep.name, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Strategy)) or cls.name != ep.name:
            log.warning("strategy plugin %r is not a Strategy subclass named %r", ep.name, ep.name)
            continue
        found[ep.name] = cls
    return found
