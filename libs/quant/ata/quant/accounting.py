"""Portfolio accounting from fills and marks (average-cost method).

Contract
--------
- A fill is *incremental*: ``apply_fill(symbol, signed_quantity, price, fee)`` where
  ``signed_quantity`` is positive for a buy and negative for a sell of this execution only.
- Average cost: adding to a position moves ``avg_price`` to the quantity-weighted mean;
  reducing it realises ``closed_qty * (price - avg_price) * direction`` and leaves
  ``avg_price`` unchanged; a fill through zero closes the old position completely and
  opens the remainder at the fill price. A flat position has ``avg_price == 0``.
- Realised P&L is gross of fees; fees are accumulated separately (per symbol and in
  total). Cash pays for both: a buy costs ``qty * price + fee``, a sell brings
  ``qty * price - fee``. Therefore ``equity == cash + sum(qty * mark)`` and
  ``equity - initial_cash == realized_pnl + unrealized_pnl - fees`` (up to float noise).
- A fill also sets the symbol's mark to the fill price: it is the newest trade we know.
- ``high_water_mark`` and ``drawdown`` (a fraction in ``[0, 1]``) follow equity after every
  fill and mark. ``reset_high_water_mark()`` re-bases them (an operator resume does this).
- Market value and gross exposure are kept as running sums for O(1) reads; ``revalue()``
  recomputes them from the positions. The snapshot carries the running sums as they are, so
  a restored portfolio continues bit-for-bit like the one that was never interrupted.

Numeric policy follows ``ata.events.values``: plain floats; a quantity whose magnitude
falls below ``QTY_EPSILON`` relative to the quantities involved is snapped to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Relative size below which a residual quantity is float noise (e.g. 0.1 + 0.2 - 0.3).
QTY_EPSILON = 1e-9


@dataclass(slots=True)
class Position:
    """One symbol's position. ``quantity`` is signed (short < 0)."""

    symbol: str
    quantity: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    mark_price: float | None = None

    @property
    def market_value(self) -> float:
        """Signed value at the mark (0 without a mark)."""
        return self.quantity * self.mark_price if self.mark_price is not None else 0.0

    @property
    def unrealized_pnl(self) -> float:
        if self.mark_price is None or self.quantity == 0.0:
            return 0.0
        return self.quantity * (self.mark_price - self.avg_price)


def _snap(value: float, scale: float) -> float:
    return 0.0 if abs(value) <= QTY_EPSILON * scale else value


