"""``python -m ata.oversight`` runs the oversight service."""

from ata.oversight.service import main

main()
