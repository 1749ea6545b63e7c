"""Ask the platform to re-run a tenant's failed exports (PLATFORM_REPLAY_URL), as a durable job with retries.

Signed with Standard Webhooks exactly like the export webhook we receive (EXPORT_WEBHOOK_SECRET), and
`webhook-id` is one idempotency key per incident, the same on every retry and manual re-try, so the
platform can run each incident's replay once however often we ask.
"""
from __future__ import annotations

import json
import logging

import httpx

from bot.aio import run_db
from bot.jobs.worker import GiveUp, RetryLater
from bot.webhooks.signing import signed_headers

log = logging.getLogger(__name__)

JOB = "fix.replay"
TIMEOUT = 10.0
RETRY_DELAY = 10.0


def _retry_after(resp: httpx.Response) -> float:
    """The platform's Retry-After (seconds, capped), else a short pause; the worker counts the attempts."""
    try:
        return min(max(float(resp.headers.get("retry-after", "")), 0.0), 300.0)
    except ValueError:
        return RETRY_DELAY


def replay_key(incident_id: str) -> str:
    return f"replay_{incident_id}"


class Replayer:
    def __init__(self, settings, store, notes, *, notify=lambda: None):
        self.settings = settings
        self.store = store
        self.notes = notes
        self.notify = notify

    @property
    def enabled(self) -> bool:
        return bool(self.settings.platform_replay_url)

    async def schedule(self, *, tenant_id: str, incident_id: str, actor: str) -> bool:
        if not self.enabled:
            return False
        await run_db(self.store.jobs.enqueue, JOB, {"tenant": tenant_id, "incident": incident_id, "actor": actor},
                     coalesce=f"replay:{incident_id}")
        self.notify()
        return True

    def _signed(self, payload: dict) -> tuple[bytes, dict]:
        body = json.dumps({"tenant": payload["tenant"], "incident": payload["incident"], "reason": "reactivated"})
        # A fresh timestamp per attempt keeps retries inside the 300 s window; the id stays the same.
        return body.encode(), signed_headers(self.settings.export_webhook_secret, body.encode(),
                                             msg_id=replay_key(payload["incident"]))

    async def run(self, payload: dict) -> None:
        """The job: POST once; 2xx is done, 408/429/5xx and network trouble retry later, other 4xx give up."""
        if not self.enabled:
            raise GiveUp("PLATFORM_REPLAY_URL is not set")
        body, headers = self._signed(payload)
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
                resp = await http.post(self.settings.platform_replay_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RetryLater(f"replay endpoint unreachable: {type(exc).__name__}", RETRY_DELAY) from None
        incident_id, tenant_id = payload["incident"], payload["tenant"]
        if resp.status_code in (408, 425, 429) or resp.status_code >= 500:
            raise RetryLater(f"replay endpoint answered {resp.status_code}", _retry_after(resp))
        if not resp.is_success:
            await run_db(self.store.audit.record, "replay_failed", actor=payload.get("actor", "bot"),
                         tenant_id=tenant_id, incident_id=incident_id, detail={"status": resp.status_code})
            await self.notes.note(incident_id, f"⚠️ The platform refused the replay (HTTP {resp.status_code}); "
                                               "the failed exports were not re-run.")
            raise GiveUp(f"replay endpoint answered {resp.status_code}")
        await run_db(self.store.audit.record, "replayed", actor=payload.get("actor", "bot"), tenant_id=tenant_id,
                     incident_id=incident_id, detail={"status": resp.status_code, "key": replay_key(incident_id)},
                     permalink=await self.notes.permalink(incident_id))
        await self.notes.note(incident_id, "🔁 Asked the platform to re-run the failed exports.")
