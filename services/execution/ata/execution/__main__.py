"""``python -m ata.execution`` runs the execution service."""

from ata.execution.service import main

main()