class Portfolio:
    """Cash, positions and P&L of one account. Pure and deterministic."""

    def __init__(self, initial_cash: float) -> None:
        if not math.isfinite(initial_cash):
            raise ValueError("initial_cash must be finite")
        self.initial_cash = float(initial_cash)
        self.cash = float(initial_cash)
        self.positions: dict[str, Position] = {}
        self.realized_pnl = 0.0
        self.fees = 0.0
        self._market_value = 0.0
        self._gross = 0.0
        self.high_water_mark = float(initial_cash)

    # -- reads -------------------------------------------------------------------------
    @property
    def equity(self) -> float:
        return self.cash + self._market_value

    @property
    def market_value(self) -> float:
        """Net exposure: signed sum of position values at their marks."""
        return self._market_value

    @property
    def net_exposure(self) -> float:
        return self._market_value

    @property
    def gross_exposure(self) -> float:
        return self._gross

    @property
    def unrealized_pnl(self) -> float:
        return sum(p.unrealized_pnl for p in self.positions.values())

    @property
    def drawdown(self) -> float:
        """Fractional distance of equity below its high-water mark, in ``[0, 1]``."""
        if self.high_water_mark <= 0.0:
            return 0.0
        return min(1.0, max(0.0, 1.0 - self.equity / self.high_water_mark))

    def quantity(self, symbol: str) -> float:
        position = self.positions.get(symbol)
        return position.quantity if position is not None else 0.0

    def mark_of(self, symbol: str) -> float | None:
        position = self.positions.get(symbol)
        return position.mark_price if position is not None else None

    def open_positions(self) -> list[Position]:
        """Non-flat positions sorted by symbol."""
        return [p for _, p in sorted(self.positions.items()) if p.quantity != 0.0]

    # -- writes ------------------------------------------------------------------------
    def _position(self, symbol: str) -> Position:
        position = self.positions.get(symbol)
        if position is None:
            position = self.positions[symbol] = Position(symbol)
        return position

    def _set_state(self, position: Position, quantity: float, mark: float | None) -> None:
        """Change a position's quantity and mark, keeping the running sums in step."""
        old_value = position.market_value
        position.quantity = quantity
        position.mark_price = mark
        new_value = position.market_value
        self._market_value += new_value - old_value
        self._gross += abs(new_value) - abs(old_value)
        self._gross = max(self._gross, 0.0)
        self._observe_equity()

    def _observe_equity(self) -> None:
        equity = self.cash + self._market_value
        self.high_water_mark = max(self.high_water_mark, equity)

    def apply_fill(self, symbol: str, signed_quantity: float, price: float, fee: float = 0.0) -> float:
        """Book one execution; return the P&L it realised (gross of its fee)."""
        if not (math.isfinite(signed_quantity) and signed_quantity != 0.0):
            raise ValueError("fill quantity must be finite and non-zero")
        if not (math.isfinite(price) and price > 0.0):
            raise ValueError("fill price must be finite and positive")
        if not (math.isfinite(fee) and fee >= 0.0):
            raise ValueError("fee must be finite and non-negative")
        position = self._position(symbol)
        old_qty = position.quantity
        new_qty = _snap(old_qty + signed_quantity, max(abs(old_qty), abs(signed_quantity)))
        realized = 0.0
        if old_qty == 0.0 or (old_qty > 0.0) == (signed_quantity > 0.0):
            # Opening or adding: quantity-weighted average cost.
            position.avg_price = (old_qty * position.avg_price + signed_quantity * price) / new_qty
        else:
            closed = min(abs(signed_quantity), abs(old_qty))
            direction = 1.0 if old_qty > 0.0 else -1.0
            realized = closed * (price - position.avg_price) * direction
            if new_qty == 0.0:
                position.avg_price = 0.0
            elif (new_qty > 0.0) != (old_qty > 0.0):
                position.avg_price = price  # flipped through zero: remainder opens here
        position.realized_pnl += realized
        position.fees += fee
        self.realized_pnl += realized
        self.fees += fee
        self.cash -= signed_quantity * price + fee
        self._set_state(position, new_qty, price)
        return realized

    def mark(self, symbol: str, price: float) -> None:
        """Revalue ``symbol`` at ``price`` (a bar close, a trade, a quote mid)."""
        if not (math.isfinite(price) and price > 0.0):
            raise ValueError("mark price must be finite and positive")
        position = self._position(symbol)
        self._set_state(position, position.quantity, price)

    def reset_high_water_mark(self) -> None:
        """Re-base drawdown at the current equity."""
        self.high_water_mark = self.equity

    def revalue(self) -> None:
        """Recompute the running sums exactly from the positions."""
        self._market_value = math.fsum(p.market_value for p in self.positions.values())
        self._gross = math.fsum(abs(p.market_value) for p in self.positions.values())

    # -- state -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain, JSON-serialisable state; ``Portfolio.restore(snapshot)`` rebuilds it."""
        return {
            "initial_cash": self.initial_cash,
            "market_value": self._market_value,
            "gross": self._gross,
            "cash": self.cash,
            "realized_pnl": self.realized_pnl,
            "fees": self.fees,
            "high_water_mark": self.high_water_mark,
            "positions": [
                [p.symbol, p.quantity, p.avg_price, p.realized_pnl, p.fees, p.mark_price]
                for _, p in sorted(self.positions.items())
            ],
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Portfolio:
        portfolio = cls(float(state["initial_cash"]))
        portfolio.cash = float(state["cash"])
        portfolio.realized_pnl = float(state["realized_pnl"])
        portfolio.fees = float(state["fees"])
        for symbol, qty, avg, realized, fees, mark in state["positions"]:
            portfolio.positions[symbol] = Position(symbol, float(qty), float(avg), float(realized), float(fees),
                                                   None if mark is None else float(mark))
        portfolio._market_value = float(state["market_value"])
        portfolio._gross = float(state["gross"])
        portfolio.high_water_mark = float(state["high_water_mark"])
        return portfolio
