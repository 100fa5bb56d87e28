"""``python -m ata.journal`` runs the journal service."""

from ata.journal.service import main

main()
