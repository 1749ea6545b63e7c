"""Durable job queue in the store: enqueue with coalescing, claim by one worker across replicas, retry with backoff."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import func, select

from storage.db import Database
from storage.models import Job
from storage.types import utcnow


class Jobs:
    def __init__(self, db: Database):
        self.db = db

    def enqueue(self, kind: str, payload: dict, *, lane: str | None = None, coalesce: str | None = None,
                delay: float = 0.0, join: str | None = None, session=None) -> int | None:
        """Add a job; with `coalesce`, a job already pending under that key absorbs this one (returns None).

        join: the name of a list in the payload that an absorbing job takes over (appends), so that nobody who
        asked is forgotten (e.g. every response_url waiting for one diagnosis).
        """
        job = Job(kind=kind, payload=payload, lane=lane, pending_key=coalesce,
                  run_after=utcnow() + timedelta(seconds=delay))
        if session is not None:
            return self._add(session, job, coalesce, join)
        try:
            with self.db.session() as s:
                return self._add(s, job, coalesce, join)
        except IntegrityError:
            if join is None:
                return None   # another replica enqueued the same key at the same moment
            with self.db.session() as s:   # ... and ours must join it
                return self._add(s, job, coalesce, join)

    def _add(self, s, job: Job, coalesce: str | None, join: str | None) -> int | None:
        if coalesce is not None:
            pending = self._pending(s, coalesce)
            if pending is not None:
                if join is not None:
                    pending.payload = {**pending.payload,
                                       join: [*pending.payload.get(join, []), *job.payload.get(join, [])]}
                    s.add(pending)
                return None
        s.add(job)
        s.flush()
        return job.id

    def enqueue_many(self, requests: list[dict]) -> list[int | None]:
        """Several `enqueue(**request)` in one unit of work (group commit); all or nothing."""
        with self.db.session() as s:
            return [self.enqueue(**request, session=s) for request in requests]

    @staticmethod
    def _pending(s, coalesce: str) -> Job | None:
        """The job pending under this key. It is locked until the caller commits: a worker claiming it waits,
        so the job runs after the change it now stands for (else it could read the state from before the
        change, and the change would never be shown). SQLite's single writer gives the same order by itself."""
        return s.exec(select(Job).where(Job.pending_key == coalesce).with_for_update()).first()

    def claim(self, worker: str, *, limit: int = 10, lease: float = 120.0, kinds: tuple[str, ...] | None = None) -> list[Job]:
        """Claim ready jobs: pending (or running with an expired lease: its worker died), and first in their lane."""
        now = utcnow()
        earlier = aliased(Job)
        blocked = exists().where(and_(earlier.lane == Job.lane, earlier.id < Job.id,
                                      earlier.status.in_(("pending", "running"))))
        ready = or_(and_(Job.status == "pending", Job.run_after <= now),
                    and_(Job.status == "running", Job.locked_until < now))
        query = select(Job.id).where(ready, or_(Job.lane.is_(None), ~blocked)).order_by(Job.id).limit(limit * 3)
        if kinds:
            query = query.where(Job.kind.in_(kinds))
        claimed: list[Job] = []
        with self.db.read() as s:
            candidates = list(s.exec(query))
        for job_id in candidates:
            if len(claimed) >= limit:
                break
            stmt = (update(Job).where(Job.id == job_id, ready)
                    .values(status="running", locked_by=worker, locked_until=now + timedelta(seconds=lease),
                            attempts=Job.attempts + 1, pending_key=None))
            with self.db.session() as s:
                if s.exec(stmt).rowcount == 1:
                    claimed.append(s.get(Job, job_id))
        return claimed

    def extend(self, job_ids: list[int], worker: str, lease: float) -> int:
        """Push out the lease of jobs this worker still holds (its heartbeat)."""
        with self.db.session() as s:
            return s.exec(update(Job).where(Job.id.in_(job_ids), Job.locked_by == worker, Job.status == "running")
                          .values(locked_until=utcnow() + timedelta(seconds=lease))).rowcount

    def finish(self, job_id: int, worker: str) -> None:
        with self.db.session() as s:
            s.exec(update(Job).where(Job.id == job_id, Job.locked_by == worker)
                   .values(status="done", finished_at=utcnow(), locked_until=None))

    def retry(self, job_id: int, worker: str, error: str, delay: float) -> None:
        with self.db.session() as s:
            s.exec(update(Job).where(Job.id == job_id, Job.locked_by == worker)
                   .values(status="pending", run_after=utcnow() + timedelta(seconds=delay), last_error=error[:2000],
                           locked_by=None, locked_until=None))

    def fail(self, job_id: int, worker: str, error: str) -> None:
        with self.db.session() as s:
            s.exec(update(Job).where(Job.id == job_id, Job.locked_by == worker)
                   .values(status="failed", finished_at=utcnow(), last_error=error[:2000], locked_until=None))

    def counts(self) -> dict[str, int]:
        with self.db.read() as s:
            return {status: n for status, n in s.exec(select(Job.status, func.count()).group_by(Job.status))}

    def pending(self, kind: str | None = None) -> list[Job]:
        with self.db.read() as s:
            q = select(Job).where(Job.status.in_(("pending", "running")))
            if kind:
                q = q.where(Job.kind == kind)
            return list(s.exec(q.order_by(Job.id)))

    def purge_done(self, older_than: timedelta) -> int:
        from sqlalchemy import delete

        with self.db.session() as s:
            return s.exec(delete(Job).where(Job.status == "done", Job.finished_at < utcnow() - older_than)).rowcount
