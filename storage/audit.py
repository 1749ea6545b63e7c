"""Audit log: who did what, when, on which incident or request."""
from __future__ import annotations

from sqlmodel import select

from storage.db import Database
from storage.models import AuditEntry


class Audit:
    def __init__(self, db: Database):
        self.db = db

    def record(self, action: str, *, actor: str = "bot", tenant_id: str | None = None,
               incident_id: str | None = None, request_id: str | None = None,
               detail: dict | None = None, permalink: str | None = None, session=None) -> None:
        row = AuditEntry(action=action, actor=actor, tenant_id=tenant_id, incident_id=incident_id,
                         request_id=request_id, detail=detail or {}, permalink=permalink)
        if session is not None:  # part of a caller's unit of work (same commit)
            session.add(row)
            return
        with self.db.session() as s:
            s.add(row)

    def for_tenant(self, tenant_id: str) -> list[AuditEntry]:
        with self.db.session() as s:
            return list(s.exec(select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
                               .order_by(AuditEntry.at, AuditEntry.id)))
