"""Risk's functional core: pure, deterministic, no I/O. Start at :class:`RiskEngine`."""

from ata.risk.core.engine import RiskEngine, intent_for, limits_from

__all__ = ["RiskEngine", "intent_for", "limits_from"]
