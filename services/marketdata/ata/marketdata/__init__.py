"""ata.marketdata: bars and quotes from replay, synthetic and Alpaca sources, integrity-checked."""
