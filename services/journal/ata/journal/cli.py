"""``ata journal ...``: snapshots, replay, export, queries and recovery over the journal database.

The database is ``ATA_JOURNAL_URL`` (or ``--url``); tables carry ``ATA_JOURNAL_TABLE_PREFIX`` (or
``--prefix``). Times (``--from``/``--to``) are event times: ISO-8601 (UTC when no offset is given)
or integer nanoseconds since the epoch; ``--from`` is inclusive, ``--to`` exclusive.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import pandas as pd
import typer
from redis import Redis
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.tree import Tree

from ata.execution.config import ExecutionSettings
from ata.execution.service import build_ports
from ata.journal.config import JournalSettings
from ata.journal.core.fold import StateFolder
from ata.journal.core.records import COLUMNS, StoredEvent
from ata.journal.core.recovery import Policy, RecoveryReport
from ata.journal.recovery import recover as recover_orders
from ata.journal.snapshots import rebuild, take_snapshots
from ata.journal.store import SCHEMA_VERSION, EventFilter, JournalStore, SqliteStore, make_store
from ata.risk.config import RiskSettings
from ata.runtime.bus import KafkaBus
from ata.runtime.cli_common import console
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.kafka import bulk_producer

app = typer.Typer(name="journal", help="The durable event record: snapshots, replay, export, queries, recovery.",
                  no_args_is_help=True)

Url = Annotated[str | None, typer.Option("--url", help="Journal database URL (default: ATA_JOURNAL_URL)")]
Prefix = Annotated[str | None, typer.Option("--prefix", help="Table prefix (default: ATA_JOURNAL_TABLE_PREFIX)")]
From = Annotated[str | None, typer.Option("--from", help="Event time from (ISO-8601 or ns), inclusive")]
To = Annotated[str | None, typer.Option("--to", help="Event time to (ISO-8601 or ns), exclusive")]
Topics = Annotated[list[str] | None, typer.Option("--topics", help="Only these topics (repeat the option)")]

PROGRESS_EVERY = 1000


def parse_time(value: str | None) -> int | None:
    """ISO-8601 (UTC unless an offset is given) or integer ns -> ns since the epoch."""
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither ISO-8601 nor integer nanoseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unopened(url: str | None, prefix: str | None) -> JournalStore:
    """The store named by the options, or by the settings where an option is not given."""
    runtime = load_settings(RuntimeSettings)
    journal = load_settings(JournalSettings)
    return make_store(url or runtime.journal_url, prefix=journal.table_prefix if prefix is None else prefix,
                      synchronous=journal.sqlite_synchronous)


@contextmanager
def opened(url: str | None, prefix: str | None) -> Iterator[JournalStore]:
    store = unopened(url, prefix)
    store.open()
    try:
        yield store
    finally:
        store.close()


def _filter(start: str | None, end: str | None, topics: list[str] | None, symbol: str | None = None) -> EventFilter:
    return EventFilter(topics=tuple(topics or ()), start_ns=parse_time(start), end_ns=parse_time(end), symbol=symbol)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console(stderr=True))


def _state_tables(folder: StateFolder) -> list[Table]:
    portfolio = folder.risk.portfolio
    positions = Table(title="Positions")
    for column in ("symbol", "quantity", "avg price", "mark", "realised P&L", "unrealised P&L"):
        positions.add_column(column, justify="left" if column == "symbol" else "right")
    for p in portfolio.open_positions():
        positions.add_row(p.symbol, f"{p.quantity:g}", f"{p.avg_price:.4f}", f"{p.mark_price or 0:.4f}",
                          f"{p.realized_pnl:,.2f}", f"{p.unrealized_pnl:,.2f}")
    account = Table(title="Account")
    account.add_column("item")
    account.add_column("value", justify="right")
    for name, value in (("cash", portfolio.cash), ("equity", portfolio.equity), ("realised P&L", portfolio.realized_pnl),
                        ("unrealised P&L", portfolio.unrealized_pnl), ("fees", portfolio.fees),
                        ("drawdown", portfolio.drawdown)):
        account.add_row(name, f"{value:,.4f}")
    account.add_row("trading state", folder.risk.states.state.value)
    account.add_row("journal seq", str(folder.seq))
    orders = Table(title="Open orders")
    for column in ("client order id", "symbol", "side", "quantity", "filled", "status", "broker"):
        orders.add_column(column)
    for o in folder.orders.open_orders():
        orders.add_row(o.client_order_id, o.symbol, o.side.value, f"{o.quantity:g}", f"{o.cum_filled_qty:g}",
                       o.status.value, o.broker)
    return [account, positions, orders]


@app.command()
def snapshot(url: Url = None, prefix: Prefix = None) -> None:
    """Fold the journal since the latest snapshot and store a new snapshot of portfolio, orders and risk state."""
    with opened(url, prefix) as store:
        taken = take_snapshots(store)
        folder = rebuild(store)
    out = console()
    out.print(f"snapshot stored at journal seq {taken[0].seq}" if taken else "nothing new since the latest snapshot")
    for table in _state_tables(folder):
        out.print(table)


@app.command("events")
def events_command(symbol: Annotated[str | None, typer.Option(help="Only this symbol")] = None, start: From = None,  # noqa: PLR0917
                   end: To = None, topics: Topics = None, limit: Annotated[int, typer.Option(help="At most this many")] = 1000,
                   url: Url = None, prefix: Prefix = None) -> None:
    """Events by symbol and event-time range, in journal order."""
    table = Table(title="Events")
    for column in ("seq", "ts_event", "type", "symbol", "topic", "partition:offset", "event_id"):
        table.add_column(column)
    with opened(url, prefix) as store:
        for n, event in enumerate(store.events(_filter(start, end, topics, symbol))):
            if n >= limit:
                break
            r = event.record
            table.add_row(str(event.seq), _iso(r.ts_event), r.event_type, r.symbol or "", r.topic,
                          f"{r.partition}:{r.offset}", r.event_id)
    console().print(table)


def _label(event: StoredEvent) -> str:
    r = event.record
    data: dict[str, Any] = orjson.loads(r.payload)
    detail = " ".join(f"{k}={data[k]}" for k in ("symbol", "client_order_id", "verdict", "target_weight", "quantity",
                                                   "price", "cum_filled_qty") if k in data)
    return f"[bold]{r.event_type}[/bold] {_iso(r.ts_event)} {detail} [dim]{r.event_id}[/dim]"


@app.command()
def chain(correlation_id: str, url: Url = None, prefix: Prefix = None) -> None:
    """The whole causal chain of one correlation id (bar -> signal -> target -> review -> order -> fill), as a tree."""
    with opened(url, prefix) as store:
        links = store.chain(correlation_id)
    if not links:
        console(stderr=True).print(f"no events with correlation id {correlation_id}")
        raise typer.Exit(1)
    known = {e.record.event_id for e in links}
    children: dict[str | None, list[StoredEvent]] = {}
    for event in links:
        parent = event.record.causation_id if event.record.causation_id in known else None
        children.setdefault(parent, []).append(event)
    tree = Tree(f"correlation {correlation_id} ({len(links)} events)")

    def grow(node: Tree, parent: str | None) -> None:
        for event in children.get(parent, []):
            grow(node.add(_label(event)), event.record.event_id)

    grow(tree, None)
    console().print(tree)


@app.command()
def export(out: Annotated[Path, typer.Option("--out", help="Output file")],  # noqa: PLR0917
           fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet", start: From = None,
           end: To = None, topics: Topics = None, symbol: Annotated[str | None, typer.Option()] = None,
           url: Url = None, prefix: Prefix = None) -> None:
    """Export events (envelope columns + JSON payload) to Parquet or CSV for pandas."""
    if fmt not in {"parquet", "csv"}:
        raise typer.BadParameter("--format must be parquet or csv")
    with opened(url, prefix) as store:
        rows = [(e.seq, *e.record.as_row()) for e in store.events(_filter(start, end, topics, symbol))]
    frame = pd.DataFrame(rows, columns=["seq", *COLUMNS])
    if fmt == "parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    console(stderr=True).print(f"{len(frame)} events written to {out}")


@app.command()
def replay(start: From = None, end: To = None, topics: Topics = None,  # noqa: PLR0917
           to_prefix: Annotated[str | None, typer.Option("--to-prefix", help="Publish to <prefix>.<topic>")] = None,
           stdout: Annotated[bool, typer.Option("--stdout", help="Write JSON lines to stdout")] = False,
           into: Annotated[str | None, typer.Option("--into", help="Rebuild a stopped service's state: risk|execution")] = None,
           url: Url = None, prefix: Prefix = None) -> None:
    """Replay journaled events to sandbox topics, to stdout, or into a service's state store."""
    if sum((to_prefix is not None, stdout, into is not None)) != 1:
        raise typer.BadParameter("give exactly one of --to-prefix, --stdout, --into")
    with opened(url, prefix) as store:
        if into is not None:
            _replay_into(store, into, parse_time(end))
            return
        flt = _filter(start, end, topics)
        total = store.count(flt)
        if stdout:
            for event in store.events(flt):
                sys.stdout.write(event.record.payload + "\n")
            return
        assert to_prefix is not None
        _replay_to_topics(store, flt, total, to_prefix)


