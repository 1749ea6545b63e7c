"""Reactivation requests: at most one live request per tenant; every transition is ONE conditional UPDATE.

A transition writes its audit row and queues the alert's re-render in the same transaction, so a click
that wins is recorded exactly once and a click that loses changes nothing.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage.audit import Audit
from storage.db import Database
from storage.jobs import Jobs
from storage.models import Incident, ReactivationRequest
from storage.types import utcnow

LIVE = ("pending", "approved", "consented")   # these hold the tenant's live_key


def new_request_id() -> str:
    return "req_" + secrets.token_hex(5)


@dataclass(frozen=True)
class Transition:
    ok: bool                                   # this call made the change
    request: ReactivationRequest | None        # the row afterwards (on a loss: as the winner left it)
    reason: str = "ok"                         # ok | missing | decided | expired


class Requests:
    def __init__(self, db: Database, jobs: Jobs, audit: Audit):
        self.db = db
        self.jobs = jobs
        self.audit = audit

    # --- reads ------------------------------------------------------------------------------
    def get(self, request_id: str) -> ReactivationRequest | None:
        with self.db.read() as s:
            return s.get(ReactivationRequest, request_id)

    def latest_for_incident(self, incident_id: str) -> ReactivationRequest | None:
        with self.db.read() as s:
            return s.exec(select(ReactivationRequest).where(ReactivationRequest.incident_id == incident_id)
                          .order_by(ReactivationRequest.requested_at.desc()).limit(1)).first()

    def live_for_tenant(self, tenant_id: str) -> ReactivationRequest | None:
        with self.db.read() as s:
            return s.exec(select(ReactivationRequest).where(ReactivationRequest.live_key == tenant_id)).first()

    # --- helpers inside a unit of work ------------------------------------------------------
    def _sync(self, s, incident_id: str | None) -> None:
        if incident_id:
            self.jobs.enqueue("slack.sync", {"incident": incident_id}, lane=f"msg:{incident_id}",
                              coalesce=f"sync:{incident_id}", session=s)

    def _record(self, s, row: ReactivationRequest, action: str, actor: str, detail: dict | None,
                permalink: str | None) -> None:
        self.audit.record(action, actor=actor, tenant_id=row.tenant_id, incident_id=row.incident_id,
                          request_id=row.id, detail=detail, permalink=permalink, session=s)

    def _expire_in(self, s, request_id: str, now: datetime, *, detail: dict, permalink: str | None,
                   force: bool = False) -> bool:
        cond = [ReactivationRequest.id == request_id, ReactivationRequest.status.in_(LIVE)]
        if not force:
            cond.append(ReactivationRequest.expires_at <= now)
        won = s.exec(update(ReactivationRequest).where(*cond)
                     .values(status="expired", live_key=None, finished_at=now)).rowcount == 1
        if won:
            row = s.get(ReactivationRequest, request_id)
            s.refresh(row)
            self._record(s, row, "expired", "bot", detail, permalink)
            self._sync(s, row.incident_id)
        return won

    # --- transitions ------------------------------------------------------------------------
    def create(self, *, incident_id: str, tenant_id: str, cause: str, requested_by: str, ttl: timedelta,
               permalink: str | None = None, now: datetime | None = None) -> tuple[ReactivationRequest, bool]:
        """(request, created): a new pending request, or the tenant's live one if it already has one."""
        for _ in range(3):
            now = now or utcnow()
            self._retire_stale(tenant_id, now)
            try:
                with self.db.session() as s:
                    row = ReactivationRequest(id=new_request_id(), incident_id=incident_id, tenant_id=tenant_id,
                                              cause=cause, requested_by=requested_by, requested_at=now,
                                              expires_at=now + ttl, live_key=tenant_id)
                    s.add(row)
                    s.flush()   # the unique live_key decides a race between two requesters here
                    self._record(s, row, "requested", requested_by, {"cause": cause}, permalink)
                    self._sync(s, incident_id)
                    return row, True
            except IntegrityError:
                existing = self.live_for_tenant(tenant_id)
                if existing is not None:
                    return existing, False
        raise RuntimeError("could not create the reactivation request after 3 attempts")

    def _retire_stale(self, tenant_id: str, now: datetime) -> None:
        """A live request past its time, or left on an incident that is resolved, no longer blocks a new one."""
        with self.db.session() as s:
            row = s.exec(select(ReactivationRequest).where(ReactivationRequest.live_key == tenant_id)).first()
            if row is None:
                return
            if row.expires_at <= now:
                self._expire_in(s, row.id, now, detail={"was": row.status}, permalink=None)
                return
            inc = s.get(Incident, row.incident_id) if row.incident_id else None
            if inc is not None and inc.status == "resolved":
                self._expire_in(s, row.id, now, detail={"was": row.status, "why": "incident resolved"},
                                permalink=None, force=True)

    def decide(self, request_id: str, *, approve: bool, by: str, permalink: str | None = None,
               now: datetime | None = None) -> Transition:
        """Approve or deny once: only a pending, unexpired request changes; every other click loses."""
        now = now or utcnow()
        values = {"status": "approved" if approve else "denied", "decided_by": by, "decided_at": now}
        if not approve:
            values["live_key"] = None
            values["finished_at"] = now
        with self.db.session() as s:
            won = s.exec(update(ReactivationRequest)
                         .where(ReactivationRequest.id == request_id, ReactivationRequest.status == "pending",
                                ReactivationRequest.expires_at > now)
                         .values(**values)).rowcount == 1
            if won:
                row = s.get(ReactivationRequest, request_id)
                s.refresh(row)
                self._record(s, row, "approved" if approve else "denied", by, None, permalink)
                self._sync(s, row.incident_id)
                return Transition(True, row)
        row = self.get(request_id)
        if row is None:
            return Transition(False, None, "missing")
        if row.status == "pending" and row.expires_at <= now:
            with self.db.session() as s:
                self._expire_in(s, request_id, now, detail={"clicked_by": by}, permalink=permalink)
            return Transition(False, self.get(request_id), "expired")
        return Transition(False, row, "expired" if row.status == "expired" else "decided")

    def link_issued(self, request_id: str, *, link_expires_at: datetime, by: str, permalink: str | None = None,
                    now: datetime | None = None) -> bool:
        """Claim the one consent link of an approval; the request then lives as long as the link."""
        now = now or utcnow()
        with self.db.session() as s:
            won = s.exec(update(ReactivationRequest)
                         .where(ReactivationRequest.id == request_id, ReactivationRequest.status == "approved",
                                ReactivationRequest.link_issued_at.is_(None))
                         .values(link_issued_at=now, expires_at=link_expires_at)).rowcount == 1
            if won:
                row = s.get(ReactivationRequest, request_id)
                s.refresh(row)
                self._record(s, row, "link_issued", by, {"expires_at": link_expires_at.isoformat()}, permalink)
            return won

    def advance(self, request_id: str, *, from_status: tuple[str, ...], to: str, action: str, actor: str,
                outcome: str | None = None, detail: dict | None = None, permalink: str | None = None,
                now: datetime | None = None) -> bool:
        """Move a request along the consent steps (consented, declined, verified, failed), once."""
        now = now or utcnow()
        values: dict = {"status": to}
        if to not in LIVE:
            values.update(live_key=None, finished_at=now, outcome=outcome)
        with self.db.session() as s:
            won = s.exec(update(ReactivationRequest)
                         .where(ReactivationRequest.id == request_id, ReactivationRequest.status.in_(from_status))
                         .values(**values)).rowcount == 1
            if won:
                row = s.get(ReactivationRequest, request_id)
                s.refresh(row)
                self._record(s, row, action, actor, detail, permalink)
                self._sync(s, row.incident_id)
            return won

    def due(self, now: datetime | None = None, limit: int = 200) -> list[ReactivationRequest]:
        """Live requests past their time (undecided, or a consent link nobody used), for the background sweep."""
        now = now or utcnow()
        with self.db.read() as s:
            return list(s.exec(select(ReactivationRequest).where(ReactivationRequest.status.in_(LIVE),
                                                                 ReactivationRequest.expires_at <= now)
                               .order_by(ReactivationRequest.expires_at).limit(limit)))

    def expire(self, request_id: str, *, permalink: str | None = None, detail: dict | None = None,
               now: datetime | None = None, early: bool = False) -> bool:
        """Expire a live request past its time (or `early`, when it became moot), once, with its audit row."""
        with self.db.session() as s:
            return self._expire_in(s, request_id, now or utcnow(), detail=detail or {}, permalink=permalink,
                                   force=early)
