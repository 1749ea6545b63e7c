"""Group-committed ingest: a batch of events ends exactly as the same events stored one by one.

`Incidents.ingest_many` is set-based (a few statements per batch); `Incidents.ingest` is the event-by-event
path it must agree with. The same story runs through both, on tenants "b-*" (batched) and "o-*" (one by
one), and every stored fact is compared. `GroupCommit` is checked for what concurrent webhooks rely on:
each gets its own answer, and one bad event never fails another.
"""
from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select

from bot.group_commit import GroupCommit
from bot.incidents.service import IncidentService
from bot.webhooks.export import parse_event
from storage.models import AuditEntry, ExportEvent, Incident, Job
from tests.support.seed import export_event

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)


def _at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(prefix: str, tenant: str, n: str, minutes: int, **kw):
    return parse_event(export_event(f"{prefix}-{tenant}", event_id=f"{prefix}-{n}", occurred_at=_at(minutes), **kw))


def _history(prefix: str):
    """Before the batch: tenant "live" has an open incident; "gone" had one that recovered at minute 20."""
    return [_event(prefix, "live", "h1", 0),
            _event(prefix, "gone", "h2", 10),
            _event(prefix, "gone", "h3", 20, type="export.succeeded", status=None)]


def _batch(prefix: str):
    return [
        _event(prefix, "live", "1", 30, kind="customer"),
        _event(prefix, "new", "2", 31),
        _event(prefix, "live", "3", 32, kind="voucher"),
        _event(prefix, "new", "2", 31),                       # the same event twice in one batch
        _event(prefix, "live", "h1", 0),                      # an event stored before the batch
        _event(prefix, "gone", "4", 15),                      # late: from before its recovery
        _event(prefix, "gone", "5", 33),                      # after the recovery: reopens
        _event(prefix, "flip", "6", 34),
        _event(prefix, "flip", "7", 35, type="export.succeeded", status=None),   # recovers within the batch
        _event(prefix, "new", "8", 36, kind="invoice", status=500, body="<html>Bad gateway</html>"),
    ]


def _facts(store, prefix: str) -> dict:
    """Everything ingest stored about the prefix's tenants, with incident ids replaced by stable names."""
    with store.db.session() as s:
        incidents = list(s.exec(select(Incident).where(Incident.tenant_id.startswith(prefix))
                                .order_by(Incident.tenant_id, Incident.opened_at)))
        names = {inc.id: f"{inc.tenant_id[len(prefix) + 1:]}#{i}" for i, inc in enumerate(incidents)}
        events = list(s.exec(select(ExportEvent).where(ExportEvent.tenant_id.startswith(prefix))))
        jobs = [j for j in s.exec(select(Job).where(Job.kind == "diagnose")) if j.payload["tenant"].startswith(prefix)]
        audit = list(s.exec(select(AuditEntry).where(AuditEntry.tenant_id.startswith(prefix))))

    def short(tenant: str) -> str:
        return tenant[len(prefix) + 1:]

    return {
        "incidents": sorted((names[i.id], i.status, i.open_key is not None, i.failures, tuple(i.kinds),
                             i.last_event_at, i.resolved_by) for i in incidents),
        "events": sorted((e.id[len(prefix) + 1:], short(e.tenant_id), names.get(e.incident_id), e.fortnox_status,
                          e.fortnox_code, e.fortnox_message, e.kind) for e in events),
        "diagnose_jobs": sorted((short(j.payload["tenant"]), names[j.payload["incident"]], j.status) for j in jobs),
        "audit": Counter((a.action, short(a.tenant_id), names.get(a.incident_id)) for a in audit),
    }


