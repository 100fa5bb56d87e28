"""``python -m ata.risk`` runs the risk service."""

from ata.risk.service import main

main()
