"""Plugins: third-party strategies and optimisers registered through Python entry points.

A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."ata.optimisers"]
    my_optimiser = "my_pkg.portfolio:MyOptimiser"     # a factory: MyOptimiser(**params) -> Optimiser

    [project.entry-points."ata.strategies"]
    my_strategy = "my_pkg.strategies:MyStrategy"      # a Strategy subclass (see ata.strategy)

:func:`load_entry_points` loads one group. By default it reads the installed distributions
(``importlib.metadata``); a caller may inject the distributions to read instead (a test, or a
service that only trusts an explicit list), which keeps the loader free of global state.
A plugin that cannot be imported, or whose object fails ``accept``, is reported in
``errors`` and skipped: a broken plugin never takes the caller down, and the first
distribution (in sorted order of entry-point names) wins when two declare the same name.
:func:`load_optimiser_plugins` also registers the optimisers, so config validation
(:class:`~ata.quant.portfolio.optimisers.OptimiserSelection`) and ``make_optimiser`` know them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata

from ata.quant.portfolio.optimisers import BUILTIN_OPTIMISERS, Optimiser, register_optimiser

__all__ = [
    "OPTIMISER_GROUP",
    "STRATEGY_GROUP",
    "LoadedPlugins",
    "PluginError",
    "entry_points_in",
    "load_entry_points",
    "load_optimiser_plugins",
]

OPTIMISER_GROUP = "ata.optimisers"
STRATEGY_GROUP = "ata.strategies"


@dataclass(frozen=True)
class PluginError:
    group: str
    name: str
    value: str
    error: str


@dataclass(frozen=True)
class LoadedPlugins:
    objects: dict[str, object]
    errors: tuple[PluginError, ...]


def entry_points_in(group: str, distributions: Iterable[metadata.Distribution] | None = None) -> list[metadata.EntryPoint]:
    """Entry points of ``group``, from ``distributions`` or else every installed one, sorted by name."""
    if distributions is None:
        eps: Iterable[metadata.EntryPoint] = metadata.entry_points(group=group)
    else:
        eps = [ep for dist in distributions for ep in dist.entry_points if ep.group == group]
    return sorted(eps, key=lambda ep: (ep.name, ep.value))


def load_entry_points(
    group: str,
    distributions: Iterable[metadata.Distribution] | None = None,
    accept: Callable[[str, object], str | None] | None = None,
) -> LoadedPlugins:
    """Load every entry point of ``group``; ``accept(name, obj)`` returns an error or ``None``."""
    objects: dict[str, object] = {}
    errors: list[PluginError] = []
    for ep in entry_points_in(group, distributions):
        if ep.name in objects:
            errors.append(PluginError(group, ep.name, ep.value, "duplicate name: an earlier plugin has it"))
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # an import error in third-party code must not stop the loader
            errors.append(PluginError(group, ep.name, ep.value, f"{type(exc).__name__}: {exc}"))
            continue
        problem = accept(ep.name, obj) if accept is not None else None
        if problem is not None:
            errors.append(PluginError(group, ep.name, ep.value, problem))
            continue
        objects[ep.name] = obj
    return LoadedPlugins(objects, tuple(errors))


def _optimiser_factory(name: str, obj: object) -> str | None:
    if not callable(obj):
        return "not callable"
    try:
        instance = obj()
    except Exception as exc:  # the factory must work with its defaults, or it is unusable from config
        return f"cannot build with default parameters: {type(exc).__name__}: {exc}"
    if not isinstance(instance, Optimiser):
        return "does not implement the Optimiser protocol"
    if instance.name != name:
        return f"its name {instance.name!r} differs from the entry-point name {name!r}"
    return None


def load_optimiser_plugins(distributions: Iterable[metadata.Distribution] | None = None) -> LoadedPlugins:
    """Load ``ata.optimisers`` plugins and register them; built-in names cannot be replaced."""
    def accept(name: str, obj: object) -> str | None:
        if name in BUILTIN_OPTIMISERS:
            return "name taken by a built-in optimiser"
        return _optimiser_factory(name, obj)

    loaded = load_entry_points(OPTIMISER_GROUP, distributions, accept)
    for name, factory in loaded.objects.items():
        register_optimiser(name, factory, replace=True)  # type: ignore[arg-type]  # accept() checked it
    return loaded
