"""Building hot-path output events without paying for validation twice.

A service core that emits several events per input (a strategy per bar, regime per key) spends
more on ``Message.caused_by`` than on its own logic: ``uuid.uuid5`` re-parses its arguments on
every call and pydantic re-validates values the core produced itself. Two tools, each exactly
equivalent to the slow path (the tests prove it):

- :func:`derived_ids` equals ``[derived_id(cause_id, i, salt) for i in indices]``;
  :func:`uuid5_of` equals ``uuid.uuid5`` given the namespace's 16 bytes and the encoded name.
- :func:`assembled` builds a model instance the way ``BaseModel.model_construct`` does when every
  field is given (``__dict__`` in field order, every field set), without its per-field alias and
  default look-ups. It trusts its input completely, so the caller must check, value by value, that
  validation would accept each value *unchanged* (types exact, bounds, lengths, patterns,
  finiteness) and otherwise use the validated constructor, which raises the usual
  ``ValidationError``. Use :func:`assemblable` once per model to confirm that the model still has
  the fields the caller fills and no hook that validation would run (validators aside, which the
  caller's checks stand in for).

Callers hold themselves to validated construction with a property test: equal models, equal
``model_fields_set`` and identical wire bytes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any, Final, TypeVar

from pydantic import BaseModel

__all__ = ["assemblable", "assembled", "derived_ids", "uuid5_of"]

M = TypeVar("M", bound=BaseModel)

# What ``UUID(bytes=..., version=5)`` does to the SHA-1 prefix: RFC 4122 variant, version 5.
_CLEAR: Final = ~((0xC000 << 48) | (0xF000 << 64))
_SET: Final = (0x8000 << 48) | (5 << 76)
_setattr = object.__setattr__
# Read once: an enum member read through its class runs the enum descriptor on every access.
_SAFE_UNKNOWN: Final = uuid.SafeUUID.unknown


def uuid5_of(namespace: bytes, name: bytes) -> uuid.UUID:
    """``uuid.uuid5(UUID(bytes=namespace), name.decode())``, made as ``UUID.__init__`` makes it
    minus the argument parsing that dominates its cost for a one-off id."""
    value = (int.from_bytes(hashlib.sha1(namespace + name, usedforsecurity=False).digest()[:16]) & _CLEAR) | _SET
    out = object.__new__(uuid.UUID)
    _setattr(out, "int", value)
    _setattr(out, "is_safe", _SAFE_UNKNOWN)
    return out


def derived_ids(cause_id: uuid.UUID, salt: str, indices: Iterable[int]) -> list[uuid.UUID]:
    """``[derived_id(cause_id, i, salt=salt) for i in indices]``, encoding the shared parts once."""
    namespace = cause_id.bytes
    prefix = f"{salt}\x1f".encode()
    return [uuid5_of(namespace, prefix + str(i).encode()) for i in indices]


def assemblable(cls: type[BaseModel], fields: tuple[str, ...]) -> bool:
    """Whether :func:`assembled` with values for exactly ``fields`` (in this order) makes instances
    indistinguishable from validated ones: the model declares these fields in this order, is frozen,
    forbids extra fields, and has no post-init hook, private attributes or root model. A model that
    changed since the caller was written makes this false; the caller then validates."""
    config = cls.model_config
    return (
        tuple(cls.model_fields) == fields
        and not cls.__pydantic_post_init__
        and not cls.__private_attributes__
        and not cls.__pydantic_root_model__
        and config.get("extra") == "forbid"
        and bool(config.get("frozen"))
    )


def assembled(cls: type[M], values: dict[str, Any]) -> M:
    """``cls.model_construct(**values)`` for ``values`` naming every field of ``cls`` in declaration
    order, each already valid (see the module contract: nothing is checked here)."""
    obj = object.__new__(cls)
    _setattr(obj, "__dict__", values)
    _setattr(obj, "__pydantic_fields_set__", set(values))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj
