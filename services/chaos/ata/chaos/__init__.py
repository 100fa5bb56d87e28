"""Chaos scenarios: inject faults into a locally supervised platform and judge its steady state.

``ata chaos run chaos/scenarios/<name>.yaml`` starts the embedded broker and Redis, the selected
services under the ``ata up`` supervisor and the simulated broker as its own process, checks the
steady-state hypothesis, injects the scenario's faults, and prints a verdict table (and JSON).
"""
