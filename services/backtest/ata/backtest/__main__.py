"""``python -m ata.backtest`` is ``ata backtest``."""

from ata.backtest.cli import app

app()
