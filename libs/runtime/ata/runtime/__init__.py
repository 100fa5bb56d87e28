"""ata.runtime: how a service lives — bus, service base, resilience, telemetry, config, infra."""
