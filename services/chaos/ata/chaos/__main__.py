"""``python -m ata.chaos`` is ``ata chaos``."""

from ata.chaos.cli import app

app()
