"""What ``ata up`` trades on: replayed data through the simulated broker, or the Alpaca paper account.

A mode is a set of environment variables for the service children. ``defaults`` apply where the
environment does not set the variable already (so any one setting can still be overridden);
``forced`` always apply.

- **replay** (no Alpaca keys, the default): market data replays synthetic multi-symbol bars (or
  the shipped S&P 500 series) at a speed factor, with the market-closed hours between sessions
  skipped down to at most a second of wall time each (``ATA_MARKETDATA_CLOSED_GAPS=skip``: the
  bars keep their times, only the waiting goes), execution trades through the in-process
  simulated broker, both on market time.
- **alpaca** (``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY`` set, the names Alpaca's own tools
  use): market data streams live minute bars of ``ATA_MARKETDATA_SYMBOLS`` from Alpaca, execution
  trades through the Alpaca *paper* account (forced: ``ata up`` never trades live), and
  execution and risk run on the machine clock, as live data needs. The one key pair becomes
  each service's own variables (``ATA_MARKETDATA_ALPACA_*``, ``ATA_EXECUTION_ALPACA_*``); the
  endpoints are those services' variables (``ATA_EXECUTION_ALPACA_BASE_URL``,
  ``ATA_MARKETDATA_ALPACA_STREAM_URL``, ``ATA_MARKETDATA_ALPACA_DATA_URL``) and pass through.

One of the pair without the other is a :class:`ModeError` naming the missing variable. The keys
go into the children's environment and nowhere else: :func:`describe` and ``repr`` leave them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

KEY_VAR = "APCA_API_KEY_ID"
SECRET_VAR = "APCA_API_SECRET_KEY"
#: Replay pace per data set: synthetic 1-minute bars at 10 minutes a second; daily bars at a day a second.
DEFAULT_SPEED = {"synthetic": 600.0, "sp500": 86_400.0}
#: Symbols streamed from Alpaca unless ``ATA_MARKETDATA_SYMBOLS`` names others.
DEFAULT_ALPACA_SYMBOLS = ("AAPL", "MSFT", "AMZN", "GOOGL", "NVDA")
ALPACA_PAPER_URL = "https://paper-api.alpaca.markets"


class ModeError(ValueError):
    """The run mode's settings are inconsistent; the message names the variables (never their values)."""


@dataclass(frozen=True)
class RunMode:
    """``name`` is ``replay`` or ``alpaca``; ``summary`` says what it trades on, without secrets."""

    name: str
    summary: str
    defaults: Mapping[str, str] = field(repr=False)
    forced: Mapping[str, str] = field(default_factory=dict, repr=False)


def paper_defaults(data: str = "synthetic", speed: float | None = None, symbols: int = 5) -> dict[str, str]:
    """Environment defaults of a paper-trading run over replayed ``data`` (synthetic or sp500)."""
    pace = DEFAULT_SPEED[data] if speed is None else speed
    source = ({"ATA_MARKETDATA_SOURCE": "synthetic", "ATA_MARKETDATA_SYNTHETIC_SYMBOLS": str(symbols)} if data == "synthetic"
              else {"ATA_MARKETDATA_SOURCE": "dataset", "ATA_MARKETDATA_DATASET": data})
    return {**source, "ATA_MARKETDATA_SPEED_FACTOR": repr(pace), "ATA_MARKETDATA_CLOSED_GAPS": "skip",
            "ATA_EXECUTION_BROKERS": "sim", "ATA_EXECUTION_CLOCK": "market"}


def alpaca_keys(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The Alpaca key pair, None when neither is set; :class:`ModeError` naming the one that is missing."""
    key, secret = (environ.get(name, "").strip() for name in (KEY_VAR, SECRET_VAR))
    if not key and not secret:
        return None
    if not key or not secret:
        missing, given = (KEY_VAR, SECRET_VAR) if not key else (SECRET_VAR, KEY_VAR)
        raise ModeError(f"{missing} is not set but {given} is: Alpaca paper trading needs both "
                        f"(unset both to paper trade on replayed data)")
    return key, secret


def alpaca_mode(key: str, secret: str) -> RunMode:
    """Live Alpaca bars and the Alpaca paper account (see the module docstring)."""
    defaults = {"ATA_MARKETDATA_SOURCE": "alpaca", "ATA_MARKETDATA_SYMBOLS": json.dumps(list(DEFAULT_ALPACA_SYMBOLS)),
                "ATA_MARKETDATA_ALPACA_API_KEY": key, "ATA_MARKETDATA_ALPACA_SECRET_KEY": secret,
                "ATA_EXECUTION_BROKERS": "alpaca",
                "ATA_EXECUTION_ALPACA_API_KEY": key, "ATA_EXECUTION_ALPACA_SECRET_KEY": secret,
                "ATA_EXECUTION_CLOCK": "wall", "ATA_RISK_CLOCK": "wall"}
    return RunMode("alpaca", "Alpaca paper trading", defaults, {"ATA_EXECUTION_ALPACA_PAPER": "true"})


def run_mode(environ: Mapping[str, str], data: str = "synthetic", speed: float | None = None, symbols: int = 5) -> RunMode:
    """Alpaca paper when the keys are in ``environ``, else replay of ``data`` (``--data/--speed/--symbols``)."""
    keys = alpaca_keys(environ)
    if keys is not None:
        return alpaca_mode(*keys)
    return RunMode("replay", f"paper trading on replayed {data} data through the simulated broker",
                   paper_defaults(data, speed, symbols))


def describe(mode: RunMode, environ: Mapping[str, str]) -> str:
    """One line for the console: the mode, and what it reads and trades through once ``environ`` has its say."""
    effective = {**mode.defaults, **environ, **mode.forced}
    if mode.name == "alpaca":
        source = effective.get("ATA_MARKETDATA_SOURCE", "")
        bars = (f"live bars of {effective.get('ATA_MARKETDATA_SYMBOLS')} from "
                f"{effective.get('ATA_MARKETDATA_ALPACA_STREAM_URL') or 'Alpaca'}") if source == "alpaca" else f"{source} bars"
        orders = f"orders to the Alpaca paper account at {effective.get('ATA_EXECUTION_ALPACA_BASE_URL') or ALPACA_PAPER_URL}"
        return f"mode: {mode.summary} ({bars}; {orders})"
    return (f"mode: {mode.summary} (speed {effective.get('ATA_MARKETDATA_SPEED_FACTOR')}x); "
            f"set {KEY_VAR} and {SECRET_VAR} to trade on Alpaca paper instead")
