"""Group commit: whatever requests hand to the store while it is busy is written in one unit of work.

Each request still waits for its own item to be committed (a 202 promises the event is stored; "Diagnosing…"
promises the job is queued), but concurrent requests share the transaction, the round trips and, on
SQLite, the one writer's turn. Nothing waits on a timer: a lone item is written at once, and during a
burst each batch is what arrived while the previous one was being written. A batch the store refuses as
a whole (say, a conflict with another replica) is retried item by item, so one item's problem is never
another's. Used for webhook events (Incidents.ingest_many) and for jobs queued by Slack requests.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

log = logging.getLogger(__name__)

MAX_BATCH = 500


class GroupCommit:
    def __init__(self, one: Callable, many: Callable, *, name: str, max_batch: int = MAX_BATCH):
        self._one = one              # sync, item -> result; retries races with other replicas itself
        self._many = many            # sync, [item] -> [result], all or nothing
        self._name = name
        self._max = max_batch
        self._waiting: list[tuple[object, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)

    async def submit(self, item):
        """Write `item` (with whatever else is waiting); returns its result or raises its error."""
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name=self._name)
        # shield: a client that hangs up must not cancel the commit other requests wait on
        return await asyncio.shield(future)

    async def _flush_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[object, asyncio.Future]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._run(self._many, items)
        except Exception as exc:
            log.info("%s: a batch of %d was refused as a whole (%s); writing them one by one",
                     self._name, len(items), type(exc).__name__)
            for item, future in batch:
                try:
                    _settle(future, result=await self._run(self._one, item))
                except Exception as one_exc:
                    _settle(future, error=one_exc)
            return
        for (_, future), result in zip(batch, results):
            _settle(future, result=result)

    async def _run(self, fn, arg):
        # A thread of its own: requests never queue behind the job worker's store calls in the shared pool.
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, arg)

    def close(self) -> None:
        self._thread.shutdown(wait=False)


def _retrieved(future: asyncio.Future) -> None:
    """Mark an error as seen even if its request hung up before reading it (no "never retrieved" noise)."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future, *, result=None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
