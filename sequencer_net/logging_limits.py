"""Rate limits for log events that someone else can trigger.

A peer, a client or an attacker that repeats one bad input must not be able
to turn the log into the flood (one outside connection once wrote 2,000
warnings in 15 s). `LogLimiter` keys each event by (event name, peer, and an
optional further key such as a drop reason):

- the first occurrence of a key is logged at once, in full;
- later occurrences within `interval_s` of the key's window start are only
  counted;
- when the window ends, one summary line reports them: the last suppressed
  occurrence's text followed by ` repeated=N interval_s=S`. The summary is
  written at the next occurrence after the window, or by `flush()`, whichever
  comes first; a key idle for a whole window is forgotten, so its next
  occurrence is logged in full again.

So one key writes at most one line per interval however often it fires.
Memory is bounded by `max_keys` per event name: when an event already tracks
that many peers, a new peer's occurrences are counted under peer "*" instead.
Budgets are per event so that a flood of one event from many peers (random
keys dialing in) cannot push another event of a known peer (a validator's
disconnect) into the aggregate. Event names and further keys are constants in
code, so the number of budgets is bounded too.

Pure apart from the logger: the caller passes a clock (default
`time.monotonic`), so tests drive it with a fake one. Not thread-safe; each
trio program uses it from its one thread. Call `flush()` periodically
(`run_flusher` does so) so the summary of a flood that stopped is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Final

OVERFLOW_PEER: Final = "*"
"""The peer under which a new key is counted once `max_keys` keys are tracked."""

DEFAULT_INTERVAL_S: Final = 10.0
DEFAULT_MAX_KEYS: Final = 256


_Key = tuple[str, Hashable, Hashable]  # (event, peer, further key)


@dataclass
class _Window:
    started: float
    level: int
    suppressed: int = 0
    # Format string and args of the last suppressed occurrence, formatted only
    # if a summary is written (a flood costs a counter increment, not a format).
    last_fmt: str = ""
    last_args: tuple[Any, ...] = field(default_factory=tuple)


class LogLimiter:
    """Logs the first occurrence of each (event, peer), then one count per interval."""

    __slots__ = (
        "_clock",
        "_interval_s",
        "_keys",
        "_logger",
        "_max_keys",
        "_per_event",
        "suppressed_total",
    )

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("LogLimiter interval_s must be positive")
        if max_keys < 1:
            raise ValueError("LogLimiter max_keys must be at least 1")
        self._logger = logger
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._keys: dict[_Key, _Window] = {}
        self._per_event: dict[str, int] = {}  # keys tracked per event name
        self.suppressed_total = 0  # occurrences counted instead of logged, ever

    @property
    def tracked_keys(self) -> int:
        return len(self._keys)

    def tracked_keys_of(self, event: str) -> int:
        return self._per_event.get(event, 0)

    def log(
        self,
        level: int,
        event: str,
        peer: Hashable,
        fmt: str = "",
        *args: Any,
        key: Hashable = None,
    ) -> bool:
        """Record one occurrence; True if a line was written for it now.

        The line is `"{event} peer={peer} " + fmt % args` (fmt uses %-style
        placeholders, as logging does). `key`, if given, is a further part of
        the rate-limit key that the line already shows (e.g. a drop reason), so
        each reason gets its own first line and count.
        """
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        full_key: _Key = (event, peer, key)
        window = self._keys.get(full_key)
        if window is None and self._per_event.get(event, 0) >= self._max_keys:
            full_key = (event, OVERFLOW_PEER, key)
            window = self._keys.get(full_key)
        if window is None:
            self._keys[full_key] = _Window(started=now, level=level)
            self._per_event[event] = self._per_event.get(event, 0) + 1
            self._write(level, event, full_key[1], fmt, args, None)
            return True
        if now - window.started >= self._interval_s:
            self._write_summary(full_key, window, now)
            window.started = now
        window.suppressed += 1
        window.level = max(window.level, level)
        window.last_fmt, window.last_args = fmt, _plain(args)
        self.suppressed_total += 1
        return False

    def debug(
        self, event: str, peer: Hashable, fmt: str = "", *args: Any, key: Hashable = None
    ) -> bool:
        return self.log(logging.DEBUG, event, peer, fmt, *args, key=key)

    def info(
        self, event: str, peer: Hashable, fmt: str = "", *args: Any, key: Hashable = None
    ) -> bool:
        return self.log(logging.INFO, event, peer, fmt, *args, key=key)

    def warning(
        self, event: str, peer: Hashable, fmt: str = "", *args: Any, key: Hashable = None
    ) -> bool:
        return self.log(logging.WARNING, event, peer, fmt, *args, key=key)

    def flush(self) -> int:
        """Write the summaries of windows that have ended; forget idle keys.

        Returns the number of summary lines written.
        """
        now = self._clock()
        written = 0
        for key, window in list(self._keys.items()):
            if now - window.started < self._interval_s:
                continue
            if window.suppressed == 0:
                del self._keys[key]  # idle for a whole window: log in full next time
                self._per_event[key[0]] -= 1
                continue
            self._write_summary(key, window, now)
            written += 1
            window.started = now
        return written

    def _write_summary(self, key: _Key, window: _Window, now: float) -> None:
        if window.suppressed == 0:
            return
        elapsed = now - window.started
        suffix = (window.suppressed, elapsed)
        self._write(window.level, key[0], key[1], window.last_fmt, window.last_args, suffix)
        window.suppressed = 0
        window.last_fmt, window.last_args = "", ()

    def _write(
        self,
        level: int,
        event: str,
        peer: Hashable,
        fmt: str,
        args: tuple[Any, ...],
        summary: tuple[int, float] | None,
    ) -> None:
        text = f"{event} peer={peer}"
        if fmt:
            text = f"{text} {fmt % args}" if args else f"{text} {fmt}"
        if summary is not None:
            text = f"{text} repeated={summary[0]} interval_s={summary[1]:.1f}"
        self._logger.log(level, "%s", text)


_PLAIN = (str, int, float, bool, type(None))


def _plain(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Args safe to keep until the summary: anything else (an exception with its
    traceback, a connection) is turned into its text now, so a suppressed line
    never keeps objects alive."""
    if all(isinstance(a, _PLAIN) for a in args):
        return args
    return tuple(a if isinstance(a, _PLAIN) else str(a) for a in args)


async def run_flusher(limiter: LogLimiter, every_s: float) -> None:
    """Call `limiter.flush()` every `every_s` seconds until cancelled (trio)."""
    import trio  # only trio programs run the flusher; keep this module light

    while True:
        await trio.sleep(every_s)
        limiter.flush()


__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_MAX_KEYS", "OVERFLOW_PEER", "LogLimiter", "run_flusher"]


class RepeatedProblem:
    """The current problem of a background task (a price source down, an L1
    endpoint unreachable), logged when it first appears or changes and at most
    once per `interval_s` while it repeats unchanged."""

    def __init__(
        self,
        logger: logging.Logger,
        event: str,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.event = event
        self.interval_s = interval_s
        self.clock = clock
        self._last: tuple[str, float] | None = None

    def report(self, message: str) -> None:
        now = self.clock()
        last = self._last
        if last is None or last[0] != message or now - last[1] >= self.interval_s:
            self._last = (message, now)
            self.logger.warning("event=%s error=%r", self.event, message)
