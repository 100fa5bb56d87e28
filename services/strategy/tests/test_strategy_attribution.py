"""Attribution adds up to the meta-strategy's return per regime; importance finds a planted signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ata.strategy import attribution, research
from ata.strategy.core import MetaConfig
from ata.strategy.data import load_bars


def test_contributions_add_up_to_the_meta_return_per_regime() -> None:
    bars = load_bars("sp500")[:1500]
    run = research.run_meta(bars, MetaConfig())
    table = attribution.contributions_by_regime(run)
    gross = run.frame["target"].to_numpy() * research.next_returns(run.frame["close"].to_numpy())
    per_regime = pd.Series(gross, index=run.frame["regime"].replace("", "warm-up").to_numpy()).groupby(level=0).sum()
    np.testing.assert_allclose(table.sum(axis=0)[per_regime.index], per_regime, atol=1e-12)
    assert {"bull_quiet", "sideways"} <= set(table.columns) and list(table.index) == list(run.strategies)
    standalone = attribution.standalone_sharpe_by_regime(run)
    advice = attribution.recommendations(table, standalone)
    assert any(line.startswith("favour ") for line in advice)


def test_permutation_importance_ranks_the_informative_feature_first() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 4))
    y = 0.8 * x[:, 2] + 0.2 * x[:, 0] + rng.normal(scale=0.5, size=3000)
    result = attribution.feature_importance(x, y, ("a", "b", "c", "d"))
    assert list(result.table["feature"][:2]) == ["c", "a"]
    assert set(result.selected) == {"a", "c"}
    advice = attribution.recommendations(pd.DataFrame(), pd.DataFrame(), result)
    assert advice and "b" in advice[-1] and "d" in advice[-1]