def test_a_batch_stores_what_the_same_events_one_by_one_store(store):
    service = IncidentService(store, diagnoser=None)
    for event in _history("b") + _history("o"):
        service.ingest(event)

    batched = service.ingest_many(_batch("b"))
    one_by_one = [service.ingest(event) for event in _batch("o")]

    def outcome(results, prefix):
        return [(r.duplicate, r.created, r.resolved, r.incident_id is not None) for r in results]
    assert outcome(batched, "b") == outcome(one_by_one, "o")
    assert [r.duplicate for r in batched] == [False, False, False, True, True, False, False, False, False, False]
    assert batched[3].incident_id == batched[1].incident_id == batched[9].incident_id
    assert _facts(store, "b") == _facts(store, "o")

    facts = _facts(store, "b")
    assert ("live#3", "open", True, 3, ("invoice", "customer", "voucher"), T0 + timedelta(minutes=32), None) \
        in facts["incidents"]
    assert ("new#4", "open", True, 2, ("invoice",), T0 + timedelta(minutes=36), None) in facts["incidents"]
    assert ("4", "gone", "gone#1", 401, 2000310, "Invalid login", "invoice") in facts["events"]   # late: old incident
    assert ("8", "new", "new#4", 500, None, "<html>Bad gateway</html>", "invoice") in facts["events"]
    assert {n for n, status, *_ in facts["incidents"] if status == "resolved"} == {"gone#1", "flip#0"}
    assert facts["audit"][("incident_opened", "new", "new#4")] == 1
    assert facts["audit"][("resolved", "flip", "flip#0")] == 1
    # One pending diagnosis per incident that failed, whatever the number of its events; flip's and the
    # recovered gone#1's will find theirs resolved, and gone#2 (reopened) gets its own.
    assert facts["diagnose_jobs"] == [("flip", "flip#0", "pending"), ("gone", "gone#1", "pending"),
                                      ("gone", "gone#2", "pending"), ("live", "live#3", "pending"),
                                      ("new", "new#4", "pending")]


def test_a_repeated_batch_is_all_duplicates_and_changes_nothing(store):
    service = IncidentService(store, diagnoser=None)
    batch = [_event("r", f"t{i % 3}", str(i), i) for i in range(9)]
    first = service.ingest_many(batch)
    before = _facts(store, "r")
    again = service.ingest_many(batch)
    assert [r.duplicate for r in again] == [True] * 9
    assert [r.incident_id for r in again] == [r.incident_id for r in first]
    assert _facts(store, "r") == before
    assert [f for _, _, _, f, *_ in before["incidents"]] == [3, 3, 3]


def test_a_batch_that_conflicts_is_refused_whole(store):
    """Another writer opened an incident between the batch's read and its insert: nothing of the batch is kept."""
    if not store.db.is_postgres:
        pytest.skip("SQLite has one writer at a time: no other writer can come between a batch's read and write")
    service = IncidentService(store, diagnoser=None)
    incidents = store.incidents
    real = incidents._failures_in_bulk

    class RaceAfterRead:
        """The batch's connection; the other writer commits right after the batch's first read."""

        def __init__(self, conn):
            self.conn, self.raced = conn, False

        def execute(self, *args, **kw):
            result = self.conn.execute(*args, **kw)
            if not self.raced:
                self.raced = True
                incidents.ingest(ExportEvent(**service._row(_event("c", "a", "other", 1))))   # its own connection
            return result

    def racing(conn, events, by_tenant, results):
        return real(RaceAfterRead(conn), events, by_tenant, results)

    incidents._failures_in_bulk = racing
    batch = [_event("c", "a", "1", 2), _event("c", "z", "2", 3)]
    try:
        with pytest.raises(Exception):
            service.ingest_many(batch)
    finally:
        del incidents._failures_in_bulk
    facts = _facts(store, "c")
    assert [e[0] for e in facts["events"]] == ["other"]      # only the other writer's event
    assert [(i[0], i[3]) for i in facts["incidents"]] == [("a#0", 1)]
    # What the intake does next: the same events one by one, now joining the incident that exists.
    assert [service.ingest(e).duplicate for e in batch] == [False, False]
    assert sorted((i[0], i[3]) for i in _facts(store, "c")["incidents"]) == [("a#0", 2), ("z#1", 1)]


