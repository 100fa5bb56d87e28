"""Size an order down to the exposure limits instead of denying it.

:func:`clip_to_limits` takes a proposed order (an :class:`~ata.risk.core.checks.OrderCheck`) and
returns the largest part of it, in the same direction, that the position, gross, net, leverage
and cluster checks of :mod:`ata.risk.core.checks` let through, with the names of the limits that
bound it. The bounds mirror those checks exactly: each check denies only an order that makes its
measure both worse and beyond the limit, so a position may always grow back to its current size
(|new| <= |position|) and net exposure may always stay within its current magnitude. The caller
rounds the result to its lot (toward zero, which only shrinks the order) and still runs every
check on it.
"""

from __future__ import annotations

import math

from ata.events import DenialReason
from ata.risk.core.checks import OrderCheck


def clip_to_limits(o: OrderCheck) -> tuple[float, tuple[DenialReason, ...]]:
    """``(quantity, binding limits)``: ``o.quantity`` cut to the exposure limits (0 when none of it fits)."""
    qty, position, price = o.quantity, o.position, o.last_price
    if qty == 0 or not (price > 0 and math.isfinite(price)):
        return qty, ()
    limits = o.limits
    equity = max(o.equity, 0.0)
    held = abs(position)
    # Largest |new position| each check allows (never below the current size, which passes them all).
    caps = {
        DenialReason.MAX_POSITION: limits.max_position_notional / price,
        DenialReason.GROSS_EXPOSURE: held + (limits.max_gross_exposure - o.gross) / price,
        DenialReason.LEVERAGE: held + (limits.max_leverage * equity - o.gross) / price,
        DenialReason.CLUSTER_EXPOSURE: (limits.max_cluster_exposure_pct * equity - o.cluster_other_gross) / price,
    }
    new = position + qty
    size = abs(new)
    binding: list[DenialReason] = []
    for reason, cap in caps.items():
        allowed = max(cap, held)
        if size > allowed:
            size, binding = allowed, [*binding, reason]
    clipped = math.copysign(size, new) - position
    # Net exposure: net + q x price within +-max(limit, |net|).
    reach = max(limits.max_net_exposure, abs(o.net))
    low, high = (-reach - o.net) / price, (reach - o.net) / price
    if not low <= clipped <= high:
        clipped = min(max(clipped, low), high)
        binding.append(DenialReason.NET_EXPOSURE)
    if clipped * qty <= 0:  # nothing in the order's direction fits
        return 0.0, tuple(binding)
    return clipped, tuple(binding)
