"""``python -m ata.marketdata``: run the market data service until SIGTERM."""

from ata.marketdata.service import main

main()
