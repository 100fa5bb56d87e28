"""ata.quant: pure numerics — indicators, regime filters, risk math, accounting, metrics."""
