"""The detector's sliding windows: :class:`ata.quant.windows.SlidingMoments` (moved to
``ata.quant`` so the strategy service's hot path shares it); kept importable from here."""

from ata.quant.windows import SlidingMoments

__all__ = ["SlidingMoments"]
