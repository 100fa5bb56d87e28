"""ata.execution: turns risk-approved order commands into broker orders and reports every lifecycle event and fill."""
