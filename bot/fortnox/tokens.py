"""Tokens that never lose a tenant: refresh ahead of expiry, one refresher per tenant across processes.

Fortnox refresh tokens are single use (reference §4). So: an in-process lock, then a lease row in the
store taken with one conditional UPDATE (works across replicas on PostgreSQL and SQLite); the new pair
is stored, and the lease dropped, in one statement before anyone uses it. Only a definite rejection of
the refresh token marks the grant dead; transient failures leave everything as it was.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from bot.aio import run_db
from bot.fortnox.client import FortnoxClient
from bot.fortnox.codes import Category
from bot.fortnox.errors import FortnoxError

log = logging.getLogger(__name__)

ROTATION_LOST = ("a refreshed token pair could not be saved, so the previous refresh token is spent; "
                 "it is never sent again")
# A failed save is retried a little (a store hiccup should not cost the customer a new consent).
SAVE_RETRY_DELAYS = (0.1, 0.4)


@dataclass(frozen=True)
class RefreshOutcome:
    attempted: bool                    # did THIS call send a token request
    ok: bool                           # usable credentials now (refreshed or still fresh)
    credentials: object | None = None  # storage.connections.Credentials after the outcome
    error: FortnoxError | None = None  # what the token endpoint said
    dead_reason: str | None = None     # the grant is gone: consent needed
    storage_fault: str | None = None   # our store failed (F-D1)
    waited_for_other: bool = False     # another worker refreshed it for us
    busy: bool = False                 # another worker held the lease for longer than we could wait


def _now() -> datetime:
    return datetime.now(timezone.utc)


class TokenManager:
    def __init__(self, store, client: FortnoxClient, *, margin: float = 300.0, lease: float = 60.0,
                 wait: float = 30.0, poll: float = 0.05):
        self.store = store
        self.client = client
        self.margin = timedelta(seconds=margin)   # reference §4: refresh about 5 min before expiry
        self.lease = timedelta(seconds=lease)     # longer than any token request can take
        self.wait = wait
        self.poll = poll
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, tenant_id: str) -> asyncio.Lock:
        lock = self._locks.get(tenant_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[tenant_id] = lock
        return lock

    def is_fresh(self, cred) -> bool:
        return bool(cred.access_token) and cred.expires_at is not None and cred.expires_at - self.margin > _now()

    async def ensure_fresh(self, tenant_id: str, *, force: bool = False,
                           seen_generation: int | None = None) -> RefreshOutcome:
        """Make sure the tenant has a usable access token, refreshing at most once across all workers.

        force: refresh even if the token looks fresh (Fortnox said it is not), unless someone else has
        already replaced the generation we saw failing (`seen_generation`).
        """
        async with self._lock(tenant_id):
            return await self._ensure(tenant_id, force, seen_generation)

    async def _ensure(self, tenant_id: str, force: bool, seen_generation: int | None) -> RefreshOutcome:
        conns = self.store.connections
        cred = await run_db(conns.load, tenant_id)
        if cred is None or cred.decrypt_error:
            return RefreshOutcome(attempted=False, ok=False, credentials=cred)
        if force and seen_generation is not None and cred.generation != seen_generation:
            return self._after_other(cred)
        if not force and self.is_fresh(cred):
            return RefreshOutcome(attempted=False, ok=True, credentials=cred)
        if cred.mode == "legacy":
            return RefreshOutcome(attempted=False, ok=False, credentials=cred)
        if cred.state != "active":
            return RefreshOutcome(attempted=False, ok=False, credentials=cred, dead_reason=cred.state_reason)
        if cred.mode == "oauth" and not cred.refresh_token:
            return RefreshOutcome(attempted=False, ok=False, credentials=cred,
                                  dead_reason="no refresh token is stored for this tenant")

        owner = uuid.uuid4().hex
        start_generation = cred.generation
        deadline = asyncio.get_running_loop().time() + self.wait
        while True:
            if cred.refresh_owner and cred.refresh_started_at and cred.refresh_started_at < _now() - self.lease:
                # A lease abandoned mid-refresh: the refresh token may already be spent (F-D1).
                if await run_db(conns.mark_stale_lease, tenant_id, self.lease, ROTATION_LOST):
                    log.warning("tenant %s: an abandoned refresh lease was found; rotation marked lost", tenant_id)
                cred = await run_db(conns.load, tenant_id)
                if cred.generation != start_generation:
                    return self._after_other(cred)
                if cred.state != "active":
                    return RefreshOutcome(attempted=False, ok=False, credentials=cred, dead_reason=cred.state_reason)
            if await run_db(conns.begin_refresh, tenant_id, owner, start_generation, self.lease):
                break
            await asyncio.sleep(self.poll)
            cred = await run_db(conns.load, tenant_id)
            if cred.generation != start_generation:
                return self._after_other(cred)
            if cred.state != "active":
                return RefreshOutcome(attempted=False, ok=False, credentials=cred, dead_reason=cred.state_reason)
            if asyncio.get_running_loop().time() > deadline:
                return RefreshOutcome(attempted=False, ok=False, credentials=cred, busy=True)

        if cred.mode == "service":
            result = await self.client.client_credentials(cred.company_id or "")
        else:
            result = await self.client.refresh(cred.refresh_token)

        if result.ok:
            return await self._save(tenant_id, owner, cred, result.tokens)

        error = result.error
        if error.category == Category.invalid_refresh and cred.mode != "service":
            reason = f"Fortnox rejected the refresh token: {error.message or error.oauth_error or 'invalid grant'}"
            await run_db(conns.mark, tenant_id, "dead", reason, owner=owner)
            return RefreshOutcome(attempted=True, ok=False, credentials=await run_db(conns.load, tenant_id),
                                  error=error, dead_reason=reason)
        # invalid_client, outages, timeouts, junk: not the tenant's fault; the refresh token was not spent.
        await run_db(conns.release_refresh, tenant_id, owner)
        return RefreshOutcome(attempted=True, ok=False, credentials=cred, error=error)

    async def _save(self, tenant_id: str, owner: str, cred, tokens) -> RefreshOutcome:
        """Store the rotated pair before anyone uses it. Fortnox has already spent the old refresh token."""
        conns = self.store.connections
        fault = None
        for delay in (0.0, *SAVE_RETRY_DELAYS):
            if delay:
                await asyncio.sleep(delay)
            try:
                saved = await run_db(conns.finish_refresh, tenant_id, owner, access_token=tokens.access_token,
                                     refresh_token=tokens.refresh_token, expires_at=tokens.expires_at,
                                     scopes=tokens.scopes or cred.scopes)
            except Exception as exc:  # noqa: BLE001 - any store failure; the type name is the evidence
                fault = f"{type(exc).__name__} while saving the refreshed tokens"
                log.error("tenant %s: storing refreshed tokens failed: %s", tenant_id, type(exc).__name__)
                continue
            if saved:
                return RefreshOutcome(attempted=True, ok=True, credentials=await run_db(conns.load, tenant_id))
            fault = "the refresh lease was lost before the new tokens were saved"
            break
        # The new pair is lost with this process. Say so in the store now if it answers (the next diagnosis
        # then reports reactivation at once); if it does not, the abandoned lease says it later.
        dead_reason = None
        try:
            if await run_db(conns.mark, tenant_id, "rotation_lost", ROTATION_LOST, owner=owner):
                dead_reason = ROTATION_LOST
        except Exception as exc:  # noqa: BLE001
            log.error("tenant %s: marking the lost rotation failed too: %s", tenant_id, type(exc).__name__)
        return RefreshOutcome(attempted=True, ok=False, credentials=cred, storage_fault=fault, dead_reason=dead_reason)

    @staticmethod
    def _after_other(cred) -> RefreshOutcome:
        active = cred.state == "active"
        return RefreshOutcome(attempted=False, ok=active, credentials=cred, waited_for_other=True,
                              dead_reason=None if active else cred.state_reason)
