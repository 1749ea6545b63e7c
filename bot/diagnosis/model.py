"""What a diagnosis says: checks with evidence, one cause, numbered steps. Platform-neutral data."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Cause(StrEnum):
    HEALTHY = "healthy"
    TOKEN_REFRESHED = "token_refreshed"
    CREDENTIALS_MISSING = "credentials_missing"
    CLIENT_CREDENTIALS_INVALID = "client_credentials_invalid"
    REACTIVATION_REQUIRED = "reactivation_required"
    SCOPES_MISSING = "scopes_missing"
    SCOPE_NOT_REQUESTABLE = "scope_not_requestable"
    LICENSE_MISSING = "license_missing"
    USER_PERMISSIONS = "user_permissions"
    LEGACY_AUTH = "legacy_auth"
    RATE_LIMITED = "rate_limited"
    FORTNOX_UNAVAILABLE = "fortnox_unavailable"
    BOT_MISCONFIGURED = "bot_misconfigured"
    TENANT_UNKNOWN = "tenant_unknown"


# CONTRACT.md: when several causes hold, the first in this order wins.
PRECEDENCE: tuple[Cause, ...] = (
    Cause.BOT_MISCONFIGURED, Cause.CLIENT_CREDENTIALS_INVALID, Cause.TENANT_UNKNOWN, Cause.LEGACY_AUTH,
    Cause.CREDENTIALS_MISSING, Cause.REACTIVATION_REQUIRED, Cause.LICENSE_MISSING, Cause.USER_PERMISSIONS,
    Cause.SCOPE_NOT_REQUESTABLE, Cause.SCOPES_MISSING, Cause.TOKEN_REFRESHED, Cause.HEALTHY,
)
TRANSIENT = frozenset({Cause.RATE_LIMITED, Cause.FORTNOX_UNAVAILABLE})
# Causes that hit every tenant at once: they fold into one platform incident.
APP_WIDE = frozenset({Cause.CLIENT_CREDENTIALS_INVALID, Cause.FORTNOX_UNAVAILABLE, Cause.RATE_LIMITED,
                      Cause.BOT_MISCONFIGURED})
# Causes a new consent by the customer can fix (the reactivation button is offered only for these).
CONSENT_FIXES = frozenset({Cause.REACTIVATION_REQUIRED, Cause.SCOPES_MISSING, Cause.USER_PERMISSIONS,
                           Cause.CREDENTIALS_MISSING, Cause.LEGACY_AUTH})
RESOLVED_CAUSES = frozenset({Cause.HEALTHY, Cause.TOKEN_REFRESHED})


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    id: str                      # e.g. "credentials", "probe", "scope:invoice"
    status: Status
    detail: str                  # one line for humans; outside text is NOT escaped here (renderers do it)
    cause: Cause | None = None   # the cause this check's failure points to (None for pass/skip)

    def to_json(self) -> dict:
        return {"id": self.id, "status": str(self.status), "detail": self.detail}


class Audience(StrEnum):
    OPERATOR = "operator"
    CUSTOMER_ADMIN = "customer_admin"


@dataclass(frozen=True)
class Step:
    audience: Audience
    text: str          # English
    text_sv: str       # Swedish

    def to_json(self, n: int) -> dict:
        return {"n": n, "audience": str(self.audience), "text": self.text, "text_sv": self.text_sv}


@dataclass(frozen=True)
class Diagnosis:
    tenant: str
    cause: Cause
    summary: str
    checks: tuple[Check, ...]
    steps: tuple[Step, ...]
    # Scopes a consent link should ask for (needed ∩ requestable), for the reactivation flow.
    consent_scopes: frozenset[str] = field(default_factory=frozenset)
    storage_fault: str | None = None    # the bot's own store failed during this run (F-D1)
    retry_after: float | None = None    # transient causes: when to try again
    record_id: int | None = None        # the stored DiagnosisRecord, once saved

    @property
    def affects_all_tenants(self) -> bool:
        return self.cause in APP_WIDE

    @property
    def consent_can_fix(self) -> bool:
        return self.cause in CONSENT_FIXES and self.storage_fault is None

    @property
    def resolved(self) -> bool:
        return self.cause in RESOLVED_CAUSES and self.storage_fault is None

    @property
    def failing_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == Status.FAIL)

    def to_json(self) -> dict:
        out = {
            "tenant": self.tenant,
            "cause": str(self.cause),
            "summary": self.summary,
            "checks": [c.to_json() for c in self.checks],
            "steps": [s.to_json(i) for i, s in enumerate(self.steps, 1)],
            "affects_all_tenants": self.affects_all_tenants,
            "consent_can_fix": self.consent_can_fix,
        }
        if self.storage_fault:
            out["storage_fault"] = self.storage_fault
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


__all__ = ["Cause", "Status", "Check", "Step", "Audience", "Diagnosis", "PRECEDENCE", "TRANSIENT",
           "APP_WIDE", "CONSENT_FIXES", "RESOLVED_CAUSES", "asdict"]
