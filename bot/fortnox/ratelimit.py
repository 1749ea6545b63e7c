"""Client-side throttle for Fortnox's 25 requests / 5 s sliding window per tenant (reference §9)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class _Window:
    __slots__ = ("stamps", "lock", "blocked_until", "users")

    def __init__(self) -> None:
        self.stamps: deque[float] = deque()  # start times of calls inside the window
        self.lock = asyncio.Lock()  # FIFO queue of waiters: one wakes per free slot, not all of them
        self.blocked_until = 0.0
        self.users = 0  # coroutines currently inside acquire()


class RateLimiter:
    """Async sliding-window limiter: at most `max_calls` acquisitions per `per_seconds` per key.

    Waiting uses asyncio.sleep, never blocking the loop. Windows of idle keys are dropped, so
    memory follows the number of recently active keys, not every tenant ever seen.
    """

    def __init__(self, max_calls: int = 25, per_seconds: float = 5.0, *, clock: Callable[[], float] = time.monotonic):
        if max_calls < 1 or not per_seconds > 0:
            raise ValueError("max_calls must be >= 1 and per_seconds > 0")
        self.max_calls = max_calls
        self.per_seconds = float(per_seconds)
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._last_sweep = clock()

    def __len__(self) -> int:
        """Number of keys currently tracked (for tests and metrics)."""
        return len(self._windows)

    async def acquire(self, key: str) -> None:
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = _Window()
        w.users += 1
        try:
            async with w.lock:
                while True:
                    now = self._clock()
                    self._expire(w, now)
                    if w.blocked_until > now:
                        wait = w.blocked_until - now
                    elif len(w.stamps) >= self.max_calls:
                        wait = w.stamps[0] + self.per_seconds - now
                    else:
                        w.stamps.append(now)
                        return
                    await asyncio.sleep(max(wait, 0.001))
        finally:
            w.users -= 1
            self._sweep()

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """acquire() for one whole call, which then counts against the window from when it ended.

        Fortnox counts a call when it arrives, somewhere between our start and our end (opening a connection
        can take a while, and a later call on a warm connection overtakes it). Counting from the end keeps
        every window Fortnox sees within the limit, whatever the network does.
        """
        await self.acquire(key)
        w = self._windows[key]
        started = w.stamps[-1]   # acquire() appends its stamp last and returns without yielding in between
        w.users += 1             # the window must outlive the call (see _sweep)
        try:
            yield
        finally:
            w.users -= 1
            try:
                w.stamps.remove(started)
            except ValueError:
                pass             # it expired already: the call took longer than the window
            w.stamps.append(self._clock())

    def penalise(self, key: str, seconds: float) -> None:
        """Block `key` for `seconds` (Fortnox's Retry-After); never shortens an existing block."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            return
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = _Window()
        w.blocked_until = max(w.blocked_until, self._clock() + seconds)

    def _expire(self, w: _Window, now: float) -> None:
        horizon = now - self.per_seconds
        while w.stamps and w.stamps[0] <= horizon:
            w.stamps.popleft()

    def _sweep(self) -> None:
        # At most once per window length: O(keys) amortised over a whole window of calls.
        now = self._clock()
        if now - self._last_sweep < self.per_seconds:
            return
        self._last_sweep = now
        for key, w in list(self._windows.items()):
            self._expire(w, now)
            if not w.stamps and w.users == 0 and w.blocked_until <= now:
                del self._windows[key]
