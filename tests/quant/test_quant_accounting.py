"""Portfolio accounting against an independent reference over random fill sequences."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ata.quant.accounting import Portfolio

REL = 1e-9


class ReferenceBook:
    """Average-cost book written from the textbook definition, one unit-lot at a time.

    Each fill is split into "closing" and "opening" legs explicitly; realised P&L of a
    closing leg is ``leg * (price - avg) * sign(position)``.
    """

    def __init__(self, cash: float) -> None:
        self.cash = cash
        self.qty: dict[str, float] = {}
        self.avg: dict[str, float] = {}
        self.realized: dict[str, float] = {}
        self.fees: dict[str, float] = {}
        self.mark: dict[str, float] = {}

    def fill(self, symbol: str, qty: float, price: float, fee: float) -> None:
        pos = self.qty.get(symbol, 0.0)
        avg = self.avg.get(symbol, 0.0)
        realized = self.realized.get(symbol, 0.0)
        sign_pos = (pos > 0) - (pos < 0)
        sign_fill = (qty > 0) - (qty < 0)
        if sign_pos not in (0, sign_fill):
            closing = min(abs(qty), abs(pos))
            realized += closing * (price - avg) * sign_pos
            pos_after_close = pos + sign_fill * closing
            opening = abs(qty) - closing
            if math.isclose(pos_after_close, 0.0, abs_tol=1e-9 * max(abs(pos), abs(qty))):
                pos_after_close = 0.0
            if pos_after_close == 0.0:
                avg = 0.0
            if opening > 1e-9 * abs(qty):
                pos, avg = sign_fill * opening, price
            else:
                pos = pos_after_close
        else:
            new = pos + qty
            avg = (abs(pos) * avg + abs(qty) * price) / abs(new)
            pos = new
        self.qty[symbol], self.avg[symbol], self.realized[symbol] = pos, avg, realized
        self.fees[symbol] = self.fees.get(symbol, 0.0) + fee
        self.cash -= qty * price + fee
        self.mark[symbol] = price

    def equity(self) -> float:
        return self.cash + sum(self.qty[s] * self.mark[s] for s in self.qty)


def _close(a: float, b: float, scale: float = 1.0) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=REL * scale)


FillRow = tuple[str, float, float, float, float | None]
SYMBOLS = ("AAA", "BBB", "CCC")
fills = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.one_of(st.integers(-500, 500).filter(bool).map(float),
                  st.floats(-50, 50, allow_nan=False).filter(lambda q: abs(q) > 1e-3)),
        st.floats(1.0, 1_000.0, allow_nan=False),
        st.floats(0.0, 5.0, allow_nan=False),
        st.one_of(st.none(), st.floats(1.0, 1_000.0, allow_nan=False)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(fills)
def test_accounting_matches_reference_over_random_fills(sequence: list[FillRow]) -> None:
    book = Portfolio(100_000.0)
    ref = ReferenceBook(100_000.0)
    for symbol, qty, price, fee, mark in sequence:
        book.apply_fill(symbol, qty, price, fee)
        ref.fill(symbol, qty, price, fee)
        if mark is not None:
            book.mark(symbol, mark)
            ref.mark[symbol] = mark
    scale = 1e6
    for symbol in ref.qty:
        pos = book.positions[symbol]
        assert _close(pos.quantity, ref.qty[symbol], 1e3), symbol
        assert _close(pos.avg_price, ref.avg[symbol], 1e3), symbol
        assert _close(pos.realized_pnl, ref.realized[symbol], scale), symbol
        assert _close(pos.fees, ref.fees[symbol], scale), symbol
        assert pos.mark_price == ref.mark[symbol]
    unrealized = sum(ref.qty[s] * (ref.mark[s] - ref.avg[s]) for s in ref.qty)
    assert _close(book.cash, ref.cash, scale)
    assert _close(book.equity, ref.equity(), scale)
    assert _close(book.unrealized_pnl, unrealized, scale)
    assert _close(book.realized_pnl, sum(ref.realized.values()), scale)
    assert _close(book.gross_exposure, sum(abs(ref.qty[s] * ref.mark[s]) for s in ref.qty), scale)
    assert _close(book.net_exposure, sum(ref.qty[s] * ref.mark[s] for s in ref.qty), scale)
    # The accounting identity ties cash, P&L and fees together.
    assert _close(book.equity - book.initial_cash, book.realized_pnl + book.unrealized_pnl - book.fees, scale)


@settings(max_examples=100, deadline=None)
@given(fills)
def test_accounting_snapshot_restore_roundtrip_and_drawdown(sequence: list[FillRow]) -> None:
    book = Portfolio(50_000.0)
    peak = book.equity
    for symbol, qty, price, fee, mark in sequence:
        book.apply_fill(symbol, qty, price, fee)
        peak = max(peak, book.equity)
        if mark is not None:
            book.mark(symbol, mark)
            peak = max(peak, book.equity)
    assert _close(book.high_water_mark, peak, 1e6)
    expected_dd = min(1.0, max(0.0, 1 - book.equity / peak)) if peak > 0 else 0.0
    assert math.isclose(book.drawdown, expected_dd, abs_tol=1e-9)
    restored = Portfolio.restore(json.loads(json.dumps(book.snapshot())))
    assert restored.snapshot() == book.snapshot()
    assert restored.equity == book.equity and restored.drawdown == book.drawdown


def test_accounting_worked_example_partial_fills_and_flip() -> None:
    book = Portfolio(10_000.0)
    book.apply_fill("X", 10, 100.0, fee=1.0)  # long 10 @ 100
    book.apply_fill("X", 10, 110.0, fee=1.0)  # partial fill adds: long 20 @ 105
    assert book.positions["X"].avg_price == 105.0
    realized = book.apply_fill("X", -5, 120.0, fee=0.5)  # sell 5: +75
    assert realized == 75.0 and book.quantity("X") == 15.0 and book.positions["X"].avg_price == 105.0
    realized = book.apply_fill("X", -25, 90.0)  # close 15 (-225), open short 10 @ 90
    assert realized == -225.0
    assert book.quantity("X") == -10.0 and book.positions["X"].avg_price == 90.0
    book.mark("X", 80.0)
    assert book.unrealized_pnl == 100.0
    assert book.realized_pnl == -150.0 and book.fees == 2.5
    assert book.cash == 10_000.0 - 1000 - 1 - 1100 - 1 + 600 - 0.5 + 2250
    assert book.equity == book.cash - 10 * 80.0
    assert book.gross_exposure == 800.0 and book.net_exposure == -800.0
    realized = book.apply_fill("X", 10, 85.0)  # close the short exactly
    assert realized == 50.0 and book.quantity("X") == 0.0 and book.positions["X"].avg_price == 0.0


def test_accounting_rejects_invalid_fills() -> None:
    book = Portfolio(1.0)
    for qty, price, fee in ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, -1.0), (math.nan, 1.0, 0.0)):
        with pytest.raises(ValueError):
            book.apply_fill("X", qty, price, fee)


def test_accounting_float_noise_snaps_to_flat() -> None:
    book = Portfolio(0.0)
    book.apply_fill("X", 0.1, 10.0)
    book.apply_fill("X", 0.2, 10.0)
    book.apply_fill("X", -0.3, 10.0)
    assert book.quantity("X") == 0.0 and book.positions["X"].avg_price == 0.0
    assert book.open_positions() == []
