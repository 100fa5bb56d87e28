"""Sentiment service: news in, per-symbol point-in-time sentiment out (see ``core`` for the contract)."""
