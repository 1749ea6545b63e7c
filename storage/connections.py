"""Fortnox credentials per tenant: encrypted at rest, with a refresh lease for single-flight rotation."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlmodel import select

from storage.crypto import CipherError, looks_like_fernet
from storage.db import Database
from storage.models import Connection
from storage.types import utcnow


@dataclass(frozen=True)
class Credentials:
    """A decrypted view of one Connection row. Never log or render the token fields."""

    tenant_id: str
    mode: str
    access_token: str | None
    refresh_token: str | None
    legacy_token: str | None
    decrypt_error: str | None          # set when a stored token could not be decrypted
    expires_at: datetime | None
    issued_at: datetime | None
    scopes: frozenset[str]
    company_id: str | None
    user_id: str | None
    client_id: str | None
    state: str
    state_reason: str | None
    generation: int
    refresh_owner: str | None
    refresh_started_at: datetime | None

    def __repr__(self) -> str:  # keep tokens out of reprs, tracebacks and logs
        return f"Credentials(tenant_id={self.tenant_id!r}, mode={self.mode!r}, generation={self.generation})"


class Connections:
    def __init__(self, db: Database):
        self.db = db

    @property
    def cipher(self):
        if self.db.cipher is None:
            raise CipherError("ENCRYPTION_KEY is not configured")
        return self.db.cipher

    def _decrypt(self, value: str | None) -> str | None:
        return None if value is None else self.cipher.decrypt(value)

    def load(self, tenant_id: str) -> Credentials | None:
        with self.db.read() as s:
            row = s.get(Connection, tenant_id)
        if row is None:
            return None
        error = None
        access = refresh = legacy = None
        try:
            access = self._decrypt(row.access_token_enc)
            refresh = self._decrypt(row.refresh_token_enc)
            legacy = self._decrypt(row.legacy_token_enc)
        except CipherError as exc:
            error = str(exc)
            access = refresh = legacy = None
        return Credentials(
            tenant_id=row.tenant_id, mode=row.mode, access_token=access, refresh_token=refresh,
            legacy_token=legacy, decrypt_error=error, expires_at=row.expires_at, issued_at=row.issued_at,
            scopes=frozenset(row.scopes.split()), company_id=row.company_id, user_id=row.user_id,
            client_id=row.client_id, state=row.state, state_reason=row.state_reason,
            generation=row.generation, refresh_owner=row.refresh_owner,
            refresh_started_at=row.refresh_started_at,
        )

    def other_tenants_decrypt(self, exclude: str, sample: int = 3) -> bool | None:
        """Do other tenants' tokens decrypt? None when there is no other to try."""
        with self.db.read() as s:
            rows = list(s.exec(select(Connection).where(
                Connection.tenant_id != exclude,
                or_(Connection.access_token_enc.is_not(None), Connection.legacy_token_enc.is_not(None))).limit(sample)))
        if not rows:
            return None
        for row in rows:
            try:
                self.cipher.decrypt(row.access_token_enc or row.legacy_token_enc)
                return True
            except CipherError:
                continue
        return False

    def key_mismatch(self, tenant_id: str) -> bool:
        """Does a decrypt failure of this tenant point at ENCRYPTION_KEY rather than at one corrupted row?

        Yes when other tenants' tokens fail too; with no other tenant, when this row's ciphertexts are all
        intact Fernet tokens (written under a key that is no longer configured; corruption breaks the format).
        """
        others = self.other_tenants_decrypt(tenant_id)
        if others is not None:
            return not others
        with self.db.read() as s:
            row = s.get(Connection, tenant_id)
        if row is None:
            return False
        values = [v for v in (row.access_token_enc, row.refresh_token_enc, row.legacy_token_enc) if v]
        return bool(values) and all(looks_like_fernet(v) for v in values)

    def store_tokens(self, tenant_id: str, *, access_token: str, refresh_token: str | None,
                     expires_at: datetime, scopes, mode: str = "oauth", company_id: str | None = None,
                     user_id: str | None = None, client_id: str | None = None) -> int:
        """Replace a tenant's credentials (new consent or imported tokens). Returns the new generation."""
        now = utcnow()
        with self.db.session() as s:
            row = s.get(Connection, tenant_id) or Connection(tenant_id=tenant_id)
            row.mode = mode
            row.access_token_enc = self.cipher.encrypt(access_token)
            row.refresh_token_enc = self.cipher.encrypt(refresh_token) if refresh_token else None
            row.legacy_token_enc = None
            row.expires_at = expires_at
            row.issued_at = now
            row.scopes = " ".join(sorted(scopes))
            row.company_id, row.user_id, row.client_id = company_id, user_id, client_id
            row.state, row.state_reason = "active", None
            row.generation += 1
            row.refresh_owner = row.refresh_started_at = None
            row.updated_at = now
            s.add(row)
            return row.generation

    def store_legacy(self, tenant_id: str, legacy_token: str) -> None:
        now = utcnow()
        with self.db.session() as s:
            row = s.get(Connection, tenant_id) or Connection(tenant_id=tenant_id)
            row.mode = "legacy"
            row.access_token_enc = row.refresh_token_enc = None
            row.legacy_token_enc = self.cipher.encrypt(legacy_token)
            row.expires_at = None
            row.scopes = ""
            row.state, row.state_reason = "active", None
            row.generation += 1
            row.updated_at = now
            s.add(row)

    # --- single-flight refresh -------------------------------------------------------------
    def begin_refresh(self, tenant_id: str, owner: str, generation: int, lease: timedelta) -> bool:
        """Take the refresh lease with one conditional UPDATE (atomic across processes and replicas).

        Fails when another holder's lease is live or the tokens changed since `generation` was read.
        """
        now = utcnow()
        stmt = (
            update(Connection)
            .where(Connection.tenant_id == tenant_id, Connection.generation == generation,
                   Connection.state == "active",
                   or_(Connection.refresh_owner.is_(None), Connection.refresh_started_at < now - lease))
            .values(refresh_owner=owner, refresh_started_at=now)
        )
        with self.db.session() as s:
            return s.exec(stmt).rowcount == 1

    def finish_refresh(self, tenant_id: str, owner: str, *, access_token: str, refresh_token: str | None,
                       expires_at: datetime, scopes) -> bool:
        """Store the rotated pair and drop the lease in one statement; False if the lease was lost."""
        values = dict(
            access_token_enc=self.cipher.encrypt(access_token),
            refresh_token_enc=self.cipher.encrypt(refresh_token) if refresh_token else None,
            expires_at=expires_at, issued_at=utcnow(), scopes=" ".join(sorted(scopes)),
            generation=Connection.generation + 1, refresh_owner=None, refresh_started_at=None,
            updated_at=utcnow(),
        )
        stmt = update(Connection).where(Connection.tenant_id == tenant_id,
                                        Connection.refresh_owner == owner).values(**values)
        with self.db.session() as s:
            return s.exec(stmt).rowcount == 1

    def release_refresh(self, tenant_id: str, owner: str) -> None:
        """Drop the lease without changing tokens (the refresh token was not consumed)."""
        stmt = (update(Connection).where(Connection.tenant_id == tenant_id, Connection.refresh_owner == owner)
                .values(refresh_owner=None, refresh_started_at=None))
        with self.db.session() as s:
            s.exec(stmt)

    def mark(self, tenant_id: str, state: str, reason: str, *, owner: str | None = None) -> bool:
        """Mark the grant dead or its rotation lost.

        With `owner`: only while that owner still holds the lease (which is then dropped), so a worker
        whose lease was taken over, or whose new tokens were saved after all, marks nothing.
        """
        values = dict(state=state, state_reason=reason, updated_at=utcnow())
        stmt = update(Connection).where(Connection.tenant_id == tenant_id)
        if owner is not None:
            stmt = stmt.where(Connection.refresh_owner == owner)
            values.update(refresh_owner=None, refresh_started_at=None)
        with self.db.session() as s:
            return s.exec(stmt.values(**values)).rowcount == 1

    def mark_stale_lease(self, tenant_id: str, lease: timedelta, reason: str) -> bool:
        """A lease abandoned past its time: the refresh token may be spent. Marks rotation lost once."""
        now = utcnow()
        stmt = (update(Connection)
                .where(Connection.tenant_id == tenant_id, Connection.refresh_owner.is_not(None),
                       Connection.refresh_started_at < now - lease)
                .values(state="rotation_lost", state_reason=reason, refresh_owner=None,
                        refresh_started_at=None, updated_at=now))
        with self.db.session() as s:
            return s.exec(stmt).rowcount == 1

    def tenants_due_for_refresh(self, issued_before: datetime, limit: int = 500) -> list[str]:
        """Active OAuth tenants last refreshed before `issued_before` (idle refresh tokens die after 31-45 days)."""
        with self.db.read() as s:
            rows = s.exec(select(Connection.tenant_id).where(
                Connection.state == "active", Connection.mode == "oauth", Connection.refresh_owner.is_(None),
                Connection.refresh_token_enc.is_not(None), Connection.issued_at < issued_before).limit(limit))
            return list(rows)
