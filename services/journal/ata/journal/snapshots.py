"""Snapshots of the folded state (portfolio, open orders, risk state): build, store, and rebuild from them.

:func:`rebuild` restores the latest snapshot (or starts empty) and folds the journal tail after
it; :func:`take_snapshots` stores what :func:`rebuild` returns when enough happened since the last
snapshot. One snapshot row (service :data:`SNAPSHOT_SERVICE`) carries risk's engine state and the
order book at the same journal sequence number, so the two never drift apart.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from ata.events import Message
from ata.journal.core.fold import ORDER_TYPES, StateFolder, consumed_types
from ata.journal.store import JournalStore, Snapshot
from ata.risk.config import RiskSettings
from ata.risk.service import SUBSCRIPTIONS as RISK_SUBSCRIPTIONS
from ata.runtime.codec import CodecError, decode
from ata.runtime.config import load_settings

SNAPSHOT_SERVICE = "state"


@functools.cache
def risk_types() -> tuple[type[Message], ...]:
    """The message types the risk service consumes (from its subscriptions in the registry)."""
    return consumed_types(RISK_SUBSCRIPTIONS)


@functools.cache
def folded_type_names() -> tuple[str, ...]:
    """``event_type`` of every message :class:`StateFolder` applies (risk's inputs and the order messages)."""
    return tuple(sorted({t.__name__ for t in (*risk_types(), *ORDER_TYPES)}))


def rebuild(store: JournalStore, risk_settings: RiskSettings | None = None, *, until_seq: int | None = None,
            from_snapshot: bool = True, progress: Callable[[int], None] | None = None) -> StateFolder:
    """State after journal sequence ``until_seq`` (default: everything): latest snapshot + tail, or a full fold.

    Only the events the folder applies are read (:func:`folded_type_names`, selected by the database),
    and of those only ``seq`` and the payload; afterwards the folder stands at ``until_seq`` (or the last
    sequence number stored when the fold began), skipped events included. ``progress`` is called with
    the number of tail events folded so far, every 10,000 events. Records that do not decode (invalid
    for their type) are skipped as the services' consumers skip them; ``folded`` counts the rest.
    """
    settings = risk_settings or load_settings(RiskSettings)
    snapshot = store.latest_snapshot(SNAPSHOT_SERVICE, at_or_before_seq=until_seq) if from_snapshot else None
    if snapshot is None:
        folder = StateFolder(settings, risk_types())
    else:
        folder = StateFolder.restore(settings, risk_types(), snapshot.state, seq=snapshot.seq, ts_ns=snapshot.ts_ns)
    last = store.last_seq()
    end = last if until_seq is None else min(until_seq, last)
    apply = folder.apply
    for count, (seq, payload) in enumerate(store.payloads(folder.seq, end, folded_type_names()), start=1):
        try:
            message = decode(payload.encode())
        except CodecError:
            continue
        apply(seq, message)
        if progress is not None and count % 10_000 == 0:
            progress(count)
    folder.seq = max(folder.seq, end)
    return folder


def take_snapshots(store: JournalStore, risk_settings: RiskSettings | None = None, *, min_events: int = 1) -> list[Snapshot]:
    """Fold the tail since the latest snapshot and store a new one if at least ``min_events`` were folded."""
    folder = rebuild(store, risk_settings)
    if folder.folded < min_events:
        return []
    snapshot = Snapshot(service=SNAPSHOT_SERVICE, ts_ns=folder.ts_ns, seq=folder.seq, state=folder.snapshot(),
                        offsets=store.positions(), created_ns=time.time_ns())
    snapshot_id = store.save_snapshot(snapshot)
    return [Snapshot(**{**snapshot.__dict__, "snapshot_id": snapshot_id})]
