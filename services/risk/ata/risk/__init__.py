"""ata.risk: pre-trade checks, sizing, trading states, drawdown and stress response, portfolio accounting."""
