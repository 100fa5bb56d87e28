"""Broker adapters implementing :class:`ata.execution.core.ports.BrokerPort`."""
