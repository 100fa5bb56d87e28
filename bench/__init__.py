"""Benchmarks of the platform (``make bench``); see bench/README.md."""
