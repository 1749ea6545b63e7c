"""Claims jobs from the store and runs their handlers; retries with backoff; resumes after crashes.

Every replica runs one; the store's conditional claim makes each job run once. Handlers must be
idempotent enough to survive a crash between their side effect and `finish` (at-least-once).
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from datetime import timedelta
from typing import Awaitable, Callable

from bot.aio import run_db
from bot import metrics
from storage.types import utcnow

log = logging.getLogger(__name__)

Handler = Callable[[dict], Awaitable[None]]


class RetryLater(Exception):
    """A handler asks to run again later (e.g. Slack said 429, or a message it depends on is not posted yet).

    A passing condition, not a fault: it does not use up max_attempts; the job keeps waiting in the store
    for up to RETRY_WINDOW (a Slack outage must not drop the alerts made meanwhile). `delay=None` backs off.
    """

    def __init__(self, reason: str, delay: float | None = 5.0):
        super().__init__(reason)
        self.delay = delay


RETRY_WINDOW = timedelta(hours=24)


class GiveUp(Exception):
    """A handler's input can never succeed; the job is failed without retries."""


class Worker:
    def __init__(self, store, handlers: dict[str, Handler], *, concurrency: int = 16, poll: float = 0.25,
                 lease: float = 120.0, max_attempts: int = 8, name: str | None = None):
        self.store = store
        self.handlers = handlers
        self.concurrency = concurrency
        self.poll = poll
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff_base = 1.0     # seconds; doubles per attempt up to backoff_cap
        self.backoff_cap = 300.0
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._running: dict[asyncio.Task, int] = {}   # task -> job id
        self._loop_task: asyncio.Task | None = None
        self._heartbeat_task: asyncio.Task | None = None
        self.idle = asyncio.Event()

    def notify(self) -> None:
        """New work was queued by this process: look now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="job-worker")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="job-heartbeat")

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._loop_task:
            await asyncio.wait([self._loop_task], timeout=timeout)
        if self._running:
            await asyncio.wait(list(self._running), timeout=timeout)
        if self._heartbeat_task:
            self._heartbeat_task.cancel()

    async def _run(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self._running)
            jobs = []
            if free > 0:
                try:
                    jobs = await run_db(self.store.jobs.claim, self.name, limit=free, lease=self.lease)
                except Exception as exc:   # store hiccup: keep the loop alive
                    log.warning("claiming jobs failed: %s", type(exc).__name__)
                    await asyncio.sleep(1.0)
                    continue
            for job in jobs:
                task = asyncio.create_task(self._execute(job))
                self._running[task] = job.id
                task.add_done_callback(lambda t: self._running.pop(t, None))
            if not jobs and not self._running:
                self.idle.set()
            else:
                self.idle.clear()
            if jobs and len(jobs) == free:
                await asyncio.sleep(0)   # more may be waiting
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)
            except asyncio.TimeoutError:
                pass

    async def _heartbeat(self) -> None:
        """Keep extending the leases of running jobs, so only a dead worker's jobs are taken over.

        Without it a job that outlives its lease (slow Fortnox, long Retry-After) would run twice.
        """
        while not self._stopping:
            await asyncio.sleep(self.lease / 3)
            ids = list(self._running.values())
            if not ids:
                continue
            try:
                await run_db(self.store.jobs.extend, ids, self.name, self.lease)
            except Exception as exc:   # store hiccup: the next beat tries again, well within the lease
                log.warning("extending job leases failed: %s", type(exc).__name__)

    async def _execute(self, job) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise GiveUp(f"no handler for job kind {job.kind!r}")
            await handler(job.payload)
        except RetryLater as exc:
            await self._retry(job, str(exc), exc.delay, passing=True)
        except GiveUp as exc:
            log.error("job %s (%s) failed: %s", job.id, job.kind, exc)
            await run_db(self.store.jobs.fail, job.id, self.name, str(exc))
            metrics.JOBS.labels(job.kind, "failed").inc()
        except Exception as exc:
            log.exception("job %s (%s) raised", job.id, job.kind)
            await self._retry(job, f"{type(exc).__name__}: {exc}", None)
        else:
            await run_db(self.store.jobs.finish, job.id, self.name)
            metrics.JOBS.labels(job.kind, "done").inc()
        finally:
            self._wake.set()

    async def _retry(self, job, error: str, delay: float | None, *, passing: bool = False) -> None:
        expired = (utcnow() - job.created_at > RETRY_WINDOW) if passing else job.attempts >= self.max_attempts
        if expired:
            log.error("job %s (%s) gave up after %d attempts: %s", job.id, job.kind, job.attempts, error)
            await run_db(self.store.jobs.fail, job.id, self.name, error)
            metrics.JOBS.labels(job.kind, "failed").inc()
            return
        # Back off as attempts pile up, but never sooner than the handler asked (Slack's Retry-After).
        backoff = min(self.backoff_cap, self.backoff_base * 2.0 ** job.attempts) * (0.5 + random.random() / 2)
        delay = max(delay or 0.0, backoff)
        await run_db(self.store.jobs.retry, job.id, self.name, error, delay)
        metrics.JOBS.labels(job.kind, "retried").inc()

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until no job is pending or running anywhere (tests and the demo)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            pending = await run_db(self.store.jobs.pending)
            if not pending:
                return
            self.notify()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"jobs still pending after {timeout} s: "
                           f"{[(j.kind, j.status) for j in await run_db(self.store.jobs.pending)]}")
