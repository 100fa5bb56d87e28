"""Shared pytest fixtures: the real embedded broker and Redis (see ata.runtime.testing)."""

pytest_plugins = ["ata.runtime.testing"]
