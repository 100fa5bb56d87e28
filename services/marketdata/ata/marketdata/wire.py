"""Wire bytes of clean bars in bulk, for historical replay.

:func:`clean_bar_payloads` writes, for each row of a :class:`~ata.marketdata.core.CleanBars`,
the bytes :func:`ata.runtime.codec.encode` would write for the :class:`~ata.events.BarClosed`
that :meth:`IntegrityChecker.process <ata.marketdata.core.IntegrityChecker.process>` builds
for it, without building (and validating) the model: the batch checker has proven every
constraint the model enforces for these rows. The event id is uuid5 computed with
:mod:`hashlib` directly (the same algorithm as :func:`uuid.uuid5`, without a ``UUID`` object per
bar). Tests assert byte equality with the codec and id equality with :func:`ata.events.origin_id`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import orjson

from ata.events import BarClosed, Message
from ata.events.envelope import ATA_NAMESPACE
from ata.marketdata.core import CleanBars

#: ``natural_key`` parts are joined with this separator before hashing (see ``ata.events.origin_id``).
_SEPARATOR = "\x1f"


def wire_bytes(message: Message) -> bytes:
    """The codec's wire form (:func:`ata.runtime.codec.encode`), serialised in one step by pydantic-core.

    ``encode`` builds a dict and hands it to orjson; the model's own serializer writes the same
    bytes without the intermediate dict, at about half the cost, which matters at replay rates.
    A test asserts byte equality with ``encode`` for every message type this service publishes.
    """
    return type(message).__pydantic_serializer__.to_json(message)


def origin_id_prefix(*natural_key_head: object) -> bytes:
    """The bytes hashed before an origin id's last name part: the namespace and the leading parts, each followed
    by the separator; finish with :func:`uuid5_text` / :func:`uuid5_texts`."""
    return ATA_NAMESPACE.bytes + "".join(f"{part}{_SEPARATOR}" for part in natural_key_head).encode()


def uuid5_text(prefix: bytes, last_part: object) -> str:
    """``str(origin_id(*head, last_part))`` for the ``head`` that ``prefix`` was built from."""
    return uuid5_texts(prefix, [str(last_part).encode()])[0].decode()


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: Where the 32 hex digits go in the 36 characters of a UUID's text (the rest are hyphens).
_DIGIT_AT = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuid5_texts(prefix: bytes, last_parts: Sequence[bytes]) -> list[bytes]:
    """:func:`uuid5_text` of each of ``last_parts`` (``str(part).encode()``), as ASCII bytes: one SHA-1 per id,
    the formatting vectorised."""
    sha1 = hashlib.sha1
    digests = np.frombuffer(b"".join([sha1(prefix + part).digest() for part in last_parts]), dtype=np.uint8)
    raw = digests.reshape(-1, 20)[:, :16].copy()  # a UUID is the first 16 of SHA-1's 20 bytes
    raw[:, 6] = raw[:, 6] & 0x0F | 0x50  # version 5
    raw[:, 8] = raw[:, 8] & 0x3F | 0x80  # RFC 4122 variant
    text = np.full((len(raw), 36), ord("-"), dtype=np.uint8)
    text[:, _DIGIT_AT[0::2]] = _HEX[raw >> 4]
    text[:, _DIGIT_AT[1::2]] = _HEX[raw & 0x0F]
    flat = text.tobytes()
    return [flat[i:i + 36] for i in range(0, len(flat), 36)]


def _json_items(values: npt.NDArray[np.float64] | npt.NDArray[np.int64]) -> list[bytes]:
    """orjson's text of each value (one call for the whole column; numbers never contain a comma). orjson writes a
    numpy float64 / int64 exactly as the Python float / int (tested through the codec equality of the wire bytes)."""
    return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",") if len(values) else []


def _constant(value: object) -> bytes:
    """orjson's text of a value fixed for a whole run, escaped for ``bytes %`` formatting."""
    return orjson.dumps(value).replace(b"%", b"%%")


def clean_bar_payloads(clean: CleanBars, *, source: str, ts_init: int) -> list[bytes]:
    """Codec bytes of each clean row's ``BarClosed`` (published by ``source`` at ``ts_init``), in row order.

    The object is laid out as ``encode`` writes it (fields in model order); the per-bar values are
    rendered by orjson a column at a time and dropped into the constant frame.
    """
    batch, rows = clean.batch, clean.rows
    if not len(rows):
        return []
    symbol = batch.symbols[batch.symbol_index[rows[0]]]
    prefix = origin_id_prefix(BarClosed.__name__, batch.source, symbol, batch.timeframe)
    frame = b"".join((
        b'{"event_id":"%s","event_type":', _constant(BarClosed.__name__), b',"schema_version":',
        _constant(BarClosed.SCHEMA_VERSION), b',"ts_event":%s,"ts_init":', _constant(ts_init), b',"source":',
        _constant(source), b',"correlation_id":"%s","causation_id":null,"symbol":', _constant(symbol), b',"timeframe":',
        _constant(batch.timeframe), b',"ts_open":%s,"open":%s,"high":%s,"low":%s,"close":%s,"volume":%s,"venue":',
        _constant(batch.venue), b"}",
    ))
    ts_close, ts_open, o, h, low, c, v = (_json_items(column[rows]) for column in (
        batch.ts_close, batch.ts_open, batch.open, batch.high, batch.low, batch.close, batch.volume))
    ids = uuid5_texts(prefix, ts_open)  # orjson writes an int as str() does: the id's name part
    # Named loop variables: unpacking into a starred list would cost a list per bar.
    return [frame % (i, tc, i, to, o_, h_, l_, c_, v_)
            for i, tc, to, o_, h_, l_, c_, v_ in zip(ids, ts_close, ts_open, o, h, low, c, v, strict=True)]
