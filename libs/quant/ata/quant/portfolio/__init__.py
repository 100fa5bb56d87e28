"""Portfolio construction: covariance estimation, optimisers, constraints, rebalancing and
cross-strategy coordination (pure numerics; see each module's contract)."""
