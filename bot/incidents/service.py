"""Incident lifecycle, platform-neutral: ingest events, apply diagnoses, resolve and snooze.

Chat adapters call these; they never decide lifecycle themselves.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from bot import metrics
from bot.aio import run_db
from bot.diagnosis.model import PRECEDENCE, TRANSIENT, Cause, Diagnosis
from bot.fortnox.errors import parse_error
from bot.incidents.card import actor_parts
from bot.webhooks.export import ExportEventIn
from storage.models import ExportEvent
from storage.types import utcnow

log = logging.getLogger(__name__)

SNOOZE_CHOICES = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1)}


def _worse(new: Cause, old: str) -> bool:
    """A cause ranked earlier in CONTRACT's order is the more fundamental (worse) one.

    A transient cause (Fortnox down, 429) is never worse: it hides the real state rather than changing it.
    """
    if new in TRANSIENT:
        return False
    try:
        return PRECEDENCE.index(new) < PRECEDENCE.index(Cause(old))
    except ValueError:
        return True


class _NoNotes:
    async def note(self, incident_id: str, *parts) -> None:
        return None


class IncidentService:
    def __init__(self, store, diagnoser, *, notify=lambda: None, notes=None):
        self.store = store
        self.diagnoser = diagnoser
        self.notify = notify     # wakes the local job worker after queuing work
        self.notes = notes or _NoNotes()   # history lines for the incident (the alert's thread on Slack)

    # --- ingest (sync: runs in a worker thread) ---------------------------------------------
    @staticmethod
    def _row(event: ExportEventIn) -> dict:
        """The event's ExportEvent columns (a plain dict: a model instance per event costs more than storing it)."""
        code, message = None, ""
        if event.fortnox_status is not None or event.fortnox_body:
            err = parse_error(event.fortnox_status, event.fortnox_body)
            code, message = err.code, (err.message or err.excerpt)[:1000]
        return {"id": event.id, "tenant_id": event.tenant, "type": event.type, "occurred_at": event.occurred_at,
                "kind": event.kind, "ref": event.ref, "fortnox_status": event.fortnox_status, "fortnox_code": code,
                "fortnox_message": message, "fortnox_body": event.fortnox_body, "incident_id": None,
                "received_at": utcnow()}

    def ingest(self, event: ExportEventIn):
        """Store one event (opening, updating or resolving its tenant's incident, audited) and queue a diagnosis."""
        return self.store.incidents.ingest(ExportEvent(**self._row(event)))

    def ingest_many(self, events: list[ExportEventIn]):
        """The same for a batch, in one unit of work (see storage Incidents.ingest_many); raises on a conflict."""
        return self.store.incidents.ingest_many([self._row(e) for e in events])

    # --- diagnosis ------------------------------------------------------------------------------
    async def reported_error(self, incident_id: str):
        events = await run_db(self.store.incidents.events, incident_id, 1)
        if not events or (events[0].fortnox_status is None and not events[0].fortnox_body):
            return None
        return parse_error(events[0].fortnox_status, events[0].fortnox_body)

    async def diagnose_incident(self, incident_id: str, *, trigger: str, actor: str = "bot",
                                announce: bool = True) -> Diagnosis | None:
        """Diagnose the incident's tenant and apply the result; a re-run someone asked for is answered in the
        incident's history (unless `announce` is off: a platform re-run announces once for all tenants)."""
        inc = await run_db(self.store.incidents.get, incident_id)
        if inc is None or inc.tenant_id is None:
            return None
        reported = await self.reported_error(incident_id)
        diagnosis = await self.diagnoser.run(inc.tenant_id, reported=reported, trigger=trigger)
        metrics.DIAGNOSES.labels(str(diagnosis.cause)).inc()
        await self.apply(incident_id, diagnosis, actor=actor)
        if trigger == "rerun" and announce:
            await self.notes.note(incident_id, "🔎 Re-diagnosis by ", *actor_parts(actor), f": cause {diagnosis.cause}",
                                  " — resolved" if diagnosis.resolved else "")
        return diagnosis

    async def apply(self, incident_id: str, diagnosis: Diagnosis, *, actor: str = "bot", how: str = "",
                    permalink: str | None = None) -> str:
        """`how` names what resolved it when the diagnosis says healthy (e.g. "verified consent");
        `permalink` (the alert's) goes into the audit row."""
        inc = await run_db(self.store.incidents.get, incident_id)
        if inc is None:
            return "gone"
        how = how or ("a healthy re-diagnosis" if diagnosis.cause == Cause.HEALTHY
                      else "the bot refreshed the access token" if diagnosis.cause == Cause.TOKEN_REFRESHED else "")
        what, target = await run_db(
            self.store.incidents.apply_diagnosis, incident_id, cause=str(diagnosis.cause), summary=diagnosis.summary,
            diagnosis_id=diagnosis.record_id, resolved=diagnosis.resolved, resolution=how,
            app_wide=diagnosis.affects_all_tenants, worse=_worse(diagnosis.cause, inc.cause))
        if what in ("resolved", "resolved_silently"):
            await run_db(self.store.audit.record, "resolved", actor=actor, tenant_id=inc.tenant_id,
                         incident_id=incident_id, detail={"by": how}, permalink=permalink)
        elif inc.cause != str(diagnosis.cause):
            await run_db(self.store.audit.record, "diagnosed", actor=actor, tenant_id=inc.tenant_id,
                         incident_id=incident_id, detail={"cause": str(diagnosis.cause), "previous": inc.cause},
                         permalink=permalink)
        if what == "woken":
            await self.notes.note(incident_id, f"⏰ Snooze ended early: the cause got worse ({inc.cause} → {diagnosis.cause})")
        self.notify()
        return what

    async def open_for_diagnosis(self, tenant_id: str, diagnosis: Diagnosis, *, actor: str) -> str | None:
        """A slash-command diagnosis that found a lasting problem opens (or updates) the tenant's incident."""
        inc = await run_db(self.store.incidents.live_for_tenant, tenant_id)
        if inc is None:
            if diagnosis.resolved or diagnosis.cause == Cause.TENANT_UNKNOWN:
                return None
            now = datetime.now(timezone.utc)
            event = ExportEventIn(id=f"diag:{tenant_id}:{now.timestamp():.6f}", type="export.failed", tenant=tenant_id,
                                  occurred_at=now, kind=None, ref=None, fortnox_status=None, fortnox_body="")
            result = await run_db(self.ingest, event)
            incident_id = result.incident_id
        else:
            incident_id = inc.id
        await self.apply(incident_id, diagnosis, actor=actor)
        return incident_id

    # --- operator actions -------------------------------------------------------------------
    async def resolve(self, incident_id: str, *, actor: str, how: str) -> bool:
        inc = await run_db(self.store.incidents.resolve, incident_id, by=actor, how=how)
        if inc is None:
            return False
        await run_db(self.store.audit.record, "resolved", actor=actor, tenant_id=inc.tenant_id,
                     incident_id=incident_id, detail={"by": how})
        self.notify()
        return True

    async def snooze(self, incident_id: str, choice: str, *, actor: str) -> datetime | None:
        span = SNOOZE_CHOICES.get(choice)
        if span is None:
            return None
        until = datetime.now(timezone.utc) + span
        inc = await run_db(self.store.incidents.snooze, incident_id, until=until, by=actor)
        if inc is None:
            return None
        await run_db(self.store.audit.record, "snoozed", actor=actor, tenant_id=inc.tenant_id,
                     incident_id=incident_id, detail={"until": until.isoformat()})
        self.notify()
        return until
