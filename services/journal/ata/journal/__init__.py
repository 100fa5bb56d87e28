"""The journal: every event stored once, snapshots, replay, export and transaction recovery."""
