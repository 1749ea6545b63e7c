"""Export events and incidents: one live incident per tenant (and one per app-wide cause), updated in place."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import func, select

from storage.db import Database
from storage.jobs import Jobs
from storage.models import AuditEntry, ExportEvent, Incident, Job
from storage.types import utcnow

MAX_KINDS = 20
SUCCEEDED = "export.succeeded: a later export went through"
# Repeated failures re-diagnose a tenant at most this often. Fortnox allows 25 calls per 5 s per tenant,
# and Slack about one chat.update per second: a burst of 100 failures must not become 100 diagnoses.
REDIAGNOSE_EVERY = 2.0


def _audit(action: str, tenant_id: str, incident_id: str, detail: dict) -> AuditEntry:
    return AuditEntry(action=action, actor="platform", tenant_id=tenant_id, incident_id=incident_id, detail=detail)


def new_incident_id() -> str:
    return "inc_" + secrets.token_hex(5)


def diagnose_key(incident_id: str) -> str:
    """Coalescing key of an incident's pending diagnosis. Per incident, not per tenant: a job still pending
    for an incident that has since recovered must not absorb the diagnosis of the tenant's next incident."""
    return f"diagnose:{incident_id}"


def tenant_key(tenant_id: str) -> str:
    return f"t:{tenant_id}"


def platform_key(cause: str) -> str:
    return f"p:{cause}"


