"""Order and fill ledgers of a run, built from its messages, wherever they were read.

The same ledger is built from a backtest's bus, from the live topics or from the journal, so
the two questions every run must answer are asked the same way everywhere:

- **integrity** (:meth:`OrderLedger.problems`): every order intent has one client order id and
  one ``SubmitOrder``; every order command is answered (submitted, accepted or rejected) with at
  most one broker order; fills belong to known orders and never exceed their quantity;
- **parity** (:meth:`OrderLedger.order_rows`, :meth:`OrderLedger.fill_rows`): what was ordered
  and filled, in a form two runs can be compared by (times are event times, ids deterministic).

Redelivery repeats a message with the same ``event_id``: a ledger counts distinct ids, so a
repeated delivery is never a duplicate, while two distinct events for one order are. A fill is
identified by its order and the broker's fill id together: a broker's fill ids are unique per
order, not forever (the in-process simulated broker numbers them afresh after a restart).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from ata.events import ORDER_LIFECYCLE, FillReported, Message, OrderAccepted, OrderRejected, OrderSubmitted, SubmitOrder

#: Answers to an order command: the broker took it (submitted/accepted) or refused it.
ANSWERS = (OrderSubmitted, OrderAccepted, OrderRejected)
#: Quantities are floats; a fill total may exceed the order by rounding only.
QUANTITY_TOLERANCE = 1e-9

OrderRow = tuple[str, str, str, float, int]
FillRow = tuple[str, str, str, str, float, float, int]


@dataclass
class OrderLedger:
    """Orders and fills of one run, keyed by client order id and fill id (see the module docstring)."""

    commands: dict[str, SubmitOrder] = field(default_factory=dict)
    command_ids: defaultdict[str, set[uuid.UUID]] = field(default_factory=lambda: defaultdict(set))
    intents: defaultdict[uuid.UUID, set[str]] = field(default_factory=lambda: defaultdict(set))
    answers: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    submitted: defaultdict[str, set[uuid.UUID]] = field(default_factory=lambda: defaultdict(set))
    broker_orders: defaultdict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    fills: dict[tuple[str, str], FillReported] = field(default_factory=dict)  # by (client order id, fill id)
    fill_ids: defaultdict[tuple[str, str], set[uuid.UUID]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def of(cls, messages: Iterable[Message]) -> OrderLedger:
        ledger = cls()
        for message in messages:
            ledger.add(message)
        return ledger

    def add(self, message: Message) -> None:
        """Book one message (anything that is not an order command, order event or fill is ignored)."""
        if isinstance(message, SubmitOrder):
            coid = message.client_order_id
            self.commands.setdefault(coid, message)
            self.command_ids[coid].add(message.event_id)
            self.intents[message.intent_id].add(coid)
        elif isinstance(message, FillReported):
            key = (message.client_order_id, message.fill_id)
            self.fills.setdefault(key, message)
            self.fill_ids[key].add(message.event_id)
        elif isinstance(message, ORDER_LIFECYCLE):
            coid = message.client_order_id
            if isinstance(message, ANSWERS):
                self.answers[coid].add(message.event_type)
            if isinstance(message, OrderSubmitted):
                self.submitted[coid].add(message.event_id)
            if message.broker_order_id:
                self.broker_orders[coid].add((message.broker, message.broker_order_id))

    def problems(self, orders: Collection[str] | None = None) -> list[str]:
        """Every integrity violation, described; ``orders`` limits the answered-check to those client order ids
        (e.g. the commands known to have been handled), default all. An empty list means a clean ledger."""
        found: list[str] = []
        for intent, coids in self.intents.items():
            if len(coids) > 1:
                found.append(f"intent {intent} has {len(coids)} client order ids: {sorted(coids)}")
        for coid, ids in self.command_ids.items():
            if len(ids) > 1:
                found.append(f"order {coid} was commanded {len(ids)} times")
        for coid in self.commands if orders is None else orders:
            if coid not in self.commands:
                found.append(f"order {coid} has no SubmitOrder")
            elif not self.answers.get(coid):
                found.append(f"order {coid} was never answered (lost)")
        for coid, ids in self.submitted.items():
            if len(ids) > 1:
                found.append(f"order {coid} was submitted to a broker {len(ids)} times")
        for coid, brokers in self.broker_orders.items():
            if len(brokers) > 1:
                found.append(f"order {coid} has {len(brokers)} broker orders: {sorted(brokers)}")
        filled: defaultdict[str, float] = defaultdict(float)
        for key, fill in self.fills.items():
            if len(self.fill_ids[key]) > 1:
                found.append(f"fill {'/'.join(key)} was reported {len(self.fill_ids[key])} times")
            if fill.client_order_id not in self.commands:
                found.append(f"fill {'/'.join(key)} belongs to no known order")
            filled[fill.client_order_id] += fill.quantity
        for coid, quantity in filled.items():
            command = self.commands.get(coid)
            if command is not None and quantity > command.quantity * (1 + QUANTITY_TOLERANCE):
                found.append(f"order {coid} filled {quantity} > ordered {command.quantity}")
        return found

    def order_rows(self) -> list[OrderRow]:
        """``(client_order_id, symbol, side, quantity, ts_event)`` per order, sorted."""
        return sorted((c.client_order_id, c.symbol, c.side.value, c.quantity, c.ts_event) for c in self.commands.values())

    def fill_rows(self) -> list[FillRow]:
        """``(fill_id, client_order_id, symbol, side, quantity, price, ts_event)`` per fill, sorted."""
        return sorted((f.fill_id, f.client_order_id, f.symbol, f.side.value, f.quantity, f.price, f.ts_event)
                      for f in self.fills.values())
