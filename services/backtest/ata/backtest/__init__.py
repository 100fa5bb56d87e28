"""Backtest engine: the live services' cores in one process over an in-memory bus, with reports."""
