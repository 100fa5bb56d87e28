"""Regime detection service: per-symbol and market regimes, bar by bar, without look-ahead."""
