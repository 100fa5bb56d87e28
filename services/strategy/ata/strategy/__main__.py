"""``python -m ata.strategy`` runs the strategy service."""

from ata.strategy.service import main

main()