def _lost_a_race(exc: OperationalError) -> bool:
    """PostgreSQL broke a deadlock (or a serialization conflict) by aborting this transaction: run it again."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in ("40P01", "40001")


class _Raced(Exception):
    """The incident changed between reading it and locking it; the unit of work starts over."""


@dataclass(frozen=True)
class Ingested:
    incident_id: str | None
    duplicate: bool
    created: bool = False
    resolved: bool = False     # an export.succeeded that resolved the tenant's live incident


class Incidents:
    def __init__(self, db: Database, jobs: Jobs):
        self.db = db
        self.jobs = jobs
        self.rediagnose_every = REDIAGNOSE_EVERY

    # --- reads ------------------------------------------------------------------------------
    def get(self, incident_id: str) -> Incident | None:
        with self.db.read() as s:
            return s.get(Incident, incident_id)

    def live_for_tenant(self, tenant_id: str) -> Incident | None:
        with self.db.read() as s:
            return s.exec(select(Incident).where(Incident.open_key == tenant_key(tenant_id))).first()

    def live(self, limit: int = 100) -> list[Incident]:
        with self.db.read() as s:
            return list(s.exec(select(Incident).where(Incident.open_key.is_not(None), Incident.parent_id.is_(None))
                               .order_by(Incident.last_seen_at.desc()).limit(limit)))

    def children(self, platform_id: str) -> list[Incident]:
        with self.db.read() as s:
            return list(s.exec(select(Incident).where(Incident.parent_id == platform_id).order_by(Incident.tenant_id)))

    def events(self, incident_id: str, limit: int = 200) -> list[ExportEvent]:
        with self.db.read() as s:
            return list(s.exec(select(ExportEvent).where(ExportEvent.incident_id == incident_id, ExportEvent.type == "export.failed")
                               .order_by(ExportEvent.occurred_at.desc()).limit(limit)))

    def event_incident(self, event_id: str) -> str | None:
        with self.db.read() as s:
            row = s.get(ExportEvent, event_id)
            return row.incident_id if row else None

    def all(self) -> list[Incident]:
        with self.db.read() as s:
            return list(s.exec(select(Incident).order_by(Incident.opened_at)))

    # --- ingest -----------------------------------------------------------------------------
    def ingest(self, event: ExportEvent, *, diagnose_delay: float = 0.0) -> Ingested:
        """Store an export event once; a failure opens or updates the tenant's incident and queues a diagnosis.

        The event's primary key is its body id, so a repeat — even a concurrent one — cannot be stored twice.
        """
        for _ in range(3):   # retry the rare races: two replicas open one incident, or it resolved meanwhile
            try:
                return self._ingest(event, diagnose_delay)
            except _Raced:
                continue
            except OperationalError as exc:
                if not _lost_a_race(exc):
                    raise
                continue
            except IntegrityError:
                existing = self.event_incident(event.id)
                if existing is not None or self._event_exists(event.id):
                    return Ingested(existing, duplicate=True)
        raise RuntimeError("could not store the event after 3 attempts")

    def ingest_many(self, events: list[dict]) -> list[Ingested]:
        """Store a batch of events (ExportEvent columns as dicts) in one unit of work; the same outcome as
        `ingest` on each in turn.

        Failures of tenants with no export.succeeded in the batch (nearly all, in a burst) are handled
        set-based: one query for duplicates, one that locks the tenants' live incidents, one bulk insert each
        for events, new incidents, diagnose jobs and audit rows. A tenant with an export.succeeded in the
        batch goes event by event (`_ingest_in`), as recovery has more to do. Raises on any conflict (say,
        another replica opened an incident meanwhile); the caller then ingests the events one by one.
        """
        with self.db.session() as s:
            return self._ingest_many(s, events)

    def _ingest_many(self, s, events: list[dict]) -> list[Ingested]:
        results: list[Ingested | None] = [None] * len(events)
        table = ExportEvent.__table__
        conn = s.connection()   # Core from here on: the ORM's per-statement machinery costs more than the SQL
        known = dict(conn.execute(select(table.c.id, table.c.incident_id)
                                  .where(table.c.id.in_({e["id"] for e in events}))).all())
        first: dict[str, int] = {}            # event id -> index of its first copy in this batch
        by_tenant: dict[str, list[int]] = {}
        for i, e in enumerate(events):
            if e["id"] in known:
                results[i] = Ingested(known[e["id"]], duplicate=True)
            elif e["id"] not in first:
                first[e["id"]] = i
                by_tenant.setdefault(e["tenant_id"], []).append(i)
        stepwise = [t for t, idx in by_tenant.items() if any(events[i]["type"] != "export.failed" for i in idx)]
        for tenant in stepwise:
            for i in by_tenant.pop(tenant):
                results[i] = self._ingest_in(s, ExportEvent(**events[i]), 0.0)
        if by_tenant:
            self._failures_in_bulk(conn, events, by_tenant, results)
        for i, e in enumerate(events):
            if results[i] is None:   # a repeat within the batch: a duplicate of its first copy
                results[i] = Ingested(results[first[e["id"]]].incident_id, duplicate=True)
        return results

    def _failures_in_bulk(self, conn, events: list[dict], by_tenant: dict[str, list[int]],
                          results: list[Ingested | None]) -> None:
        table = Incident.__table__
        keys = [tenant_key(t) for t in by_tenant]
        columns = select(table.c.id, table.c.tenant_id, table.c.open_key, table.c.failures, table.c.last_event_at,
                         table.c.kinds, table.c.diagnosed_at).where(table.c.open_key.in_(keys))
        if self.db.is_postgres:   # row locks taken in one order, so two replicas' batches cannot deadlock
            found = conn.execute(columns.order_by(table.c.id).with_for_update())
        else:                     # a write first takes SQLite's database lock (a read could not be upgraded later)
            conn.execute(update(table).where(table.c.open_key.in_(keys)).values(version=table.c.version + 1))
            found = conn.execute(columns)
        live = {row.tenant_id: dict(row._mapping, events=0, created=False) for row in found}
        quiet = [t for t in by_tenant if t not in live]
        last_resolved = dict(conn.execute(select(table.c.tenant_id, func.max(table.c.resolved_at))
                                       .where(table.c.tenant_id.in_(quiet), table.c.platform == False)  # noqa: E712
                                       .group_by(table.c.tenant_id)).all()) if quiet else {}
        now = utcnow()
        rows, opened, audits = [], [], []
        for tenant, indexes in by_tenant.items():
            inc = live.get(tenant)
            for i in indexes:
                row = events[i]
                occurred = row["occurred_at"]
                if inc is None and last_resolved.get(tenant) and occurred < last_resolved[tenant]:
                    # A late failure from before the last recovery: recorded, but it does not reopen anything.
                    last_id = conn.execute(select(table.c.id).where(table.c.tenant_id == tenant,
                                                                 table.c.resolved_at == last_resolved[tenant])).scalar()
                    row["incident_id"] = last_id
                    rows.append(row)
                    results[i] = Ingested(last_id, duplicate=False)
                    continue
                if inc is None:
                    inc = live[tenant] = {"id": new_incident_id(), "tenant_id": tenant, "failures": 0, "kinds": [],
                                          "last_event_at": occurred, "diagnosed_at": None, "events": 0,
                                          "created": True}
                    opened.append(inc)
                    audits.append({"action": "incident_opened", "actor": "platform", "tenant_id": tenant,
                                   "incident_id": inc["id"], "detail": {"event": row["id"]}, "at": now})
                    results[i] = Ingested(inc["id"], duplicate=False, created=True)
                else:
                    results[i] = Ingested(inc["id"], duplicate=False)
                inc["failures"] += 1
                inc["events"] += 1
                if inc["last_event_at"] is None or occurred > inc["last_event_at"]:
                    inc["last_event_at"] = occurred
                kind = row["kind"]
                if kind and kind not in inc["kinds"] and len(inc["kinds"]) < MAX_KINDS:
                    inc["kinds"] = [*inc["kinds"], kind]
                row["incident_id"] = inc["id"]
                rows.append(row)
        touched = [inc for inc in live.values() if inc["events"]]
        # Rows go in sorted by key: two replicas' batches then take their locks in one order (no deadlock).
        opened.sort(key=lambda inc: inc["tenant_id"])
        rows.sort(key=lambda row: row["id"])
        if opened:
            conn.execute(insert(table), [
                {"id": inc["id"], "tenant_id": inc["tenant_id"], "platform": False, "cause": "pending", "status": "open",
                 "open_key": tenant_key(inc["tenant_id"]), "opened_at": now, "last_seen_at": now,
                 "last_event_at": inc["last_event_at"], "failures": inc["failures"], "kinds": inc["kinds"],
                 "affected": [], "summary": "", "version": inc["events"]} for inc in opened])
        updates = sorted((inc for inc in touched if not inc["created"]), key=lambda inc: inc["id"])
        if updates:
            conn.execute(update(table).where(table.c.id == bindparam("b_id")).values(
                failures=bindparam("b_failures"), last_seen_at=bindparam("b_seen"), last_event_at=bindparam("b_last"),
                kinds=bindparam("b_kinds"), version=table.c.version + bindparam("b_events")),
                [{"b_id": inc["id"], "b_failures": inc["failures"], "b_seen": now, "b_last": inc["last_event_at"],
                  "b_kinds": inc["kinds"], "b_events": inc["events"]} for inc in updates])
        conn.execute(insert(ExportEvent.__table__), rows)
        if audits:
            conn.execute(insert(AuditEntry.__table__), audits)
        if touched:
            # A pending diagnose job of the tenant absorbs this one (see Jobs._pending; locked the same way).
            wanted = {diagnose_key(inc["id"]): inc for inc in sorted(touched, key=lambda inc: inc["id"])}
            pending = set(conn.execute(select(Job.__table__.c.pending_key)
                                    .where(Job.__table__.c.pending_key.in_(list(wanted))).with_for_update()).scalars())
            jobs = [{"kind": "diagnose", "pending_key": key, "status": "pending", "attempts": 0, "created_at": now,
                     "run_after": now + timedelta(seconds=0.0 if inc["created"] else self._settle(inc["diagnosed_at"])),
                     "payload": {"tenant": inc["tenant_id"], "incident": inc["id"], "trigger": "webhook"}}
                    for key, inc in wanted.items() if key not in pending]
            if jobs:
                conn.execute(insert(Job.__table__), jobs)

    @staticmethod
    def _lock(s, inc: Incident) -> Incident:
        """Hold the incident's row until commit and re-read it, so concurrent ingests and diagnoses apply one
        after the other instead of losing each other's counts. An UPDATE is the lock that works on SQLite
        (the database write lock) and PostgreSQL (the row lock) alike."""
        s.exec(update(Incident).where(Incident.id == inc.id).values(version=Incident.version + 1))
        s.refresh(inc)
        return inc

    def _settle(self, diagnosed_at: datetime | None) -> float:
        """Seconds to wait before re-diagnosing an incident diagnosed at `diagnosed_at`: a burst of failures then
        costs one diagnosis (a few Fortnox calls, one message update) per REDIAGNOSE_EVERY, not one per failure."""
        if diagnosed_at is None:
            return 0.0
        since = (utcnow() - diagnosed_at).total_seconds()
        return min(self.rediagnose_every, max(0.0, self.rediagnose_every - since))

    def _event_exists(self, event_id: str) -> bool:
        with self.db.read() as s:
            return s.get(ExportEvent, event_id) is not None

    def _ingest(self, event: ExportEvent, diagnose_delay: float) -> Ingested:
        with self.db.session() as s:
            return self._ingest_in(s, event, diagnose_delay)

    def _ingest_in(self, s, event: ExportEvent, diagnose_delay: float) -> Ingested:
        """One event in the caller's unit of work, audit rows included."""
        if s.get(ExportEvent, event.id) is not None:
            return Ingested(s.get(ExportEvent, event.id).incident_id, duplicate=True)
        row = ExportEvent(**event.model_dump())
        live = s.exec(select(Incident).where(Incident.open_key == tenant_key(event.tenant_id))).first()
        if live is not None and self._lock(s, live).open_key is None:
            raise _Raced()   # resolved between the read and the lock: start over
        created = False
        if event.type == "export.succeeded":
            resolves = live is not None and (live.last_event_at is None or event.occurred_at >= live.last_event_at)
            if resolves:
                # It recovered when that export went through: later failures reopen, earlier ones do not.
                self._resolve(s, live, by="platform", how=SUCCEEDED, at=min(event.occurred_at, utcnow()))
                s.add(_audit("resolved", event.tenant_id, live.id, {"by": "export.succeeded", "event": event.id}))
            row.incident_id = live.id if live else None
            s.add(row)
            s.flush()
            return Ingested(row.incident_id, duplicate=False, resolved=resolves)
        if live is None:
            last = s.exec(select(Incident).where(Incident.tenant_id == event.tenant_id, Incident.platform == False)  # noqa: E712
                          .order_by(Incident.resolved_at.desc()).limit(1)).first()
            if last is not None and last.resolved_at and event.occurred_at < last.resolved_at:
                # A late failure from before the last recovery: recorded, but it does not reopen anything.
                row.incident_id = last.id
                s.add(row)
                s.flush()
                return Ingested(last.id, duplicate=False)
            live = Incident(id=new_incident_id(), tenant_id=event.tenant_id, cause="pending",
                            open_key=tenant_key(event.tenant_id), last_event_at=event.occurred_at)
            created = True
        live.failures += 1
        live.last_seen_at = utcnow()
        if live.last_event_at is None or event.occurred_at > live.last_event_at:
            live.last_event_at = event.occurred_at
        if event.kind and event.kind not in live.kinds and len(live.kinds) < MAX_KINDS:
            live.kinds = [*live.kinds, event.kind]
        live.version += 1
        s.add(live)
        row.incident_id = live.id
        s.add(row)
        s.flush()
        if not created:
            diagnose_delay = max(diagnose_delay, self._settle(live.diagnosed_at))
        self.jobs.enqueue("diagnose", {"tenant": event.tenant_id, "incident": live.id, "trigger": "webhook"},
                          coalesce=diagnose_key(live.id), delay=diagnose_delay, session=s)
        if created:
            s.add(_audit("incident_opened", event.tenant_id, live.id, {"event": event.id}))
        return Ingested(live.id, duplicate=False, created=created)

    # --- lifecycle --------------------------------------------------------------------------
    def _resolve(self, s, inc: Incident, *, by: str, how: str, at: datetime | None = None) -> None:
        inc.status = "resolved"
        inc.open_key = None
        inc.resolved_at = at or utcnow()
        inc.resolved_by = by
        inc.resolution = how
        inc.snoozed_until = None
        inc.version += 1
        s.add(inc)
        if inc.parent_id:
            # The platform incident resolves when its last live tenant does. Its lock makes tenants recovering
            # at the same moment see each other (else each would think another is still failing).
            parent = s.get(Incident, inc.parent_id)
            if parent is not None:
                self._lock(s, parent)
            others = s.exec(select(Incident.id).where(Incident.parent_id == inc.parent_id, Incident.id != inc.id,
                                                      Incident.open_key.is_not(None))).first()
            if others is None and parent is not None and parent.open_key is not None:
                parent.status, parent.open_key, parent.resolved_at = "resolved", None, utcnow()
                parent.resolved_by, parent.resolution = by, f"every affected tenant recovered; the last by {how}"
                parent.version += 1
                s.add(parent)
        if inc.message_ts or inc.parent_id:
            target = inc.parent_id or inc.id
            self.jobs.enqueue("slack.sync", {"incident": target}, lane=f"msg:{target}",
                              coalesce=f"sync:{target}", session=s)

    def resolve(self, incident_id: str, *, by: str, how: str) -> Incident | None:
        """Resolve once; returns the incident if this call resolved it, None if it was already resolved."""
        with self.db.session() as s:
            inc = s.get(Incident, incident_id)
            if inc is None or inc.status == "resolved":
                return None
            if inc.platform:   # its tenants first: the order in which a recovering tenant locks them
                s.exec(update(Incident).where(Incident.parent_id == inc.id).values(version=Incident.version + 1))
            if self._lock(s, inc).status == "resolved":
                return None   # another click (or recovery) won a moment ago
            self._resolve(s, inc, by=by, how=how)
            if inc.platform:
                for child in s.exec(select(Incident).where(Incident.parent_id == inc.id, Incident.open_key.is_not(None))):
                    child.status, child.open_key, child.resolved_at = "resolved", None, utcnow()
                    child.resolved_by, child.resolution = by, how
                    s.add(child)
            return inc

    def snooze(self, incident_id: str, *, until: datetime, by: str) -> Incident | None:
        with self.db.session() as s:
            inc = s.get(Incident, incident_id)
            if inc is None or inc.status == "resolved" or self._lock(s, inc).status == "resolved":
                return None
            inc.status, inc.snoozed_until, inc.snoozed_by = "snoozed", until, by
            inc.version += 1
            s.add(inc)
            self.jobs.enqueue("slack.sync", {"incident": inc.id}, lane=f"msg:{inc.id}", coalesce=f"sync:{inc.id}", session=s)
            return inc

    def apply_diagnosis(self, incident_id: str, *, cause: str, summary: str, diagnosis_id: int | None,
                        resolved: bool, resolution: str, app_wide: bool, worse: bool) -> tuple[str, Incident | None]:
        """Record a diagnosis on an incident. Returns (what happened, the incident whose message to sync).

        what: resolved | resolved_silently | folded | updated | woken (a snooze ended: worse cause) | quiet | gone
        """
        for _ in range(3):
            try:
                return self._apply_diagnosis(incident_id, cause=cause, summary=summary, diagnosis_id=diagnosis_id,
                                             resolved=resolved, resolution=resolution, app_wide=app_wide, worse=worse)
            except _Raced:
                continue   # the platform incident resolved between finding and locking it
        raise RuntimeError(f"could not apply the diagnosis to {incident_id} after 3 attempts")

    def _apply_diagnosis(self, incident_id: str, *, cause: str, summary: str, diagnosis_id: int | None,
                         resolved: bool, resolution: str, app_wide: bool, worse: bool) -> tuple[str, Incident | None]:
        # Created in its own transaction first: tenants of a storm fold into it concurrently.
        parent_id = self._platform_incident(cause, summary) if app_wide and not resolved else None
        with self.db.session() as s:
            inc = s.get(Incident, incident_id)
            if inc is None or inc.status == "resolved" or self._lock(s, inc).status == "resolved":
                return "gone", None
            previous = inc.cause
            inc.diagnosed_at = utcnow()
            inc.diagnosis_id = diagnosis_id
            inc.summary = summary
            inc.version += 1
            if resolved:
                inc.cause = cause
                had_message = bool(inc.message_ts or inc.parent_id)
                self._resolve(s, inc, by="bot", how=resolution)
                return ("resolved" if had_message else "resolved_silently"), inc
            inc.cause = cause
            woken = False
            if inc.status == "snoozed" and inc.snoozed_until and inc.snoozed_until <= utcnow():
                inc.status, inc.snoozed_until = "open", None
            if inc.status == "snoozed" and worse and previous != cause:
                inc.status, inc.snoozed_until = "open", None   # a snooze holds only while nothing gets worse
                woken = True
            parent = s.get(Incident, parent_id) if parent_id else None
            if parent is not None:
                if self._lock(s, parent).open_key is None:
                    raise _Raced()
                if inc.tenant_id not in parent.affected:
                    parent.affected = [*parent.affected, inc.tenant_id]
                parent.failures += 1
                parent.last_seen_at = utcnow()
                parent.summary = summary
                parent.version += 1
                s.add(parent)
                s.flush()
                inc.parent_id = parent.id
                s.add(inc)
                self.jobs.enqueue("slack.sync", {"incident": parent.id}, lane=f"msg:{parent.id}",
                                  coalesce=f"sync:{parent.id}", session=s)
                return "folded", parent
            if inc.parent_id is not None:
                inc.parent_id = None    # no longer app-wide: it gets its own message
            s.add(inc)
            if inc.status == "snoozed":
                return "quiet", inc
            self.jobs.enqueue("slack.sync", {"incident": inc.id}, lane=f"msg:{inc.id}", coalesce=f"sync:{inc.id}", session=s)
            return ("woken" if woken else "updated"), inc

    def _platform_incident(self, cause: str, summary: str) -> str:
        """The live platform incident for an app-wide cause, created if there is none (one wins a race)."""
        for _ in range(3):
            with self.db.session() as s:
                found = s.exec(select(Incident.id).where(Incident.open_key == platform_key(cause))).first()
                if found is not None:
                    return found
            try:
                with self.db.session() as s:
                    parent = Incident(id=new_incident_id(), platform=True, cause=cause, open_key=platform_key(cause),
                                      summary=summary)
                    s.add(parent)
                return parent.id
            except IntegrityError:
                continue   # another tenant's diagnosis created it a moment ago
        raise RuntimeError(f"could not open the platform incident for {cause}")

    def begin_post(self, incident_id: str) -> None:
        """Note that the alert is about to be posted (see Incident.post_started_at)."""
        with self.db.session() as s:
            s.exec(update(Incident).where(Incident.id == incident_id, Incident.message_ts.is_(None))
                   .values(post_started_at=utcnow()))

    def set_message(self, incident_id: str, channel: str, ts: str, *, note: str | None = None) -> bool:
        """Remember the alert's channel and ts once (only the first post wins), and why it is in that channel."""
        with self.db.session() as s:
            return s.exec(update(Incident).where(Incident.id == incident_id, Incident.message_ts.is_(None))
                          .values(channel=channel, message_ts=ts, channel_note=note)).rowcount == 1
