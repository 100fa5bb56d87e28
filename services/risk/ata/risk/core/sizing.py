"""Sizing: a target weight (fraction of equity) becomes a target quantity.

Order of operations, each documented in :func:`size_target`:
1. volatility targeting per position: a weight of 1 carries ``position_vol_target_annual``;
2. risk multipliers: regime, drawdown tier and stress level scale the weight down;
3. portfolio volatility targeting: the weight is scaled so the portfolio's estimated vol
   (this weight plus current holdings, correlation from recent returns) stays at or below
   ``portfolio_vol_target_annual``;
4. caps on the magnitude: fractional Kelly (with an assumed Sharpe ratio), ATR stop risk
   (a stop at ``atr_multiple`` x ATR loses at most ``risk_per_trade_pct`` of equity),
   oversight's ``max_target_weight``, and leverage/margin headroom left by other positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class SizingParams:
    bars_per_year: float
    position_vol_target_annual: float | None  # None: weights are taken as given
    portfolio_vol_target_annual: float | None
    max_vol_scale: float  # cap on target_vol / realised_vol (protects against a tiny vol estimate)
    default_vol_annual: float  # used until the estimate is warm
    kelly_fraction: float | None  # None: no Kelly cap
    assumed_sharpe: float
    atr_multiple: float
    risk_per_trade_pct: float | None  # None: no ATR cap
    max_leverage: float
    margin_rate: float  # initial margin per unit of gross notional (1 = cash account)


class SizingInput(NamedTuple):  # a tuple: built once per target, cheaper than a frozen dataclass
    target_weight: float
    equity: float
    price: float
    vol_per_bar: float  # 0 if unknown
    atr: float
    scale: float  # product of regime, drawdown and stress multipliers
    other_gross: float  # gross exposure of all other symbols (money)
    other_weights_vol: tuple[float, float]  # (sum of w_j*w_k*cov_jk over other symbols, sum of w_j*cov_ij over others)
    max_target_weight: float | None = None


class Sizing(NamedTuple):
    weight: float
    quantity: float
    binding: str  # which step limited the weight last ("none" if none)
    stop_distance: float  # ATR x multiple, in price units (0 without ATR)


def annual_vol(vol_per_bar: float, params: SizingParams) -> float:
    return vol_per_bar * math.sqrt(params.bars_per_year) if vol_per_bar > 0 else params.default_vol_annual


def size_target(inp: SizingInput, params: SizingParams) -> Sizing:
    """Target quantity for ``inp`` (signed, not yet rounded to lots; 0 when equity <= 0)."""
    if inp.equity <= 0 or inp.price <= 0 or inp.target_weight == 0:
        return Sizing(0.0, 0.0, "none", 0.0)
    sigma = annual_vol(inp.vol_per_bar, params)
    weight, binding = inp.target_weight, "none"
    if params.position_vol_target_annual is not None:
        weight *= min(params.max_vol_scale, params.position_vol_target_annual / sigma)
        binding = "position_vol"
    weight *= inp.scale
    if params.portfolio_vol_target_annual is not None:
        cov_others, cross = inp.other_weights_vol
        var_i = sigma * sigma
        port_var = weight * weight * var_i + 2 * weight * cross + cov_others
        port_vol = math.sqrt(max(port_var, 0.0))
        if port_vol > params.portfolio_vol_target_annual and abs(weight) > 0:
            weight *= max(0.0, _shrink_to_vol(weight, var_i, cross, cov_others, params.portfolio_vol_target_annual))
            binding = "portfolio_vol"
    caps: list[tuple[str, float]] = []
    if params.kelly_fraction is not None:
        caps.append(("kelly", params.kelly_fraction * params.assumed_sharpe / sigma))
    if params.risk_per_trade_pct is not None and inp.atr > 0:
        caps.append(("atr_stop", params.risk_per_trade_pct * inp.price / (params.atr_multiple * inp.atr)))
    if inp.max_target_weight is not None:
        caps.append(("oversight", inp.max_target_weight))
    leverage_cap = min(params.max_leverage, 1.0 / params.margin_rate)
    caps.append(("leverage", max(0.0, leverage_cap - inp.other_gross / inp.equity)))
    for name, cap in caps:
        if abs(weight) > cap:
            weight, binding = math.copysign(cap, weight), name
    return Sizing(weight, weight * inp.equity / inp.price, binding, params.atr_multiple * inp.atr)


def _shrink_to_vol(weight: float, var_i: float, cross: float, cov_others: float, target: float) -> float:
    """Largest factor k in [0, 1] with (k w)^2 var_i + 2 k w cross + cov_others <= target^2."""
    a, b, c = weight * weight * var_i, 2 * weight * cross, cov_others - target * target
    if a <= 0:
        return 1.0
    disc = b * b - 4 * a * c
    if disc < 0:
        return 0.0
    return min(1.0, (-b + math.sqrt(disc)) / (2 * a))
