"""Pure, deterministic strategy logic: no Kafka, Redis, HTTP or file I/O; time comes from events.

- :mod:`.strategies`: the strategy library (one instance per symbol).
- :mod:`.meta`: the meta-strategy (aggregation by regime, conflict rule, adaptive switching).
- :mod:`.engine`: events in (bars, regime states, sentiment), events out (signals, targets).
- :mod:`.features`, :mod:`.regimes`, :mod:`.policy`, :mod:`.tracking`: online features, an offline
  regime labeller, the numpy RL policy, EW performance statistics.
"""

from ata.strategy.core.engine import StrategyEngine
from ata.strategy.core.meta import Contribution, Decision, MetaConfig, MetaStrategy, Method

__all__ = ["Contribution", "Decision", "MetaConfig", "MetaStrategy", "Method", "StrategyEngine"]
