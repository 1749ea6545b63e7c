"""Run diagnoses: one tenant, or every tenant concurrently within Fortnox's per-tenant rate limit."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import AsyncIterator

from bot.aio import run_db
from bot.diagnosis.gather import Gatherer
from bot.diagnosis.model import Diagnosis
from bot.diagnosis.rules import decide
from bot.fortnox.errors import FortnoxError

log = logging.getLogger(__name__)


class Diagnoser:
    def __init__(self, store, client, tokens, settings):
        self.store = store
        self.gatherer = Gatherer(store, client, tokens, settings)

    async def run(self, tenant_id: str, *, reported: FortnoxError | None = None, trigger: str = "cli",
                  save: bool = True) -> Diagnosis:
        facts = await self.gatherer.gather(tenant_id, reported)
        diagnosis = decide(facts)
        log.info("diagnosed %s: %s", tenant_id, diagnosis.cause)
        if save and facts.tenant_known:
            try:
                record = await run_db(self.store.diagnoses.add, tenant_id=tenant_id, cause=str(diagnosis.cause),
                                      summary=diagnosis.summary, checks=[c.to_json() for c in diagnosis.checks],
                                      steps=[s.to_json(i) for i, s in enumerate(diagnosis.steps, 1)],
                                      trigger=trigger)
                diagnosis = replace(diagnosis, record_id=record.id)
            except Exception as exc:  # noqa: BLE001 - history is nice to have; the answer matters more
                log.warning("could not save the diagnosis of %s: %s", tenant_id, type(exc).__name__)
        return diagnosis

    async def run_many(self, tenant_ids: list[str], *, concurrency: int = 100,
                       trigger: str = "bulk") -> AsyncIterator[tuple[str, Diagnosis | Exception]]:
        """(tenant, diagnosis) in completion order; a tenant that could not be diagnosed yields its exception
        instead, so one failure does not hide the others. Concurrency across tenants is free: Fortnox limits
        per tenant, and the client's limiter keeps each tenant under that."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        for tid in tenant_ids:
            queue.put_nowait(tid)
        results: asyncio.Queue[tuple[str, Diagnosis | Exception]] = asyncio.Queue()

        async def worker() -> None:
            while True:
                try:
                    tid = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    results.put_nowait((tid, await self.run(tid, trigger=trigger)))
                except Exception as exc:  # noqa: BLE001 - reported per tenant by the caller
                    log.warning("diagnosing %s failed: %s", tid, type(exc).__name__)
                    results.put_nowait((tid, exc))

        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, max(1, len(tenant_ids))))]
        try:
            for _ in range(len(tenant_ids)):
                yield await results.get()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
