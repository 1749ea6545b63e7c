"""Diagnosis history: every run's checks, cause and steps."""
from __future__ import annotations

from sqlmodel import select

from storage.db import Database
from storage.models import DiagnosisRecord


class Diagnoses:
    def __init__(self, db: Database):
        self.db = db

    def add(self, *, tenant_id: str, cause: str, summary: str, checks: list[dict], steps: list[dict],
            trigger: str) -> DiagnosisRecord:
        row = DiagnosisRecord(tenant_id=tenant_id, cause=cause, summary=summary, checks=checks,
                              steps=steps, trigger=trigger)
        with self.db.session() as s:
            s.add(row)
            s.flush()
            return row

    def get(self, diagnosis_id: int) -> DiagnosisRecord | None:
        with self.db.read() as s:
            return s.get(DiagnosisRecord, diagnosis_id)

    def latest(self, tenant_id: str) -> DiagnosisRecord | None:
        with self.db.read() as s:
            return s.exec(select(DiagnosisRecord).where(DiagnosisRecord.tenant_id == tenant_id)
                          .order_by(DiagnosisRecord.id.desc()).limit(1)).first()
