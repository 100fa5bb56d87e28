"""``python -m ata.sentiment`` runs the sentiment service."""

from ata.sentiment.service import main

main()
