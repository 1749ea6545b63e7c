"""The running bot: store, Fortnox runtime, Slack client, incident service and job worker, wired once."""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from functools import partial

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler, AsyncServerErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.aio import run_db
from bot.fix.service import FixService
from bot.group_commit import GroupCommit
from bot.incidents.service import IncidentService
from bot.jobs.worker import Worker
from bot.runtime import build_runtime, open_store
from bot.settings import Settings
from bot.slack import fix_actions
from bot.slack.delivery import SlackDelivery
from bot.slack.fix_notes import SlackNotes
from bot.slack.permissions import Admins
from bot.slack.results import diagnose_request

log = logging.getLogger(__name__)

IDLE_REFRESH_AFTER = timedelta(hours=20)   # refresh tokens die after 31-45 idle days: touch each daily
MAINTENANCE_EVERY = 600.0


def make_slack_client(settings: Settings) -> AsyncWebClient:
    client = AsyncWebClient(token=settings.slack_bot_token or None, base_url=settings.slack_api_url,
                            timeout=settings.http_timeout_seconds)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    client.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    return client


class Bot:
    def __init__(self, settings: Settings, *, store=None, slack_client: AsyncWebClient | None = None,
                 fortnox_transport=None, worker_concurrency: int = 16, worker_poll: float = 0.25,
                 maintenance: bool = True):
        self.settings = settings
        store = store or open_store(settings, upgrade=True)
        self.runtime = build_runtime(settings, store, transport=fortnox_transport)
        self.store = self.runtime.store
        self.slack = slack_client or make_slack_client(settings)
        self.admins = Admins(settings, self.slack)
        self.incidents = IncidentService(self.store, self.runtime.diagnoser, notify=self.notify, notes=SlackNotes(self))
        self.intake = GroupCommit(self.incidents.ingest, self.incidents.ingest_many, name="event-intake")
        self._job_writes = GroupCommit(lambda request: self.store.jobs.enqueue(**request), self.store.jobs.enqueue_many,
                                       name="job-queue")
        self.delivery = SlackDelivery(self)
        self.handlers = {
            "diagnose": self._diagnose_job,
            "slack.sync": self.delivery.sync,
            "slack.reply": self.delivery.reply,
            "slack.respond": self.delivery.respond,
            "refresh": self._refresh_job,
        }
        self.worker = Worker(self.store, self.handlers, concurrency=worker_concurrency, poll=worker_poll,
                             lease=settings.job_lease_seconds)
        self._maintenance = maintenance
        self._tasks: list[asyncio.Task] = []
        self.extensions: dict[str, object] = {}
        self._install_fix_loop()

    def _install_fix_loop(self) -> None:
        """Reactivation requests, consent callback, replay (bot/fix); their Slack side is bot/slack/fix_actions.py."""
        self.fix = FixService(self.settings, self.store, self.runtime, self.incidents, notes=SlackNotes(self),
                              notify=self.notify)
        self.handlers.update(self.fix.job_handlers())
        self.handlers.update({kind: partial(job, self) for kind, job in fix_actions.JOBS.items()})
        self.extensions.setdefault("slack_routes", []).append(fix_actions.ROUTES)

    async def slack_reachable(self) -> bool:
        """Does the Slack Web API answer auth.test at all (whatever it says)?"""
        try:
            await self.slack.auth_test()
            return True
        except Exception as exc:
            from slack_sdk.errors import SlackApiError

            return isinstance(exc, SlackApiError)   # an answer, even a refusal, means Slack is there

    def notify(self) -> None:
        self.worker.notify()

    async def enqueue(self, kind: str, payload: dict, **options) -> int | None:
        """Queue a job from a request (Store.jobs.enqueue's options) and wake the worker. Concurrent requests
        share one commit, so a burst of clicks does not queue for the store one by one."""
        job_id = await self._job_writes.submit({"kind": kind, "payload": payload, **options})
        self.notify()
        return job_id

    async def start(self) -> None:
        if not self.settings.run_jobs:
            return   # a web-only process (FORTNOX_BOT_RUN_JOBS=false): `fortnox-bot worker` runs the jobs
        self.worker.start()
        if self._maintenance:
            self._tasks.append(asyncio.create_task(self._maintenance_loop(), name="maintenance"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.worker.stop()
        self.intake.close()
        self._job_writes.close()
        await self.runtime.aclose()

    # --- jobs -------------------------------------------------------------------------------
    async def _diagnose_job(self, payload: dict) -> None:
        if payload.get("incident"):
            await self.incidents.diagnose_incident(payload["incident"], trigger=payload.get("trigger", "webhook"),
                                                   actor=payload.get("user", "bot"), announce=payload.get("announce", True))
            return
        # A diagnosis asked for in Slack (/fortnox diagnose): the result goes back to whoever asked. Wired
        # here, not in the Slack app, because a `fortnox-bot worker` process runs this without one.
        await diagnose_request(self, payload)

    async def _refresh_job(self, payload: dict) -> None:
        from storage.types import utcnow

        cred = await run_db(self.store.connections.load, payload["tenant"])
        if cred is None or (cred.issued_at and cred.issued_at > utcnow() - IDLE_REFRESH_AFTER):
            return   # refreshed meanwhile by a diagnosis or another replica
        await self.runtime.tokens.ensure_fresh(payload["tenant"], force=True, seen_generation=cred.generation)

    async def _maintenance_loop(self) -> None:
        from storage.types import utcnow

        while True:
            try:
                due = await run_db(self.store.connections.tenants_due_for_refresh, utcnow() - IDLE_REFRESH_AFTER)
                for tenant_id in due:
                    await run_db(self.store.jobs.enqueue, "refresh", {"tenant": tenant_id},
                                 coalesce=f"refresh:{tenant_id}")
                await run_db(self.store.slack_events.forget_older_than, timedelta(days=2))
                await run_db(self.store.jobs.purge_done, timedelta(days=7))
                await self.fix.maintain()   # reactivation requests nobody decided in time expire
            except Exception as exc:
                log.warning("maintenance failed: %s", type(exc).__name__)
            await asyncio.sleep(MAINTENANCE_EVERY)
