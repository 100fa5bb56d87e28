"""Pure, deterministic regime detection: no I/O, no clock; state via ``snapshot()`` / ``restore()``."""

from ata.regime.core.detector import DetectorParams, RegimeDetector, RegimeState, bucket_ns
from ata.regime.core.labels import Confirmation, LabelRule, is_volatile
from ata.regime.core.refit import FittedMarkov, RefitRequest, RefitResult, run_refit, warm_up

__all__ = [
    "Confirmation",
    "DetectorParams",
    "FittedMarkov",
    "LabelRule",
    "RefitRequest",
    "RefitResult",
    "RegimeDetector",
    "RegimeState",
    "bucket_ns",
    "is_volatile",
    "run_refit",
    "warm_up",
]
