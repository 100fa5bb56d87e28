"""Example plugin package (test fixture)."""