# --- GroupCommit --------------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, refuse: set[str] = frozenset()):
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self.refuse = refuse
        self.gate = threading.Event()

    def many(self, events):
        self.gate.wait(5)   # holds the first batch so that the rest pile up behind it
        self.batches.append(list(events))
        if self.refuse & set(events):
            raise RuntimeError("conflict")
        return [f"stored {e}" for e in events]

    def one(self, event):
        self.singles.append(event)
        if event in self.refuse:
            raise ValueError(f"cannot store {event}")
        return f"stored {event} alone"


async def test_concurrent_events_share_batches_and_each_gets_its_own_answer():
    rec = _Recorder()
    intake = GroupCommit(rec.one, rec.many, name="test", max_batch=20)
    tasks = [asyncio.create_task(intake.submit("e0"))]
    await asyncio.sleep(0.05)   # its batch is being written (held at the gate) ...
    tasks += [asyncio.create_task(intake.submit(f"e{i}")) for i in range(1, 50)]   # ... while these arrive
    await asyncio.sleep(0.05)
    rec.gate.set()
    answers = await asyncio.gather(*tasks)
    intake.close()
    assert answers == [f"stored e{i}" for i in range(50)]
    assert [len(b) for b in rec.batches] == [1, 20, 20, 9]   # the first alone; the rest waited for it
    assert sum(rec.batches, []) == [f"e{i}" for i in range(50)] and rec.singles == []


async def test_one_bad_event_does_not_fail_its_batch_neighbours():
    rec = _Recorder(refuse={"e3"})
    rec.gate.set()
    intake = GroupCommit(rec.one, rec.many, name="test")
    answers = await asyncio.gather(*(intake.submit(f"e{i}") for i in range(6)), return_exceptions=True)
    intake.close()
    assert rec.batches == [[f"e{i}" for i in range(6)]]   # refused whole (e3) ...
    assert rec.singles == [f"e{i}" for i in range(6)]      # ... then each on its own
    assert [str(a) for a in answers] == ["stored e0 alone", "stored e1 alone", "stored e2 alone", "cannot store e3",
                                         "stored e4 alone", "stored e5 alone"]
    assert isinstance(answers[3], ValueError)


async def test_a_caller_that_hangs_up_does_not_cancel_the_batch():
    rec = _Recorder()
    intake = GroupCommit(rec.one, rec.many, name="test")
    first = asyncio.create_task(intake.submit("e0"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(intake.submit("e1"))
    await asyncio.sleep(0.01)
    second.cancel()                   # the webhook's client went away while its event waited
    rec.gate.set()
    assert await first == "stored e0"
    for _ in range(100):
        if len(rec.batches) == 2:
            break
        await asyncio.sleep(0.01)
    intake.close()
    assert rec.batches == [["e0"], ["e1"]]   # stored anyway: a redelivery will find it a duplicate


def test_an_event_whose_transaction_postgresql_aborted_for_a_deadlock_is_stored_on_the_retry(sqlite_store):
    """PostgreSQL breaks a deadlock between two replicas by aborting one transaction (SQLSTATE 40P01): that
    is a race lost, not a broken store, so the event is stored on the next attempt instead of answering 503."""
    import psycopg.errors
    from sqlalchemy.exc import OperationalError

    service = IncidentService(sqlite_store, diagnoser=None)
    incidents = sqlite_store.incidents
    real, attempts = incidents._ingest, []

    def deadlocked_once(event, delay):
        attempts.append(event.id)
        if len(attempts) == 1:
            raise OperationalError("INSERT ...", {}, psycopg.errors.DeadlockDetected("deadlock detected"))
        return real(event, delay)

    incidents._ingest = deadlocked_once
    result = service.ingest(_event("d", "a", "1", 1))
    assert attempts == ["d-1", "d-1"] and not result.duplicate and result.created

    def store_down(event, delay):
        raise OperationalError("SELECT 1", {}, psycopg.errors.ConnectionFailure("server closed the connection"))

    incidents._ingest = store_down   # any other operational error is the store's: the caller answers 503
    with pytest.raises(OperationalError):
        service.ingest(_event("d", "b", "2", 2))
