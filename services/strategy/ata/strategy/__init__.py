"""ata.strategy: strategy library, meta-strategy, adaptive switching, GA optimisation, RL selection, attribution."""
