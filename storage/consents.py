"""OAuth `state` values for consent links: random, stored hashed, single use, bound, expiring (F-F2)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from storage.db import Database
from storage.models import ConsentState
from storage.types import utcnow


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Consumed:
    ok: bool
    reason: str                      # ok | unknown | expired | used | wrong_tenant
    state: ConsentState | None = None


class Consents:
    def __init__(self, db: Database):
        self.db = db

    def issue(self, *, tenant_id: str, scopes, ttl: timedelta, service_account: bool = False,
              request_id: str | None = None, created_by: str | None = None) -> str:
        """A fresh state; only its hash is stored, so a database reader cannot forge a callback."""
        state = secrets.token_urlsafe(32)
        row = ConsentState(state_hash=_hash(state), tenant_id=tenant_id, request_id=request_id,
                           scopes=" ".join(sorted(scopes)), service_account=service_account,
                           created_by=created_by, expires_at=utcnow() + ttl)
        with self.db.session() as s:
            s.add(row)
        return state

    def peek(self, state: str) -> ConsentState | None:
        with self.db.session() as s:
            return s.get(ConsentState, _hash(state))

    def consume(self, state: str, *, tenant_id: str | None = None, outcome: str = "used",
                now: datetime | None = None) -> Consumed:
        """Use a state once. The conditional UPDATE makes two racing callbacks have one winner."""
        now = now or utcnow()
        digest = _hash(state)
        with self.db.session() as s:
            row = s.get(ConsentState, digest)
            # Lookup is by hash; compare again in constant time so timing tells nothing about near misses.
            if row is None or not hmac.compare_digest(row.state_hash, digest):
                return Consumed(False, "unknown")
            if tenant_id is not None and not hmac.compare_digest(row.tenant_id.encode(), tenant_id.encode()):
                return Consumed(False, "wrong_tenant", row)
            if row.used_at is not None:
                return Consumed(False, "used", row)
            if row.expires_at <= now:
                return Consumed(False, "expired", row)
            won = s.exec(update(ConsentState).where(ConsentState.state_hash == digest,
                                                    ConsentState.used_at.is_(None))
                         .values(used_at=now, outcome=outcome)).rowcount == 1
            if not won:
                return Consumed(False, "used", row)
            s.refresh(row)
            return Consumed(True, "ok", row)

    def set_outcome(self, state: str, outcome: str) -> None:
        with self.db.session() as s:
            s.exec(update(ConsentState).where(ConsentState.state_hash == _hash(state)).values(outcome=outcome))