def _replay_to_topics(store: JournalStore, flt: EventFilter, total: int, to_prefix: str) -> None:
    producer = bulk_producer(load_settings(RuntimeSettings).kafka_bootstrap, client_id="ata-journal-replay")
    with _progress() as progress:
        task = progress.add_task(f"replay -> {to_prefix}.*", total=total)
        for n, event in enumerate(store.events(flt), start=1):
            r = event.record
            headers = list(orjson.loads(r.headers).items())
            while True:
                try:
                    producer.produce(f"{to_prefix}.{r.topic}", r.payload.encode(), key=r.key.encode() if r.key else None,
                                     headers=headers or None)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.1)
            producer.poll(0)
            if n % PROGRESS_EVERY == 0:
                progress.update(task, completed=n)
        left = producer.flush(60)
        progress.update(task, completed=total)
    if left:
        console(stderr=True).print(f"{left} records not acknowledged")
        raise typer.Exit(1)


def _replay_into(store: JournalStore, service: str, until_ns: int | None) -> None:
    """Write the folded state where the service restores it from at start (stop the service first)."""
    if until_ns is not None:
        raise typer.BadParameter("--into folds the whole journal; --to does not apply")
    with _progress() as progress:
        task = progress.add_task("folding", total=None)
        folder = rebuild(store, progress=lambda n: progress.update(task, completed=n))
    runtime = load_settings(RuntimeSettings)
    redis = Redis.from_url(runtime.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        if service == "risk":
            redis.set(load_settings(RiskSettings).state_key, orjson.dumps(folder.risk.snapshot()))
        elif service == "execution":
            key = f"{load_settings(ExecutionSettings).redis_prefix}:orders"
            mapping = {o.client_order_id: orjson.dumps(o.snapshot()) for o in folder.orders.orders.values()}
            if mapping:
                redis.hset(key, mapping=mapping)
        else:
            raise typer.BadParameter("--into must be risk or execution")
    finally:
        redis.close()
    console(stderr=True).print(f"{service} state rebuilt from {folder.folded} events (journal seq {folder.seq})")


@app.command()
def gaps(url: Url = None, prefix: Prefix = None) -> None:
    """Holes in the persisted offsets of each partition (exit 1 when there is one)."""
    with opened(url, prefix) as store:
        found = store.gaps()
        positions = store.positions()
    out = console()
    for gap in found:
        out.print(f"{gap.topic}:{gap.partition} missing offsets {gap.first}..{gap.last} ({gap.size})")
    out.print(f"{len(positions)} partitions, {len(found)} gaps")
    if found:
        raise typer.Exit(1)


@app.command()
def recover(policy: Annotated[Policy, typer.Option(help="What to do with orphaned orders")] = Policy.RESOLVE,
            publish: Annotated[bool, typer.Option(help="Publish the alignment events")] = True,
            url: Url = None, prefix: Prefix = None) -> None:
    """Rebuild portfolio and open orders (latest snapshot + tail), reconcile orphaned orders with the brokers."""
    report = asyncio.run(_recover(url, prefix, policy, publish))
    table = Table(title=f"Recovery ({policy.value}): {len(report.orphans)} orphaned orders")
    for column in ("client order id", "broker", "journal status", "broker status", "action", "detail"):
        table.add_column(column)
    for f in report.findings:
        table.add_row(f.client_order_id, f.broker, f.local_status.value if f.local_status else "-",
                      f.broker_status.value if f.broker_status else "-", f.action.value if f.action else "-", f.detail)
    out = console()
    out.print(table)
    out.print(f"{len(report.events)} alignment events{' published' if publish else ''}")


async def _recover(url: str | None, prefix: str | None, policy: Policy, publish: bool) -> RecoveryReport:
    ports = [route.port for route in build_ports(load_settings(ExecutionSettings))]
    runtime = load_settings(RuntimeSettings)
    try:
        with opened(url, prefix) as store:
            if not publish:
                return (await recover_orders(store, ports, policy, source="journal/recover"))[1]
            async with KafkaBus(runtime, service="journal") as bus:
                _, report = await recover_orders(store, ports, policy, publisher=bus, source=f"journal/{runtime.instance_id}")
            return report
    finally:
        for port in ports:
            await port.close()


@app.command()
def migrate(url: Url = None, prefix: Prefix = None) -> None:
    """Convert a SQLite journal of schema version 1 to the current version, in place and all or nothing
    (stop the journal service first). PostgreSQL journals read version 1 unchanged and need none."""
    store = unopened(url, prefix)
    if not isinstance(store, SqliteStore):
        console().print("PostgreSQL journals need no migration")
        return
    moved = store.migrate()
    store.open()  # checks the result the way the service will
    store.close()
    console().print(f"{moved} events converted to schema version {SCHEMA_VERSION}" if moved
                    else f"nothing to convert: {store.path} is at schema version {SCHEMA_VERSION}")
