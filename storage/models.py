"""The bot's tables. Only storage/ imports these to run queries; other layers get detached rows back."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime, utcnow


class Tenant(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)          # the platform's tenant key, e.g. "acme"
    name: str = Field(default="", sa_type=Text)
    channel: Optional[str] = Field(default=None, max_length=32)  # Slack channel ID; None = ALERT_CHANNEL
    kinds: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    service_account: bool = False                              # consent links ask for account_type=service
    company_id: Optional[str] = Field(default=None, max_length=32)  # expected Fortnox tenantId (DatabaseNumber)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Connection(SQLModel, table=True):
    """A tenant's Fortnox credentials. Token columns hold Fernet ciphertext only."""

    tenant_id: str = Field(primary_key=True, foreign_key="tenant.id", max_length=64)
    mode: str = Field(default="oauth", max_length=16)            # oauth | service | legacy
    access_token_enc: Optional[str] = Field(default=None, sa_type=Text)
    refresh_token_enc: Optional[str] = Field(default=None, sa_type=Text)
    legacy_token_enc: Optional[str] = Field(default=None, sa_type=Text)
    expires_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    issued_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    scopes: str = Field(default="", sa_type=Text)                # space-separated, as granted
    company_id: Optional[str] = Field(default=None, max_length=32)
    user_id: Optional[str] = Field(default=None, max_length=32)
    client_id: Optional[str] = Field(default=None, sa_type=Text)
    state: str = Field(default="active", max_length=16)          # active | dead | rotation_lost
    state_reason: Optional[str] = Field(default=None, sa_type=Text)
    generation: int = 0                                          # bumps on every stored token pair
    # Refresh lease: who is refreshing now. A lease left behind past its time means a refresh may have
    # consumed the refresh token without its successor being saved (F-D1).
    refresh_owner: Optional[str] = Field(default=None, max_length=64)
    refresh_started_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DiagnosisRecord(SQLModel, table=True):
    __tablename__ = "diagnosis"
    id: Optional[int] = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=64)
    cause: str = Field(max_length=40)
    summary: str = Field(default="", sa_type=Text)
    checks: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    steps: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    trigger: str = Field(default="cli", max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ExportEvent(SQLModel, table=True):
    """One platform event, keyed by its body `id` so a repeat is a duplicate whatever the headers say."""

    __tablename__ = "export_event"
    id: str = Field(primary_key=True, max_length=200)
    tenant_id: str = Field(index=True, max_length=200)
    type: str = Field(max_length=32)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    kind: Optional[str] = Field(default=None, max_length=64)
    ref: Optional[str] = Field(default=None, sa_type=Text)
    fortnox_status: Optional[int] = None
    fortnox_code: Optional[int] = None
    fortnox_message: str = Field(default="", sa_type=Text)
    fortnox_body: str = Field(default="", sa_type=Text)        # what Fortnox answered, as JSON text, ≤ 8 KiB
    incident_id: Optional[str] = Field(default=None, index=True, max_length=40)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Incident(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=40)
    tenant_id: Optional[str] = Field(default=None, index=True, max_length=200)  # None for a platform incident
    platform: bool = False
    cause: str = Field(max_length=40)
    status: str = Field(default="open", max_length=16)           # open | snoozed | resolved
    # "tenant:cause" (or "*:cause") while not resolved, NULL after: a unique key that allows
    # one live incident per tenant and cause, on SQLite and PostgreSQL alike.
    open_key: Optional[str] = Field(default=None, unique=True, max_length=260)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_event_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    failures: int = 0
    kinds: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    affected: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # platform: tenant ids
    parent_id: Optional[str] = Field(default=None, max_length=40)  # the platform incident a tenant was folded into
    diagnosis_id: Optional[int] = None
    diagnosed_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)  # paces re-diagnoses in a burst
    summary: str = Field(default="", sa_type=Text)
    snoozed_until: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    snoozed_by: Optional[str] = Field(default=None, max_length=64)
    resolved_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    resolved_by: Optional[str] = Field(default=None, max_length=64)
    resolution: Optional[str] = Field(default=None, sa_type=Text)
    channel: Optional[str] = Field(default=None, max_length=32)
    message_ts: Optional[str] = Field(default=None, max_length=32)
    # Why the alert is not in the tenant's own channel (that channel refused it), shown on every update.
    channel_note: Optional[str] = Field(default=None, sa_type=Text)
    # When a post of the alert was last sent without its ts being saved yet: a retry after a crash or
    # timeout looks for that post in the channel before posting again (Slack has no idempotency key).
    post_started_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    version: int = 0


class ReactivationRequest(SQLModel, table=True):
    __tablename__ = "reactivation_request"
    id: str = Field(primary_key=True, max_length=40)
    incident_id: Optional[str] = Field(default=None, index=True, max_length=40)
    tenant_id: str = Field(index=True, max_length=64)
    cause: str = Field(max_length=40)
    # pending | approved | denied | expired | consented | declined | verified | failed (storage/requests.py)
    status: str = Field(default="pending", max_length=16)
    requested_by: str = Field(max_length=64)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    decided_by: Optional[str] = Field(default=None, max_length=64)
    decided_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    link_issued_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    finished_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)   # declined, verified or failed
    outcome: Optional[str] = Field(default=None, sa_type=Text)                   # why it ended, e.g. "wrong_company"
    # at most one live request per tenant (NULL once decided/finished)
    live_key: Optional[str] = Field(default=None, unique=True, max_length=64)


class ConsentState(SQLModel, table=True):
    """OAuth `state` values: stored as a SHA-256 hash, single use, bound to tenant and request, expiring."""

    __tablename__ = "consent_state"
    state_hash: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    request_id: Optional[str] = Field(default=None, max_length=40)
    scopes: str = Field(default="", sa_type=Text)
    service_account: bool = False
    created_by: Optional[str] = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    outcome: Optional[str] = Field(default=None, max_length=32)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    tenant_id: Optional[str] = Field(default=None, index=True, max_length=200)
    incident_id: Optional[str] = Field(default=None, max_length=40)
    request_id: Optional[str] = Field(default=None, max_length=40)
    action: str = Field(max_length=40)
    actor: str = Field(default="bot", max_length=64)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    permalink: Optional[str] = Field(default=None, sa_type=Text)


class SlackEventSeen(SQLModel, table=True):
    """Events API envelopes already handled (F-S2): survives restarts, shared by replicas."""

    __tablename__ = "slack_event_seen"
    event_id: str = Field(primary_key=True, max_length=64)
    team_id: str = Field(default="", max_length=32)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Job(SQLModel, table=True):
    """Durable background work (diagnoses, Slack deliveries): claimed by one worker, resumed after a crash."""

    __table_args__ = (Index("ix_job_ready", "status", "run_after"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    # Jobs of one lane run one at a time in id order (e.g. every Slack call about one incident).
    lane: Optional[str] = Field(default=None, index=True, max_length=300)
    # Coalescing key: while a job with this key is pending, a new one with the same key is merged into it.
    pending_key: Optional[str] = Field(default=None, unique=True, max_length=300)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)   # pending | running | done | failed
    attempts: int = 0
    run_after: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    locked_by: Optional[str] = Field(default=None, max_length=64)
    locked_until: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    last_error: Optional[str] = Field(default=None, sa_type=Text)
