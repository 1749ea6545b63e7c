"""Reactivation requests and their one decision: request → approve (one consent link) or deny, or expire.

Platform-neutral: the chat adapter checks who is an admin and says things; this module decides,
through the store's conditional UPDATEs, so double clicks and racing admins have exactly one winner.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from bot.aio import run_db
from bot.cards.model import Mention
from bot.diagnosis.model import CONSENT_FIXES, Cause
from bot.fix.consent import consent_link
from bot.fix.messages import when

log = logging.getLogger(__name__)


class Notes(Protocol):
    """What the fix loop needs from the chat platform: a line in the incident's history, and a link to it."""

    async def note(self, incident_id: str, *parts) -> None: ...

    async def permalink(self, incident_id: str) -> str | None: ...


@dataclass(frozen=True)
class Requested:
    kind: str                      # created | exists | not_fixable | missing | resolved
    incident: object | None = None
    request: object | None = None
    cause: str = ""


@dataclass(frozen=True)
class Decision:
    kind: str                      # approved | denied | self_approval | missing | decided | expired | moot
    request: object | None = None
    incident: object | None = None
    tenant: object | None = None
    link: str | None = None        # approved: the one consent link of this approval
    link_expires_at: datetime | None = None


def _fixable(cause: str) -> bool:
    try:
        return Cause(cause) in CONSENT_FIXES
    except ValueError:
        return False


class Reactivations:
    def __init__(self, settings, store, notes: Notes):
        self.settings = settings
        self.store = store
        self.notes = notes

    async def request(self, incident_id: str, *, by: str) -> Requested:
        st = self.store
        inc = await run_db(st.incidents.get, incident_id)
        if inc is None:
            return Requested("missing")
        if inc.status == "resolved":
            return Requested("resolved", inc)
        if inc.platform or inc.tenant_id is None or not _fixable(inc.cause):
            return Requested("not_fixable", inc, cause=inc.cause)
        ttl = timedelta(hours=self.settings.approval_ttl_hours)
        row, created = await run_db(st.requests.create, incident_id=inc.id, tenant_id=inc.tenant_id, cause=inc.cause,
                                    requested_by=by, ttl=ttl, permalink=await self.notes.permalink(inc.id))
        if not created:
            return Requested("exists", inc, row)
        await self.notes.note(inc.id, "🔑 Reactivation link requested by ", Mention(by),
                              f". An admin must approve it before {when(row.expires_at)}; "
                              "the single-use link then appears here.")
        return Requested("created", inc, row)

    async def decide(self, request_id: str, *, by: str, approve: bool) -> Decision:
        """Call only for admins (the adapter checks); the requester may approve only with ALLOW_SELF_APPROVAL."""
        st = self.store
        row = await run_db(st.requests.get, request_id)
        if row is None:
            return Decision("missing")
        if approve and row.status == "pending" and row.requested_by == by and not self.settings.allow_self_approval:
            return Decision("self_approval", row)
        permalink = await self.notes.permalink(row.incident_id) if row.incident_id else None
        inc = await run_db(st.incidents.get, row.incident_id) if row.incident_id else None
        if row.status == "pending" and inc is not None and inc.status == "resolved":
            # Fixed meanwhile (e.g. exports succeed again): no link for a problem that is gone.
            if await run_db(st.requests.expire, row.id, permalink=permalink, early=True,
                            detail={"why": "incident resolved", "clicked_by": by}):
                return Decision("moot", await run_db(st.requests.get, row.id), inc)
        t = await run_db(st.requests.decide, request_id, approve=approve, by=by, permalink=permalink)
        if not t.ok:
            return Decision(t.reason, t.request, inc)
        if not approve:
            await self.notes.note(row.incident_id, "🚫 Reactivation denied by ", Mention(by), ".")
            return Decision("denied", t.request, inc)
        return await self._issue_link(t.request, inc, by, permalink)

    async def _issue_link(self, row, inc, by: str, permalink: str | None) -> Decision:
        """The approval won, so this is the only caller for this request: exactly one link."""
        st = self.store
        tenant = await run_db(st.tenants.get, row.tenant_id)
        cred = await run_db(st.connections.load, row.tenant_id)
        granted = cred.scopes if cred is not None and not cred.decrypt_error else frozenset()
        link = await run_db(consent_link, self.settings, st, tenant, request_id=row.id, created_by=by, granted=granted)
        expires = datetime.now(timezone.utc) + timedelta(hours=self.settings.consent_link_ttl_hours)
        await run_db(st.requests.link_issued, row.id, link_expires_at=expires, by=by, permalink=permalink)
        return Decision("approved", await run_db(st.requests.get, row.id), inc, tenant, link, expires)

    async def expire_due(self) -> int:
        """Background sweep: requests nobody decided (or links nobody used) in time."""
        expired = 0
        for row in await run_db(self.store.requests.due):
            permalink = await self.notes.permalink(row.incident_id) if row.incident_id else None
            if await run_db(self.store.requests.expire, row.id, permalink=permalink, detail={"by": "sweep"}):
                log.info("reactivation request %s of %s expired", row.id, row.tenant_id)
                expired += 1
        return expired
