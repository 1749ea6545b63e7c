"""Tenants: who the bot watches, which export kinds they use, where their alerts go."""
from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from storage.db import Database
from storage.models import Connection, Tenant
from storage.types import utcnow


class TenantExists(Exception):
    pass


class TenantNotFound(Exception):
    pass


class Tenants:
    def __init__(self, db: Database):
        self.db = db

    def get(self, tenant_id: str) -> Tenant | None:
        with self.db.read() as s:
            return s.get(Tenant, tenant_id)

    def find(self, text: str) -> Tenant | None:
        """By id, else by display name, case-insensitively."""
        needle = text.strip().lower()
        with self.db.read() as s:
            row = s.get(Tenant, text.strip())   # the usual case, by primary key; the scans below are for the rest
            if row is None:
                row = s.exec(select(Tenant).where(func.lower(Tenant.id) == needle)).first()
            if row is None:
                row = s.exec(select(Tenant).where(func.lower(Tenant.name) == needle)).first()
            return row

    def list(self) -> list[Tenant]:
        with self.db.read() as s:
            return list(s.exec(select(Tenant).order_by(Tenant.id)))

    def ids_and_names(self) -> list[tuple[str, str]]:
        with self.db.read() as s:
            return [(r[0], r[1]) for r in s.exec(select(Tenant.id, Tenant.name))]

    def count(self) -> int:
        with self.db.read() as s:
            return s.exec(select(func.count()).select_from(Tenant)).one()

    def add(self, tenant: Tenant) -> Tenant:
        with self.db.session() as s:
            if s.get(Tenant, tenant.id) is not None:
                raise TenantExists(tenant.id)
            s.add(tenant)
        return tenant

    def upsert_many(self, tenants: list[Tenant]) -> tuple[int, int]:
        """All or nothing: (added, updated)."""
        added = updated = 0
        with self.db.session() as s:
            for t in tenants:
                row = s.get(Tenant, t.id)
                if row is None:
                    s.add(t)
                    added += 1
                else:
                    row.name, row.channel, row.kinds = t.name, t.channel, list(t.kinds)
                    row.updated_at = utcnow()
                    updated += 1
        return added, updated

    def update(self, tenant_id: str, **changes) -> Tenant:
        with self.db.session() as s:
            row = s.get(Tenant, tenant_id)
            if row is None:
                raise TenantNotFound(tenant_id)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            s.add(row)
            return row

    def connection_modes(self) -> dict[str, str]:
        """tenant id -> none | oauth | service | legacy (for `tenant list`)."""
        with self.db.read() as s:
            rows = s.exec(select(Connection.tenant_id, Connection.mode, Connection.access_token_enc,
                                 Connection.refresh_token_enc, Connection.legacy_token_enc))
            out = {}
            for tenant_id, mode, access, refresh, legacy in rows:
                has_any = access or refresh or legacy
                out[tenant_id] = mode if has_any else "none"
            return out
