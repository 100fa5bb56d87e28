"""Journal recovery at execution start, before any order is accepted.

The journal (``ata-journal``) is the system of record; it depends on execution (its recovery
applies broker answers through execution's state machine), so execution does not depend on it
at install time: the recovery is loaded when it runs (``pip install ata-execution[journal]``, or
any install that has ``ata-journal``) and there is no import cycle — nothing in ``ata.journal``
imports this module or the service.

What :meth:`JournalRecovery.run` does:

1. opens the journal store at ``ATA_JOURNAL_URL`` (table prefix ``ATA_JOURNAL_TABLE_PREFIX``,
   the journal's own setting) and runs ``ata.journal.recovery.recover`` with execution's broker
   ports: orphaned orders (sent, no terminal state) are resolved, canceled or adopted per
   policy, and the alignment events are published;
2. writes every order recovery looked at into execution's own record (Redis) where the journal
   knows more than the record does (the record lacks it, or is behind in status or fills), so
   the engine's reconciliation that follows starts from the journal's view and does not
   publish a fill the journal recovery has already published.

Fail closed: with ``required`` a journal that cannot be used (not installed, unreachable,
missing, a broker that cannot be asked) raises :class:`JournalRecoveryError`, which the
service retries while staying not ready. Without it the problem is logged and start-up goes
on with the Redis record and the brokers alone.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ata.execution.core.engine import OrderStore
from ata.execution.core.ports import BrokerError, BrokerPort
from ata.execution.core.state_machine import TrackedOrder
from ata.runtime.bus import Publisher
from ata.runtime.config import ConfigError

log = logging.getLogger(__name__)

POLICIES = ("resolve", "cancel", "adopt")


class JournalRecoveryError(RuntimeError):
    """Journal recovery could not run (and is required)."""


@dataclass(frozen=True)
class RecoveryOutcome:
    """What one run did: orphans examined, alignment events published, orders written to the record."""

    orphans: tuple[str, ...]
    events: int
    merged: tuple[str, ...]


def journal_ahead(journal: TrackedOrder, local: dict[str, Any] | None) -> bool:
    """Whether the journal's view of an order is newer than execution's record of it (``local``, a snapshot)."""
    if local is None:
        return True
    record = TrackedOrder.restore(local)
    if record.status.terminal:
        return False
    return journal.status.terminal or journal.cum_filled_qty > record.cum_filled_qty


class JournalRecovery:
    """Runs the journal's recovery for execution (see the module docstring). ``policy``: resolve, cancel or adopt."""

    def __init__(self, journal_url: str, policy: str, *, required: bool = False, table_prefix: str | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown recovery policy {policy!r}; expected one of {', '.join(POLICIES)}")
        self.journal_url = journal_url
        self.policy = policy
        self.required = required
        self.table_prefix = table_prefix
        self.attempts = 0

    def _fail(self, reason: str) -> None:
        if self.required:
            raise JournalRecoveryError(reason)
        log.warning("journal recovery skipped: %s", reason)

    async def run(self, ports: Sequence[BrokerPort], record: OrderStore, publisher: Publisher,
                  source: str, *, now_ns: int | None = None) -> RecoveryOutcome | None:
        """Recover from the journal; None when skipped (optional and unusable). Raises :class:`JournalRecoveryError`.

        ``now_ns`` stamps the alignment events (default: the wall clock)."""
        self.attempts += 1
        try:
            recovery = importlib.import_module("ata.journal.recovery")
            stores = importlib.import_module("ata.journal.store")
            policy = importlib.import_module("ata.journal.core.recovery").Policy(self.policy)
        except ImportError as exc:
            self._fail(f"ata-journal is not installed ({exc.name}); install ata-execution[journal]")
            return None
        path = Path(self.journal_url.removeprefix("sqlite:///"))
        if self.journal_url.startswith("sqlite:///") and not await asyncio.to_thread(path.exists):
            self._fail(f"no journal database at {self.journal_url}")
            return None
        store = stores.make_store(self.journal_url, prefix=self._prefix())
        try:
            await asyncio.to_thread(store.open)
            folder, report = await recovery.recover(store, list(ports), policy, publisher=publisher, source=source,
                                                    now_ns=now_ns)
        except (stores.StoreUnavailableError, OSError, ConfigError, BrokerError) as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            return None
        finally:
            await asyncio.to_thread(store.close)
        merged = await self._merge(folder.orders.orders, report, {p.name for p in ports}, record)
        outcome = RecoveryOutcome(tuple(report.orphans), len(report.events), tuple(merged))
        log.info("journal recovery done", extra={"orphans": len(outcome.orphans), "alignment_events": outcome.events,
                                                 "merged": len(outcome.merged), "policy": self.policy})
        return outcome

    def _prefix(self) -> str:
        if self.table_prefix is not None:
            return self.table_prefix
        settings = importlib.import_module("ata.journal.config").JournalSettings()
        return str(settings.table_prefix)

    @staticmethod
    async def _merge(book: dict[str, TrackedOrder], report: Any, brokers: set[str], record: OrderStore) -> list[str]:
        """Write the orders recovery examined into ``record`` where the journal is ahead; returns their ids."""
        touched = set(report.orphans) | {f.client_order_id for f in report.findings}
        local = {o["client_order_id"]: o for o in await record.load()}
        positions = await record.load_positions()
        changed: set[str] = set()
        merged = []
        for coid in sorted(touched):
            order = book.get(coid)
            if order is None or order.broker not in brokers or not journal_ahead(order, local.get(coid)):
                continue
            # Fills the record never saw move the record's positions as they would have live.
            known = TrackedOrder.restore(local[coid]).cum_filled_qty if coid in local else 0.0
            if order.cum_filled_qty > known:
                book_of = positions.setdefault(order.broker, {})
                book_of[order.symbol] = book_of.get(order.symbol, 0.0) + order.side.sign * (order.cum_filled_qty - known)
                changed.add(order.broker)
            await record.save(order)
            merged.append(coid)
        for broker in sorted(changed):
            await record.save_positions(broker, positions[broker])
        return merged
